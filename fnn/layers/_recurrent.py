"""Embeddings and recurrent layers: cells, an RNN that scans a cell with masking, Bidirectional.

Sequences are ``(batch, time, features)``. A mask marks the valid steps: pass
``(x, mask)`` with ``mask`` a bool ``(batch, time)`` array (``True`` = valid) or
int ``(batch,)`` lengths, or get it from ``Embedding(..., mask_index=0)``.
Masked steps change no state and repeat the previous output in a returned
sequence, as Keras 3's layers do (``zero_output_for_mask=False``);
``masked_outputs="zeros"`` outputs zeros there instead, as PyTorch's padded
packed sequences, Keras's cuDNN layers and every ``Bidirectional`` do. Padding
never affects the result: the last output and final state are those of the last
valid step.

Parameter layouts follow Keras: ``w_x`` is Keras's ``kernel`` ``(features, G *
units)``, ``w_h`` its ``recurrent_kernel`` ``(units, G * units)`` and the gate
blocks come in Keras's order. PyTorch stores the transposes, ``weight_ih`` =
``w_x.T``; its LSTM gate order (i, f, g, o) is Keras's, its GRU order (r, z, n)
is not (Keras: z, r, h), and its two biases add up to fnn's one for LSTM.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnn import activations, initializers
from fnn._checks import check_int
from fnn._core import (  # noqa: F401 (Shape: doctest)
    Layer,
    Shape,
    check_input_dtype,
    check_name,
    check_positive_int,
    input_dtype,
    make_layer,
)
from fnn._layer_losses import Penalties, penalties
from fnn.layers._combinators import _check_children, _child, _child_key


class Cell(NamedTuple):
    """One step of a recurrence, scanned over time by :func:`RNN`.

    Attributes:
        init: ``(key, features) -> params``.
        step: ``(params, carry, x_t) -> (carry, y_t)`` with ``x_t`` ``(batch, features)``.
        carry: ``(batch, dtype) -> carry``, the zero initial state.
        units: the size of ``y_t``.
        name: the cell's name.
        penalties: the cell's regularizers (``kernel_regularizer=`` ...), which
            :func:`RNN` writes to its state when training; ``None`` for none.
        output: ``carry -> y_t``, where ``step``'s output is part of its carry
            (an LSTM's ``h``): then :func:`RNN` reads the last output from the
            final carry instead of carrying it through the loop too. ``None``
            when it is not.
        sequence: ``(params, xs, carry, reverse, sequences) -> (carry, ys)``,
            a faster whole-sequence form of ``step`` that :func:`RNN` runs on
            unmasked inputs: ``xs`` time-major ``(time, batch, features)``,
            ``ys`` every output (time-major) with ``sequences``, else ``None``.
            ``None``: ``RNN`` scans ``step``.
    """

    init: Callable[[jax.Array, int], dict]
    step: Callable[[dict, Any, jax.Array], tuple[Any, jax.Array]]
    carry: Callable[[int, Any], Any]
    units: int
    name: str
    penalties: Penalties | None = None
    output: Callable[[Any], jax.Array] | None = None
    sequence: Callable[..., tuple[Any, jax.Array | None]] | None = None


def _cell_penalties(
    kind: str, name: str, kernel: Any, recurrent: Any, bias: Any, bias_of: Callable
) -> Penalties:
    """Keras's ``kernel_regularizer`` (on ``w_x``), ``recurrent_regularizer`` (``w_h``), ``bias_regularizer``."""
    weights = {
        "kernel_regularizer": (kernel, lambda p: p["w_x"]),
        "recurrent_regularizer": (recurrent, lambda p: p["w_h"]),
        "bias_regularizer": (bias, bias_of),
    }
    return penalties(kind, name, weights)


def _weights(
    key: jax.Array, features: int, units: int, gates: int, kernel_init: Any, recurrent_init: Any, dtype: Any
):
    k_x, k_h = jax.random.split(key)
    return {
        "w_x": initializers.get(kernel_init)(k_x, (features, gates * units), dtype),
        "w_h": initializers.get(recurrent_init)(k_h, (units, gates * units), dtype),
    }


def _zeros(units: int) -> Callable[[int, Any], jax.Array]:
    """A one-array carry's initial value, ``(batch, units)`` zeros."""
    return lambda batch, dtype: jnp.zeros((batch, units), dtype)


def _itself(carry: jax.Array) -> jax.Array:
    return carry


def _fused_matmul(params: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    # One [x, h] @ [w_x; w_h] matmul per step: the fastest form on XLA:CPU (see
    # shared/BENCHMARKS.md). RNN stacks the weights once, outside the scan.
    w = params["w_xh"] if "w_xh" in params else jnp.concatenate([params["w_x"], params["w_h"]], axis=0)
    return jnp.concatenate([x, h], axis=-1) @ w


def SimpleRNNCell(
    units: int,
    activation: Any = "tanh",
    *,
    kernel_init: Any = "glorot_uniform",
    recurrent_init: Any = "orthogonal",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str = "simple_rnn_cell",
) -> Cell:
    """``h' = activation(x @ w_x + h @ w_h + b)``; params ``{"w_x", "w_h", "b"}``.

    ``kernel_regularizer``, ``recurrent_regularizer`` and ``bias_regularizer``
    (Keras's) add penalties on ``w_x``, ``w_h`` and ``b`` to the training loss,
    as for :func:`~fnn.Dense`: ``"l1"``, ``"l2"``, ``"l1_l2"``, a function
    ``array -> scalar`` or ``None``; :func:`RNN` keeps their values in its state.
    The other cells take them too.
    """
    units = check_positive_int("SimpleRNNCell", name, "units", units)
    regularized = _cell_penalties(
        "SimpleRNNCell", name, kernel_regularizer, recurrent_regularizer, bias_regularizer, lambda p: p["b"]
    )
    act = activations.get(activation)

    def init(key: jax.Array, features: int) -> dict:
        return {
            **_weights(key, features, units, 1, kernel_init, recurrent_init, dtype),
            "b": jnp.zeros((units,), dtype),
        }

    def step(params: dict, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = act(_fused_matmul(params, x, h) + params["b"][None, :])
        return h, h

    return Cell(init, step, _zeros(units), units, name, regularized, output=_itself)


def LSTMCell(
    units: int,
    *,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    unit_forget_bias: bool = True,
    kernel_init: Any = "glorot_uniform",
    recurrent_init: Any = "orthogonal",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str = "lstm_cell",
) -> Cell:
    """The LSTM of Hochreiter & Schmidhuber, in Keras's form.

    ``i, f, g, o = split([x, h] @ [w_x; w_h] + b)`` (Keras's gate order);
    ``c' = σ(f) * c + σ(i) * tanh(g)``; ``h' = σ(o) * tanh(c')``. Params
    ``{"w_x": (F, 4U), "w_h": (U, 4U), "b": (4U,)}``; the carry is ``{"h", "c"}``.
    ``unit_forget_bias`` starts the forget-gate bias at 1. Regularizers as
    for :func:`SimpleRNNCell`.

    With the default activations, :func:`RNN` runs unmasked sequences through
    a hand-written backward pass (``Cell.sequence``), about 0.7x the time of
    autodiff's on CPU; it is a ``jax.custom_vjp``, so reverse mode only
    (``jax.grad``, not ``jax.jvp``).
    """
    units = check_positive_int("LSTMCell", name, "units", units)
    act, rec_act = activations.get(activation), activations.get(recurrent_activation)
    regularized = _cell_penalties(
        "LSTMCell", name, kernel_regularizer, recurrent_regularizer, bias_regularizer, lambda p: p["b"]
    )

    def init(key: jax.Array, features: int) -> dict:
        bias = jnp.zeros((4 * units,), dtype)
        if unit_forget_bias:
            bias = bias.at[units : 2 * units].set(1.0)
        return {**_weights(key, features, units, 4, kernel_init, recurrent_init, dtype), "b": bias}

    def step(params: dict, carry: dict, x: jax.Array) -> tuple[dict, jax.Array]:
        z = _fused_matmul(params, x, carry["h"]) + params["b"][None, :]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = rec_act(f) * carry["c"] + rec_act(i) * act(g)
        h = rec_act(o) * act(c)
        return {"h": h, "c": c}, h

    def zeros(batch: int, dtype_: Any) -> dict:
        return {"h": jnp.zeros((batch, units), dtype_), "c": jnp.zeros((batch, units), dtype_)}

    # tanh and sigmoid (Keras's defaults) have a hand-written backward pass (see _lstm_sequence).
    standard = act is activations.get("tanh") and rec_act is activations.get("sigmoid")
    return Cell(
        init,
        step,
        zeros,
        units,
        name,
        regularized,
        operator.itemgetter("h"),
        _lstm_sequence if standard else None,
    )


def GRUCell(
    units: int,
    *,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    reset_after: bool = True,
    kernel_init: Any = "glorot_uniform",
    recurrent_init: Any = "orthogonal",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str = "gru_cell",
) -> Cell:
    """The GRU in either of Keras's forms; gate blocks in Keras's order ``[z, r, h]``.

    With ``reset_after=True`` (Keras's default, the cuDNN/PyTorch variant) the
    reset gate scales the recurrent projection: ``xz, xr, xh = split(x @ w_x +
    b_x)``, ``hz, hr, hh = split(h @ w_h + b_h)``; ``z = σ(xz + hz)``, ``r = σ(xr
    + hr)``, ``n = tanh(xh + r * hh)``. Params ``{"w_x": (F, 3U), "w_h": (U, 3U),
    "b_x": (3U,), "b_h": (3U,)}`` (Keras's ``bias`` is ``[b_x, b_h]``, shape
    ``(2, 3U)``).

    With ``reset_after=False`` (Keras's other form, of Cho et al. 2014) it scales
    the state before the projection: ``xz, xr, xh = split(x @ w_x + b)``, ``z =
    σ(xz + h @ Uz)``, ``r = σ(xr + h @ Ur)``, ``n = tanh(xh + (r * h) @ Uh)`` with
    ``[Uz, Ur, Uh] = split(w_h)``. Params ``{"w_x": (F, 3U), "w_h": (U, 3U), "b":
    (3U,)}`` (Keras's single ``bias``).

    Both give ``h' = z * h + (1 - z) * n``. Regularizers as for
    :func:`SimpleRNNCell`; ``bias_regularizer`` sees Keras's bias (``(2, 3U)``
    or ``(3U,)``).

    Raises:
        TypeError: for a ``reset_after`` that is not a bool.
        ValueError: for ``units`` that is not a positive int.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> cell = GRUCell(4, reset_after=False)
        >>> shapes = jax.eval_shape(lambda key: cell.init(key, 3), jax.random.key(0))
        >>> {k: v.shape for k, v in shapes.items()}
        {'b': (12,), 'w_h': (4, 12), 'w_x': (3, 12)}
    """
    units = check_positive_int("GRUCell", name, "units", units)
    if not isinstance(reset_after, bool):
        raise TypeError(f"GRUCell '{name}': reset_after must be True or False, got {reset_after!r}")
    act, rec_act = activations.get(activation), activations.get(recurrent_activation)
    if reset_after:  # Keras's GRU bias is [b_x, b_h], shape (2, 3U)
        bias_of = lambda p: jnp.stack([p["b_x"], p["b_h"]])  # noqa: E731
    else:
        bias_of = lambda p: p["b"]  # noqa: E731
    regularized = _cell_penalties(
        "GRUCell", name, kernel_regularizer, recurrent_regularizer, bias_regularizer, bias_of
    )

    def init(key: jax.Array, features: int) -> dict:
        zeros = jnp.zeros((3 * units,), dtype)
        biases = {"b_x": zeros, "b_h": zeros} if reset_after else {"b": zeros}
        return {**_weights(key, features, units, 3, kernel_init, recurrent_init, dtype), **biases}

    def step(params: dict, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if reset_after:
            xz, xr, xh = jnp.split(x @ params["w_x"] + params["b_x"][None, :], 3, axis=-1)
            hz, hr, hh = jnp.split(h @ params["w_h"] + params["b_h"][None, :], 3, axis=-1)
            z, r = rec_act(xz + hz), rec_act(xr + hr)
            n = act(xh + r * hh)
        else:
            xz, xr, xh = jnp.split(x @ params["w_x"] + params["b"][None, :], 3, axis=-1)
            w_zr, w_n = params["w_h"][:, : 2 * units], params["w_h"][:, 2 * units :]
            hz, hr = jnp.split(h @ w_zr, 2, axis=-1)
            z, r = rec_act(xz + hz), rec_act(xr + hr)
            n = act(xh + (r * h) @ w_n)
        h = z * h + (1 - z) * n
        return h, h

    return Cell(init, step, _zeros(units), units, name, regularized, output=_itself)


# ---------------------------------------------------------------------------- inputs


def _split_input(kind: str, name: str, x: Any) -> tuple[Any, Any, Any]:
    """``x`` | ``(x, mask)`` | ``{"x", "mask", "initial_state"}`` -> (x, mask, initial_state)."""
    if isinstance(x, dict):
        unknown = set(x) - {"x", "mask", "initial_state"}
        if "x" not in x or unknown:
            raise ValueError(
                f"{kind} '{name}': a dict input needs 'x' and may have 'mask', 'initial_state'; got {sorted(x)}"
            )
        return x["x"], x.get("mask"), x.get("initial_state")
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"{kind} '{name}' expects x or (x, mask), got a tuple of {len(x)}")
        return x[0], x[1], None
    return x, None, None


def _check_sequences(kind: str, name: str, x: Any, mask: Any) -> jax.Array | None:
    """Validates ``(batch, time, features)`` inputs; returns the mask as bool ``(batch, time)``."""
    if jnp.ndim(x) != 3:
        raise ValueError(
            f"{kind} '{name}' expects inputs of shape (batch, time, features), got {tuple(jnp.shape(x))}"
        )
    batch, time = jnp.shape(x)[:2]
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.shape == (batch,) and jnp.issubdtype(mask.dtype, jnp.integer):
        return jnp.arange(time)[None, :] < mask[:, None]  # lengths
    if mask.shape != (batch, time) or mask.dtype != jnp.bool_:
        raise ValueError(
            f"{kind} '{name}': the mask must be bool (batch, time) = ({batch}, {time}) or int lengths ({batch},); "
            f"got {mask.dtype} {mask.shape} for inputs {tuple(jnp.shape(x))}"
        )
    return mask


def _features_of(kind: str, name: str, input_shape: Any) -> Any:
    shape = input_shape["x"] if isinstance(input_shape, dict) else input_shape
    if isinstance(shape, tuple) and shape and isinstance(shape[0], tuple):
        shape = shape[0]  # (x, mask)
    if len(shape) != 2:
        raise ValueError(
            f"{kind} '{name}' expects a per-example input_shape (time, features), got {tuple(shape)}"
        )
    return shape


def _described(tree: Any) -> Any:
    """A carry's structure as ``{"h": "float32(2, 8)", ...}``, to compare and to show."""
    return jax.tree.map(lambda a: f"{input_dtype(a)}{tuple(jnp.shape(a))}", tree)


def _scan(
    cell: Cell,
    params: dict,
    x: jax.Array,
    mask: Any,
    carry: Any,
    reverse: bool,
    sequences: bool,
    zero_masked: bool = True,
) -> tuple[Any, jax.Array, jax.Array | None]:
    """Scans ``cell`` over time; masked steps keep the carry and output zeros (or repeat the last output).

    ``zero_masked`` picks zeros. Returns the final carry, the last valid output
    and, with ``sequences``, every output. Without it nothing per step is
    stacked, which saves memory in the backward pass.
    """
    xs = jnp.swapaxes(x, 0, 1)  # time-major for lax.scan
    params = {**params, "w_xh": jnp.concatenate([params["w_x"], params["w_h"]], axis=0)}
    if mask is None:  # no `last` in the carry: a smaller loop state is measurably faster on CPU
        return _scan_unmasked(cell, params, xs, carry, reverse, sequences)
    zeros = jnp.zeros((x.shape[0], cell.units), x.dtype)

    def body(state, inputs):
        carry, last = state
        x_t, m_t = inputs
        new_carry, y = cell.step(params, carry, x_t)
        keep = m_t[:, None]
        new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
        last = jnp.where(keep, y, last)
        if not sequences:
            return (new_carry, last), None
        return (new_carry, last), (jnp.where(keep, y, zeros) if zero_masked else last)

    inputs = (xs, jnp.swapaxes(mask, 0, 1))
    (carry, last), ys = jax.lax.scan(body, (carry, zeros), inputs, reverse=reverse)
    return carry, last, (jnp.swapaxes(ys, 0, 1) if sequences else None)


def _scan_unmasked(
    cell: Cell, params: dict, xs: jax.Array, carry: Any, reverse: bool, sequences: bool
) -> tuple[Any, jax.Array, jax.Array | None]:
    """:func:`_scan` without a mask, ``xs`` time-major."""
    if cell.sequence is not None:
        carry, ys = cell.sequence(params, xs, carry, reverse, sequences)
        if sequences:
            return carry, ys[0] if reverse else ys[-1], jnp.swapaxes(ys, 0, 1)
        return carry, cell.output(carry), None
    if sequences:
        carry, ys = jax.lax.scan(lambda c, x_t: cell.step(params, c, x_t), carry, xs, reverse=reverse)
        return carry, ys[0] if reverse else ys[-1], jnp.swapaxes(ys, 0, 1)
    if cell.output is not None:  # the loop carries the carry alone, as a hand-written one does
        carry, _ = jax.lax.scan(
            lambda c, x_t: (cell.step(params, c, x_t)[0], None), carry, xs, reverse=reverse
        )
        return carry, cell.output(carry), None

    def body(state: tuple, x_t: jax.Array) -> tuple[tuple, None]:
        return cell.step(params, state[0], x_t), None

    zeros = jnp.zeros((xs.shape[1], cell.units), xs.dtype)
    (carry, last), _ = jax.lax.scan(body, (carry, zeros), xs, reverse=reverse)
    return carry, last, None


def _lstm_sequence(
    params: dict, xs: jax.Array, carry: dict, reverse: bool, sequences: bool
) -> tuple[dict, jax.Array | None]:
    """A tanh/sigmoid LSTM over time-major ``xs``: the final ``{"h", "c"}`` and, with ``sequences``, every h."""
    (h, c), ys = _lstm_scan(reverse, sequences, params["w_xh"], params["b"], xs, carry["h"], carry["c"])
    return {"h": h, "c": c}, ys


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lstm_scan(reverse: bool, sequences: bool, w_xh, b, xs, h, c) -> tuple[tuple, jax.Array | None]:
    """The LSTM's loop, with a hand-written backward pass.

    Autodiff of the scan adds each step's ``(F + U, 4U)`` weight gradient into
    the loop state, one small matmul a step. The backward loop here carries only
    ``(dh, dc)`` and stacks each step's gate gradient ``dz``; the weight and
    input gradients are then one ``(T*B, F + U)^T @ (T*B, 4U)`` and one ``(T*B,
    4U) @ (4U, F)`` matmul after the loop, as cuDNN and PyTorch do. On XLA:CPU
    the LSTM's gradient takes 0.72x the time (``benchmarks/recurrent_variants.py``).
    """
    final, (ys, _) = _lstm_forward(reverse, w_xh, b, xs, h, c)
    return final, ys if sequences else None


def _lstm_forward(reverse: bool, w_xh, b, xs, h, c):
    def step(carry: tuple, x_t: jax.Array) -> tuple[tuple, tuple]:
        h, c = carry
        z = jnp.concatenate([x_t, h], axis=-1) @ w_xh + b[None, :]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_next = f * c + i * g
        tanh_c = jnp.tanh(c_next)
        h_next = o * tanh_c
        return (h_next, c_next), (h_next, (h, c, i, f, g, o, tanh_c))

    return jax.lax.scan(step, (h, c), xs, reverse=reverse)


def _lstm_scan_fwd(reverse, sequences, w_xh, b, xs, h, c):
    final, (ys, saved) = _lstm_forward(reverse, w_xh, b, xs, h, c)
    return (final, ys if sequences else None), (w_xh, xs, saved)


def _lstm_scan_bwd(reverse, sequences, residuals, cotangents):
    w_xh, xs, saved = residuals
    d_final, d_ys = cotangents
    features = xs.shape[-1]
    w_h_t = w_xh[features:].T

    def step(carry: tuple, at_t: tuple) -> tuple[tuple, jax.Array]:
        d_h, d_c = carry
        (h_prev, c_prev, i, f, g, o, tanh_c), d_y = at_t
        if d_y is not None:
            d_h = d_h + d_y
        d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)
        d_z = jnp.concatenate(
            [
                d_c * g * i * (1 - i),
                d_c * c_prev * f * (1 - f),
                d_c * i * (1 - g * g),
                d_h * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        return (d_z @ w_h_t, d_c * f), d_z

    d_ys = d_ys if sequences else None
    (d_h0, d_c0), d_zs = jax.lax.scan(step, d_final, (saved, d_ys), reverse=not reverse)
    time, batch = xs.shape[:2]
    rows = jnp.concatenate([xs, saved[0]], axis=-1).reshape(time * batch, -1)
    d_z2 = d_zs.reshape(time * batch, -1)
    d_xs = (d_z2 @ w_xh[:features].T).reshape(xs.shape)
    return rows.T @ d_z2, d_z2.sum(0), d_xs, d_h0, d_c0


_lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)


_MASKED_OUTPUTS = ("zeros", "repeat")


def RNN(
    cell: Cell,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    reverse: bool = False,
    masked_outputs: str = "repeat",
    name: str | None = None,
) -> Layer:
    """Scans a :class:`Cell` over the time axis with ``lax.scan``.

    Args:
        cell: e.g. ``LSTMCell(64)``.
        return_sequences: return every step's output ``(batch, time, units)``
            (then a mask given with the input is passed on: ``(outputs, mask)``,
            so stacked RNNs in a :func:`~fnn.Sequential` see it); else the last
            valid output ``(batch, units)``.
        return_state: also return the final carry: ``(output, state)``, the
            state of the cell's carry (``(batch, units)``, or ``{"h", "c"}`` for
            an LSTM) after the last valid step.
        reverse: process the sequence backwards (outputs stay in time order).
        masked_outputs: what a masked step outputs with ``return_sequences``:
            ``"repeat"``, the output of the valid step processed before (zeros
            before the first), as Keras 3's layers (``zero_output_for_mask=False``),
            or ``"zeros"``, as PyTorch's padded packed sequences, Keras's
            ``Bidirectional`` and cuDNN layers.
            Either way masked steps leave the state alone, and the last valid
            output (``return_sequences=False``) and final state are the same.
        name: layer name; the cell's kind by default (``"lstm"``, ...).

    Input: ``x`` ``(batch, time, features)``, ``(x, mask)`` or a dict with
    ``"x"``, optional ``"mask"`` and ``"initial_state"`` (a carry).

    Returns:
        A :class:`~fnn.Layer` whose params are the cell's; no state (the
        recurrent state lives within one call), but for a cell with
        regularizers ``{"losses": {...}}`` (see :func:`fnn.add_loss`).

    Raises:
        TypeError: for a ``cell`` that is not a :class:`Cell`, and in ``apply``
            for inputs whose dtype is not the params' dtype.
        ValueError: for an unknown ``masked_outputs``; in ``init``/``apply``,
            for inputs that are not ``(batch, time, features)`` with the
            features the params were built for, a bad mask, or an
            ``initial_state`` unlike the cell's carry.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> lstm = RNN(LSTMCell(8), return_sequences=True)
        >>> params, state = lstm.init(jax.random.key(0), (5, 3))
        >>> lengths = jnp.array([5, 2])  # the steps after each length are masked: they repeat the last
        >>> (ys, mask), _ = lstm.apply(params, state, (jnp.ones((2, 5, 3)), lengths), train=False)
        >>> ys.shape, mask[1].tolist(), bool((ys[1, 2:] == ys[1, 1:2]).all())
        ((2, 5, 8), [True, True, False, False, False], True)
    """
    kind = "RNN"
    if not isinstance(cell, Cell):
        got = f"the Layer '{cell.name}'" if isinstance(cell, Layer) else type(cell).__name__
        raise TypeError(
            f"{kind} expects a Cell such as LSTMCell(8), got {got}; a layer such as LSTM(8) already "
            "is RNN(LSTMCell(8)): use it as it is"
        )
    name = check_name(kind, name or cell.name.removesuffix("_cell"))
    if masked_outputs not in _MASKED_OUTPUTS:
        raise ValueError(
            f"{kind} '{name}': masked_outputs must be one of {_MASKED_OUTPUTS}, got {masked_outputs!r}"
        )
    regularized = cell.penalties or Penalties(kind, name, {})

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        return cell.init(key, _features_of(kind, name, input_shape)[-1]), regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        seqs, mask, carry = _split_input(kind, name, x)
        check_input_dtype(kind, name, seqs, params["w_x"].dtype)
        mask = _check_sequences(kind, name, seqs, mask)
        seqs = jnp.asarray(seqs)
        features = params["w_x"].shape[0]
        if seqs.shape[-1] != features:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape (batch, time, {features}) (its params were built "
                f"for {features} features), got {seqs.shape}"
            )
        zeros = jax.eval_shape(lambda: cell.carry(seqs.shape[0], seqs.dtype))
        if carry is None:
            carry = cell.carry(seqs.shape[0], seqs.dtype)
        elif _described(carry) != _described(zeros):
            raise ValueError(
                f"{kind} '{name}': initial_state must be shaped like the cell's carry for this batch, "
                f"{_described(zeros)}, got {_described(carry)}"
            )
        carry, last, ys = _scan(
            cell, params, seqs, mask, carry, reverse, return_sequences, masked_outputs == "zeros"
        )
        if return_sequences:
            out = ys if mask is None else (ys, mask)
        else:
            out = last
        return ((out, carry) if return_state else out), regularized.apply(state, params, None, train=train)

    return make_layer(kind, name, init, apply)


def SimpleRNN(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    reverse: bool = False,
    masked_outputs: str = "repeat",
    name: str | None = None,
    **cell_args: Any,
) -> Layer:
    """``RNN(SimpleRNNCell(units, **cell_args), ...)``, the other arguments as for :func:`RNN`."""
    return RNN(
        SimpleRNNCell(units, **cell_args),
        return_sequences=return_sequences,
        return_state=return_state,
        reverse=reverse,
        masked_outputs=masked_outputs,
        name=name,
    )


def LSTM(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    reverse: bool = False,
    masked_outputs: str = "repeat",
    name: str | None = None,
    **cell_args: Any,
) -> Layer:
    """``RNN(LSTMCell(units, **cell_args), ...)``, the other arguments as for :func:`RNN`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = LSTM(4, return_sequences=True)
        >>> params, state = layer.init(jax.random.key(0), (6, 2))
        >>> jax.tree.map(jnp.shape, params)
        {'b': (16,), 'w_h': (4, 16), 'w_x': (2, 16)}

        ``LSTM(4, return_state=True)`` returns ``(output, {"h": (batch, 4), "c": (batch, 4)})``.
    """
    return RNN(
        LSTMCell(units, **cell_args),
        return_sequences=return_sequences,
        return_state=return_state,
        reverse=reverse,
        masked_outputs=masked_outputs,
        name=name,
    )


def GRU(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    reverse: bool = False,
    masked_outputs: str = "repeat",
    name: str | None = None,
    **cell_args: Any,
) -> Layer:
    """``RNN(GRUCell(units, **cell_args), ...)``, the other arguments as for :func:`RNN`.

    ``GRU(8, reset_after=False)`` is Keras's other GRU (see :func:`GRUCell`).
    """
    return RNN(
        GRUCell(units, **cell_args),
        return_sequences=return_sequences,
        return_state=return_state,
        reverse=reverse,
        masked_outputs=masked_outputs,
        name=name,
    )


_MERGES = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": jnp.add,
    "mul": jnp.multiply,
    "ave": lambda a, b: (a + b) / 2,
}


def _flip_time(a: jax.Array | None, flip: bool) -> jax.Array | None:
    return jnp.flip(a, axis=1) if flip and a is not None else a


def _join_input(seqs: jax.Array, mask: jax.Array | None, carry: Any) -> Any:
    """The inverse of :func:`_split_input`."""
    if carry is None:
        return seqs if mask is None else (seqs, mask)
    return {"x": seqs, "initial_state": carry, **({} if mask is None else {"mask": mask})}


def _is_mask(a: Any) -> bool:
    return getattr(a, "dtype", None) == jnp.bool_


def _is_output(y: Any) -> bool:
    """``y`` ``(batch, units)`` / ``(batch, time, units)``, or such a ``y`` with its bool mask."""
    if isinstance(y, tuple):
        return len(y) == 2 and not isinstance(y[0], tuple) and _is_output(y[0]) and _is_mask(y[1])
    return hasattr(y, "ndim") and y.ndim >= 2 and not _is_mask(y)


def _direction_output(
    kind: str, name: str, layer: Layer, out: Any
) -> tuple[jax.Array, jax.Array | None, Any]:
    """A direction's ``y``, ``(y, mask)`` or either with its final state -> ``(y, mask, (state,) or ())``.

    The state comes as a 1-tuple so that a layer without one is told apart from any carry.
    """
    if _is_output(out):
        y, mask = out if isinstance(out, tuple) else (out, None)
        return y, mask, ()
    if isinstance(out, tuple) and len(out) == 2 and _is_output(out[0]):  # return_state: (output, state)
        y, mask, _ = _direction_output(kind, name, layer, out[0])
        return y, mask, (out[1],)
    raise TypeError(
        f"{kind} '{name}' merges outputs (batch, units) or (batch, time, units), optionally with their mask "
        f"and then with the final state (return_state=True); its layer '{layer.name}' returned "
        f"{jax.tree.map(lambda a: tuple(jnp.shape(a)), out)}"
    )


def _direction_state(carry: Any, direction: str) -> Any:
    """``initial_state`` for one direction: ``{"forward": ..., "backward": ...}`` splits, anything else is shared."""
    if isinstance(carry, dict) and set(carry) == {"forward", "backward"}:
        return carry[direction]
    return carry


def Bidirectional(
    layer: Layer | Cell,
    *,
    return_sequences: bool | None = None,
    return_state: bool | None = None,
    merge_mode: str = "concat",
    name: str | None = None,
) -> Layer:
    """Runs a recurrent layer forwards and a copy of it backwards over the sequence; merges the outputs.

    As in Keras, ``Bidirectional(LSTM(8))`` wraps a layer: its backward copy has
    params of its own and reads the sequence in reverse, and its sequence
    outputs are flipped back into time order, so step ``t`` of both directions
    lines up. A cell works too: ``Bidirectional(LSTMCell(8))`` is
    ``Bidirectional(RNN(LSTMCell(8)))``. Both directions honour the mask, so
    right-padding is skipped in both; masked steps of sequence outputs are
    zeros, as in Keras's ``Bidirectional`` (which zeroes them whatever the
    wrapped layer does).

    With ``return_state`` (``Bidirectional(LSTM(8, return_state=True))`` as in
    Keras, or ``Bidirectional(LSTMCell(8), return_state=True)``) the layer
    returns ``(output, {"forward": state, "backward": state})``, each state the
    direction's final carry as :func:`RNN` returns it (``(batch, units)``, or
    ``{"h", "c"}`` for an LSTM; the backward one is the state after step 0).
    Keras's flat ``[output, *forward_states, *backward_states]`` is
    ``[output, h_f, c_f, h_b, c_b]`` for an LSTM. An ``initial_state`` in the
    input dict is given to both directions, or split when it is such a
    ``{"forward", "backward"}`` dict.

    Args:
        layer: a sequence layer that returns ``(batch, units)`` or ``(batch, time,
            units)`` (with the mask passed on, if any; then with its final state
            for ``return_state=True``), such as ``LSTM(8)``; or a :class:`Cell`.
        return_sequences: for a cell only, as for :func:`RNN` (``False`` by
            default); a layer has its own (``LSTM(8, return_sequences=True)``).
        return_state: for a cell only, as for :func:`RNN` (``False`` by default);
            a layer has its own (``LSTM(8, return_state=True)``).
        merge_mode: ``"concat"``, ``"sum"``, ``"mul"`` or ``"ave"``.
        name: layer name; ``"bidirectional"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params and state ``{"forward": ...,
        "backward": ...}``, each of the wrapped layer's structure.

    Raises:
        TypeError: for anything but a layer or a cell, and in ``apply`` for a
            layer whose output is not a sequence or last output (optionally with
            its mask and state).
        ValueError: for an unknown ``merge_mode``, ``return_sequences`` or
            ``return_state`` given with a layer, or inputs that are not ``(batch,
            time, features)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fnn
        >>> bi = Bidirectional(fnn.LSTM(4, return_sequences=True, return_state=True))
        >>> params, state = bi.init(jax.random.key(0), (6, 3))
        >>> sorted(params)
        ['backward', 'forward']
        >>> (ys, states), _ = bi.apply(params, state, jnp.ones((2, 6, 3)), train=False)
        >>> ys.shape, jax.tree.map(jnp.shape, states["backward"])
        ((2, 6, 8), {'c': (2, 4), 'h': (2, 4)})
    """
    kind = "Bidirectional"
    name = check_name(kind, name or "bidirectional")
    if merge_mode not in _MERGES:
        raise ValueError(f"{kind} '{name}': merge_mode must be one of {sorted(_MERGES)}, got {merge_mode!r}")
    if isinstance(layer, Cell):
        layer = RNN(layer, return_sequences=bool(return_sequences), return_state=bool(return_state))
    elif not isinstance(layer, Layer):
        raise TypeError(
            f"{kind} '{name}' expects a recurrent layer such as LSTM(8) or a Cell such as LSTMCell(8), "
            f"got {type(layer).__name__}"
        )
    else:
        for arg, value in (("return_sequences", return_sequences), ("return_state", return_state)):
            if value is not None:
                raise ValueError(
                    f"{kind} '{name}': {arg} belongs to the wrapped layer '{layer.name}': build it with "
                    f"it, e.g. Bidirectional(LSTM(8, {arg}={value!r})), got it on Bidirectional"
                )
    keys = ("forward", "backward")

    def children(input_shape: Any) -> list[tuple[str, Layer, Any]]:
        return [(k, layer, input_shape) for k in keys]

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        params, state = {}, {}
        for i, k in enumerate(keys):
            with _child(kind, name, i, k, input_shape):
                params[k], state[k] = layer.init(jax.random.fold_in(key, i), input_shape)
        return params, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        _check_children(kind, name, "params", keys, params)
        _check_children(kind, name, "state", keys, state)
        seqs, mask, carry = _split_input(kind, name, x)
        mask = _check_sequences(kind, name, seqs, mask)  # int lengths become a bool mask, which flips
        seqs = jnp.asarray(seqs)
        outputs, new_state = [], {}
        for i, k in enumerate(keys):
            backward = k == "backward"
            inputs = _join_input(*(_flip_time(a, backward) for a in (seqs, mask)), _direction_state(carry, k))
            with _child(kind, name, i, k, tuple(seqs.shape[1:])):
                out, new_state[k] = layer.apply(
                    params[k], state[k], inputs, train=train, key=_child_key(key, i)
                )
            y, y_mask, final = _direction_output(kind, name, layer, out)
            y = _flip_time(y, backward and y.ndim >= 3)  # sequences back in time order
            if mask is not None and y.ndim >= 3:  # Keras's Bidirectional zeroes masked steps
                y = jnp.where(mask[:, :, None], y, jnp.zeros_like(y))
            outputs.append((y, y_mask, final))
        (y_f, mask_f, final_f), (y_b, _, final_b) = outputs
        merged = _MERGES[merge_mode](y_f, y_b)
        merged = merged if mask_f is None else (merged, mask_f)
        if final_f:  # the wrapped layer returns its state: so does this one
            merged = (merged, {"forward": final_f[0], "backward": final_b[0]})
        return merged, new_state

    return make_layer(kind, name, init, apply, children)


def Embedding(
    vocab_size: int,
    dim: int,
    *,
    mask_index: int | None = None,
    embeddings_init: Any = None,
    embeddings_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Looks up a ``dim``-vector per integer token: ``(batch, ...)`` -> ``(batch, ..., dim)``.

    Args:
        vocab_size: number of tokens; ids must lie in ``[0, vocab_size)``. Ids
            outside, negative ones included, give NaN rows (never another
            row), since their values cannot be checked under ``jit``.
        dim: embedding size.
        mask_index: a padding id: the layer then returns ``(embeddings, mask)``
            with ``mask = ids != mask_index``, which RNNs and attention use.
        embeddings_init: initialiser; Keras's ``uniform(-0.05, 0.05)`` by default.
        embeddings_regularizer: a penalty on the table added to the training
            loss, as for :func:`~fnn.Dense`'s ``kernel_regularizer``.
        dtype: dtype of the table.
        name: layer name; ``"embedding"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params ``{"table": (vocab_size, dim)}``; no
        state but, with a regularizer, ``{"losses": {"embeddings_regularizer": ()}}``.

    Raises:
        ValueError: for bad hyper-parameters.
        TypeError: in ``apply``, for ids that are not integers (floats and bools included).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> emb = Embedding(10, 4, mask_index=0)
        >>> params, state = emb.init(jax.random.key(0), Shape((3,), jnp.int32))
        >>> (vectors, mask), _ = emb.apply(params, state, jnp.array([[5, 2, 0]]), train=False)
        >>> vectors.shape, mask.tolist()
        ((1, 3, 4), [[True, True, False]])
    """
    kind = "Embedding"
    name = check_name(kind, name or "embedding")
    vocab_size = check_positive_int(kind, name, "vocab_size", vocab_size)
    dim = check_positive_int(kind, name, "dim", dim)
    if mask_index is not None:
        mask_index = check_int(
            f"{kind} '{name}'",
            "mask_index",
            mask_index,
            low=0,
            high=vocab_size - 1,
            what=f"vocab_size-1={vocab_size - 1}",
        )
    table_init = initializers.uniform(0.1) if embeddings_init is None else initializers.get(embeddings_init)
    regularized = penalties(
        kind, name, {"embeddings_regularizer": (embeddings_regularizer, lambda p: p["table"])}
    )

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del input_shape
        table = table_init(key, (vocab_size, dim), dtype)
        if embeddings_init is None:
            table = table - jnp.asarray(0.05, dtype)  # uniform(0, 0.1) -> uniform(-0.05, 0.05)
        return {"table": table}, regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        check_input_dtype(kind, name, x, jnp.integer)
        ids = jnp.asarray(x)
        vectors = jnp.take(params["table"], ids, axis=0, mode="fill", fill_value=jnp.nan)
        # take's "fill" counts negative ids from the end (-1 is the last row): make them NaN too.
        vectors = jnp.where((ids >= 0)[..., None], vectors, jnp.asarray(jnp.nan, vectors.dtype))
        out = vectors if mask_index is None else (vectors, ids != mask_index)
        return out, regularized.apply(state, params, None, train=train)

    return make_layer(kind, name, init, apply)
