"""Attention against a NumPy reference; causal and padding masks; positional embeddings; errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import _random


def np_attention(params, x, mask=None, causal=False):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = x.astype(np.float64)
    q, k, v = (np.einsum("btf,fhd->bthd", x, p[n]["w"]) + p[n]["b"] for n in ("query", "key", "value"))
    batch, time, heads, dim = q.shape
    out = np.zeros((batch, time, heads, v.shape[-1]))
    for b in range(batch):
        for h in range(heads):
            for t in range(time):
                allowed = [s for s in range(time) if (not causal or s <= t) and (mask is None or mask[b, s])]
                scores = np.array([q[b, t, h] @ k[b, s, h] / np.sqrt(dim) for s in allowed])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[b, t, h] = sum(w * v[b, s, h] for w, s in zip(weights, allowed))
    return np.einsum("bthd,hdo->bto", out, p["output"]["w"]) + p["output"]["b"]


def setup(causal=False, **kwargs):
    layer = fnn.MultiHeadAttention(2, causal=causal, **kwargs)
    params, state = layer.init(jax.random.key(0), (5, 6))
    params = jax.tree.map(lambda a: a + 0.1 * _random.normal(jax.random.key(1), a.shape), params)
    x = np.random.default_rng(0).standard_normal((3, 5, 6)).astype(np.float32)
    return layer, params, x


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_numpy(causal):
    layer, params, x = setup(causal)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    (y, out_mask), _ = layer.apply(params, {}, (x, mask), train=False)
    np.testing.assert_array_equal(out_mask, mask)
    np.testing.assert_allclose(y, np_attention(params, x, mask, causal), rtol=1e-4, atol=1e-5)
    y_plain, _ = layer.apply(params, {}, x, train=False)
    np.testing.assert_allclose(y_plain, np_attention(params, x, None, causal), rtol=1e-4, atol=1e-5)


def test_causal_attention_never_sees_the_future():
    layer, params, x = setup(causal=True)
    y, _ = layer.apply(params, {}, x, train=False)
    for t in range(4):
        changed = x.copy()
        changed[:, t + 1 :] += 10.0
        y_changed, _ = layer.apply(params, {}, changed, train=False)
        np.testing.assert_allclose(y_changed[:, : t + 1], y[:, : t + 1], rtol=1e-5, atol=1e-6)
        assert not np.allclose(y_changed[:, t + 1 :], y[:, t + 1 :])


def test_padded_keys_are_ignored():
    layer, params, x = setup()
    mask = np.array([[1, 1, 1, 0, 0]] * 3, bool)
    (y, _), _ = layer.apply(params, {}, (x, mask), train=False)
    changed = x.copy()
    changed[:, 3:] = 99.0
    (y_changed, _), _ = layer.apply(params, {}, (changed, mask), train=False)
    np.testing.assert_allclose(y_changed[:, :3], y[:, :3], rtol=1e-5, atol=1e-6)


def test_attention_dropout_needs_a_key_and_is_off_in_eval():
    layer, params, x = setup(dropout=0.5)
    with pytest.raises(ValueError, match=r"MultiHeadAttention 'multi_head_attention' needs a PRNG key"):
        layer.apply(params, {}, x, train=True)
    y_eval, _ = layer.apply(params, {}, x, train=False)
    np.testing.assert_allclose(y_eval, np_attention(params, x), rtol=1e-4, atol=1e-5)


def test_positional_embeddings():
    table = np.asarray(fnn.sinusoidal_positions(4, 6))
    t, i = 3, 1
    assert table[t, 2 * i] == pytest.approx(np.sin(t / 10000 ** (2 * i / 6)), rel=1e-5)
    assert table[t, 2 * i + 1] == pytest.approx(np.cos(t / 10000 ** (2 * i / 6)), rel=1e-5)
    x = jnp.zeros((2, 4, 6))
    np.testing.assert_allclose(
        fnn.SinusoidalPositionalEmbedding().apply({}, {}, x, train=False)[0][1], table, rtol=1e-6
    )
    learned = fnn.LearnedPositionalEmbedding(10)
    params, _ = learned.init(jax.random.key(0), (4, 6))
    np.testing.assert_allclose(learned.apply(params, {}, x, train=False)[0][0], params["table"][:4])
    with pytest.raises(
        ValueError, match=r"holds positions for \(time <= 10, features 6\), got inputs \(1, 11, 6\)"
    ):
        learned.apply(params, {}, jnp.zeros((1, 11, 6)), train=False)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_block_masks_padding_and_is_causal_when_asked(norm_first):
    block = fnn.TransformerEncoderBlock(2, 12, causal=True, norm_first=norm_first)
    params, _ = block.init(jax.random.key(0), (5, 6))
    x = np.random.default_rng(1).standard_normal((2, 5, 6)).astype(np.float32)
    y, _ = block.apply(params, {}, x, train=False)
    changed = x.copy()
    changed[:, 3:] += 5.0
    y_changed, _ = block.apply(params, {}, changed, train=False)
    np.testing.assert_allclose(y_changed[:, :3], y[:, :3], rtol=1e-5, atol=1e-5)
    y_train, _ = block.apply(params, {}, x, train=True, key=jax.random.key(0))
    assert y_train.shape == (2, 5, 6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fnn.MultiHeadAttention(4).init(jax.random.key(0), (5, 6)),
         r"MultiHeadAttention 'multi_head_attention': num_heads \(4\) must divide the features \(6\) when key_dim is not given"),
        (lambda: fnn.MultiHeadAttention(2).apply(fnn.MultiHeadAttention(2).init(jax.random.key(0), (5, 6))[0], {}, (jnp.ones((1, 5, 6)), jnp.ones((1, 4), bool)), train=False),
         r"the mask must be bool \(batch, time\) = \(1, 5\), got bool \(1, 4\)"),
        (lambda: fnn.MultiHeadAttention(2).apply(fnn.MultiHeadAttention(2).init(jax.random.key(0), (5, 6))[0], {}, jnp.ones((5, 6)), train=False),
         r"expects inputs of shape \(batch, time, features\), got \(5, 6\)"),
        (lambda: fnn.TransformerEncoderBlock(2, 8, dropout=1.0), r"TransformerEncoderBlock 'transformer_encoder_block': dropout must be in \[0, 1\), got 1.0"),
        (lambda: fnn.TransformerEncoderBlock(2, 8).apply(fnn.TransformerEncoderBlock(2, 8).init(jax.random.key(0), (5, 4))[0], {}, jnp.ones((1, 5, 6)), train=False),
         r"TransformerEncoderBlock 'transformer_encoder_block' expects inputs of shape \(batch, time, 4\), got \(1, 5, 6\)"),
    ],
)  # fmt: skip
def test_attention_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("arg", ["key_dim", "value_dim", "output_dim"])
@pytest.mark.parametrize("value", [0, -2, 2.5])
def test_attention_sizes_must_be_positive_ints(arg, value):
    # key_dim=0 silently fell back to features // num_heads; a float or negative one reached XLA.
    with pytest.raises(
        ValueError, match=rf"MultiHeadAttention 'mha': {arg} must be a positive int, got {value}"
    ):
        fnn.MultiHeadAttention(2, name="mha", **{arg: value})


@pytest.mark.standard_promotion  # as users run it: strict promotion would hide a silent cast
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fnn.MultiHeadAttention(2), r"MultiHeadAttention 'multi_head_attention' expects float32 inputs"),
        (lambda: fnn.TransformerEncoderBlock(2, 8), r"TransformerEncoderBlock 'transformer_encoder_block' expects float32"),
        (lambda: fnn.LearnedPositionalEmbedding(8), r"LearnedPositionalEmbedding 'learned_positional_embedding' expects float32"),
        (lambda: fnn.SinusoidalPositionalEmbedding(), r"SinusoidalPositionalEmbedding '.+' expects floating-point inputs"),
    ],
)  # fmt: skip
def test_attention_layers_reject_integer_sequences_naming_the_layer(make, match):
    layer = make()
    params, state = layer.init(jax.random.key(0), (5, 4))
    with pytest.raises(TypeError, match=match + r".* got int32 of shape \(2, 5, 4\)"):
        layer.apply(params, state, jnp.ones((2, 5, 4), jnp.int32), train=False)


def test_transformer_block_keeps_all_its_params_in_its_dtype():
    # Its feed-forward params used the default float dtype (float64 under x64) whatever its attention's.
    block = fnn.TransformerEncoderBlock(2, 8, dtype=jnp.bfloat16)
    params, state = block.init(jax.random.key(0), (5, 4))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    y, _ = block.apply(params, state, jnp.ones((2, 5, 4), jnp.bfloat16), train=False)
    assert y.dtype == jnp.bfloat16
    with jax.enable_x64(True):
        params64, _ = fnn.TransformerEncoderBlock(2, 8).init(jax.random.key(0), (5, 4))
    assert {a.dtype for a in jax.tree.leaves(params64)} == {jnp.dtype(jnp.float32)}


# Issue 23: cross-attention, arbitrary attention masks and the attention scores, as in Keras 3.
# Params come from NumPy in init's layout (read with eval_shape) and apply runs jitted: one
# compilation per test instead of dozens of eager ones.


def random_params(layer, input_shape, seed):
    layout = jax.eval_shape(lambda k: layer.init(k, input_shape), jax.random.key(0))[0]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: 0.5 * rng.standard_normal(a.shape).astype(np.float32), layout)


def np_cross_attention(params, query, key, value, allowed):
    """float64 loop reference; ``allowed`` (batch, heads, Tq, Tkv). A row with no allowed key
    gets all-zero weights, as in Keras's masked softmax."""
    return np_general_attention(params, query, key, value, allowed)


def test_cross_attention_with_all_masks_matches_numpy():
    layer = fnn.MultiHeadAttention(2, key_dim=3, value_dim=2, causal=True, return_attention_scores=True)
    shapes = {"query": (3, 4), "key": (5, 3), "value": (5, 2)}
    params = random_params(layer, shapes, seed=0)
    # Each input is projected from its own features; the output has the query's.
    assert [params[n]["w"].shape for n in ("query", "key", "value", "output")] == [
        (4, 2, 3), (3, 2, 3), (2, 2, 2), (2, 2, 4)
    ]  # fmt: skip
    rng = np.random.default_rng(1)
    x = {k: rng.standard_normal((2, *s)).astype(np.float32) for k, s in shapes.items()}
    query_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    value_mask = np.array([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]], bool)
    attention_mask = rng.random((2, 3, 5)) < 0.7
    attention_mask[1, 0, 0] = True  # so that only value_mask empties the row below
    per_head = rng.random((2, 2, 3, 5)) < 0.6
    per_head[:, :, :, 0] = True
    causal = np.tril(np.ones((3, 5), bool))  # on (Tq, Tkv): the lower triangle, as in Keras
    # With value_mask[1, 0] False, query 0 of example 1 has no allowed key (nor has the padded
    # query 2 of example 0): their weights are zeros and their outputs the output bias.
    allowed = (causal & value_mask[:, None, :] & query_mask[:, :, None] & attention_mask)[:, None]
    allowed = allowed.repeat(2, axis=1)
    assert not allowed[1, :, 0].any() and not allowed[0, :, 2].any()
    masked = {**x, "query_mask": query_mask, "value_mask": value_mask, "attention_mask": attention_mask}

    @jax.jit
    def run(p):
        def loss(p):
            ((y, passed_on), scores), _ = layer.apply(p, {}, masked, train=False)
            return jnp.sum(y**2) + jnp.sum(scores**2), (y, passed_on, scores)

        grads, outputs = jax.grad(loss, has_aux=True)(p)
        return grads, outputs, layer.apply(p, {}, {**x, "attention_mask": per_head}, train=False)[0]

    grads, (y, passed_on, scores), (y_head, scores_head) = run(params)
    y_ref, scores_ref = np_cross_attention(params, x["query"], x["key"], x["value"], allowed)
    np.testing.assert_array_equal(passed_on, query_mask)
    np.testing.assert_allclose(scores, scores_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y[1, 0], params["output"]["b"], rtol=1e-6)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))  # never NaN
    # A (batch, heads, Tq, Tkv) mask: each head its own.
    y_ref, scores_ref = np_cross_attention(params, x["query"], x["key"], x["value"], causal & per_head)
    np.testing.assert_allclose(scores_head, scores_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_head, y_ref, rtol=1e-4, atol=1e-5)


def test_self_attention_scores_come_before_dropout_and_key_defaults_to_value():
    # Scores as Keras 3 returns them: after softmax and masks, before dropout.
    layer = fnn.MultiHeadAttention(2, causal=True, dropout=0.5, return_attention_scores=True)
    params = random_params(layer, (5, 6), seed=4)
    x = np.random.default_rng(5).standard_normal((3, 5, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)

    @jax.jit
    def run(p):
        outputs = [layer.apply(p, {}, (x, mask), train=t, key=jax.random.key(0))[0] for t in (False, True)]
        as_dict = {"query": x, "value": x, "value_mask": mask}  # no "key": the value's
        return *outputs, layer.apply(p, {}, as_dict, train=False)[0]

    ((y, passed_on), scores), ((y_train, _), scores_train), (y_dict, scores_dict) = run(params)
    np.testing.assert_array_equal(passed_on, mask)
    allowed = (np.tril(np.ones((5, 5), bool)) & mask[:, None, :])[:, None].repeat(2, axis=1)
    y_ref, scores_ref = np_cross_attention(params, x, x, x, allowed)
    np.testing.assert_allclose(scores, scores_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(scores_train, scores)
    assert not np.allclose(y_train, y)
    np.testing.assert_array_equal(y_dict, y)
    np.testing.assert_array_equal(scores_dict, scores)


def cross_apply(**x):
    """Applies a 2-head cross-attention (query (3, 4), value (5, 2)) to ``x``, batch 2."""
    layer = fnn.MultiHeadAttention(2, name="mha")
    params = random_params(layer, {"query": (3, 4), "value": (5, 2)}, seed=0)
    inputs = {"query": jnp.ones((2, 3, 4)), "value": jnp.ones((2, 5, 2)), **x}
    inputs = {k: v for k, v in inputs.items() if v is not None}
    return jax.eval_shape(functools.partial(layer.apply, train=False), params, {}, inputs)


def init_with(input_shape):
    return fnn.MultiHeadAttention(2, name="mha").init(jax.random.key(0), input_shape)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cross_apply(value=None),
         r"MultiHeadAttention 'mha': a dict input needs 'query' and 'value' and may have 'key', 'query_mask', "
         r"'value_mask', 'attention_mask'; got \['query'\]"),
        (lambda: cross_apply(mask=jnp.ones((2, 5), bool)), r"'mha': a dict input needs .* got \['mask', 'query', 'value'\]"),
        (lambda: cross_apply(attention_mask=jnp.ones((2, 5, 3), bool)),
         r"MultiHeadAttention 'mha': attention_mask must be bool \(batch, Tq, Tkv\) = \(2, 3, 5\) or "
         r"\(batch, heads, Tq, Tkv\) = \(2, 2, 3, 5\), got bool \(2, 5, 3\)"),
        (lambda: cross_apply(attention_mask=jnp.ones((2, 3, 3, 5), bool)), r"= \(2, 2, 3, 5\), got bool \(2, 3, 3, 5\)"),
        (lambda: cross_apply(attention_mask=jnp.ones((2, 3, 5))), r"attention_mask must be bool .* got float32 \(2, 3, 5\)"),
        (lambda: cross_apply(query_mask=jnp.ones((2, 5), bool)),
         r"'mha': query_mask must be bool \(batch, Tq\) = \(2, 3\), got bool \(2, 5\)"),
        (lambda: cross_apply(value_mask=jnp.ones((2, 5), jnp.int32)),
         r"'mha': value_mask must be bool \(batch, Tkv\) = \(2, 5\), got int32 \(2, 5\)"),
        (lambda: cross_apply(key=jnp.ones((2, 4, 2))),
         r"'mha': query, key and value must share the batch axis and key and value the time axis, "
         r"got query \(2, 3, 4\), key \(2, 4, 2\), value \(2, 5, 2\)"),
        (lambda: cross_apply(key=jnp.ones((2, 5, 2)), value=jnp.ones((2, 5, 3))),
         r"MultiHeadAttention 'mha' expects value inputs of shape \(batch, time, 2\), got \(2, 5, 3\)"),
        (lambda: cross_apply(query=jnp.ones((3, 4))), r"'mha' expects query of shape \(batch, time, features\), got \(3, 4\)"),
        (lambda: init_with({"query": (3, 4), "value": (5, 2), "key": (6, 2)}),
         r"'mha': key and value must have the same time axis, got key \(6, 2\) and value \(5, 2\)"),
        (lambda: init_with({"query": (4,), "value": (5, 2)}),
         r"'mha' expects a per-example input_shape \(time, features\) for 'query', got \(4,\)"),
        (lambda: init_with({"query": (3, 5), "value": (5, 2)}),
         r"'mha': num_heads \(2\) must divide the query features \(5\) when key_dim is not given"),
        (lambda: init_with({"query": (3, 4), "values": (5, 2)}), r"'mha': a dict input needs .* got \['query', 'values'\]"),
    ],
)  # fmt: skip
def test_cross_attention_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_return_attention_scores_must_be_a_bool():
    with pytest.raises(TypeError, match=r"'mha': return_attention_scores must be a bool, got 1"):
        fnn.MultiHeadAttention(2, return_attention_scores=1, name="mha")


# Issue 25: jax.nn.dot_product_attention, grouped-query attention, RoPE and soft-capping.


def np_rope(x, positions, base=10_000.0):
    """Rotates each feature pair (i, i + d/2) by position * base**(-2i/d), one pair at a time."""
    out = np.array(x, np.float64)
    half = x.shape[-1] // 2
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            pos = positions[b, t] if np.ndim(positions) == 2 else positions[t]
            for i in range(half):
                angle = pos * base ** (-2 * i / x.shape[-1])
                x1, x2 = x[b, t, :, i].astype(np.float64), x[b, t, :, i + half].astype(np.float64)
                out[b, t, :, i] = x1 * np.cos(angle) - x2 * np.sin(angle)
                out[b, t, :, i + half] = x2 * np.cos(angle) + x1 * np.sin(angle)
    return out


def np_general_attention(params, query, key, value, allowed, rope_base=None, soft_cap=None):
    """float64 loop reference with grouped key/value heads, RoPE and soft-capping; ``allowed``
    (batch, heads, Tq, Tkv); rows with no allowed key get zero weights."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    q, k, v = (
        np.einsum("btf,fhd->bthd", np.float64(x), p[n]["w"]) + p[n]["b"]
        for n, x in (("query", query), ("key", key), ("value", value))
    )
    if rope_base is not None:
        q, k = np_rope(q, np.arange(q.shape[1]), rope_base), np_rope(k, np.arange(k.shape[1]), rope_base)
    batch, q_time, heads, dim = q.shape
    group = heads // k.shape[2]
    scores = np.zeros((batch, heads, q_time, k.shape[1]))
    out = np.zeros((batch, q_time, heads, v.shape[-1]))
    for b in range(batch):
        for h in range(heads):
            for t in range(q_time):
                keys = np.flatnonzero(allowed[b, h, t])
                if keys.size == 0:
                    continue
                logits = np.array([q[b, t, h] @ k[b, s, h // group] / np.sqrt(dim) for s in keys])
                if soft_cap is not None:
                    logits = soft_cap * np.tanh(logits / soft_cap)
                w = np.exp(logits - logits.max())
                scores[b, h, t, keys] = w / w.sum()
                out[b, t, h] = scores[b, h, t] @ v[b, :, h // group]
    return np.einsum("bthd,hdo->bto", out, p["output"]["w"]) + p["output"]["b"], scores


def test_rotary_embedding_matches_a_loop_and_depends_on_relative_positions_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 6)).astype(np.float32)
    positions = np.array([[0, 1, 2, 3, 4], [7, 3, 0, 11, 2]])
    np.testing.assert_allclose(fnn.rotary_embedding(x, positions[0]), np_rope(x, positions[0]), atol=1e-5)
    np.testing.assert_allclose(
        fnn.rotary_embedding(x, positions, base=100.0), np_rope(x, positions, 100.0), atol=1e-5
    )
    q, k = x[:1, :1], x[1:, :1]
    dots = [
        float(jnp.sum(fnn.rotary_embedding(q, jnp.array([m])) * fnn.rotary_embedding(k, jnp.array([n]))))
        for m, n in ((3, 1), (9, 7), (102, 100))
    ]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4)
    assert fnn.rotary_embedding(x.astype(jnp.bfloat16), positions[0]).dtype == jnp.bfloat16


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_query_attention_with_rope_and_masks_matches_numpy_on_both_paths(kv_heads):
    fast, weighed = (
        fnn.MultiHeadAttention(4, key_dim=4, num_key_value_heads=kv_heads, causal=True, rope=True,
                               return_attention_scores=scores)
        for scores in (False, True)
    )  # fmt: skip
    shapes = {"query": (5, 6), "value": (5, 3)}
    params = random_params(fast, shapes, seed=2)
    assert params["key"]["w"].shape == (3, kv_heads, 4) and params["value"]["b"].shape == (kv_heads, 4)
    rng = np.random.default_rng(3)
    x = {k: rng.standard_normal((2, *s)).astype(np.float32) for k, s in shapes.items()}
    value_mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], bool)  # example 1's query 0: no key
    masked = {**x, "value_mask": value_mask}
    y_fast, _ = jax.jit(functools.partial(fast.apply, train=False))(params, {}, masked)
    (y, scores), _ = jax.jit(functools.partial(weighed.apply, train=False))(params, {}, masked)
    allowed = (np.tril(np.ones((5, 5), bool)) & value_mask[:, None, :])[:, None].repeat(4, axis=1)
    y_ref, scores_ref = np_general_attention(params, x["query"], x["value"], x["value"], allowed, 10_000.0)
    np.testing.assert_allclose(scores, scores_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y_fast[1, 0], params["output"]["b"], rtol=1e-6)  # zeros, then the bias


def test_soft_capped_attention_matches_numpy_and_bounds_the_logits():
    layer = fnn.MultiHeadAttention(2, soft_cap=1.5, return_attention_scores=True)
    params = jax.tree.map(lambda a: 3 * a, random_params(layer, (4, 6), seed=5))  # large logits
    x = np.random.default_rng(6).standard_normal((2, 4, 6)).astype(np.float32)
    (y, scores), _ = jax.jit(functools.partial(layer.apply, train=False))(params, {}, x)
    y_ref, scores_ref = np_general_attention(params, x, x, x, np.ones((2, 2, 4, 4), bool), soft_cap=1.5)
    np.testing.assert_allclose(scores, scores_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    # |logit| <= 1.5: no weight is more than e^3 times another in its row.
    assert float(scores.max(-1).min() / scores.min(-1).min()) <= np.exp(3.0) * 1.001


def test_attention_gradients_with_gqa_rope_and_soft_cap_match_finite_differences():
    layer = fnn.MultiHeadAttention(4, key_dim=2, num_key_value_heads=2, causal=True, rope=True, soft_cap=2.0)
    fused = fnn.MultiHeadAttention(4, key_dim=2, num_key_value_heads=2, causal=True, rope=True)
    params = random_params(layer, (3, 4), seed=7)
    x = np.random.default_rng(8).standard_normal((2, 3, 4))
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    for attention in (layer, fused):
        fnn.testing.check_grads(
            lambda p, a=attention: jnp.sum(
                jnp.sin(a.apply(p, {}, (jnp.asarray(x), mask), train=False)[0][0])
            ),
            params,
        )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fnn.MultiHeadAttention(4, num_key_value_heads=3, name="mha"), ValueError,
         r"'mha': num_key_value_heads \(3\) must divide num_heads \(4\)"),
        (lambda: fnn.MultiHeadAttention(4, num_key_value_heads=0, name="mha"), ValueError,
         r"'mha': num_key_value_heads must be a positive int, got 0"),
        (lambda: fnn.MultiHeadAttention(2, rope=1, name="mha"), TypeError, r"'mha': rope must be a bool, got 1"),
        (lambda: fnn.MultiHeadAttention(2, soft_cap=0.0, name="mha"), ValueError,
         r"'mha': soft_cap must be a finite number > 0, got 0.0"),
        (lambda: fnn.MultiHeadAttention(2, rope_base=float("nan"), name="mha"), ValueError,
         r"'mha': rope_base must be a finite number > 0, got nan"),
        (lambda: fnn.MultiHeadAttention(2, implementation="flash", name="mha"), ValueError,
         r"'mha': implementation must be one of \(None, 'xla', 'cudnn'\), got 'flash'"),
        (lambda: fnn.MultiHeadAttention(2, key_dim=3, rope=True, name="mha").init(jax.random.key(0), (4, 6)),
         ValueError, r"'mha': rope needs an even key_dim, got 3"),
        (lambda: fnn.rotary_embedding(jnp.ones((2, 3, 1, 5)), jnp.arange(3)), ValueError,
         r"rotary_embedding expects x of shape \(batch, time, heads, even d\), got \(2, 3, 1, 5\)"),
        (lambda: fnn.rotary_embedding(jnp.ones((2, 3, 1, 4)), jnp.arange(4)), ValueError,
         r"positions of shape \(time,\) = \(3,\) or \(batch, time\) = \(2, 3\), got \(4,\)"),
    ],
)  # fmt: skip
def test_gqa_rope_and_soft_cap_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
