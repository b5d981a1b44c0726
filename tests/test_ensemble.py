"""fit_ensemble: N seeds (or hyper-parameters) in one compiled program, each member exactly its fit."""

from __future__ import annotations

import chex
import jax
import numpy as np
import optax
import pytest

import fnn
from tests.fitting import LOSS, assert_same_run, digits, mlp

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside

# 300 digits, 0.2 held out: 240 to train in 7 batches of 32 and a last one of 16.
OPTIONS = dict(loss=LOSS, metrics=["accuracy"], epochs=2, batch_size=32, validation_split=0.2, verbose=0)


def test_each_member_is_bitwise_its_seeds_fit():
    x, y = digits()
    runs = fnn.fit_ensemble(mlp(), x, y, seeds=[0, 5, 2], **OPTIONS)
    assert runs.seeds == [0, 5, 2] and runs.train_state.params["dense"]["w"].shape == (3, 64, 16)
    for seed, member in zip(runs.seeds, runs.members):
        assert_same_run(member, fnn.fit(mlp(), x, y, seed=seed, **OPTIONS))
    assert runs.members[0].history["val_loss"] != runs.members[1].history["val_loss"]


def test_a_learning_rate_sweep_is_bitwise_each_rates_fit():
    x, y = digits(200)
    rates = [0.01, 0.1]
    runs = fnn.fit_ensemble(
        mlp(), x, y, seeds=4, hyperparams={"learning_rate": rates}, optimizer="sgd", **OPTIONS
    )
    assert runs.seeds == [4, 4] and runs.hyperparams == {"learning_rate": rates}
    for rate, member in zip(rates, runs.members):
        alone = fnn.fit(
            mlp(), x, y, seed=4, optimizer=fnn.optimizers.get("sgd", learning_rate=rate), **OPTIONS
        )
        assert_same_run(member, alone)
        assert member.history["learning_rate"] == [np.float32(rate)] * 2


def test_any_injected_hyperparameter_can_be_swept():
    x, y = digits(200)
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=0.0)
    decays = [0.0, 0.5]
    runs = fnn.fit_ensemble(
        mlp(), x, y, seeds=[1, 1], hyperparams={"weight_decay": decays}, optimizer=tx, **OPTIONS
    )
    for decay, member in zip(decays, runs.members):
        made = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=decay)
        assert_same_run(member, fnn.fit(mlp(), x, y, seed=1, optimizer=made, **OPTIONS))
    with pytest.raises(
        ValueError,
        match=r"hyperparams 'momentum': hyper-parameter 'momentum' is not in the optimiser's state \(it holds \['b1', ",
    ):
        fnn.fit_ensemble(mlp(), x, y, seeds=[0], hyperparams={"momentum": [0.9]}, optimizer=tx, **OPTIONS)


def test_vectorised_members_equal_their_fit_to_float32_rounding():
    x, y = digits(200)
    runs = fnn.fit_ensemble(mlp(), x, y, seeds=[0, 1], vectorize=True, **OPTIONS)
    for seed, member in zip(runs.seeds, runs.members):
        alone = fnn.fit(mlp(), x, y, seed=seed, **OPTIONS)
        chex.assert_trees_all_close(member.params, alone.params, atol=1e-5)
        for name, values in alone.history.items():
            np.testing.assert_allclose(member.history[name], values, rtol=1e-5, err_msg=name)


def test_mean_std_summary_and_epoch_lines_are_those_of_the_members(capsys):
    x, y = digits(200)
    runs = fnn.fit_ensemble(mlp(), x, y, seeds=[0, 1, 2], **{**OPTIONS, "epochs": 1, "verbose": 1})
    accuracy = np.array([[m.history["val_accuracy"][0] for m in runs.members]])
    np.testing.assert_array_equal(runs.values("val_accuracy"), accuracy)
    assert runs.mean["val_accuracy"] == [accuracy.mean()]
    assert runs.std["val_accuracy"] == [accuracy.std(ddof=1)]
    spread = f"{accuracy.mean():.4f} ± {accuracy.std(ddof=1):.4f}"
    line = next(s for s in runs.summary().splitlines() if s.strip().startswith("val_accuracy"))
    assert spread in line and f"({accuracy.min():.4f} .. {accuracy.max():.4f})" in line
    printed = capsys.readouterr().out
    assert printed.startswith("Epoch 1/1 (3 members) - ") and f" - val_accuracy {spread}" in printed
    with pytest.raises(KeyError, match="no log 'auc'; the logs are"):
        runs.values("auc")


@pytest.mark.parametrize(
    "seeds, hyperparams, message",
    [
        ([], None, r"seeds must be a non-empty list of ints, got \[\]"),
        (3, None, "seeds must be a list of seeds .* got seeds=3 and no hyperparams"),
        ([0, 1], {"learning_rate": [0.1]}, "2 seeds but hyperparams' lists hold 1 values"),
        (0, {"learning_rate": [0.1], "weight_decay": [0.1, 0.2]}, "must be as long as each other"),
        ([0], {"learning_rate": [float("nan")]}, r"hyperparams\['learning_rate'\] holds nan"),
        ([0], {"learning_rate": 0.1}, r"hyperparams\['learning_rate'\] must be a non-empty list"),
        ([-1], None, "seed"),
    ],
)
def test_bad_members_are_named(seeds, hyperparams, message):
    x, y = digits(64)
    with pytest.raises(ValueError, match=message):
        fnn.fit_ensemble(mlp(), x, y, seeds=seeds, hyperparams=hyperparams, loss=LOSS, verbose=0)


def test_streams_are_fits_alone():
    x, y = digits(64)
    with pytest.raises(ValueError, match="fit_ensemble: needs in-memory arrays x and y"):
        fnn.fit_ensemble(mlp(), [(x, y)], None, seeds=[0, 1], loss=LOSS, verbose=0)


def test_a_schedule_cannot_be_swept_per_member():
    x, y = digits(64)
    tx = fnn.optimizers.get("sgd", learning_rate=optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match="learning rate follows a schedule"):
        fnn.fit_ensemble(
            mlp(), x, y, seeds=0, hyperparams={"learning_rate": [0.1, 0.2]}, optimizer=tx, loss=LOSS
        )


def test_members_predict_with_vmap():
    x, y = digits(100)
    runs = fnn.fit_ensemble(mlp(), x, y, seeds=[0, 1], **{**OPTIONS, "epochs": 1})
    model = mlp()
    ensemble = jax.vmap(lambda p, s: model.apply(p, s, x[:5], train=False)[0])
    outputs = ensemble(runs.train_state.params, runs.train_state.state)
    assert outputs.shape == (2, 5, 10)
    np.testing.assert_allclose(
        outputs[1], fnn.predict(model, runs.members[1].params, runs.members[1].state, x[:5]), rtol=1e-5
    )
