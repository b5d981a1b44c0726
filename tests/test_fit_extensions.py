"""Issue 21: fit bent by research code: a custom train step, eager mode, resume_from,
the NaN cause in TerminateOnNaN, and the one fused-epoch primitive."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from tests.fitting import LOSS, assert_same_run, digits, mlp, run

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def distillation_loss(student, teacher, teacher_params, temperature=2.0, alpha=0.5):
    """Knowledge distillation: the student fits the labels and the teacher's softened outputs."""

    def loss_fn(params, state, batch, key):
        x, y = batch
        logits, new_state = student.apply(params, state, x, train=True, key=key)
        soft = jax.nn.softmax(teacher.apply(teacher_params, {}, x, train=False)[0] / temperature)
        hard_loss = fnn.losses.sparse_categorical_crossentropy(y, logits)
        soft_loss = optax.softmax_cross_entropy(logits / temperature, soft).mean() * temperature**2
        loss = alpha * hard_loss + (1 - alpha) * soft_loss
        return loss, ({"hard_loss": hard_loss, "soft_loss": soft_loss}, new_state)

    return loss_fn


def hand_written_step(loss_fn, tx):
    def train_step(params, state, opt_state, batch, key):
        grads, (logs, state) = jax.grad(loss_fn, has_aux=True)(params, state, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, logs

    return train_step


def test_a_custom_train_step_keeps_everything_else_of_fit():
    x, y = digits(128)
    teacher = fnn.Dense(10)
    teacher_params = teacher.init(jax.random.key(1), (64,))[0]
    tx = fnn.optimizers.get("adam")
    loss_fn = distillation_loss(mlp(), teacher, teacher_params)
    step = fnn.make_train_step_from_loss(loss_fn, tx)
    options = dict(train_step=step, optimizer=tx, batch_size=32, seed=0, verbose=0)
    seen = []

    class Steps(fnn.Callback):
        step_interval = 2

        def on_steps_end(self, step, logs, run):
            seen.append(sorted(logs))

    history = fnn.fit(mlp(), x, y, epochs=1, loss=LOSS, validation_split=0.25, callbacks=[Steps()], **options)
    assert sorted(history.history) == ["hard_loss", "learning_rate", "loss", "soft_loss", "val_loss"]
    assert seen[0] == ["hard_loss", "loss", "soft_loss"]
    # fit runs exactly this step, in the usual order with the usual keys: a hand-written loop agrees
    ts = fnn.TrainState.create(mlp(), tx, (64,), jax.random.key(0))
    params, state, opt_state = ts.params, ts.state, ts.opt_state
    for count, (bx, by) in enumerate(fnn.data.batches((x[:96], y[:96]), 32, seed=0, epoch=0)):
        params, state, opt_state, _ = jax.jit(hand_written_step(loss_fn, tx))(
            params, state, opt_state, (bx, by), jax.random.fold_in(ts.key, count)
        )
    one_epoch = fnn.fit(mlp(), x[:96], y[:96], epochs=1, **options)
    chex.assert_trees_all_equal(one_epoch.params, params)
    fused = fnn.fit(mlp(), x[:96], y[:96], epochs=1, steps_per_execution=3, **options)
    chex.assert_trees_all_equal(fused.params, params)


def test_a_custom_train_step_is_checked():
    x, y = digits(32)
    with pytest.raises(TypeError, match=r"fit: train_step must be a function, got 3"):
        fnn.fit(mlp(), x, y, train_step=3, verbose=0)
    with pytest.raises(TypeError, match=r"fit: pass a loss \(or your own train_step\)"):
        fnn.fit(mlp(), x, y, verbose=0)
    step = fnn.make_train_step(mlp(), LOSS, "adam")
    with pytest.raises(ValueError, match=r"fit: validation needs loss= \(with your own train_step"):
        fnn.fit(mlp(), x, y, train_step=step, validation_split=0.25, verbose=0)


def test_run_eagerly_lets_layers_see_concrete_values():
    seen = []

    def look(x):  # init still traces the model for its shapes: only concrete values are recorded
        try:
            seen.append(float(jnp.abs(x).mean()))
        except jax.errors.ConcretizationTypeError:
            pass
        return x

    model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Lambda(look), fnn.Dense(10)])
    x, y = digits(64)
    compiled = run(model=model, data=(x, y), epochs=1, optimizer="sgd")
    assert seen == []  # under jit a layer only ever sees tracers
    eager = run(model=model, data=(x, y), epochs=1, optimizer="sgd", run_eagerly=True)
    assert len(seen) == 2 and all(np.isfinite(seen))  # one concrete value per step
    chex.assert_trees_all_close(eager.params, compiled.params, rtol=1e-4, atol=1e-6)
    assert eager.history["loss"] == pytest.approx(compiled.history["loss"], rel=1e-5)
    with pytest.raises(ValueError, match=r"steps_per_execution > 1 needs .* run_eagerly"):
        run(data=(x, y), run_eagerly=True, steps_per_execution=2)


def test_resume_from_a_model_checkpoint_continues_the_run(tmp_path):
    checkpoint = fnn.ModelCheckpoint(tmp_path, monitor="loss")
    data = digits(96)
    run(data=data, epochs=2, callbacks=[checkpoint])
    resumed = run(data=data, epochs=4, resume_from=checkpoint.manager.path(checkpoint.manager.latest()))
    assert resumed.epochs == [2, 3]
    reference = run(data=data, epochs=4)
    chex.assert_trees_all_equal(
        resumed.train_state._replace(key=None), reference.train_state._replace(key=None)
    )
    with pytest.raises(ValueError, match=r"fit: pass resume_from or train_state, not both"):
        run(resume_from=checkpoint.manager.path(1), train_state=reference.train_state)
    # another script needs only the directory: the checkpoints record their monitor
    assert fnn.checkpoint.CheckpointManager(tmp_path).best() == checkpoint.manager.best() == 2
    plain = fnn.checkpoint.CheckpointManager(tmp_path / "plain")
    plain.save(1, {"w": jnp.ones(2)})
    with pytest.raises(
        ValueError, match=r"CheckpointManager.best needs a monitor: no checkpoint in .* records one"
    ):
        plain.best()


def test_terminate_on_nan_names_the_layer_that_made_the_first_nan():
    x, y = digits(64)
    model = fnn.Sequential([fnn.Dense(8), fnn.Lambda(jnp.log), fnn.Dense(10)])  # log of negatives
    options = dict(optimizer="sgd", callbacks=[fnn.TerminateOnNaN(find_cause=True)])
    history = run(model=model, data=(x, y), epochs=2, **options)
    assert history.stop_reason.startswith("TerminateOnNaN: the loss or the update was not finite at step 0")
    assert "the forward pass of layer 'lambda' (log) produced NaN" in history.stop_reason
    poisoned = x.copy()
    poisoned[40] = np.inf  # in the second batch of the unshuffled epoch
    history = run(data=(poisoned, y), epochs=1, shuffle=False, **options)
    assert "not finite at step 1" in history.stop_reason and "batch" in history.stop_reason


def test_fused_steps_is_the_epoch_fit_runs():
    x, y = digits(96)
    model, tx = mlp(), fnn.optimizers.get("sgd")
    train_step = fnn.make_train_step(model, LOSS, tx)

    def step(ts, batch):
        params, state, opt_state, _ = train_step(
            ts.params, ts.state, ts.opt_state, batch, jax.random.fold_in(ts.key, ts.step)
        )
        return ts._replace(params=params, state=state, opt_state=opt_state, step=ts.step + 1)

    rows = fnn.data.shuffle_indices(96, 0, 0).astype(np.int32).reshape(3, 32)
    ts = fnn.TrainState.create(model, tx, (64,), jax.random.key(0))
    ours = jax.jit(fnn.fused_steps, static_argnums=0)(step, ts, (x, y), rows)
    history = run(data=(x, y), epochs=1, optimizer=tx, steps_per_execution=3)
    chex.assert_trees_all_equal(ours.params, history.params)


def test_step_callbacks_and_resume_agree_on_the_progress(tmp_path):
    # the run is one value: a backup mid-epoch holds the carry and the JSON progress, nothing else
    first = run(data=digits(128), epochs=2, checkpoint_dir=tmp_path, checkpoint_every=2)
    manager = fnn.checkpoint.CheckpointManager(tmp_path)
    saved = manager.metadata()["fit"]
    assert {"epoch", "position", "history", "epochs_done", "stop_reason"} <= set(saved)
    assert saved["epoch"] == 2 and saved["position"] == 0 and saved["epochs_done"] == [0, 1]
    assert_same_run(run(data=digits(128), epochs=2, checkpoint_dir=tmp_path, checkpoint_every=2), first)


def test_a_watchdog_reports_a_run_that_stops_progressing_and_stops_however_fit_ends():
    import threading

    stuck, reports = threading.Event(), []

    class StuckInEpochTwo(fnn.Callback):
        def on_epoch_begin(self, epoch, run):
            if epoch == 1:
                stuck.wait()  # until the watchdog reports (its default would end the process)

    def report(message):  # also called if epoch 0 (compiling) takes longer than the timeout
        reports.append(message)
        if "since epoch 1 began" in message:
            stuck.set()

    watchdog = fnn.Watchdog(timeout_s=0.2, on_timeout=report)
    history = run(epochs=2, callbacks=[watchdog, StuckInEpochTwo()])
    assert history.epochs == [0, 1]
    assert reports[-1:] == [
        "fnn.Watchdog: no progress for 0.2 s since epoch 1 began (process 0): a peer process is stuck or "
        "dead, or this one is; ending the run. Rerun it to continue from its last backup (fit(checkpoint_dir=...))"
    ]

    class Fails(fnn.Callback):
        def on_epoch_end(self, epoch, logs, run):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(epochs=1, callbacks=[fnn.Watchdog(timeout_s=60), Fails()])
    assert not [t for t in threading.enumerate() if t.name == "fnn.Watchdog"]  # stopped with the run


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, r"Watchdog: timeout_s must be a finite number > 0, got 0"),
        ({"timeout_s": True}, r"Watchdog: timeout_s must be a finite number > 0, got True"),
        ({"every_steps": 0}, r"Watchdog: every_steps must be a positive int, got 0"),
    ],
)
def test_a_watchdog_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fnn.Watchdog(**kwargs)
