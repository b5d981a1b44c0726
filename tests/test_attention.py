"""Attention against a NumPy reference; causal and padding masks; positional embeddings; errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn


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
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
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
