"""fnn Playground's training side: configuration checks, sessions, datasets and 'show code'."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from fnn.playground import DATASETS, ConfigError, Session, make_dataset, parse_config, script

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"learning_rate": 50}, r"learning_rate must be in \[1e-05, 10\], got 50"),
        ({"learning_rate": "fast"}, r"learning_rate must be a number in \[1e-05, 10\], got 'fast'"),
        ({"hidden": [4] * 7}, r"hidden must be a list of at most 6 layer sizes, got \[4, 4, 4, 4, 4, 4, 4\]"),
        ({"hidden": [4, 9]}, r"hidden\[1\] must be in \[1, 8\], got 9"),
        ({"hidden": [2.5]}, r"hidden\[0\] must be an int in \[1, 8\], got 2.5"),
        (
            {"dataset": "moons"},
            r"dataset must be one of \['circle', 'xor', 'gauss', 'spiral', 'plane'\], got 'moons'",
        ),
        ({"features": []}, r"features must be a non-empty list drawn from \['x1', 'x2'"),
        ({"features": ["x1", "x1"]}, r"features must be a list without repeats, got \['x1', 'x1'\]"),
        ({"batch_size": True}, r"batch_size must be an int in \[1, 30\], got True"),
        ({"speed": 3}, r"configuration must be made of the fields of Config \(unknown: \['speed'\]\)"),
        ([1, 2], r"configuration must be a JSON object, got \[1, 2\]"),
    ],
)
def test_bad_configurations_name_the_field_and_both_values(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_a_config_keeps_the_pages_feature_order_and_defaults():
    config = parse_config({"features": ["sin(x2)", "x1"], "hidden": []})
    assert config.features == ("x1", "sin(x2)") and config.hidden == () and config.dataset == "circle"


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_seeded_and_shaped(name):
    x, y = make_dataset(name, 200, noise=20, seed=3)
    again = make_dataset(name, 200, noise=20, seed=3)
    assert x.shape == (200, 2) and y.shape == (200,) and x.dtype == np.float32
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])
    assert not np.array_equal(x, make_dataset(name, 200, noise=20, seed=4)[0])
    if name == "plane":
        assert np.abs(y).max() < 1.5
    else:
        assert set(np.unique(y)) == {0.0, 1.0} and abs(y.mean() - 0.5) < 0.15


def test_training_lowers_the_loss_and_reset_restores_the_seeds_start():
    session = Session(parse_config({"dataset": "spiral", "hidden": [8, 8], "optimizer": "adam",
                                    "features": ["x1", "x2", "sin(x1)", "sin(x2)"]}))  # fmt: skip
    start = session.snapshot()
    session.train(1)
    assert session.snapshot()["train_loss"] != start["train_loss"] and session.epoch == 1
    session.train(150)
    trained = session.snapshot()
    assert trained["test_loss"] < 0.5 * start["test_loss"]
    assert trained["surface"] != start["surface"] and len(trained["surface"]) == trained["grid"] ** 2
    session.reset()
    assert session.snapshot() == start
    json.dumps(trained)  # what the server streams


def test_regularisation_shrinks_the_weights():
    def weight_norm(regularization):
        session = Session(parse_config({"dataset": "gauss", "hidden": [6], "regularization": regularization,
                                        "regularization_rate": 0.05, "learning_rate": 0.1}))  # fmt: skip
        session.train(30)
        return sum(np.abs(np.asarray(w)).sum() for w in session.snapshot()["weights"])

    assert weight_norm("l1") < weight_norm("none") and weight_norm("l2") < weight_norm("none")


def test_show_code_reproduces_the_sessions_losses(tmp_path):
    config = parse_config({"dataset": "circle", "hidden": [4, 4], "regularization": "l2",
                           "regularization_rate": 0.001, "noise": 10, "problem": "classification"})  # fmt: skip
    session = Session(config)
    session.train(40)
    path = tmp_path / "run.py"
    path.write_text(script(config, 40))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    test_loss = float(re.search(r"test loss: ([0-9.]+)", done.stdout.splitlines()[-1]).group(1))
    assert test_loss == pytest.approx(session.snapshot()["test_loss"], abs=1e-3)
