"""The shared contract every layer and combinator in the registry must keep.

Compiling dominates the cost of these tests, so each worker builds a case once
(`built`) and compiles its apply once per train mode (`compiled_outputs`); the
tests then read what they check from those shared results.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

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


def setup(case: Case, seed: int = 0, batch: int = BATCH, layer: fnn.Layer | None = None):
    layer = case.make() if layer is None else layer
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


class Built(NamedTuple):
    """A case's layer, params, state and input, and its apply compiled once per train mode."""

    layer: fnn.Layer
    params: Any
    state: Any
    x: Any
    apply: Callable
    traces: collections.Counter  # traces of `apply` per train mode


@functools.cache
def built(case: Case) -> Built:
    layer, params, state, x = setup(case)
    traces = collections.Counter()

    def apply(params, state, x, *, train, key=None):
        traces[train] += 1  # runs only while tracing
        return layer.apply(params, state, x, train=train, key=key)

    return Built(layer, params, state, x, jax.jit(apply, static_argnames="train"), traces)


@functools.cache
def compiled_outputs(case: Case) -> dict:
    """{train: (y, new_state)} from the compiled apply."""
    b = built(case)
    return {train: b.apply(b.params, b.state, b.x, train=train, key=key) for train, key in train_modes(case)}


@functools.cache
def eager_outputs(case: Case) -> dict:
    """{train: (y, new_state)} from apply run op by op."""
    b = built(case)
    return {
        train: b.layer.apply(b.params, b.state, b.x, train=train, key=key) for train, key in train_modes(case)
    }


def trains_like_it_evaluates(case: Case) -> bool:
    """Whether training computes what evaluation does: same output, state unchanged."""
    (y_eval, _), (y_train, new_state) = compiled_outputs(case)[False], compiled_outputs(case)[True]
    same = jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)), (y_eval, built(case).state), (y_train, new_state)
    )
    return all(jax.tree.leaves(same))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_output_shape_matches_eval_shape_prediction(case):
    predicted = _map_shapes(
        lambda s: ((BATCH, *s), s.dtype), fnn.output_shape(built(case).layer, case.input_shape)
    )
    for y, _ in compiled_outputs(case).values():
        assert jax.tree.map(lambda a: (a.shape, a.dtype), y) == predicted


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_init_abstract_matches_concrete(case):
    layer, params, state = built(case)[:3]
    abstract = jax.eval_shape(lambda k: layer.init(k, case.input_shape), jax.random.key(0))
    chex.assert_trees_all_equal_shapes_and_dtypes((params, state), abstract)
    for leaf in jax.tree.leaves((params, state)):
        assert isinstance(leaf, jax.Array)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_state_structure_shapes_and_dtypes_are_stable(case):
    state = built(case).state
    for _, new_state in compiled_outputs(case).values():
        chex.assert_trees_all_equal_structs(new_state, state)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_eval_leaves_state_unchanged(case):
    chex.assert_trees_all_equal(eager_outputs(case)[False][1], built(case).state)
    chex.assert_trees_all_equal(compiled_outputs(case)[False][1], built(case).state)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jit_equals_eager(case):
    for train, _ in train_modes(case):
        eager, compiled = eager_outputs(case)[train], compiled_outputs(case)[train]
        tol = 2**-7 if case.bfloat16 else 1e-6  # one bfloat16 ulp
        chex.assert_trees_all_close(compiled, eager, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap_over_keys_and_params_gives_an_ensemble(case):
    layer, _, _, x, apply, _ = built(case)
    keys = jax.random.split(jax.random.key(3), 2)
    params, state = jax.jit(jax.vmap(lambda k: layer.init(k, case.input_shape)))(keys)
    ys, _ = jax.jit(jax.vmap(lambda p, s: layer.apply(p, s, x, train=False), axis_size=2))(params, state)
    for i, k in enumerate(keys):
        p_i, s_i = layer.init(k, case.input_shape)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], params), p_i, atol=1e-6)
        member = jax.tree.map(lambda a: a[i], ys)
        chex.assert_trees_all_close(member, apply(p_i, s_i, x, train=False)[0], atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_no_retracing_on_second_call(case):
    b = built(case)
    compiled_outputs(case)  # the first call, with seed 0's input
    b.apply(b.params, b.state, setup(case, seed=1, layer=b.layer)[3], train=True, key=jax.random.key(1))
    assert b.traces[True] == 1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_training_without_key(case):
    layer, params, state, x = built(case)[:4]
    train_without_key = functools.partial(layer.apply, train=True)  # the check is a trace-time one
    if case.needs_key:
        with pytest.raises(ValueError, match="needs a PRNG key when train=True"):
            jax.eval_shape(train_without_key, params, state, x)
    else:
        jax.eval_shape(train_without_key, params, state, x)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_train_must_be_a_python_bool(case):
    layer, params, state, x = built(case)[:4]
    with pytest.raises(TypeError, match=r"'.+': train must be a Python bool .*got 1 of type int"):
        jax.eval_shape(functools.partial(layer.apply, train=1), params, state, x)


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_float64_gradients_match_finite_differences(case, train):
    if case.bfloat16:
        pytest.skip("computes in bfloat16 on purpose")
    if train and trains_like_it_evaluates(case):
        pytest.skip("training computes what evaluation does, whose gradients the eval case checks")
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
    layer, params, state, x = built(case)[:4]

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


# Input dtypes (issue 20), under JAX's standard promotion as users run it: the suite's strict
# promotion would turn a silent cast into a TypePromotionError and so hide it. Tracing suffices,
# since dtypes are static and the checks run when apply is traced.


def with_float_leaves_as(x: Any, dtype: Any) -> Any:
    """``x`` with its floating arrays cast to ``dtype`` (masks and token ids stay)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, x)


def trace_eval(case: Case, x: Any) -> Any:
    layer, params, state = built(case)[:3]
    return jax.eval_shape(functools.partial(layer.apply, train=False), params, state, x)


def cases_taking(kind: str) -> list:
    return [pytest.param(c, id=c.id) for c in CASES if c.takes == kind]


@pytest.mark.standard_promotion
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_], ids=["int32", "bool"])
@pytest.mark.parametrize("case", cases_taking("float"))
def test_every_layer_rejects_integer_and_bool_inputs_naming_the_layer(case, dtype):
    bad = with_float_leaves_as(built(case).x, dtype)
    with pytest.raises(
        TypeError,
        match=rf"^\w+ '[^']+' expects (float32|floating-point) inputs.* got {jnp.dtype(dtype)} of shape .*"
        r"fnn never casts inputs silently: cast them first, e.g. x.astype\(jnp.float32\)",
    ):
        trace_eval(case, bad)


@pytest.mark.standard_promotion
@pytest.mark.parametrize("case", cases_taking("int"))
def test_token_layers_reject_float_ids_naming_the_layer(case):
    ids = built(case).x
    with pytest.raises(
        TypeError, match=r"^Embedding '[^']+' expects integer inputs \(token ids\), got float32 of shape"
    ):
        trace_eval(case, ids.astype(jnp.float32))


@pytest.mark.standard_promotion
@pytest.mark.parametrize("case", cases_taking("any"))
def test_shape_only_layers_take_integer_inputs(case):
    trace_eval(case, with_float_leaves_as(built(case).x, jnp.int32))


@pytest.mark.standard_promotion
@pytest.mark.parametrize("case", cases_taking("float"))
def test_another_float_precision_is_an_error_or_kept_never_promoted(case):
    # Layers with float32 params reject bfloat16 inputs rather than compute them in float32;
    # those without params compute in the input's precision. MixedPrecision casts at its
    # boundary, on purpose: its output comes back in the input's dtype.
    layer, params, state, x = built(case)[:4]
    has_params = any(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(params))
    half = with_float_leaves_as(x, jnp.bfloat16)
    if has_params and not case.bfloat16:
        with pytest.raises(TypeError, match=r"^\w+ '[^']+' expects float32 inputs .*got bfloat16"):
            trace_eval(case, half)
        return
    for train, key in train_modes(case):
        y, _ = jax.eval_shape(functools.partial(layer.apply, train=train, key=key), params, state, half)
        assert {a.dtype for a in jax.tree.leaves(y) if jnp.issubdtype(a.dtype, jnp.floating)} == {
            jnp.dtype(jnp.bfloat16)
        }
