"""fit, evaluate and predict: exactness, fused == unfused, reproducibility, callbacks, errors."""

from __future__ import annotations

import csv
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from tests.fitting import LOSS, assert_same_run, digits, mlp, run

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def test_compiled_calls_stop_at_every_multiple_of_the_interval():
    calls = fnn.train._execution.calls
    assert list(calls(0, 7, 3, None)) == [(0, 3), (3, 3), (6, 1)]
    assert list(calls(0, 7, 3, 2)) == [(0, 2), (2, 2), (4, 2), (6, 1)]
    assert list(calls(4, 9, 8, 3)) == [(4, 2), (6, 3)]
    assert list(calls(5, 5, 1, None)) == []


def test_fused_and_unfused_runs_are_bitwise_equal():
    # 240 training examples / 32: 7 full batches and a partial one; chunks of 3 leave a remainder chunk.
    runs = [run(validation_split=0.2, steps_per_execution=k) for k in (1, 3, 7, "auto")]
    assert [r.steps_per_execution for r in runs[:3]] == [1, 3, 7]
    for other in runs[1:]:
        assert_same_run(runs[0], other)


def test_same_seed_same_run_and_other_seed_differs():
    a, b, c = run(), run(), run(seed=1)
    assert_same_run(a, b)
    assert a.history["loss"] != c.history["loss"]


def test_fit_equals_a_hand_written_loop_over_the_train_step():
    x, y = digits(100)
    model, tx = mlp(), fnn.optimizers.get("adam")
    history = fnn.fit(model, x, y, loss=LOSS, optimizer=tx, epochs=2, batch_size=32, verbose=0, seed=3)
    ts = fnn.TrainState.create(model, tx, (64,), jax.random.key(3))
    step = jax.jit(fnn.make_train_step(model, LOSS, tx))
    params, state, opt_state, count = ts.params, ts.state, ts.opt_state, 0
    for epoch in range(2):
        losses, sizes = [], []
        for bx, by in fnn.data.batches((x, y), 32, seed=3, epoch=epoch):
            key = jax.random.fold_in(ts.key, count)
            params, state, opt_state, logs = step(params, state, opt_state, (bx, by), key)
            losses.append(float(logs["loss"]))
            sizes.append(len(bx))
            count += 1
        assert history.history["loss"][epoch] == pytest.approx(np.average(losses, weights=sizes), rel=1e-6)
    chex.assert_trees_all_equal(history.params, params)
    assert int(history.train_state.step) == count == 8


def test_fit_mutates_nothing_and_starts_from_given_params():
    x, y = digits(64)
    model = mlp()
    params, state = model.init(jax.random.key(9), (64,))
    before = jax.tree.map(np.array, params)
    history = fnn.fit(model, x, y, loss=LOSS, params=params, state=state, epochs=1, verbose=0)
    chex.assert_trees_all_equal(jax.tree.map(np.array, params), before)  # still alive, unchanged
    assert not np.array_equal(history.params["dense"]["w"], before["dense"]["w"])


def test_resuming_from_a_train_state_continues_exactly():
    full = run(epochs=4)
    first = run(epochs=2)
    rest = run(epochs=4, initial_epoch=2, train_state=first.train_state)
    chex.assert_trees_all_equal(rest.params, full.params)
    assert first.history["loss"] + rest.history["loss"] == full.history["loss"]
    assert rest.epochs == [2, 3]


def test_history_has_train_validation_and_learning_rate_entries():
    x, y = digits()
    history = run(validation_data=(x[:50], y[:50]), epochs=2)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert history.history["learning_rate"] == [pytest.approx(1e-3)] * 2
    direct = fnn.evaluate(
        mlp(), history.params, history.state, x[:50], y[:50], loss=LOSS, metrics=["accuracy"]
    )
    assert direct["loss"] == history.history["val_loss"][-1]


def test_iterables_of_batches_train_like_unshuffled_arrays():
    x, y = digits(96)
    arrays = run(data=(x, y), shuffle=False, steps_per_execution=1)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]
    listed = fnn.fit(mlp(), batches, loss=LOSS, metrics=["accuracy"], epochs=3, verbose=0, seed=0)
    assert_same_run(arrays, listed)

    def generator():
        while True:
            yield from batches

    streamed = fnn.fit(
        mlp(), generator(), loss=LOSS, metrics=["accuracy"], epochs=3, steps_per_epoch=3, verbose=0, seed=0
    )
    assert_same_run(arrays, streamed)
    with pytest.raises(
        ValueError, match=r"the iterator of batches was exhausted before epoch 1; pass steps_per_epoch"
    ):
        fnn.fit(mlp(), iter(batches), loss=LOSS, epochs=2, verbose=0)


def test_predict_pads_the_last_batch_without_retracing():
    traces = []
    model = fnn.Sequential([fnn.Dense(3), fnn.Lambda(lambda h: (traces.append(1), h)[1])])
    params, state = model.init(jax.random.key(0), (4,))
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    traces.clear()
    out = fnn.predict(model, params, state, x, batch_size=4)  # batches of 4, 4 and 2 (padded)
    fnn.predict(model, params, state, x[:7], batch_size=4)
    assert len(traces) == 1
    np.testing.assert_allclose(out, model.apply(params, state, x, train=False)[0], rtol=1e-5, atol=1e-6)
    assert out.shape == (10, 3)


def test_evaluate_gives_exact_dataset_metrics():
    x, y = digits(70)
    model = mlp()
    params, state = model.init(jax.random.key(0), (64,))
    logs = fnn.evaluate(model, params, state, x, y, loss=LOSS, batch_size=32,
                        metrics={"accuracy": "accuracy", "f1": functools.partial(fnn.metrics.f1_score, num_classes=10)})  # fmt: skip
    logits = model.apply(params, state, x, train=False)[0]
    assert logs["loss"] == pytest.approx(
        float(fnn.losses.sparse_categorical_crossentropy(y, logits)), rel=1e-6
    )
    assert logs["f1"] == pytest.approx(float(fnn.metrics.f1_score(y, logits, num_classes=10)), rel=1e-6)


# ------------------------------------------------------------------------- callbacks


class Recorder(fnn.Callback):
    def on_train_begin(self, run):
        self.calls = ["train_begin"]

    def on_epoch_begin(self, epoch, run):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs, run):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, run):
        self.calls.append("train_end")


def test_custom_callbacks_see_every_hook_in_order():
    recorder = Recorder()
    run(epochs=2, callbacks=[recorder])
    keys = "['accuracy', 'learning_rate', 'loss']"
    assert recorder.calls == [
        "train_begin",
        "epoch_begin 0",
        f"epoch_end 0 {keys}",
        "epoch_begin 1",
        f"epoch_end 1 {keys}",
        "train_end",
    ]


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = digits()
    stop = fnn.EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    # A rate this large makes the validation loss climb after the first epochs.
    history = run(
        epochs=30,
        validation_split=0.3,
        callbacks=[stop],
        optimizer=fnn.optimizers.get("sgd", learning_rate=3.0),
    )
    assert history.stop_reason.startswith("EarlyStopping: val_loss did not improve for 1 epoch(s)")
    assert len(history.epochs) < 30
    best = min(history.history["val_loss"])
    val = fnn.evaluate(mlp(), history.params, history.state, x[210:], y[210:], loss=LOSS)
    assert val["loss"] == pytest.approx(best, rel=1e-6)


def test_early_stopping_monitors_accuracy_upwards_and_names_missing_entries():
    stop = fnn.EarlyStopping("val_accuracy")
    assert stop._monitor.mode == "max"
    with pytest.raises(
        KeyError,
        match=r"EarlyStopping monitors 'val_loss', which the logs do not have; available: \['accuracy', 'learning_rate', 'loss'\]",
    ):
        run(epochs=1, callbacks=[fnn.EarlyStopping()])
    with pytest.raises(ValueError, match=r"EarlyStopping: patience must be an int >= 0, got -1"):
        fnn.EarlyStopping(patience=-1)


def test_reduce_lr_on_plateau_lowers_the_rate_in_the_optimizer_state():
    # A rate of 1e-9 cannot move the loss (no dropout, no shuffling): every epoch is a plateau.
    reduce = fnn.ReduceLROnPlateau("loss", factor=0.5, patience=2, min_lr=1e-10)
    optimizer = fnn.optimizers.get("adam", learning_rate=1e-9)
    history = run(model=fnn.Dense(10), epochs=6, shuffle=False, callbacks=[reduce], optimizer=optimizer)
    # logged at each epoch's end, before the callback reduces the rate for the next epoch
    assert history.history["learning_rate"] == pytest.approx(
        [1e-9, 1e-9, 1e-9, 5e-10, 5e-10, 2.5e-10], rel=1e-5
    )


def test_reduce_lr_on_plateau_explains_what_it_cannot_change():
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau needs the learning rate in the optimiser state"):
        run(epochs=1, callbacks=[fnn.ReduceLROnPlateau("loss")], optimizer=optax.adam(1e-3))
    schedule = optax.exponential_decay(1e-3, 10, 0.5)
    with pytest.raises(ValueError, match=r"the learning rate follows a schedule"):
        run(
            epochs=1,
            callbacks=[fnn.ReduceLROnPlateau("loss")],
            optimizer=fnn.optimizers.get("adam", learning_rate=schedule),
        )


def test_schedules_and_scheduler_callback_log_the_current_rate():
    schedule = optax.exponential_decay(1e-2, transition_steps=8, decay_rate=0.5)
    history = run(epochs=3, optimizer=fnn.optimizers.get("sgd", learning_rate=schedule))
    # the logged rate is the one the epoch's last step used: step 7, 15, 23
    # 300 examples in batches of 32: 10 steps an epoch, so the epochs' last steps are 9, 19, 29
    assert history.history["learning_rate"] == pytest.approx(
        [float(schedule(s)) for s in (9, 19, 29)], rel=1e-5
    )
    scheduler = fnn.LearningRateScheduler(lambda epoch, rate: 0.1 / (epoch + 1))
    history = run(epochs=3, optimizer="sgd", callbacks=[scheduler])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3], rel=1e-6)


def test_terminate_on_nan_stops_and_keeps_the_last_finite_parameters():
    x, y = digits(160)
    poisoned = x.copy()
    poisoned[100] = np.nan  # in batch 3 (examples 96..127) when not shuffled
    history = run(
        data=(poisoned, y), epochs=5, shuffle=False, steps_per_execution=1, callbacks=[fnn.TerminateOnNaN()]
    )
    assert history.stop_reason == (
        "TerminateOnNaN: the loss or the update was not finite at step 3 (epoch 0); params are those from before that step"
        " (TerminateOnNaN(find_cause=True) names the layer)"
    )
    clean = run(data=(x[:96], y[:96]), epochs=1, shuffle=False)
    chex.assert_trees_all_equal(history.params, clean.params)
    assert int(history.train_state.step) == 3
    fused = run(
        data=(poisoned, y), epochs=5, shuffle=False, steps_per_execution=5, callbacks=[fnn.TerminateOnNaN()]
    )
    chex.assert_trees_all_equal(fused.params, clean.params)


@pytest.mark.parametrize("bad_update", ["nan_learning_rate", "nan_gradient_at_a_finite_loss"])
def test_terminate_on_nan_keeps_the_params_when_the_update_is_nan_but_the_loss_is_finite(bad_update):
    x = np.ones((8, 2), np.float32)
    model = fnn.Dense(1, kernel_init="zeros")
    if bad_update == "nan_learning_rate":  # an optax object passes through fnn's rate check
        options = {"loss": "mse", "optimizer": optax.sgd(float("nan"))}
    else:  # RMSE at zero error: the loss is 0, its gradient 0 * inf = NaN
        options = {"loss": lambda y, p: jnp.sqrt(fnn.losses.mean_squared_error(y, p)), "optimizer": "sgd"}
    history = fnn.fit(
        model, x, np.zeros((8, 1), np.float32), **options, epochs=3, batch_size=4, verbose=0,
        callbacks=[fnn.TerminateOnNaN()],
    )  # fmt: skip
    assert history.stop_reason.startswith("TerminateOnNaN: the loss or the update was not finite at step 0")
    chex.assert_trees_all_equal(history.params, model.init(jax.random.split(jax.random.key(0))[0], (2,))[0])


def test_terminate_on_nan_lets_values_that_are_infinite_by_design_stay_so():
    keeps_inf = optax.GradientTransformation(
        lambda params: {"best": jnp.asarray(jnp.inf)}, lambda updates, state, params=None: (updates, state)
    )
    history = run(data=digits(64), epochs=2, optimizer=optax.chain(optax.sgd(0.1), keeps_inf),
                  callbacks=[fnn.TerminateOnNaN()])  # fmt: skip
    assert history.stop_reason is None and int(history.train_state.step) == 4


def test_fit_and_evaluate_name_an_out_of_range_label_before_compiling():
    x, y = digits(64)
    negative, one_based = y.copy(), y + 1
    negative[5] = -1
    with pytest.raises(ValueError, match=r"fit: y holds label -1 at index \(5,\) \(1 out of range in all\); "
                       r"the model's 10 outputs need class labels in \[0, 10\)$"):  # fmt: skip
        run(data=(x, negative), epochs=1)
    with pytest.raises(
        ValueError, match=r"fit: y holds label 10 .* in \[0, 10\) \(they look 1-based: pass y - 1\)"
    ):
        run(data=(x, one_based), epochs=1)
    with pytest.raises(ValueError, match=r"fit: validation_data's y holds label -1 at index \(5,\)"):
        run(data=(x, y), validation_data=(x, negative), epochs=1)
    params, state = mlp().init(jax.random.key(0), (64,))
    with pytest.raises(ValueError, match=r"evaluate: y holds label 10 at index \(\d+,\)"):
        fnn.evaluate(mlp(), params, state, x, one_based, loss=LOSS)
    with pytest.raises(ValueError, match=r"evaluate: the data holds 0 examples"):
        fnn.evaluate(mlp(), params, state, x[:0], y[:0], loss=LOSS)
    padding = np.ones(64, np.float32)
    padding[5] = 0.0  # weight 0 marks padding, whose label may be anything
    assert np.isfinite(run(data=(x, negative), sample_weight=padding, epochs=1).history["loss"][0])


@pytest.mark.parametrize(
    "head, loss, kind",
    [
        ([fnn.Dense(10, "softmax")], LOSS, "softmax"),
        ([fnn.Dense(10), fnn.Lambda(jax.nn.softmax)], "categorical_crossentropy", "softmax"),
        (
            [fnn.Dense(10), fnn.Lambda(lambda z: jnp.exp(z) / jnp.exp(z).sum(-1, keepdims=True))],
            LOSS,
            "softmax",
        ),
        ([fnn.Remat(fnn.Dense(10, "softmax"))], LOSS, "softmax"),
        ([fnn.Dense(1, "sigmoid")], "binary_crossentropy", "sigmoid"),
    ],
)
def test_a_keras_softmax_or_sigmoid_head_is_refused_by_a_loss_that_takes_logits(head, loss, kind):
    model = fnn.Sequential([fnn.Dense(16, "relu"), *head])
    fix = rf"or pass loss=fnn.losses.get\('{loss}', from_logits=False\)"
    message = rf"{loss}: model 'sequential' ends in a {kind}, but the loss takes logits .*{fix}"
    x = np.ones((4, 3), np.float32)
    y = {LOSS: np.zeros(4, np.int32), "binary_crossentropy": np.ones((4, 1), np.float32)}.get(
        loss, np.ones((4, 10), np.float32)
    )
    params, state = model.init(jax.random.key(0), (3,))
    step = fnn.make_train_step(model, loss, "sgd")
    with pytest.raises(ValueError, match=message):
        step(params, state, fnn.optimizers.get("sgd").init(params), (x, y), None)
    with pytest.raises(ValueError, match=message):
        fnn.evaluate(model, params, state, x, y, loss=loss)
    with pytest.raises(ValueError, match=message):
        fnn.fit(model, x, y, loss=loss, epochs=1, verbose=0)
    probabilities = fnn.losses.get(loss, from_logits=False)
    assert np.isfinite(fnn.fit(model, x, y, loss=probabilities, epochs=1, verbose=0).history["loss"][0])


def test_a_log_softmax_head_is_valid_logits_and_accepted():
    model = fnn.Sequential([fnn.Dense(10), fnn.Lambda(jax.nn.log_softmax)])
    x, y = digits(32)
    assert np.isfinite(fnn.fit(model, x, y, loss=LOSS, epochs=1, verbose=0).history["loss"][0])


def test_a_batch_size_above_the_data_trains_one_batch_of_everything():
    history = run(data=digits(20), batch_size=64, epochs=2, steps_per_execution=1)
    assert int(history.train_state.step) == 2


def test_class_weight_weights_each_example_by_its_class_as_in_keras():
    x, y = digits(64)
    weights = {c: 1.0 + c for c in range(10)}
    weighted = run(data=(x, y), epochs=1, class_weight=weights)
    by_hand = run(data=(x, y), epochs=1, sample_weight=(1.0 + y).astype(np.float32))
    assert_same_run(weighted, by_hand)
    with pytest.raises(ValueError, match=r"fit: class_weight has no weight for class\(es\) \[9\] found in y"):
        run(data=(x, y), epochs=1, class_weight={c: 1.0 for c in range(9)})
    with pytest.raises(ValueError, match=r"fit: class_weight needs integer class labels y of shape \(n,\)"):
        run(data=(x, y[:, None]), epochs=1, class_weight=weights)


def test_keras_gradient_clipping_options_and_optax_wrappers():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}
    params = jax.tree.map(jnp.zeros_like, grads)

    def update(**options):
        tx = fnn.optimizers.get("sgd", learning_rate=1.0, **options)
        return jax.tree.map(np.asarray, tx.update(grads, tx.init(params), params)[0])

    np.testing.assert_allclose(update(clipnorm=1.0)["a"], [-0.6, -0.8], rtol=1e-6)  # each array to norm 1
    np.testing.assert_allclose(update(clipnorm=1.0)["b"], [-0.3, -0.4], rtol=1e-6)  # already below
    np.testing.assert_allclose(update(clipvalue=0.5)["a"], [-0.5, -0.5])
    scale = 1.0 / np.sqrt(25.25)  # the global norm of both arrays
    np.testing.assert_allclose(update(global_clipnorm=1.0)["b"], [-0.3 * scale, -0.4 * scale], rtol=1e-5)
    with pytest.raises(ValueError, match=r"optimizer 'sgd': pass clipnorm or global_clipnorm, not both"):
        update(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(
        ValueError, match=r"optimizer 'sgd': clipvalue must be a positive, finite float, got -1"
    ):
        update(clipvalue=-1)
    accumulated = run(
        data=digits(64), epochs=1, optimizer=optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2)
    )
    assert np.isfinite(accumulated.history["loss"][0])


def test_csv_logger_writes_one_row_per_epoch_atomically(tmp_path):
    path = tmp_path / "log.csv"
    run(epochs=2, callbacks=[fnn.CSVLogger(path)])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and set(rows[0]) == {
        "epoch",
        "loss",
        "accuracy",
        "learning_rate",
    }
    run(epochs=1, callbacks=[fnn.CSVLogger(path, append=True)])
    assert len(list(csv.DictReader(path.read_text().splitlines()))) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_verbosity(capsys):
    run(epochs=1, verbose=0)
    assert capsys.readouterr() == ("", "")
    run(epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    run(epochs=1, verbose=1)
    assert "epoch 1/1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": -1}, ValueError, r"fit: epochs must be an int >= 0, got -1"),
        ({"initial_epoch": 5}, ValueError, r"fit: initial_epoch must be an int in \[0, epochs=3\], got 5"),
        ({"verbose": 3}, ValueError, r"fit: verbose must be 0, 1 or 2, got 3"),
        ({"steps_per_execution": 0}, ValueError, r"fit: steps_per_execution must be 'auto' or a positive int, got 0"),
        ({"batch_size": 0}, ValueError, r"fit: batch_size must be a positive int, got 0"),
        ({"validation_split": 1.5}, ValueError, r"fit: validation_split must be a fraction in \(0, 1\), got 1.5"),
        ({"validation_split": 0.2, "validation_data": (1, 2)}, ValueError, r"pass validation_split or validation_data, not both"),
        ({"validation_data": [1]}, ValueError, r"validation_data must be \(x, y\) or \(x, y, sample_weight\)"),
        ({"callbacks": [print]}, TypeError, r"fit: callbacks must be fnn Callback instances"),
        ({"data": (np.ones((5, 64), np.float32), np.ones(4, np.int32))}, ValueError,
         r"all arrays in \(x, y, sample_weight\) must have the same number of examples, got \{'\[0\]': 5, '\[1\]': 4\}"),
        ({"metrics": {"cm": lambda t, p: fnn.metrics.confusion_matrix(t, p, num_classes=10)}}, ValueError,
         r"fit: metric 'cm' returned shape \(10, 10\); fit's metrics must be scalars"),
        ({"seed": -1}, ValueError, r"fit: seed must be an int in \[0, 2\*\*63 - 1\], got -1"),
        ({"seed": 1.5}, ValueError, r"fit: seed must be an int in \[0, 2\*\*63 - 1\], got 1.5"),
        ({"shuffle": "no"}, TypeError, r"fit: shuffle must be True or False, got 'no'"),
        ({"data": (np.ones((0, 64), np.float32), np.ones(0, np.int32))}, ValueError,
         r"fit: the data holds 0 examples; there is nothing to run on"),
    ],
)  # fmt: skip
def test_fit_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        run(**kwargs)


def test_fit_without_y_needs_an_iterable_of_batches():
    with pytest.raises(
        ValueError, match=r"fit: y is missing; pass x and y arrays, or x alone as an iterable"
    ):
        fnn.fit(mlp(), np.ones((4, 64), np.float32), loss=LOSS)
    with pytest.raises(
        ValueError, match=r"each batch must be \(x, y\) or \(x, y, sample_weight\), got ndarray"
    ):
        fnn.fit(mlp(), [np.ones((4, 64), np.float32)], loss=LOSS, verbose=0)


def test_dict_inputs_and_sample_weights():
    x, y = digits(96)
    inputs = {"left": x[:, :32], "right": x[:, 32:]}
    join = fnn.Lambda(lambda d: jnp.concatenate([d["left"], d["right"]], axis=-1), name="join")
    model = fnn.Sequential([join, fnn.Dense(10)])
    history = fnn.fit(
        model, inputs, y, loss=LOSS, epochs=2, batch_size=32, verbose=0, validation_data=(inputs, y)
    )
    assert fnn.predict(model, history.params, history.state, inputs).shape == (96, 10)
    one_batch = dict(loss=LOSS, epochs=1, batch_size=96, verbose=0, shuffle=False)
    plain = fnn.fit(model, inputs, y, **one_batch)
    doubled = fnn.fit(model, inputs, y, sample_weight=np.full(96, 2.0, np.float32), **one_batch)
    assert doubled.history["loss"][0] == pytest.approx(2 * plain.history["loss"][0], rel=1e-6)


class StepRecorder(fnn.Callback):
    step_interval = 3

    def on_train_begin(self, run):
        self.seen = []

    def on_steps_end(self, step, logs, run):
        self.seen.append((step, logs))


def test_step_callbacks_see_the_mean_logs_of_their_steps():
    # 240 examples / 32: 7 full batches and a partial one; every 3 steps: after steps 3 and 6 of each epoch.
    fused, unfused = StepRecorder(), StepRecorder()
    history = run(epochs=2, data=digits(240), callbacks=[fused], steps_per_execution=8)
    assert [step for step, _ in fused.seen] == [3, 6, 11, 14]
    assert set(fused.seen[0][1]) == {"loss", "accuracy"}
    assert_same_run(history, run(epochs=2, data=digits(240), callbacks=[unfused], steps_per_execution=1))
    assert fused.seen == unfused.seen
    assert_same_run(history, run(epochs=2, data=digits(240)))  # observing steps changes nothing


@pytest.mark.parametrize("steps_per_execution", [1, 8])
def test_step_callbacks_see_the_live_state_and_their_changes_go_on(steps_per_execution):
    # Regression (issue 21): the epoch's carry is donated to every compiled call, and
    # run.train_state used to be the one from before the epoch: "Array has been deleted".
    class Live(fnn.Callback):
        step_interval = 3

        def on_train_begin(self, run):
            self.steps, self.norms = [], []

        def on_steps_end(self, step, logs, run):
            snapshot = run.snapshot()
            self.steps.append(int(run.train_state.step))
            self.norms.append(float(sum(jnp.sum(g**2) for g in jax.tree.leaves(run.gradients()))))
            assert int(snapshot.step) == step
            run.train_state = run.train_state._replace(
                opt_state=fnn.optimizers.set_learning_rate(run.train_state.opt_state, 1e-4)
            )

    live = Live()
    history = run(epochs=2, data=digits(240), callbacks=[live], steps_per_execution=steps_per_execution)
    assert live.steps == [3, 6, 11, 14] and all(np.isfinite(live.norms))
    assert history.history["learning_rate"] == pytest.approx([1e-4, 1e-4])  # set mid-epoch, kept


def test_callbacks_can_ask_for_the_gradients_on_the_first_batch():
    class Grab(fnn.Callback):
        def on_train_begin(self, run):
            self.grads, self.ts = run.gradients(), run.snapshot()

    grab = Grab()
    x, y = digits(64)
    model = mlp()
    run(model=model, data=(x, y), epochs=1, shuffle=False, callbacks=[grab])
    expected = fnn.make_grad_fn(model, LOSS)(
        grab.ts.params, grab.ts.state, (x[:32], y[:32]), jax.random.fold_in(grab.ts.key, 0)
    )
    chex.assert_trees_all_close(grab.grads, expected, rtol=1e-5, atol=1e-7)  # jitted vs eager
