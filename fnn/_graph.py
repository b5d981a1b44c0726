"""The dataflow graph of a computation: nodes are operations, edges are tensors.

:func:`graph` traces a function (or a model) to a jaxpr and turns it into a
:class:`Graph`: one node per primitive operation, grouped by the layer that
ran it (fnn's combinators run each child under ``jax.named_scope``), and one
edge per tensor, labelled with its shape and dtype. Calls (jit, custom
derivatives) are inlined; loops and conditionals stay single nodes.

With ``backward=True`` the graph is that of ``jax.value_and_grad``: the
forward pass, then the reverse-mode pass that computes the gradient, each node
marked as forward or backward, as lectures draw backpropagation.

Renderings: :meth:`Graph.to_text` (terminals), :meth:`Graph.to_dot` (pure
Python; nested clusters per layer), :meth:`Graph.collapse` (one node per
layer, for large models), and :meth:`Graph.to_svg` / :meth:`Graph.to_png`
through Graphviz's ``dot`` program when it is installed.

Example:
    >>> import fnn
    >>> model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(3, name="head")])
    >>> g = fnn.graph(model, (4,))
    >>> g.groups()
    ['dense', 'head']
    >>> [e.label for e in g.outputs]
    ['f32[1,3]']
    >>> print(g.collapse().to_text())
    input x f32[1,4]
    [dense] 4 ops <- x -> f32[1,8]
    [head] 3 ops <- dense -> f32[1,3]
    output 0 <- head
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_int
from fnn._core import Layer, abstract_init, as_shape, batched_struct, path_str
from fnn._io import atomic_write_bytes

# Primitives whose inner jaxpr is inlined: they only wrap a computation.
_CALLS = {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "remat",
    "remat2",  # jax.checkpoint's name since JAX 0.4
    "checkpoint",
}
_TRANSFORM = re.compile(r"^(\w+)\((.*)\)$")
_DTYPE_ABBREV = {"float": "f", "bfloat": "bf", "int": "i", "uint": "u", "complex": "c"}


def _abbrev(dtype: Any) -> str:
    name = str(np.dtype(dtype)) if not jnp.issubdtype(dtype, jax.dtypes.prng_key) else str(dtype)
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    if match and match.group(1) in _DTYPE_ABBREV:
        return _DTYPE_ABBREV[match.group(1)] + match.group(2)
    return name


@dataclasses.dataclass(frozen=True)
class Edge:
    """A tensor: made by node ``source``, read by the nodes in ``targets``."""

    id: int
    shape: tuple[int, ...]
    dtype: str
    source: str
    targets: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``f32[2,8]``."""
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


@dataclasses.dataclass(frozen=True)
class Node:
    """An operation (``kind="op"``), a graph input or a graph output.

    Attributes:
        id: unique node id.
        op: the primitive's name (``dot_general``), the input's name, or ``output i``.
        kind: ``"op"``, ``"input"`` or ``"output"``.
        group: the layer path that ran it (``head/dense``); ``""`` outside any layer.
        backward: part of the reverse-mode (gradient) pass.
        inputs: the edges it reads.
        outputs: the edges it makes.
        count: how many operations it stands for (collapsed graphs).
    """

    id: str
    op: str
    kind: str = "op"
    group: str = ""
    backward: bool = False
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()
    count: int = 1


def _is_var(atom: Any) -> bool:
    """A jaxpr variable (not a literal)."""
    from jax.extend.core import Var  # here, not at import: it loads JAX's profiler (~25 ms)

    return isinstance(atom, Var)


def _parse_scope(name_stack: str) -> tuple[str, bool]:
    """``transpose(jvp(head))/dense`` -> (``head/dense``, backward=True)."""
    parts, backward = [], False
    for part in name_stack.split("/") if name_stack else []:
        while match := _TRANSFORM.match(part):
            backward |= match.group(1) == "transpose"
            part = match.group(2)
        if part:
            parts.append(part)
    return "/".join(parts), backward


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.edges: dict[int, dict] = {}

    def edge(self, aval: Any, source: str) -> int:
        key = len(self.edges)
        self.edges[key] = {
            "shape": tuple(aval.shape),
            "dtype": _abbrev(aval.dtype),
            "source": source,
            "targets": [],
        }
        return key

    def node(self, **fields: Any) -> Node:
        node = Node(id=f"n{len(self.nodes)}", **fields)
        self.nodes.append(node)
        for e in node.inputs:
            self.edges[e]["targets"].append(node.id)
        return node

    def walk(self, jaxpr: Any, env: dict, scope: str) -> None:
        for eqn in jaxpr.eqns:
            own, backward = _parse_scope(str(eqn.source_info.name_stack))
            group = "/".join(p for p in (scope, own) if p)
            inner = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
            ins = [env[v] for v in eqn.invars if _is_var(v) and v in env]
            if eqn.primitive.name in _CALLS and inner is not None:
                inner_jaxpr = getattr(inner, "jaxpr", inner)
                inner_env = {
                    iv: env[ov] for iv, ov in zip(inner_jaxpr.invars, eqn.invars) if _is_var(ov) and ov in env
                }
                self.walk(inner_jaxpr, inner_env, group)
                for ov, iv in zip(eqn.outvars, inner_jaxpr.outvars):
                    if _is_var(iv) and iv in inner_env:
                        env[ov] = inner_env[iv]
                continue
            node_id = f"n{len(self.nodes)}"
            outs = [self.edge(v.aval, node_id) for v in eqn.outvars]
            self.node(
                op=eqn.primitive.name, group=group, backward=backward, inputs=tuple(ins), outputs=tuple(outs)
            )
            env.update(zip(eqn.outvars, outs))

    def build(self, closed: Any, input_names: Sequence[str]) -> Graph:
        env: dict = {}
        constants = [(f"constant {i}", var) for i, var in enumerate(closed.jaxpr.constvars)]
        for name, var in [*zip(input_names, closed.jaxpr.invars), *constants]:
            env[var] = self.edge(var.aval, f"n{len(self.nodes)}")
            self.node(op=name, kind="input", outputs=(env[var],))
        self.walk(closed.jaxpr, env, "")
        outputs = []
        for i, var in enumerate(closed.jaxpr.outvars):
            if var in env:
                self.node(op=f"output {i}", kind="output", inputs=(env[var],))
                outputs.append(env[var])
        edges = {
            k: Edge(k, e["shape"], e["dtype"], e["source"], tuple(e["targets"]))
            for k, e in self.edges.items()
        }
        return Graph(tuple(self.nodes), edges, tuple(edges[k] for k in outputs))


@dataclasses.dataclass(frozen=True)
class Graph:
    """A dataflow graph: nodes (operations, inputs, outputs) and edges (tensors).

    Attributes:
        nodes: every node, in execution order.
        edges: ``{edge id: Edge}``.
        outputs: the edges the computation returns.
    """

    nodes: tuple[Node, ...]
    edges: dict[int, Edge]
    outputs: tuple[Edge, ...]

    def groups(self) -> list[str]:
        """The layer paths that ran operations, in first-use order."""
        return list(dict.fromkeys(n.group for n in self.nodes if n.kind == "op" and n.group))

    def ops(self) -> list[Node]:
        """The operation nodes."""
        return [n for n in self.nodes if n.kind == "op"]

    def collapse(self, depth: int = 1) -> Graph:
        """One node per layer (the first ``depth`` components of its path).

        Edges inside a layer disappear; those between layers stay, once each.
        Forward and backward operations of a layer stay apart. Parameters
        (``params/...``, ``state/...`` inputs) read by one layer only fold into it.
        """
        depth = check_int("Graph.collapse", "depth", depth)

        def group_of(n: Node) -> str:
            if n.kind != "op" or not n.group:
                return n.id
            return f"g:{'/'.join(n.group.split('/')[:depth])}" + (" (backward)" if n.backward else "")

        owner = {n.id: group_of(n) for n in self.nodes}
        readers: dict[str, set[str]] = {}
        for n in self.nodes:
            for e in n.inputs:
                readers.setdefault(self.edges[e].source, set()).add(owner[n.id])
        for n in self.nodes:
            only = readers.get(n.id, set())
            weights = n.op.startswith(("params/", "state/")) or n.op in ("params", "state")
            if n.kind == "input" and weights and len(only) == 1 and next(iter(only)).startswith("g:"):
                owner[n.id] = next(iter(only))
        members: dict[str, list[Node]] = {}
        for n in self.nodes:
            members.setdefault(owner[n.id], []).append(n)
        rank = {"input": 0, "op": 1, "output": 2}

        def place(item: tuple[str, list[Node]]) -> tuple[int, int]:  # inputs, ops in order, outputs
            key, parts = item
            first = next((p for p in parts if p.kind == "op"), parts[0]) if key.startswith("g:") else parts[0]
            return rank[first.kind], self.nodes.index(first)

        members = dict(sorted(members.items(), key=place))
        edges = {}
        for e in self.edges.values():
            source = owner[e.source]
            targets = tuple(dict.fromkeys(owner[t] for t in e.targets if owner[t] != source))
            if targets:
                edges[e.id] = dataclasses.replace(e, source=source, targets=targets)
        nodes = []
        for key, parts in members.items():
            if key.startswith("g:"):
                ops = [p for p in parts if p.kind == "op"]
                group = "/".join(ops[0].group.split("/")[:depth])
                node = Node(key, group, group=group, backward=ops[0].backward, count=len(ops))
            else:
                (node,) = parts
            nodes.append(
                dataclasses.replace(
                    node,
                    inputs=tuple(k for k, e in edges.items() if key in e.targets),
                    outputs=tuple(k for k, e in edges.items() if e.source == key),
                )
            )
        return Graph(tuple(nodes), edges, tuple(edges.get(e.id, e) for e in self.outputs))

    def _name(self, node_id: str) -> str:
        node = next(n for n in self.nodes if n.id == node_id)
        if node.id.startswith("g:"):
            return node.group + (" (backward)" if node.backward else "")
        return node.op

    def to_text(self) -> str:
        """One line per node: ``[layer] op <- inputs -> output shapes``."""
        lines = []
        for n in self.nodes:
            outs = " ".join(self.edges[e].label for e in n.outputs)
            sources = ", ".join(dict.fromkeys(self._name(self.edges[e].source) for e in n.inputs))
            if n.kind == "input":
                lines.append(f"input {n.op} {outs}")
            elif n.kind == "output":
                lines.append(f"{n.op} <- {sources}")
            else:
                what = f"{n.count} op{'s' * (n.count > 1)}" if n.id.startswith("g:") else n.op
                mark = " (backward)" if n.backward else ""
                where = f"[{n.group}] " if n.group else ""
                lines.append(f"{where}{what}{mark} <- {sources or '-'} -> {outs}")
        return "\n".join(lines)

    def to_dot(self, path: str | Path | None = None, *, name: str = "fnn") -> str:
        """Graphviz DOT source: one cluster per layer (nested), edges labelled with shapes.

        Written atomically to ``path`` when given (render with ``dot -Tsvg``).
        """
        lines = [
            f'digraph "{name}" {{',
            "  rankdir=TB;",
            '  node [shape=box, style="rounded,filled", fillcolor=white];',
        ]
        tree: dict = {}
        for n in self.nodes:
            where = tree
            for part in n.group.split("/") if n.group else []:
                where = where.setdefault(part, {})
            where.setdefault("", []).append(n)
        counter = iter(range(1 << 30))

        def emit(where: dict, path: str, indent: str) -> None:
            for n in where.get("", []):
                if n.kind == "input":
                    attrs = f'label="{_escape(n.op)}", shape=ellipse, fillcolor="#e8f0fe"'
                elif n.kind == "output":
                    attrs = f'label="{_escape(n.op)}", shape=ellipse, fillcolor="#e6f4ea"'
                else:
                    label = f"{n.op} ({n.count} op{'s' * (n.count > 1)})" if n.id.startswith("g:") else n.op
                    fill = "#fde7e9" if n.backward else "white"
                    attrs = f'label="{_escape(label)}", fillcolor="{fill}"'
                lines.append(f'{indent}"{n.id}" [{attrs}];')
            for part, child in where.items():
                if part == "":
                    continue
                full = f"{path}/{part}" if path else part
                lines.append(f"{indent}subgraph cluster_{next(counter)} {{")
                lines.append(f'{indent}  label="{_escape(full)}"; style=rounded; color="#888888";')
                emit(child, full, indent + "  ")
                lines.append(f"{indent}}}")

        emit(tree, "", "  ")
        for e in self.edges.values():
            for t in e.targets:
                lines.append(f'  "{e.source}" -> "{t}" [label="{e.label}"];')
        lines.append("}")
        text = "\n".join(lines)
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    def _render(self, fmt: str, path: str | Path | None) -> bytes:
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError(
                f"Graph.to_{fmt} needs Graphviz's `dot` program, which is not installed "
                "(e.g. `apt install graphviz` or `brew install graphviz`); Graph.to_dot() works without it"
            )
        done = subprocess.run(
            [dot, f"-T{fmt}"], input=self.to_dot().encode(), capture_output=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"Graphviz failed: {done.stderr.decode(errors='replace')}")
        if path is not None:
            atomic_write_bytes(path, done.stdout)
        return done.stdout

    def _repr_html_(self) -> str:
        """For notebooks: the drawing as inline SVG, or where Graphviz is missing, the text form and why."""
        from fnn import _display

        if shutil.which("dot") is not None:
            return _display.block(_display.inline_svg(self.to_svg()))
        return _display.block(
            _display.paragraph(
                "Graphviz's `dot` is not installed, so here is the graph as text (to_text()):"
            ),
            _display.preformatted(self.to_text()),
        )

    def to_svg(self, path: str | Path | None = None) -> bytes:
        """SVG through Graphviz (written atomically to ``path`` when given)."""
        return self._render("svg", path)

    def to_png(self, path: str | Path | None = None) -> bytes:
        """PNG through Graphviz (written atomically to ``path`` when given)."""
        return self._render("png", path)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# Operations that only move or re-type values, looked through to find what made an output.
_MOVES = {
    "reshape",
    "convert_element_type",
    "squeeze",
    "expand_dims",
    "broadcast_in_dim",
    "copy",
    "transpose",
}


def probability_output(g: Graph) -> str | None:
    """``"softmax"`` or ``"sigmoid"`` when ``g``'s one output is made by one of them, else ``None``.

    Softmax is recognised by its shape in the graph, ``exp(z) / sum(exp(z))``
    (``jax.nn.softmax``, a ``Dense(..., "softmax")``, or the formula written out
    in a Lambda), also inside ``Remat`` and other calls, which the graph inlines.

    Examples:
        >>> import fnn
        >>> probability_output(graph(fnn.Dense(3, "softmax"), (4,))), probability_output(graph(fnn.Dense(3), (4,)))
        ('softmax', None)
    """
    if len(g.outputs) != 1:
        return None
    nodes = {node.id: node for node in g.nodes}

    def maker(edge: int) -> Node:
        node = nodes[g.edges[edge].source]
        while node.op in _MOVES and node.inputs:
            node = nodes[g.edges[node.inputs[0]].source]
        return node

    last = maker(g.outputs[0].id)
    if last.op == "logistic":
        return "sigmoid"
    if last.op == "div" and len(last.inputs) == 2:
        numerator, denominator = maker(last.inputs[0]), maker(last.inputs[1])
        summed = maker(denominator.inputs[0]) if denominator.op == "reduce_sum" else None
        # the same exp, or exp of the same tensor written twice: exp(z) / exp(z).sum(-1)
        if (
            numerator.op == "exp"
            and summed is not None
            and summed.op == "exp"
            and summed.inputs == numerator.inputs
        ):
            return "softmax"
    return None


def graph(fn: Callable | Layer, *example_args: Any, backward: bool = False, train: bool = False) -> Graph:
    """Traces ``fn`` on example arguments into a :class:`Graph`.

    Args:
        fn: a function of arrays (pytrees allowed), or a :class:`fnn.Layer`.
        *example_args: arrays or ``jax.ShapeDtypeStruct`` s to trace with. For a
            layer, the per-example input shape instead: the graph is that of
            ``apply(params, state, x)`` on a batch of one, its inputs named
            ``params/...``, ``state/...`` and ``x``.
        backward: the graph of ``jax.value_and_grad(fn)`` (gradient with respect
            to the first argument; ``fn`` must return a scalar). For a layer,
            of the sum of its outputs with respect to its params.
        train: for a layer, trace ``apply`` in training mode (dropout active).

    Returns:
        The :class:`Graph`.

    Raises:
        ValueError: with ``backward=True`` when ``fn`` does not return a scalar.
    """
    if isinstance(fn, Layer):
        if len(example_args) != 1:
            raise ValueError("graph: for a Layer, pass one argument: the per-example input shape")
        model, shape = fn, as_shape(example_args[0])
        params, state = abstract_init(model, shape)
        key = jax.eval_shape(lambda: jax.random.key(0)) if train else None

        def forward(params: Any, state: Any, x: Any, key: Any = None) -> Any:
            return model.apply(params, state, x, train=train, key=key)[0]

        if backward:
            fn = lambda params, state, x, *key: sum(
                jnp.sum(y) for y in jax.tree.leaves(forward(params, state, x, *key))
            )  # noqa: E731
        else:
            fn = forward
        example_args = (params, state, batched_struct(shape, 1), *([key] if train else []))
        names = ["params", "state", "x", "key"]
    else:
        names = [f"arg{i}" for i in range(len(example_args))]
    traced = fn
    if backward:
        out = jax.eval_shape(fn, *example_args)
        if not (hasattr(out, "shape") and out.shape == ()):
            raise ValueError(f"graph(backward=True): fn must return a scalar, got {out}")
        traced = jax.value_and_grad(fn)
    closed = jax.make_jaxpr(traced)(*example_args)
    input_names = [
        f"{names[i]}/{path_str(p)}" if path_str(p) else names[i]
        for i, arg in enumerate(example_args)
        for p, _ in jax.tree_util.tree_flatten_with_path(arg)[0]
    ]
    return _Builder().build(closed, input_names)
