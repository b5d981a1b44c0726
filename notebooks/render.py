"""Runs every notebook here top to bottom and writes it, outputs included, to docs/notebooks/, where
the documentation site shows it (mkdocs-jupyter). The notebooks here stay without outputs.

Run: make notebooks   (or: python notebooks/render.py)
tests/test_notebooks.py checks that each rendered copy has the same cells as its source.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "notebooks"


def render(source: Path, out: Path = OUT, timeout_s: int = 300) -> Path:
    notebook = nbformat.read(source, as_version=4)
    folder = {"metadata": {"path": tempfile.mkdtemp()}}  # what a notebook writes stays out of the docs
    nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3", resources=folder).execute()
    out.mkdir(parents=True, exist_ok=True)
    target = out / source.name
    scratch = target.with_suffix(".ipynb.tmp")
    nbformat.write(notebook, scratch)
    scratch.replace(target)  # atomic: a failed run leaves the previous copy
    return target


if __name__ == "__main__":
    for path in sorted(HERE.glob("*.ipynb")) if len(sys.argv) == 1 else map(Path, sys.argv[1:]):
        print(render(path))
