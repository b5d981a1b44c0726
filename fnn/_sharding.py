"""Sharding rules: which parameter is split along which mesh axis (FSDP, tensor parallel).

A *policy* maps one parameter, by its path (``"repeat/attention/query/w"``)
and shape, and the spec the policies before it chose, to a
``jax.sharding.PartitionSpec``. :func:`partition_specs` runs policies in order
over a params pytree and checks every result against the mesh, so a spec that
cannot work is an error naming the parameter, never a silent replication.
Placing arrays with those specs (:func:`shard`) is all the rest needs: inside
``jax.jit`` XLA's SPMD partitioner gathers FSDP-sharded weights where a layer
uses them, reduce-scatters their gradients, and inserts the all-reduces of
tensor-parallel blocks. Nothing here is a home-made collective.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fnn._checks import check_int
from fnn._core import path_str

Policy = Callable[[str, tuple[int, ...], PartitionSpec, Any], PartitionSpec]

MODEL_AXIS = "model"

# Megatron-style tensor parallelism for fnn's layer names: (path pattern, dimension split, counted
# from the end so that Repeat's leading copies axis changes nothing). Column-parallel first (the
# heads of q/k/v, the hidden units of an MLP's first layer), row-parallel second (attention's
# output, the MLP's last layer): one all-reduce per block.
_TENSOR_PARALLEL = (
    (r"(^|/)(query|key|value)/w$", -2),  # (features, heads, head_dim)
    (r"(^|/)(query|key|value)/b$", -2),  # (heads, head_dim)
    (r"(^|/)attention/output/w$", -3),  # (heads, head_dim, features)
    (r"(^|/)(up|gate|ff_in)/w$", -1),  # (features, hidden)
    (r"(^|/)(up|gate|ff_in)/b$", -1),
    (r"(^|/)(down|ff_out)/w$", -2),  # (hidden, features)
)


def make_mesh(devices: Any = None, **axes: int) -> Mesh:
    """A device mesh with named axes, e.g. ``make_mesh(data=4, model=2)``.

    Args:
        devices: the devices, ``jax.devices()`` by default.
        **axes: axis name -> size, in mesh order; the sizes multiply to the
            number of devices. None given: one ``"data"`` axis over them all.

    Raises:
        ValueError: for sizes that are not positive ints or do not multiply to
            the number of devices.

    Examples:
        >>> mesh = make_mesh(data=1)
        >>> mesh.axis_names, dict(mesh.shape)
        (('data',), {'data': 1})
    """
    devices = list(jax.devices() if devices is None else devices)
    axes = axes or {"data": len(devices)}
    sizes = {name: check_int("make_mesh", name, size) for name, size in axes.items()}
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(
            f"make_mesh: axis sizes {sizes} multiply to {math.prod(sizes.values())}, "
            f"not to the {len(devices)} devices"
        )
    return Mesh(np.array(devices, dtype=object).reshape(tuple(sizes.values())), tuple(sizes))


def _used(spec: PartitionSpec) -> set[str]:
    names: set[str] = set()
    for part in spec:
        names.update(part if isinstance(part, tuple) else () if part is None else (part,))
    return names


def _with_axis(spec: PartitionSpec, dim: int, axis: str) -> PartitionSpec:
    parts = list(spec)
    parts[dim] = axis if parts[dim] is None else (*_as_tuple(parts[dim]), axis)
    return PartitionSpec(*parts)


def _as_tuple(part: Any) -> tuple:
    return part if isinstance(part, tuple) else (part,)


def fsdp(axis: str = "data", *, min_size: int = 1024) -> Policy:
    """Fully sharded data parallel (ZeRO-3): split each large parameter along ``axis``.

    Every parameter of at least ``min_size`` elements is split along its
    largest dimension that the axis divides and no earlier policy split
    (nothing is split when none is). With the optimizer state sharded alike
    (:func:`optimizer_specs`), each device holds about ``1/size`` of both; XLA
    gathers a weight where a layer uses it and reduce-scatters its gradient.

    Args:
        axis: the mesh axis, the data axis by default (FSDP is data parallel
            whose copies are split, not replicated).
        min_size: smaller parameters (biases, norms) stay replicated.

    Examples:
        >>> from jax.sharding import AbstractMesh, PartitionSpec as P
        >>> policy = fsdp(min_size=16)
        >>> policy("dense/w", (64, 32), P(None, None), AbstractMesh((8,), ("data",)))
        P('data', None)
    """
    min_size = check_int("fsdp", "min_size", min_size, low=0)

    def policy(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Any) -> PartitionSpec:
        del path
        size = dict(mesh.shape)[axis]
        if math.prod(shape) < min_size or axis in _used(spec):
            return spec
        free = [d for d in range(len(shape)) if spec[d] is None and shape[d] % size == 0]
        if not free:
            return spec
        return _with_axis(spec, max(free, key=lambda d: (shape[d], -d)), axis)

    return policy


def tensor_parallel(axis: str = MODEL_AXIS) -> Policy:
    """Megatron-style tensor parallelism for fnn's attention and MLP blocks along ``axis``.

    Column-parallel: the heads of the query, key and value projections and the
    hidden units of an MLP's first layer (``up``, ``gate``, ``ff_in``);
    row-parallel: attention's ``output`` projection and the MLP's last layer
    (``down``, ``ff_out``). Each block then needs one all-reduce, which XLA
    inserts. Dimensions count from the end, so :func:`~fnn.Repeat`'s stacked
    copies are split the same way. Other parameters are left to later policies.

    Raises:
        ValueError: (from :func:`partition_specs`) when the axis does not divide
            the split dimension, e.g. fewer key/value heads than devices.

    Examples:
        >>> from jax.sharding import AbstractMesh, PartitionSpec as P
        >>> tp = tensor_parallel()
        >>> mesh = AbstractMesh((2, 4), ("data", "model"))
        >>> tp("block/attention/query/w", (64, 8, 8), P(None, None, None), mesh)
        P(None, 'model', None)
        >>> tp("block/mlp/down/w", (256, 64), P(None, None), mesh)
        P('model', None)
    """

    def policy(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Any) -> PartitionSpec:
        del mesh
        for pattern, dim in _TENSOR_PARALLEL:
            if re.search(pattern, path) and len(shape) >= -dim and spec[dim] is None:
                return _with_axis(spec, len(shape) + dim, axis)
        return spec

    return policy


def by_path(rules: Mapping[str, PartitionSpec]) -> Policy:
    """Explicit specs by glob pattern on the parameter path; the first matching pattern wins.

    Examples:
        >>> from jax.sharding import AbstractMesh, PartitionSpec as P
        >>> policy = by_path({"embedding/*": P("model", None)})
        >>> policy("embedding/table", (1000, 64), P(None, None), AbstractMesh((2,), ("model",)))
        P('model', None)
    """
    rules = dict(rules)

    def policy(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Any) -> PartitionSpec:
        del shape, mesh
        for pattern, chosen in rules.items():
            if fnmatch.fnmatchcase(path, pattern):
                return chosen
        return spec

    return policy


def _check_spec(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Any) -> PartitionSpec:
    sizes = dict(mesh.shape)
    if len(spec) > len(shape):
        raise ValueError(
            f"partition_specs: {path} {shape} has {len(shape)} dimensions, the spec {spec} {len(spec)}"
        )
    seen: set[str] = set()
    for dim, part in enumerate(spec):
        names = () if part is None else _as_tuple(part)
        for name in names:
            if name not in sizes:
                raise ValueError(
                    f"partition_specs: {path}'s spec {spec} names {name!r}, not an axis of the mesh {sizes}"
                )
            if name in seen:
                raise ValueError(f"partition_specs: {path}'s spec {spec} uses the axis {name!r} twice")
            seen.add(name)
        split = math.prod(sizes[n] for n in names)
        if shape[dim] % split:
            raise ValueError(
                f"partition_specs: {path} has shape {shape}; its dimension {dim} ({shape[dim]}) does not "
                f"split evenly over {names} ({split} devices) as its spec {spec} asks"
            )
    return spec


def partition_specs(params: Any, mesh: Any, *policies: Policy) -> Any:
    """One ``PartitionSpec`` per array of ``params``: the policies applied in order, then checked.

    Every array starts replicated; each policy may split it further.

    Args:
        params: a pytree of arrays (or ``jax.ShapeDtypeStruct`` s).
        mesh: a ``jax.sharding.Mesh`` (or ``AbstractMesh``).
        *policies: e.g. ``tensor_parallel(), fsdp()``.

    Returns:
        A pytree like ``params`` of ``PartitionSpec`` s.

    Raises:
        ValueError: for a spec that names an axis the mesh lacks, uses one
            twice, or asks for a split that does not divide the dimension,
            naming the parameter, its shape and the spec.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.sharding import AbstractMesh
        >>> params = {"dense": {"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)}}
        >>> partition_specs(params, AbstractMesh((8,), ("data",)), fsdp(min_size=64))
        {'dense': {'b': P(None,), 'w': P('data', None)}}
    """

    def spec_of(path: Any, leaf: Any) -> PartitionSpec:
        name, shape = path_str(path), tuple(jax.numpy.shape(leaf))
        spec = PartitionSpec(*([None] * len(shape)))
        for policy in policies:
            spec = policy(name, shape, spec, mesh)
        return _check_spec(name, shape, spec, mesh)

    return jax.tree_util.tree_map_with_path(spec_of, params)


def optimizer_specs(tx: optax.GradientTransformation, opt_state: Any, param_specs: Any) -> Any:
    """Specs for an optax state: each parameter-shaped leaf (Adam's moments ...) as its parameter.

    Other leaves (step counts) are replicated. Uses :func:`optax.tree_map_params`.
    """
    return optax.tree_map_params(
        tx,
        lambda _, spec: spec,
        opt_state,
        param_specs,
        transform_non_params=lambda leaf: PartitionSpec(*([None] * jax.numpy.ndim(leaf))),
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def named_shardings(mesh: Mesh, specs: Any) -> Any:
    """A pytree of ``PartitionSpec`` s as ``NamedSharding`` s on ``mesh``."""
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )


def shard(tree: Any, mesh: Mesh, specs: Any) -> Any:
    """``tree``'s arrays placed on ``mesh`` as ``specs`` say (a pytree of ``PartitionSpec`` s like it)."""
    return jax.device_put(tree, named_shardings(mesh, specs))


def device_bytes(tree: Any) -> dict[Any, int]:
    """Bytes of ``tree``'s arrays on each device (its shards), to check what sharding saves."""
    held: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for piece in leaf.addressable_shards:
            held[piece.device] = held.get(piece.device, 0) + piece.data.nbytes
    return held
