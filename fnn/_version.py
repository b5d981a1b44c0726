"""fnn's version, from the installed package's metadata (pyproject.toml is its one source)."""

from importlib import metadata

try:
    __version__ = metadata.version("fnn")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
