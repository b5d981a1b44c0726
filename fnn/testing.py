"""Tools for testing models: float64 gradient checks and hypothesis strategies.

``check_grads`` compares reverse-mode gradients with central finite differences
in float64, one parameter array at a time, and names the worst parameter paths
when they disagree. The strategies (they need ``hypothesis``, in ``fnn[dev]``)
generate shapes, inputs and layer configurations for property tests.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fnn import testing
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> report = testing.check_grads(lambda p: jnp.sum(p["w"] ** 3), params)
    >>> report.worst[0].path
    'w'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._core import Layer, path_str

PyTree = Any


@dataclasses.dataclass(frozen=True)
class GradError:
    """The gradient check of one parameter array along random directions."""

    path: str
    autodiff: float
    finite_difference: float
    abs_error: float
    rel_error: float
    ok: bool


@dataclasses.dataclass(frozen=True)
class GradReport:
    """Result of :func:`check_grads`: every parameter path, worst first."""

    worst: tuple[GradError, ...]

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.worst)

    def __str__(self) -> str:
        rows = [
            f"  {'FAIL' if e.ok is False else 'ok  '} {e.path}: autodiff {e.autodiff:.10g}, "
            f"finite difference {e.finite_difference:.10g}, abs error {e.abs_error:.3g}, "
            f"rel error {e.rel_error:.3g}"
            for e in self.worst
        ]
        return "\n".join(["gradient check (float64, directional derivatives):", *rows])


def _to_float64(tree: PyTree) -> PyTree:
    return jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
        tree,
    )


def check_grads(
    fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    num_directions: int = 2,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradReport:
    """Checks ``jax.grad(fn)`` against central finite differences in float64.

    For each floating-point array of ``params`` and each of ``num_directions``
    random directions ``v`` in that array alone, compares the autodiff
    directional derivative ``<grad, v>`` with ``(fn(p + eps v) - fn(p - eps v)) / 2 eps``.
    Per-array directions localise an error to a parameter path at the cost of
    ``2 * num_directions`` evaluations per array.

    Args:
        fn: a scalar function of ``params``; it runs with float64 enabled, so
            arrays it closes over should be float64 too.
        params: a pytree of arrays (cast to float64 for the check).
        eps: finite-difference step.
        rtol: relative tolerance: ``|ad - fd| <= atol + rtol * max(|ad|, |fd|)``.
        atol: absolute tolerance.
        num_directions: random directions per array.
        seed: seed of the directions.
        raise_on_failure: raise ``AssertionError`` (listing the worst paths)
            when any array fails; otherwise just return the report.

    Returns:
        A :class:`GradReport`, worst path first.
    """
    with jax.enable_x64(True):
        p64 = _to_float64(params)
        # One program for both: every finite-difference evaluation below has the same shapes, and
        # compiling the value apart from the gradient costs more than their runs here.
        value_and_grad = jax.jit(jax.value_and_grad(fn))
        grads = value_and_grad(p64)[1]
        leaves, treedef = jax.tree_util.tree_flatten_with_path(p64)
        grad_leaves = jax.tree.leaves(grads)
        rng = np.random.default_rng(seed)
        errors = []
        for i, ((path, leaf), grad) in enumerate(zip(leaves, grad_leaves)):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                continue
            worst = None
            for _ in range(num_directions):
                v = jnp.asarray(rng.standard_normal(leaf.shape))

                def shifted(sign: float) -> float:
                    values = [lf for _, lf in leaves]
                    values[i] = leaf + sign * eps * v
                    return float(value_and_grad(jax.tree.unflatten(treedef, values))[0])

                fd = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
                ad = float(jnp.vdot(grad, v))
                abs_err = abs(ad - fd)
                scale = max(abs(ad), abs(fd))
                err = GradError(
                    path_str(path) or "<root>",
                    ad,
                    fd,
                    abs_err,
                    abs_err / scale if scale else 0.0,
                    abs_err <= atol + rtol * scale,
                )
                if worst is None or (not err.ok, err.rel_error) > (not worst.ok, worst.rel_error):
                    worst = err
            errors.append(worst)
    report = GradReport(tuple(sorted(errors, key=lambda e: (e.ok, -e.rel_error))))
    if raise_on_failure and not report.ok:
        raise AssertionError(f"gradients disagree with finite differences\n{report}")
    return report


def check_layer_grads(
    layer: Layer,
    params: PyTree,
    state: PyTree,
    x: Any,
    *,
    train: bool = False,
    key: jax.Array | None = None,
    wrt_input: bool = True,
    seed: int = 0,
    **kwargs: Any,
) -> GradReport:
    """:func:`check_grads` of a layer's output, with respect to its params (and input).

    The scalar checked is ``sum(y * c)`` for a fixed random cotangent ``c``, so
    every output element contributes. Input and params run in float64.

    Args:
        layer: the layer.
        params: its params (from ``init``).
        state: its state (from ``init``).
        x: an input batch; floating arrays in it are differentiated too when
            ``wrt_input`` (under the path ``input``).
        train: passed to ``apply``.
        key: passed to ``apply`` (a fixed key makes dropout deterministic).
        wrt_input: also check the gradient with respect to ``x``.
        seed: seed of the cotangent and the directions.
        **kwargs: tolerances, as for :func:`check_grads`.

    Examples:
        >>> import fnn
        >>> layer = fnn.Dense(2, "tanh")
        >>> params, state = layer.init(jax.random.key(0), (3,))
        >>> check_layer_grads(layer, params, state, jnp.ones((4, 3))).ok
        True
    """
    with jax.enable_x64(True):
        state64, x64 = _to_float64(state), _to_float64(x)
        leaves, treedef = jax.tree.flatten(x64)
        # Only floating inputs are differentiated; masks and token ids ride along.
        floating = {str(i): leaf for i, leaf in enumerate(leaves) if jnp.issubdtype(leaf.dtype, jnp.floating)}

        def with_inputs(values: dict) -> Any:
            return jax.tree.unflatten(treedef, [values.get(str(i), leaf) for i, leaf in enumerate(leaves)])

        y = jax.eval_shape(
            lambda p: layer.apply(p, state64, x64, train=train, key=key)[0], _to_float64(params)
        )
        rng = np.random.default_rng(seed + 1)
        cotangent = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), y)

        def scalar(tree: PyTree) -> jax.Array:
            out = layer.apply(
                tree["params"], state64, with_inputs(tree.get("input", {})), train=train, key=key
            )[0]
            pairs = zip(jax.tree.leaves(out), jax.tree.leaves(cotangent))
            return sum(jnp.vdot(o, c) for o, c in pairs if jnp.issubdtype(o.dtype, jnp.floating))

        tree = {"params": params, **({"input": floating} if wrt_input and floating else {})}
        return check_grads(scalar, tree, seed=seed, **kwargs)


# ----------------------------------------------------------------- hypothesis strategies

# Activations smooth enough for finite differences anywhere (no kinks, no clipping).
SMOOTH_ACTIVATIONS = (
    "linear", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "softplus", "silu",
    "swish", "log_sigmoid", "mish", "soft_sign", "squareplus",
)  # fmt: skip


def _st() -> Any:
    try:
        import hypothesis.strategies as st
    except ImportError as e:  # pragma: no cover - exercised only without the dev extra
        raise ImportError("fnn.testing strategies need hypothesis: pip install 'fnn[dev]'") from e
    return st


def shapes(*, min_rank: int = 1, max_rank: int = 3, min_side: int = 1, max_side: int = 5) -> Any:
    """Strategy for per-example shapes: tuples of ``min_rank..max_rank`` sides.

    Examples:
        >>> from hypothesis import given
        >>> @given(shapes(max_rank=2))
        ... def test_rank(shape):
        ...     assert 1 <= len(shape) <= 2
        >>> test_rank()
    """
    st = _st()
    return st.lists(st.integers(min_side, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def arrays(shape: tuple[int, ...], *, dtype: Any = np.float32, scale: float = 1.0) -> Any:
    """Strategy for NumPy arrays of ``shape``: normal values from a drawn seed.

    Drawing a seed (not each element) keeps examples fast and shrinking simple.
    """
    st = _st()
    return st.integers(0, 2**32 - 1).map(
        lambda seed: (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    )


def dense_configs(*, max_units: int = 8, smooth: bool = True) -> Any:
    """Strategy for :func:`fnn.Dense` keyword arguments (units, activation, use_bias).

    Args:
        max_units: the largest ``units``.
        smooth: draw only activations in :data:`SMOOTH_ACTIVATIONS` (for gradient checks).
    """
    from fnn import activations

    st = _st()
    names = SMOOTH_ACTIVATIONS if smooth else tuple(sorted(activations.ACTIVATIONS))
    return st.fixed_dictionaries(
        {
            "units": st.integers(1, max_units),
            "activation": st.sampled_from(names),
            "use_bias": st.booleans(),
        }
    )
