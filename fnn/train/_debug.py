"""Finds the first operation whose NaN or Inf reached a function's outputs, and its layer.

A jaxpr interpreter that follows each NaN/Inf back to the operation that made it.
``jax.experimental.checkify``'s ``nan_checks`` do not suffice: they flag any NaN output
(also one made from NaN inputs, or dropped later), ignore Inf, and name no layer.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Literal

from fnn._core import path_str

try:  # JAX's private summary of an operation's source line: a nicety, not needed
    from jax._src.source_info_util import summarize as _summarize
except ImportError:  # pragma: no cover
    _summarize = None

# Primitives that only wrap a computation: their inner jaxpr maps the same inputs to the same outputs.
_CALLS = frozenset("pjit jit closed_call core_call custom_jvp_call custom_vjp_call remat2 checkpoint".split())
_TRANSFORM = re.compile(r"^(\w+)\((.*)\)$")  # jvp(dense), transpose(jvp(sequential)), ...


class NonFinite(NamedTuple):
    """Where a computation first turned non-finite (see :func:`find_non_finite`).

    Attributes:
        layer: the layer path from JAX's name stack (``"sequential/dense_1"``);
            ``""`` outside any layer (the loss, the optimiser) and for an input.
        phase: ``"forward"``, ``"gradient"`` (the backward pass, or a derivative the
            forward pass makes for it), ``"update"`` (the optimiser: outside the
            layers and the gradient) or ``"input"`` (an argument held it).
        primitive: the JAX primitive (``"log"``, ``"div"``); ``""`` for an input.
        value: ``"NaN"`` or ``"Inf"``.
        where: the operation's source line, or the argument's path (``"params/dense/w"``).
        message: all of it in a sentence.
    """

    layer: str
    phase: str
    primitive: str
    value: str
    where: str
    message: str


class _Origin(NamedTuple):
    seq: int  # execution order: the smallest came first
    stack: str
    primitive: str
    value: str
    where: str
    cause: str


class _Val(NamedTuple):
    value: Any
    nan: bool
    inf: bool
    origin: _Origin | None = None  # None: finite, or a constant's NaN/Inf not used yet
    backward: bool = False  # its NaN/Inf got here only through the backward pass

    @property
    def bad(self) -> bool:
        return self.nan or self.inf


def _val(x: Any, parent: _Val | None = None) -> _Val:
    """``x`` with its flags; a NaN/Inf in ``x``, a part of ``parent``, keeps the parent's origin."""
    a = x if hasattr(x, "dtype") else np.asarray(x)
    if not jax.dtypes.issubdtype(a.dtype, jnp.inexact):  # ints, bools, keys, tokens
        return _Val(x, False, False)
    a = np.asarray(a)
    nan, inf = bool(np.isnan(a).any()), bool(np.isinf(a).any())
    keep = parent is not None and (nan or inf)
    return _Val(x, nan, inf, parent.origin if keep else None, keep and parent.backward)


def _first(vals: Sequence[_Val]) -> tuple[_Origin | None, bool]:
    """The earliest origin in ``vals``, and whether it reached them only through the backward pass."""
    tainted = [v for v in vals if v.origin is not None]
    if not tainted:
        return None, False
    origin = min((v.origin for v in tainted), key=lambda o: o.seq)
    return origin, all(v.backward for v in tainted if v.origin == origin)


def _parse(stack: str) -> tuple[str, set[str]]:
    """``transpose(jvp(sequential))/dense`` -> (``sequential/dense``, {transpose, jvp})."""
    parts, transforms = [], set()
    for part in stack.split("/") if stack else []:
        while match := _TRANSFORM.match(part):
            transforms.add(match.group(1))
            part = match.group(2)
        parts += [part] if part else []
    return "/".join(parts), transforms


class _Interpreter:
    def __init__(self) -> None:
        self.seq = itertools.count()
        self.saw_backward = False

    def closed(self, jaxpr: Any, args: Sequence[_Val], stack: str) -> list[_Val]:
        consts = jaxpr.consts if isinstance(jaxpr, ClosedJaxpr) else ()
        jaxpr = jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr
        env = {**{v: _val(c) for v, c in zip(jaxpr.constvars, consts)}, **dict(zip(jaxpr.invars, args))}

        def read(atom: Any) -> _Val:
            return _val(atom.val) if isinstance(atom, Literal) else env[atom]

        for eqn in jaxpr.eqns:  # a sub-jaxpr's name stacks are relative to its equation's
            inner = "/".join(s for s in (stack, str(eqn.source_info.name_stack)) if s)
            env.update(zip(eqn.outvars, self.eqn(eqn, [read(a) for a in eqn.invars], inner)))
        return [read(a) for a in jaxpr.outvars]

    def eqn(self, eqn: Any, ins: list[_Val], stack: str) -> list[_Val]:
        backward = "transpose" in _parse(stack)[1]
        self.saw_backward |= backward

        def origin(value: str, cause: str) -> _Origin:
            where = _summarize(eqn.source_info) if _summarize else ""
            return _Origin(next(self.seq), stack, eqn.primitive.name, value, where, cause)

        # A constant's NaN/Inf (a -inf mask, a NaN learning rate) counts from its first use.
        for k, i in enumerate(ins):
            if i.bad and i.origin is None:
                ins[k] = i._replace(origin=origin("NaN" if i.nan else "Inf", "from a constant holding it"))
        params = eqn.primitive.get_bind_params(eqn.params)
        subfuns, params = params if isinstance(params, tuple) else ((), params)  # a pair in older JAX
        with eqn.ctx.manager:
            outs = eqn.primitive.bind(*subfuns, *(i.value for i in ins), **params)
        outs = [_val(o) for o in (outs if eqn.primitive.multiple_results else [outs])]
        if not any(o.bad for o in outs):
            return outs
        stepped = self.descend(eqn, ins, stack)  # made inside a jit, scan, ...: find it there
        if stepped is not None and any(o.bad for o in stepped):
            return stepped
        new, result = None, []
        for o in outs:
            first, via = _first([i for i in ins if i.nan] if o.nan else [i for i in ins if i.bad])
            if o.bad and first is not None:  # an input's NaN/Inf passed on
                o = o._replace(origin=first, backward=via or backward)
            elif o.bad:
                cause = "from inputs that held no NaN" if any(i.bad for i in ins) else "from finite inputs"
                new = new or origin("NaN" if o.nan else "Inf", cause)
                o = o._replace(origin=new)
            result.append(o)
        return result

    def descend(self, eqn: Any, ins: list[_Val], stack: str) -> list[_Val] | None:
        """Reruns a higher-order equation one inner equation at a time; None for a primitive."""
        name, p = eqn.primitive.name, eqn.params
        if name == "scan" and p["length"]:
            n_c, n_k, steps = p["num_consts"], p["num_carry"], range(p["length"])
            consts, carry, xs = ins[:n_c], ins[n_c : n_c + n_k], ins[n_c + n_k :]
            ys = {}
            for t in reversed(steps) if p["reverse"] else steps:
                out = self.closed(p["jaxpr"], [*consts, *carry, *(_val(x.value[t], x) for x in xs)], stack)
                carry, ys[t] = out[:n_k], out[n_k:]
            for column in zip(*(ys[t] for t in steps)):
                first, via = _first(column)
                carry.append(_val(jnp.stack([v.value for v in column]))._replace(origin=first, backward=via))
            return carry
        if name == "while":
            n_c, n_b = p["cond_nconsts"], p["body_nconsts"]
            cond, body, carry = ins[:n_c], ins[n_c : n_c + n_b], ins[n_c + n_b :]
            while bool(self.closed(p["cond_jaxpr"], [*cond, *carry], stack)[0].value):
                carry = self.closed(p["body_jaxpr"], [*body, *carry], stack)
            return carry
        if name == "cond":
            branches = p["branches"]
            return self.closed(branches[int(np.clip(ins[0].value, 0, len(branches) - 1))], ins[1:], stack)
        inner = p.get("jaxpr", p.get("call_jaxpr"))
        return self.closed(inner, ins, stack) if name in _CALLS and inner is not None else None


def _describe(origin: _Origin, backward: bool, saw_backward: bool) -> NonFinite:
    layer, transforms = _parse(origin.stack)
    if "transpose" in transforms or backward:  # backward: a derivative the forward pass made for the gradient
        phase, what, outside = "gradient", "the gradient", "the loss"
    elif layer or "jvp" in transforms or not saw_backward:
        phase, what, outside = "forward", "the forward pass", "the loss"
    else:
        phase, what, outside = "update", "the update", "the optimiser"
    what += f" of layer '{layer}'" if layer else f" outside any layer (e.g. {outside})"
    at = f" at {origin.where}" if origin.where else ""
    message = f"{what} ({origin.primitive}) produced {origin.value} {origin.cause}{at}"
    return NonFinite(layer, phase, origin.primitive, origin.value, origin.where, message)


def find_non_finite(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> NonFinite | None:
    """Names the first operation, and its layer, whose NaN or Inf reached ``fn``'s outputs.

    A debugging tool, not traceable itself: it traces ``fn``, then runs it one
    equation at a time on the concrete arguments (slowly), also inside ``jit``,
    ``remat``, custom derivatives, ``scan``, ``while`` and ``cond``. Call it
    outside ``jit``/``grad``/``vmap``, on the inputs of the step that went wrong.
    It reports the first operation, in execution order, that made NaN from inputs
    without NaN (or Inf from finite inputs) whose NaN/Inf reached an output, so
    values made and dropped (``jnp.where(x > 0, jnp.log(x), 0.0)``, a ``-inf``
    mask before a softmax) are not blamed. The layer is the ``jax.named_scope``
    that fnn's combinators give each child.

    Args:
        fn: a JAX-traceable function, typically a train step ``(params, state,
            opt_state, batch, key) -> (params, state, opt_state, logs)`` from
            :func:`fnn.make_train_step`.
        *args: its arguments; array leaves are traced, other leaves stay static.
        **kwargs: its keyword arguments, likewise.

    Returns:
        A :class:`NonFinite`, or ``None`` if every output is finite. An argument
        that already holds NaN/Inf is reported first (phase ``"input"``), its
        path, named after ``fn``'s parameters (``"params/dense/w"``), in ``where``.

    Raises:
        TypeError: if ``fn`` is not callable or does not take these arguments.

    Example:
        >>> import jax, jax.numpy as jnp, optax, fnn
        >>> model = fnn.Sequential([fnn.Dense(2, kernel_init="ones"), fnn.Lambda(jnp.log)])
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> opt = optax.sgd(0.1)
        >>> step = fnn.make_train_step(model, "mse", opt)
        >>> batch = (-jnp.ones((4, 3)), jnp.ones((4, 2)))  # x @ w = -3: the log of a negative number
        >>> found = fnn.train.find_non_finite(step, params, state, opt.init(params), batch, None)
        >>> found.layer, found.phase, found.primitive, found.value
        ('lambda', 'forward', 'log', 'NaN')
        >>> print(found.message.split(" at ")[0])
        the forward pass of layer 'lambda' (log) produced NaN from finite inputs
    """
    if not callable(fn):
        raise TypeError(f"find_non_finite: fn must be callable, got {type(fn).__name__} {fn!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to name the arguments by: args/0, kwargs/name
        signature = inspect.signature(lambda *args, **kwargs: None)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"find_non_finite: fn{signature} does not take these arguments: {e}") from None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(bound.arguments)
    for path, leaf in leaves:
        found = _val(leaf)
        if found.bad:
            value = "NaN" if found.nan else "Inf"
            message = f"argument '{path_str(path)}' already holds {value} before any operation ran"
            return NonFinite("", "input", "", value, path_str(path), message)
    dynamic = [i for i, (_, x) in enumerate(leaves) if isinstance(x, (jax.Array, np.ndarray, np.generic))]

    def flat(*arrays: Any) -> Any:
        values = [x for _, x in leaves]
        for i, a in zip(dynamic, arrays):
            values[i] = a
        call = inspect.BoundArguments(signature, jax.tree_util.tree_unflatten(treedef, values))
        return fn(*call.args, **call.kwargs)

    closed = jax.make_jaxpr(flat)(*(leaves[i][1] for i in dynamic))
    interpreter = _Interpreter()
    outs = interpreter.closed(closed, [_val(leaves[i][1]) for i in dynamic], "")
    origin, backward = _first([o for o in outs if o.bad])
    return None if origin is None else _describe(origin, backward, interpreter.saw_backward)
