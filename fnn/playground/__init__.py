"""fnn Playground: tinker with a neural network in your browser, trained live by fnn.

``python -m fnn.playground`` will serve the page; this package holds its
datasets, its validated configuration, the training session and the
"show code" generator.

Examples:
    >>> from fnn.playground import Session, parse_config
    >>> session = Session(parse_config({"dataset": "xor", "hidden": [4]}))
    >>> session.train(2)
    >>> session.snapshot()["epoch"]
    2
"""

from fnn.playground._code import script
from fnn.playground._data import DATASETS, FEATURES, feature_columns, make_dataset
from fnn.playground._engine import Config, ConfigError, Session, parse_config

__all__ = [
    "DATASETS",
    "FEATURES",
    "Config",
    "ConfigError",
    "Session",
    "feature_columns",
    "make_dataset",
    "parse_config",
    "script",
]
