"""Sharding policies and their checks, on abstract meshes (no devices needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

import fnn
from fnn import parallel

MESH = AbstractMesh((4, 2), ("data", "model"))


def decoder_params(kv_heads=None):
    model = fnn.Sequential(
        [
            fnn.Embedding(64, 32),
            fnn.Repeat(fnn.TransformerDecoderBlock(4, 128, num_key_value_heads=kv_heads), 2),
        ]
    )
    return jax.eval_shape(lambda k: model.init(k, fnn.Shape((8,), jnp.int32))[0], jax.random.key(0))


def test_tensor_parallel_then_fsdp_split_heads_and_hidden_units_then_the_largest_free_dimension():
    specs = parallel.partition_specs(
        decoder_params(), MESH, parallel.tensor_parallel(), parallel.fsdp(min_size=256)
    )
    block = specs["repeat"]
    assert block["attention"]["query"]["w"] == P(
        None, "data", "model", None
    )  # (copies, features, heads, dim)
    assert block["attention"]["output"]["w"] == P(None, "model", None, "data")  # row-parallel
    assert block["mlp"]["up"]["w"] == P(None, "data", "model")  # column-parallel
    assert block["mlp"]["down"]["w"] == P(None, "model", "data")  # row-parallel
    assert block["norm_mlp"]["scale"] == P(None, None)  # small: replicated
    assert specs["embedding"]["table"] == P("data", None)


def test_optimizer_state_follows_its_parameters():
    params = {"dense": {"w": jnp.zeros((16, 8)), "b": jnp.zeros(8)}}
    specs = parallel.partition_specs(params, MESH, parallel.fsdp(min_size=16))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    opt_specs = parallel.optimizer_specs(tx, tx.init(params), specs)
    adam = opt_specs[1][0]
    assert adam.mu == adam.nu == specs == {"dense": {"b": P(None), "w": P("data", None)}}
    assert adam.count == P()


def test_by_path_takes_explicit_specs_first_match_wins():
    params = {"embedding": {"table": jnp.zeros((64, 32))}, "dense": {"w": jnp.zeros((32, 8))}}
    specs = parallel.partition_specs(
        params, MESH, parallel.by_path({"embedding/*": P("model", None), "*": P(None, None)})
    )
    assert specs == {"embedding": {"table": P("model", None)}, "dense": {"w": P(None, None)}}


@pytest.mark.parametrize(
    "params, policy, match",
    [
        (decoder_params(kv_heads=1), parallel.tensor_parallel(),
         r"partition_specs: repeat/attention/key/w has shape \(2, 32, 1, 8\); its dimension 2 \(1\) does not "
         r"split evenly over \('model',\) \(2 devices\)"),
        ({"w": jnp.zeros((4, 4))}, parallel.by_path({"w": P("tensor", None)}),
         r"partition_specs: w's spec P\('tensor', None\) names 'tensor', not an axis of the mesh"),
        ({"w": jnp.zeros((4, 4))}, parallel.by_path({"w": P("data", "data")}),
         r"partition_specs: w's spec P\('data', 'data'\) uses the axis 'data' twice"),
    ],
)  # fmt: skip
def test_a_spec_that_cannot_work_is_an_error_naming_the_parameter(params, policy, match):
    with pytest.raises(ValueError, match=match):
        parallel.partition_specs(params, MESH, policy)


def test_make_mesh_checks_its_sizes():
    assert parallel.make_mesh(data=len(jax.devices())).axis_names == ("data",)
    with pytest.raises(
        ValueError, match=r"make_mesh: axis sizes \{'data': 3, 'model': 2\} multiply to 6, not to"
    ):
        parallel.make_mesh(data=3, model=2)
    with pytest.raises(ValueError, match=r"make_mesh: model must be a positive int, got 0"):
        parallel.make_mesh(data=1, model=0)


def test_fit_needs_a_mesh_to_shard_over():
    x, y = jnp.zeros((8, 3)), jnp.zeros((8,), jnp.int32)
    with pytest.raises(ValueError, match=r"fit: sharding needs a mesh to split the params over"):
        fnn.fit(
            fnn.Dense(2), x, y, loss="sparse_categorical_crossentropy", sharding=[parallel.fsdp()], verbose=0
        )
