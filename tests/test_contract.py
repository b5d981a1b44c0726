"""The shared contract every layer and combinator in the registry must keep."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn._core import _map_shapes
from tests.registry import CASES, Case

BATCH = 3
ids = [c.id for c in CASES]


def setup(case: Case, seed: int = 0, batch: int = BATCH):
    layer = case.make()
    params, state = layer.init(jax.random.key(seed), case.input_shape)
    rng = np.random.default_rng(seed)
    if case.make_input is None:
        x = jnp.asarray(rng.standard_normal((batch, *case.input_shape)), jnp.float32)
    else:
        x = jax.tree.map(jnp.asarray, case.make_input(rng, batch))
    return layer, params, state, x


def train_modes(case: Case):
    """(train, key) pairs to exercise: eval, and training with a key."""
    return [(False, None), (True, jax.random.key(7))]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_output_shape_matches_eval_shape_prediction(case):
    layer, params, state, x = setup(case)
    predicted = _map_shapes(lambda s: ((BATCH, *s), s.dtype), fnn.output_shape(layer, case.input_shape))
    apply = jax.jit(layer.apply, static_argnames="train")  # compiled: eager runs are jit_equals_eager's job
    for train, key in train_modes(case):
        y, _ = apply(params, state, x, train=train, key=key)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), y) == predicted


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_init_abstract_matches_concrete(case):
    layer, params, state, _ = setup(case)
    abstract = jax.eval_shape(lambda k: layer.init(k, case.input_shape), jax.random.key(0))
    chex.assert_trees_all_equal_shapes_and_dtypes((params, state), abstract)
    for leaf in jax.tree.leaves((params, state)):
        assert isinstance(leaf, jax.Array)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_state_structure_shapes_and_dtypes_are_stable(case):
    layer, params, state, x = setup(case)
    apply = jax.jit(layer.apply, static_argnames="train")
    for train, key in train_modes(case):
        _, new_state = apply(params, state, x, train=train, key=key)
        chex.assert_trees_all_equal_structs(new_state, state)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_eval_leaves_state_unchanged(case):
    layer, params, state, x = setup(case)
    _, new_state = layer.apply(params, state, x, train=False)
    chex.assert_trees_all_equal(new_state, state)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jit_equals_eager(case):
    layer, params, state, x = setup(case)
    jitted = jax.jit(layer.apply, static_argnames="train")
    for train, key in train_modes(case):
        eager = layer.apply(params, state, x, train=train, key=key)
        compiled = jitted(params, state, x, train=train, key=key)
        tol = 2**-7 if case.bfloat16 else 1e-6  # one bfloat16 ulp
        chex.assert_trees_all_close(compiled, eager, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap_over_keys_and_params_gives_an_ensemble(case):
    layer, _, _, x = setup(case)
    keys = jax.random.split(jax.random.key(3), 3)
    params, state = jax.jit(jax.vmap(lambda k: layer.init(k, case.input_shape)))(keys)
    ys, _ = jax.jit(jax.vmap(lambda p, s: layer.apply(p, s, x, train=False), axis_size=3))(params, state)
    apply = jax.jit(layer.apply, static_argnames="train")
    for i, k in enumerate(keys):
        p_i, s_i = layer.init(k, case.input_shape)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], params), p_i, atol=1e-6)
        member = jax.tree.map(lambda a: a[i], ys)
        chex.assert_trees_all_close(member, apply(p_i, s_i, x, train=False)[0], atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_no_retracing_on_second_call(case):
    layer, params, state, x = setup(case)
    traces = []

    def forward(p, s, x, key):
        traces.append(1)
        return layer.apply(p, s, x, train=True, key=key)

    forward = jax.jit(forward)
    forward(params, state, x, jax.random.key(0))
    forward(params, state, setup(case, seed=1)[3], jax.random.key(1))
    assert len(traces) == 1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_training_without_key(case):
    layer, params, state, x = setup(case)
    if case.needs_key:
        with pytest.raises(ValueError, match="needs a PRNG key when train=True"):
            layer.apply(params, state, x, train=True)
    else:
        layer.apply(params, state, x, train=True)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_train_must_be_a_python_bool(case):
    layer, params, state, x = setup(case)
    with pytest.raises(TypeError, match=r"'.+': train must be a Python bool .*got 1 of type int"):
        layer.apply(params, state, x, train=1)


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_float64_gradients_match_finite_differences(case, train):
    if case.bfloat16:
        pytest.skip("computes in bfloat16 on purpose")
    # Each check compiles anew, so one batch size and seed per mode keeps the suite fast.
    batch, seed = (1, 0) if not train else (4, 17)
    layer, params, state, x = setup(case, seed=seed, batch=batch)
    key = dict(train_modes(case))[train]
    fnn.testing.check_layer_grads(layer, params, state, x, train=train, key=key, seed=seed)


# The float64 test above already runs jax.jit(jax.grad(...)) of every other case against
# finite differences; only the bfloat16 cases need an eager reference of their own.
BFLOAT16_CASES = [c for c in CASES if c.bfloat16]


@pytest.mark.parametrize("case", BFLOAT16_CASES, ids=[c.id for c in BFLOAT16_CASES])
def test_jitted_gradients_equal_eager_gradients(case):
    # Regression: max pooling once traced fine but failed to linearize under jit(grad).
    layer, params, state, x = setup(case)

    def loss(p, x):
        y, _ = layer.apply(p, state, x, train=True, key=jax.random.key(1))
        return sum(
            jnp.sum(leaf**2) for leaf in jax.tree.leaves(y) if jnp.issubdtype(leaf.dtype, jnp.floating)
        )

    argnums = (0, 1) if all(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(x)) else 0
    eager = jax.grad(loss, argnums=argnums)(params, x)
    compiled = jax.jit(jax.grad(loss, argnums=argnums))(params, x)
    tol = 2**-6
    chex.assert_trees_all_close(compiled, eager, rtol=tol, atol=tol)
