"""How each fnn layer's weights are laid out in PyTorch and in Keras 3: the name and layout maps.

A :class:`Layout` turns one layer's variables ``{"params": ..., "state": ...}``
into the foreign tensors it corresponds to, ``{suffix: array}``, and back. The
suffixes are relative to the layer's foreign name (``weight`` under
``features.0``; ``vars/0`` under ``layers/dense``). Every map is a permutation,
reshape, split or concatenation, except PyTorch's two recurrent biases, which
add up to fnn's one (exported as ``[b, 0]``).

PyTorch (``torch.nn``):

============================  =====================================================
fnn                           PyTorch
============================  =====================================================
Dense ``w (in, out)``         Linear ``weight (out, in)`` = ``w.T``, ``bias``
Conv*D ``w (*k, in/g, out)``  Conv*d ``weight (out, in/g, *k)``, ``bias``
Conv*DTranspose               ConvTranspose*d ``weight (in, out, *k)``
``w (*k, out, in)``
DepthwiseConv2D               Conv2d(groups=C) ``weight (C*M, 1, kh, kw)``
BatchNorm scale, offset,      BatchNorm ``weight``, ``bias``, ``running_mean``,
mean, var                     ``running_var`` (``num_batches_tracked`` is ignored)
LayerNorm, GroupNorm,         ``weight``, ``bias``
RMSNorm
Embedding ``table``           Embedding ``weight``
RNN(LSTM/SimpleRNN cell)      LSTM/RNN ``weight_ih_l0 = w_x.T``, ``weight_hh_l0 =
                              w_h.T``, ``bias_ih_l0 + bias_hh_l0 = b``
RNN(GRU cell)                 GRU, gates (r, z, n) = fnn's (z, r, h) reordered,
                              ``bias_ih_l0 = b_x``, ``bias_hh_l0 = b_h``
Bidirectional                 one module, the backward weights ``*_l0_reverse``
MultiHeadAttention            MultiheadAttention ``in_proj_weight`` (q; k; v
``w (F, heads, dim)``         stacked, ``(heads*dim, F)`` each), ``in_proj_bias``,
                              ``out_proj.weight/bias`` (``q/k/v_proj_weight``
                              when the inputs' sizes differ)
TransformerEncoderBlock       TransformerEncoderLayer ``self_attn``, ``linear1``,
                              ``linear2``, ``norm1``, ``norm2``
GPT2Conv1D ``w (in, out)``    Hugging Face's ``Conv1D`` ``weight (in, out)`` = ``w``
                              (not transposed), ``bias``
ViTEmbeddings ``cls_token``,  Hugging Face's ``ViTEmbeddings``: ``cls_token``,
``position_embeddings``,      ``position_embeddings`` (same shapes),
``patch_embeddings/           ``patch_embeddings.projection.weight/bias`` (a
projection``                  Conv2d)
============================  =====================================================

Keras 3 stores a layer's variables positionally (``vars/0``, ``vars/1``, ...)
in the order the layer creates them; fnn's layouts already are Keras's except
DepthwiseConv2D (Keras's kernel ``(kh, kw, C, M)`` is fnn's reshaped) and the
GRU bias (Keras's ``(2, 3U)`` is ``[b_x, b_h]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

Variables = dict  # {"params": {...}, "state": {...}}


class Layout(NamedTuple):
    """One layer kind's foreign layout.

    Attributes:
        to_foreign: ``(variables, input_shape) -> {suffix: array}``.
        from_foreign: ``(tensors, like, input_shape) -> variables``: ``tensors``
            holds every suffix ``to_foreign`` names; ``like`` is the fnn layer's
            variables (arrays or shapes) to take structure from.
        optional: suffixes written on export but not needed on import (PyTorch's
            ``num_batches_tracked``).
        name: the foreign class name (Keras's snake-case class name, which its
            files use to name a layer's group); ``None`` where it does not apply.
    """

    to_foreign: Callable[[Variables, Any], dict[str, Any]]
    from_foreign: Callable[[dict[str, Any], Variables, Any], Variables]
    optional: tuple[str, ...] = ()
    name: str | Callable[[Variables], str] | None = None


# ---------------------------------------------------------------------- shared pieces


def _to_torch_kernel(w: Any) -> Any:
    """fnn ``(*k, a, b)`` -> PyTorch ``(b, a, *k)``: Linear, Conv*d and ConvTranspose*d alike."""
    n = w.ndim
    return w.transpose((n - 1, n - 2, *range(n - 2)))


def _from_torch_kernel(w: Any) -> Any:
    n = w.ndim
    return w.transpose((*range(2, n), 1, 0))


def _xp(*arrays: Any) -> Any:
    """numpy for numpy arrays (a load or an export: no XLA op to compile per shape), jax.numpy for
    the tracers of :func:`jax.eval_shape` (the shapes a layer expects)."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def _swap_first_gates(w: Any, axis: int) -> Any:
    """GRU gate blocks (a, b, c) -> (b, a, c): fnn/Keras (z, r, h) <-> PyTorch (r, z, n)."""
    a, b, c = _xp(w).split(w, 3, axis=axis)
    return _xp(w).concatenate([b, a, c], axis=axis)


def _params(v: Variables) -> dict:
    return v["params"]


def _keep(like: Variables, **parts: Any) -> Variables:
    """``{"params": ..., "state": ...}`` with what a layout does not cover taken from ``like``."""
    return {
        "params": parts.get("params", like["params"]),
        "state": {**like["state"], **parts.get("state", {})},
    }


def _weight_bias_torch() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        return {"weight": _to_torch_kernel(p["w"]), **({"bias": p["b"]} if "b" in p else {})}

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = {"w": _from_torch_kernel(t["weight"]), **({"b": t["bias"]} if "b" in _params(like) else {})}
        return _keep(like, params=p)

    return Layout(to, back)


def channels_first_rows(layout: Layout, shape: tuple[int, ...], foreign_first: bool = True) -> Layout:
    """A Dense's layout after a flatten of ``shape = (*spatial, C)`` in the other order than the
    foreign one: PyTorch flattens ``(C, *spatial)``, fnn's ``Flatten`` and Keras ``(*spatial, C)``
    (``foreign_first``: the foreign order is channels first). The kernel's rows are reordered."""
    n = len(shape)

    def rows(w: Any, channels_first: bool) -> Any:
        if channels_first:  # rows in (*spatial, C) order -> (C, *spatial)
            return w.reshape(*shape, -1).transpose((n - 1, *range(n - 1), n)).reshape(w.shape)
        return w.reshape(shape[-1], *shape[:-1], -1).transpose((*range(1, n), 0, n)).reshape(w.shape)

    def to(v: Variables, input_shape: Any) -> dict:
        w = rows(v["params"]["w"], foreign_first)
        return layout.to_foreign({**v, "params": {**v["params"], "w": w}}, input_shape)

    def back(t: dict, like: Variables, input_shape: Any) -> Variables:
        out = layout.from_foreign(t, like, input_shape)
        return {**out, "params": {**out["params"], "w": rows(out["params"]["w"], not foreign_first)}}

    return Layout(to, back, layout.optional, layout.name)


def _renamed(params: dict[str, str], state: dict[str, str] | None = None, *, optional: tuple = (), name=None):
    """A layout that renames fnn leaves to foreign suffixes and back, unchanged in value."""
    state = state or {}

    def to(v: Variables, shape: Any) -> dict:
        out = {params[k]: a for k, a in v["params"].items() if k in params}
        out.update({state[k]: a for k, a in v["state"].items() if k in state})
        return {**out, **{k: np.zeros((), np.int64) for k in optional}}  # optional: PyTorch's counters

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = {k: t[params[k]] for k in like["params"] if k in params}
        return _keep(like, params=p, state={k: t[state[k]] for k in like["state"] if k in state})

    return Layout(to, back, optional, name)


# ------------------------------------------------------------------------------ torch


def _rnn_kind(p: dict) -> str:
    """``lstm``, ``gru``, ``gru_reset_before`` or ``simple_rnn`` from an RNN's params."""
    gates = p["w_h"].shape[1] // p["w_h"].shape[0]
    if gates == 3:
        return "gru" if "b_x" in p else "gru_reset_before"
    return {4: "lstm", 1: "simple_rnn"}[gates]


def _torch_rnn(p: dict, suffix: str) -> dict:
    kind = _rnn_kind(p)
    if kind == "gru_reset_before":
        raise ValueError("PyTorch's GRU has no reset_after=False form: it has no layout for this GRU")
    if kind == "gru":
        return {
            f"weight_ih_{suffix}": _swap_first_gates(p["w_x"], 1).T,
            f"weight_hh_{suffix}": _swap_first_gates(p["w_h"], 1).T,
            f"bias_ih_{suffix}": _swap_first_gates(p["b_x"], 0),
            f"bias_hh_{suffix}": _swap_first_gates(p["b_h"], 0),
        }
    return {
        f"weight_ih_{suffix}": p["w_x"].T,
        f"weight_hh_{suffix}": p["w_h"].T,
        f"bias_ih_{suffix}": p["b"],
        f"bias_hh_{suffix}": _xp(p["b"]).zeros_like(p["b"]),  # PyTorch's second bias; fnn's b is their sum
    }


def _from_torch_rnn(t: dict, like: dict, suffix: str) -> dict:
    if _rnn_kind(like) == "gru":
        return {
            "w_x": _swap_first_gates(t[f"weight_ih_{suffix}"].T, 1),
            "w_h": _swap_first_gates(t[f"weight_hh_{suffix}"].T, 1),
            "b_x": _swap_first_gates(t[f"bias_ih_{suffix}"], 0),
            "b_h": _swap_first_gates(t[f"bias_hh_{suffix}"], 0),
        }
    return {
        "w_x": t[f"weight_ih_{suffix}"].T,
        "w_h": t[f"weight_hh_{suffix}"].T,
        "b": t[f"bias_ih_{suffix}"] + t[f"bias_hh_{suffix}"],
    }


def _rnn_torch() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        return _torch_rnn(_params(v), "l0")

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        return _keep(like, params=_from_torch_rnn(t, _params(like), "l0"))

    return Layout(to, back)


def _bidirectional_torch() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        return {**_torch_rnn(p["forward"], "l0"), **_torch_rnn(p["backward"], "l0_reverse")}

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        return _keep(
            like,
            params={
                "forward": _from_torch_rnn(t, p["forward"], "l0"),
                "backward": _from_torch_rnn(t, p["backward"], "l0_reverse"),
            },
        )

    return Layout(to, back)


def _attention_torch_to(p: dict, prefix: str = "") -> dict:
    q, k, v, o = p["query"], p["key"], p["value"], p["output"]
    heads, dim = q["w"].shape[1:]
    if v["w"].shape[2] != dim:
        raise ValueError(
            f"PyTorch's MultiheadAttention needs value_dim == key_dim, got {v['w'].shape[2]} and {dim}"
        )
    if o["w"].shape[2] != q["w"].shape[0]:
        raise ValueError("PyTorch's MultiheadAttention needs output_dim == the query's size")
    rows = [x["w"].reshape(x["w"].shape[0], -1).T for x in (q, k, v)]  # (heads * dim, F) each
    same = q["w"].shape == k["w"].shape == v["w"].shape and q["w"].shape[0] == heads * dim
    out = (
        {f"{prefix}in_proj_weight": _xp(*rows).concatenate(rows, axis=0)}
        if same
        else {f"{prefix}{n}_proj_weight": r for n, r in zip("qkv", rows)}
    )
    if "b" in q:
        out[f"{prefix}in_proj_bias"] = _xp(q["b"]).concatenate([x["b"].reshape(-1) for x in (q, k, v)])
    out[f"{prefix}out_proj.weight"] = o["w"].reshape(-1, o["w"].shape[2]).T
    if "b" in o:
        out[f"{prefix}out_proj.bias"] = o["b"]
    return out


def _attention_torch_back(t: dict, like: dict, prefix: str = "") -> dict:
    shapes = {n: like[n]["w"].shape for n in ("query", "key", "value")}
    if f"{prefix}in_proj_weight" in t:
        rows = _xp(t[f"{prefix}in_proj_weight"]).split(t[f"{prefix}in_proj_weight"], 3, axis=0)
    else:
        rows = [t[f"{prefix}{n}_proj_weight"] for n in "qkv"]
    biases = (
        _xp(t[f"{prefix}in_proj_bias"]).split(t[f"{prefix}in_proj_bias"], 3)
        if "b" in like["query"]
        else [None] * 3
    )
    out = {}
    for (part, shape), r, b in zip(shapes.items(), rows, biases):
        out[part] = {"w": r.T.reshape(shape), **({} if b is None else {"b": b.reshape(shape[1:])})}
    o_shape = like["output"]["w"].shape
    out["output"] = {"w": t[f"{prefix}out_proj.weight"].T.reshape(o_shape)}
    if "b" in like["output"]:
        out["output"]["b"] = t[f"{prefix}out_proj.bias"]
    return out


def _attention_torch() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        return _attention_torch_to(_params(v))

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        return _keep(like, params=_attention_torch_back(t, _params(like)))

    return Layout(to, back)


_ENCODER_PARTS = {"ff_in": "linear1", "ff_out": "linear2", "norm_attention": "norm1", "norm_ff": "norm2"}


def _encoder_torch() -> Layout:
    linear, norm = _weight_bias_torch(), _renamed({"scale": "weight", "offset": "bias"})
    parts = {k: (linear if k.startswith("ff") else norm) for k in _ENCODER_PARTS}

    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        out = _attention_torch_to(p["attention"], "self_attn.")
        for k, layout in parts.items():
            sub = layout.to_foreign({"params": p[k], "state": {}}, None)
            out.update({f"{_ENCODER_PARTS[k]}.{s}": a for s, a in sub.items()})
        return out

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        out = {"attention": _attention_torch_back(t, p["attention"], "self_attn.")}
        for k, layout in parts.items():
            prefix = _ENCODER_PARTS[k] + "."
            sub = {s[len(prefix) :]: a for s, a in t.items() if s.startswith(prefix)}
            out[k] = layout.from_foreign(sub, {"params": p[k], "state": {}}, None)["params"]
        return _keep(like, params=out)

    return Layout(to, back)


def _separable_torch() -> Layout:
    conv = _weight_bias_torch()

    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        return {
            f"{part}.{s}": a
            for part in ("depthwise", "pointwise")
            for s, a in conv.to_foreign({"params": p[part], "state": {}}, None).items()
        }

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        out = {}
        for part in ("depthwise", "pointwise"):
            sub = {s.split(".", 1)[1]: a for s, a in t.items() if s.startswith(part + ".")}
            out[part] = conv.from_foreign(sub, {"params": p[part], "state": {}}, None)["params"]
        return _keep(like, params=out)

    return Layout(to, back)


def _vit_embeddings_torch() -> Layout:
    """Hugging Face's ``ViTEmbeddings``: two raw parameters and the patch convolution."""
    conv, own = _weight_bias_torch(), ("cls_token", "position_embeddings")
    prefix = "patch_embeddings.projection."

    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        projection = conv.to_foreign({"params": p["patch_embeddings"]["projection"], "state": {}}, None)
        return {**{k: p[k] for k in own}, **{prefix + s: a for s, a in projection.items()}}

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        sub = {s[len(prefix) :]: a for s, a in t.items() if s.startswith(prefix)}
        like_projection = {"params": p["patch_embeddings"]["projection"], "state": {}}
        projection = conv.from_foreign(sub, like_projection, None)["params"]
        params = {**p, **{k: t[k] for k in own}, "patch_embeddings": {"projection": projection}}
        return _keep(like, params=params)

    return Layout(to, back)


_NORM = {"scale": "weight", "offset": "bias"}
_CONVS = (
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv2D",
)

TORCH: dict[str, Layout] = {
    "Dense": _weight_bias_torch(),
    **dict.fromkeys(_CONVS, _weight_bias_torch()),
    "SeparableConv2D": _separable_torch(),
    "BatchNorm": _renamed(
        _NORM, {"mean": "running_mean", "var": "running_var"}, optional=("num_batches_tracked",)
    ),
    "LayerNorm": _renamed(_NORM),
    "GroupNorm": _renamed(_NORM),
    "RMSNorm": _renamed(_NORM),
    "Embedding": _renamed({"table": "weight"}),
    "LearnedPositionalEmbedding": _renamed({"table": "weight"}),
    "RNN": _rnn_torch(),
    "Bidirectional": _bidirectional_torch(),
    "MultiHeadAttention": _attention_torch(),
    "TransformerEncoderBlock": _encoder_torch(),
    "GPT2Conv1D": _renamed({"w": "weight", "b": "bias"}),  # fnn.models' GPT-2: Conv1D's weight is (in, out)
    "ViTEmbeddings": _vit_embeddings_torch(),  # fnn.models' ViT
}

# ------------------------------------------------------------------------------ keras


def _vars(arrays: list[Any], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}vars/{i}": a for i, a in enumerate(arrays)}


def _keras_positional(order: tuple[str, ...], state: tuple[str, ...] = (), name: str | None = None) -> Layout:
    """Keras's variables in creation order: those of ``order`` (params) then ``state`` the layer has."""

    def present(v: Variables) -> list[tuple[str, str]]:
        return [("params", k) for k in order if k in v["params"]] + [
            ("state", k) for k in state if k in v["state"]
        ]

    def to(v: Variables, shape: Any) -> dict:
        return _vars([v[part][k] for part, k in present(v)])

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        got: dict = {"params": {}, "state": {}}
        for i, (part, k) in enumerate(present(like)):
            got[part][k] = t[f"vars/{i}"]
        return _keep(like, params={**like["params"], **got["params"]}, state=got["state"])

    return Layout(to, back, name=name)


def _depthwise_keras(shape: Any, w: Any) -> Any:
    """fnn ``(kh, kw, 1, C*M)`` -> Keras ``(kh, kw, C, M)``."""
    channels = shape[-1]
    return w.reshape(*w.shape[:2], channels, w.shape[3] // channels)


def _depthwise_keras_layout(separable: bool) -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        if separable:
            dw, pw = p["depthwise"], p["pointwise"]
            return _vars([_depthwise_keras(shape, dw["w"]), pw["w"], *([pw["b"]] if "b" in pw else [])])
        return _vars([_depthwise_keras(shape, p["w"]), *([p["b"]] if "b" in p else [])])

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        if separable:
            dw_shape = p["depthwise"]["w"].shape
            pw = {"w": t["vars/1"], **({"b": t["vars/2"]} if "b" in p["pointwise"] else {})}
            out = {"depthwise": {**p["depthwise"], "w": t["vars/0"].reshape(dw_shape)}, "pointwise": pw}
        else:
            out = {"w": t["vars/0"].reshape(p["w"].shape), **({"b": t["vars/1"]} if "b" in p else {})}
        return _keep(like, params=out)

    name = "separable_conv2d" if separable else "depthwise_conv2d"
    return Layout(to, back, name=name)


def _keras_cell(p: dict) -> list[Any]:
    bias = _xp(p["b_x"]).stack([p["b_x"], p["b_h"]]) if "b_x" in p else p["b"]
    return [p["w_x"], p["w_h"], bias]


def _from_keras_cell(t: dict, like: dict, prefix: str) -> dict:
    w_x, w_h, bias = (t[f"{prefix}vars/{i}"] for i in range(3))
    return {"w_x": w_x, "w_h": w_h, **({"b_x": bias[0], "b_h": bias[1]} if "b_x" in like else {"b": bias})}


def _rnn_class(v: Variables) -> str:
    return {"gru_reset_before": "gru"}.get(k := _rnn_kind(_params(v)), k)


def _rnn_keras() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        return _vars(_keras_cell(_params(v)), "cell/")

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        return _keep(like, params=_from_keras_cell(t, _params(like), "cell/"))

    return Layout(to, back, name=_rnn_class)


def _bidirectional_keras() -> Layout:
    sides = {"forward": "forward_layer/cell/", "backward": "backward_layer/cell/"}

    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        return {
            k: a for side, prefix in sides.items() for k, a in _vars(_keras_cell(p[side]), prefix).items()
        }

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        return _keep(
            like, params={side: _from_keras_cell(t, p[side], prefix) for side, prefix in sides.items()}
        )

    return Layout(to, back, name="bidirectional")


_MHA_PARTS = {
    "query": "query_dense/",
    "key": "key_dense/",
    "value": "value_dense/",
    "output": "output_dense/",
}


def _attention_keras() -> Layout:
    def to(v: Variables, shape: Any) -> dict:
        p = _params(v)
        return {
            k: a
            for part, prefix in _MHA_PARTS.items()
            for k, a in _vars([p[part]["w"], *([p[part]["b"]] if "b" in p[part] else [])], prefix).items()
        }

    def back(t: dict, like: Variables, shape: Any) -> Variables:
        p = _params(like)
        out = {}
        for part, prefix in _MHA_PARTS.items():
            out[part] = {"w": t[f"{prefix}vars/0"], **({"b": t[f"{prefix}vars/1"]} if "b" in p[part] else {})}
        return _keep(like, params=out)

    return Layout(to, back, name="multi_head_attention")


def _keras_name(kind: str) -> str:
    """Keras's snake-case class name for fnn's kind, as its files name layer groups."""
    renamed = {"BatchNorm": "BatchNormalization", "LayerNorm": "LayerNormalization",
               "GroupNorm": "GroupNormalization", "RMSNorm": "RMSNormalization"}  # fmt: skip
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", renamed.get(kind, kind))  # Keras's to_snake_case
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")

KERAS: dict[str, Layout] = {
    "Dense": _keras_positional(("w", "b"), name="dense"),
    **{k: _keras_positional(("w", "b"), name=_keras_name(k)) for k in _CONVS if k != "DepthwiseConv2D"},
    "DepthwiseConv2D": _depthwise_keras_layout(separable=False),
    "SeparableConv2D": _depthwise_keras_layout(separable=True),
    **{k: _keras_positional(("scale", "offset"), ("mean", "var"), name=_keras_name(k)) for k in _NORMS},
    "RMSNorm": _keras_positional(("scale",), name="rms_normalization"),
    "Embedding": _keras_positional(("table",), name="embedding"),
    "RNN": _rnn_keras(),
    "Bidirectional": _bidirectional_keras(),
    "MultiHeadAttention": _attention_keras(),
}
