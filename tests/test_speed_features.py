"""Speed features: compiled init, rematerialisation keeps gradients, fit never retraces."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import pytest

import fnn
from tests.fitting import digits, run

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def block():
    return fnn.Sequential([fnn.Dense(16, "gelu"), fnn.LayerNorm(), fnn.Dense(16, "tanh"), fnn.Dense(4)])


@pytest.mark.parametrize(
    "policy", [None, "dots_saveable", "everything_saveable", jax.checkpoint_policies.nothing_saveable]
)
def test_remat_recomputes_but_keeps_gradients_and_outputs(policy):
    plain, remat = block(), fnn.Remat(block(), policy=policy)
    params, state = plain.init(jax.random.key(0), (8,))
    assert jax.tree.structure(remat.init(jax.random.key(0), (8,))[0]) == jax.tree.structure(params)
    x = jax.random.normal(jax.random.key(1), (5, 8))

    def loss(layer):
        return lambda p: jnp.sum(layer.apply(p, state, x, train=True)[0] ** 2)

    chex.assert_trees_all_close(
        jax.grad(loss(remat))(params), jax.grad(loss(plain))(params), rtol=1e-6, atol=1e-7
    )
    primitives = {e.primitive.name for e in jax.make_jaxpr(jax.grad(loss(remat)))(params).jaxpr.eqns}
    assert "remat2" in primitives or "checkpoint" in primitives
    assert remat.name == plain.name and fnn.summary(remat, (8,)).params == fnn.summary(plain, (8,)).params


def test_remat_policy_names_are_checked():
    with pytest.raises(
        ValueError, match=r"Remat 'dense': unknown policy 'dots'; choose one of \['nothing_saveable'"
    ):
        fnn.Remat(fnn.Dense(2), policy="dots")
    with pytest.raises(TypeError, match=r"Remat 'dense': policy must be a name, a function or None, got 3"):
        fnn.Remat(fnn.Dense(2), policy=3)


@pytest.mark.parametrize("steps_per_execution", [1, "auto"])
def test_fit_traces_the_model_a_fixed_number_of_times_whatever_the_epochs(steps_per_execution):
    def traced_model(counter):
        def count(x):
            counter.append(1)  # runs only while tracing
            return x

        return fnn.Sequential([fnn.Lambda(count), fnn.Dense(16, "relu"), fnn.Dense(10)])

    few, many = [], []
    run(model=traced_model(few), data=digits(200), epochs=2, steps_per_execution=steps_per_execution)
    run(model=traced_model(many), data=digits(200), epochs=6, steps_per_execution=steps_per_execution)
    assert len(many) == len(few) > 0


def test_a_short_auto_run_compiles_no_fused_epoch_it_would_not_use():
    # Regression (issue 21): "auto" compiled a fused epoch up front and then often ran unfused.
    def traces(steps_per_execution):
        counter = []

        def count(x):
            counter.append(1)  # runs only while tracing
            return x

        model = fnn.Sequential([fnn.Lambda(count), fnn.Dense(16, "relu"), fnn.Dense(10)])
        history = run(model=model, data=digits(200), epochs=3, steps_per_execution=steps_per_execution)
        return len(counter), history.steps_per_execution

    assert traces("auto") == traces(1)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU policy")
def test_auto_fuses_only_where_the_saving_beats_the_compile_time():
    def after_one_epoch(host_seconds, compile_seconds, epochs=10):
        plan = fnn.train._execution.Plan("auto", 100, epochs)
        assert plan.next() == 1 and plan.measuring  # the first epoch runs unfused, timed
        plan.record(1, 1e-3, steps=100)
        plan.drop_fusing_unless_it_pays(host_seconds, compile_seconds)
        chosen = plan.next()
        if chosen > 1:  # the fused epoch is timed next, then the faster kept for good
            assert plan.measuring
            plan.record(chosen, 2e-3, steps=100)
            assert not plan.measuring and plan.next() == 1
        return chosen

    # 900 steps left, each saving at most 0.1 ms of the Python thread's time: 0.09 s
    assert after_one_epoch(host_seconds=1e-4, compile_seconds=5.0) == 1  # a heavy step: never fused
    assert after_one_epoch(host_seconds=1e-4, compile_seconds=0.01) == 100  # tried, then timed
    assert after_one_epoch(host_seconds=1e-4, compile_seconds=0.5, epochs=1000) == 100  # a long run


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU policy")
def test_auto_never_fuses_a_step_that_runs_slower_in_cpu_loops():
    def candidates(layer, shape, epochs=1000):
        plan = fnn.train._execution.Plan("auto", 100, epochs)
        params, state = layer.init(jax.random.key(0), shape)
        plan.look(
            jax.jit(lambda x: layer.apply(params, state, x, train=False)[0]).lower(jnp.ones((2, *shape)))
        )
        return plan.candidates

    assert candidates(fnn.Conv2D(4, 3), (8, 8, 1)) == [1]  # a convolution: never fused on CPU
    assert candidates(fnn.Dense(4), (8,)) == [1, 100]  # timed, unfused first
    assert candidates(fnn.Dense(4), (8,), epochs=1) == [100]  # one epoch: a light step fuses


def small_model():
    # Orthogonal init (a QR) and a combinator whose key order is not sorted.
    return fnn.Sequential(
        [fnn.Dense(4, kernel_init="orthogonal"), fnn.Dropout(0.1), fnn.Dense(3, name="head")]
    )


def test_eager_init_compiles_once_and_gives_the_uncompiled_values_in_layer_order():
    model, key = small_model(), jax.random.key(3)
    with jax.disable_jit():  # the init as written, op by op
        expected = model.init(key, (5, 2))
    traces = []
    counted = fnn.Sequential([fnn.Lambda(lambda x: traces.append(1) or x), model])
    counted.init(key, (5, 2))
    first = len(traces)
    for _ in range(2):
        params, state = model.init(key, (5, 2))
        counted.init(key, (5, 2))
    assert len(traces) == first > 0  # traced once, then run compiled
    chex.assert_trees_all_equal((params, state), expected)
    assert list(params) == ["dense", "dropout", "head"]
    # Traced callers (vmap over keys) run the init as written.
    ensemble = jax.vmap(lambda k: model.init(k, (5, 2))[0])(jax.random.split(key, 2))
    chex.assert_trees_all_equal(
        jax.tree.map(lambda a: a[0], ensemble), model.init(jax.random.split(key, 2)[0], (5, 2))[0]
    )


def test_compiled_init_tells_input_dtypes_apart():
    # Shapes hash as plain tuples; an int32 and a float32 (3,) must not share a compiled init.
    seen = []
    model = fnn.Sequential([fnn.Lambda(lambda x: seen.append(x.dtype) or x)])
    model.init(jax.random.key(0), fnn.Shape((3,), jnp.int32))
    model.init(jax.random.key(0), fnn.Shape((3,)))
    assert set(seen) == {jnp.dtype("int32"), jnp.dtype("float32")}


def test_init_with_a_bad_shape_still_names_it():
    with pytest.raises(TypeError, match=r"input_shape must be a per-example shape .* got 'oops'"):
        fnn.Sequential([fnn.Dense(2)]).init(jax.random.key(0), "oops")
