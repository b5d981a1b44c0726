"""Decoder blocks, Repeat (scan over layers), the decoding cache and generation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import _random

VOCAB, FEATURES, CACHE = 13, 8, 12


def language_model(cache_length=None, blocks=2):
    """Embedding -> blocks of GQA decoder with RoPE -> logits; the same params with or without a cache."""
    block = fnn.TransformerDecoderBlock(2, 16, num_key_value_heads=1, cache_length=cache_length)
    return fnn.Sequential([fnn.Embedding(VOCAB, FEATURES), fnn.Repeat(block, blocks), fnn.Dense(VOCAB)])


@functools.cache
def trained_like():
    """Params of the cache-free model (perturbed so that no logit ties), the decoding model's state and its own."""
    params, plain_state = language_model().init(jax.random.key(0), fnn.Shape((6,), jnp.int32))
    params = jax.tree.map(lambda a: a + 0.3 * _random.normal(jax.random.key(1), a.shape), params)
    _, state = language_model(CACHE).init(jax.random.key(0), fnn.Shape((6,), jnp.int32))
    return params, state, plain_state


def test_repeat_equals_a_sequential_of_its_copies_with_dropout_keys_and_remat():
    block = fnn.Sequential([fnn.Dense(6, "gelu"), fnn.Dropout(0.3), fnn.Dense(6)])
    x = _random.normal(jax.random.key(2), (3, 6))
    repeated = fnn.Repeat(fnn.Residual(block), 3)
    params, state = repeated.init(jax.random.key(0), (6,))
    assert params["sequential"]["dense"]["w"].shape == (3, 6, 6)
    chain = fnn.Sequential([fnn.Residual(block, name=f"r{i}") for i in range(3)])
    chain_params = {f"r{i}": jax.tree.map(lambda a, i=i: a[i], params) for i in range(3)}
    chain_state = chain.init(jax.random.key(0), (6,))[1]

    def loss(layer, p, key):
        return jnp.sum(
            layer.apply(p, chain_state if layer is chain else state, x, train=True, key=key)[0] ** 2
        )

    chain_value, chain_grads = jax.jit(jax.value_and_grad(functools.partial(loss, chain)))(
        chain_params, jax.random.key(3)
    )  # child i gets fold_in(key, i) in both
    for remat in (False, True, "dots_saveable"):
        layer = fnn.Repeat(fnn.Residual(block), 3, remat=remat)
        value, grads = jax.jit(jax.value_and_grad(functools.partial(loss, layer)))(params, jax.random.key(3))
        np.testing.assert_allclose(value, chain_value, rtol=1e-6)
        for i in range(3):
            for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(chain_grads[f"r{i}"])):
                np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)


def test_repeat_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"Repeat 'deep': times must be a positive int, got 0"):
        fnn.Repeat(fnn.Dense(3), 0, name="deep")
    with pytest.raises(
        ValueError, match=r"Repeat 'deep' needs 'dense' to keep its input's per-example shapes"
    ):
        fnn.Repeat(fnn.Dense(3), 2, name="deep").init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"Repeat 'deep': unknown policy 'all'"):
        fnn.Repeat(fnn.Dense(3), 2, remat="all", name="deep")
    with pytest.raises(TypeError, match=r"Repeat 'deep': item 0 is not a Layer but str"):
        fnn.Repeat("dense", 2, name="deep")


def np_rms(x, scale):
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6) * scale


def test_decoder_block_is_pre_norm_attention_then_swiglu():
    block = fnn.TransformerDecoderBlock(2, 12, num_key_value_heads=1)
    params, _ = block.init(jax.random.key(0), (5, 8))
    params = jax.tree.map(lambda a: a + 0.2 * _random.normal(jax.random.key(1), a.shape), params)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    (y, passed_on), _ = jax.jit(functools.partial(block.apply, train=False))(params, {}, (x, mask))
    attention = fnn.MultiHeadAttention(2, num_key_value_heads=1, causal=True, rope=True, use_bias=False)
    p = jax.tree.map(np.float64, params)
    normed = np_rms(x.astype(np.float64), p["norm_attention"]["scale"]).astype(np.float32)
    attended = jax.jit(functools.partial(attention.apply, train=False))(
        params["attention"], {}, (normed, mask)
    )
    h = x + np.asarray(attended[0][0])
    m = np_rms(h.astype(np.float64), p["norm_mlp"]["scale"])
    gate = m @ p["mlp"]["gate"]["w"]
    y_ref = h + ((gate / (1 + np.exp(-gate))) * (m @ p["mlp"]["up"]["w"])) @ p["mlp"]["down"]["w"]
    np.testing.assert_array_equal(passed_on, mask)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)


def test_cross_attention_decoder_passes_memory_on_and_ignores_padded_memory():
    block = fnn.TransformerDecoderBlock(2, 8, cross_attention=True, norm="layer", mlp="gelu", rope=False)
    shapes = {"x": (4, 6), "memory": (3, 5)}
    params, _ = block.init(jax.random.key(0), shapes)
    rng = np.random.default_rng(1)
    x = {"x": rng.standard_normal((2, 4, 6)).astype(np.float32), "memory": rng.standard_normal((2, 3, 5)).astype(np.float32),
         "memory_mask": np.array([[1, 1, 0], [1, 0, 0]], bool)}  # fmt: skip
    apply = jax.jit(functools.partial(block.apply, train=False))
    out, _ = apply(params, {}, x)
    assert set(out) == set(x) and out["x"].shape == (2, 4, 6)
    np.testing.assert_array_equal(out["memory"], x["memory"])
    changed = {**x, "memory": x["memory"].copy()}
    changed["memory"][0, 2] += 5.0
    changed["memory"][1, 1:] -= 5.0
    np.testing.assert_allclose(apply(params, {}, changed)[0]["x"], out["x"], rtol=1e-6)
    changed["memory"][1, 0] += 1.0
    assert not np.allclose(apply(params, {}, changed)[0]["x"][1], out["x"][1])


@pytest.mark.parametrize(
    "make, x, match",
    [
        (lambda: fnn.TransformerDecoderBlock(2, 8, cross_attention=True, name="dec"), jnp.ones((1, 3, 4)),
         r"'dec' has cross-attention: it takes a dict \{'x', 'memory'\}"),
        (lambda: fnn.TransformerDecoderBlock(2, 8, name="dec"), {"x": jnp.ones((1, 3, 4)), "memory": jnp.ones((1, 2, 4))},
         r"'dec': a dict input needs 'x' and no 'memory' \(it has no cross-attention\)"),
    ],
)  # fmt: skip
def test_decoder_block_input_errors(make, x, match):
    block = make()
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(functools.partial(block.apply, train=False), {}, {}, x)


def test_decoder_block_settings_errors():
    with pytest.raises(ValueError, match=r"'dec': norm must be one of \['layer', 'rms'\], got 'batch'"):
        fnn.TransformerDecoderBlock(2, 8, norm="batch", name="dec")
    with pytest.raises(
        ValueError, match=r"'dec': mlp must be one of \('swiglu', 'gelu', 'relu'\), got 'glu'"
    ):
        fnn.TransformerDecoderBlock(2, 8, mlp="glu", name="dec")


def test_decoding_with_the_cache_equals_rerunning_the_whole_sequence():
    params, state, plain_state = trained_like()
    full, decoder = language_model(), language_model(CACHE)
    tokens = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    logits, _ = jax.jit(functools.partial(full.apply, train=False))(params, plain_state, tokens)
    step = jax.jit(functools.partial(decoder.apply, train=False))
    prefill, state = step(params, state, tokens[:, :4])  # 4 positions at once, then one at a time
    pieces = [prefill]
    for t in range(4, tokens.shape[1]):
        out, state = step(params, state, tokens[:, t : t + 1])
        pieces.append(out)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), logits, rtol=1e-5, atol=1e-5)
    assert int(state["repeat"]["attention"]["cache"]["length"][0]) == tokens.shape[1]  # one per block
    # Past the cache's end the outputs are NaN, never silently wrong.
    for _ in range(CACHE - tokens.shape[1]):
        out, state = step(params, state, tokens[:, :1])
    assert np.isfinite(out).all()
    out, _ = step(params, state, tokens[:, :1])
    assert np.isnan(out).all()
    # A batch is attended without the cache: as the cache-free model with an empty one, else NaN.
    batch = jnp.concatenate([tokens, tokens[:, ::-1]])
    fresh = trained_like()[1]
    np.testing.assert_allclose(step(params, fresh, batch)[0][:1], logits, rtol=1e-5, atol=1e-5)
    assert np.isnan(step(params, state, batch)[0]).all()


def test_greedy_generation_equals_argmax_of_full_reruns_for_each_prompt():
    params, state, plain_state = trained_like()
    full, decoder = language_model(), language_model(CACHE)
    prompts = jnp.array([[3, 1, 4], [2, 7, 1], [5, 5, 5]])
    tokens = fnn.generate(decoder, params, state, prompts, 6, temperature=0)
    assert tokens.shape == (3, 6) and tokens.dtype == jnp.int32
    run = jax.jit(functools.partial(full.apply, train=False))
    for prompt, generated in zip(prompts, tokens):
        sequence = list(prompt)
        for _ in range(6):
            logits, _ = run(params, plain_state, jnp.array([sequence]))
            sequence.append(int(jnp.argmax(logits[0, -1])))
        assert sequence[3:] == generated.tolist()


def test_sampled_generation_is_keyed_and_top_k_1_or_a_tiny_top_p_is_greedy():
    params, state, _ = trained_like()
    decoder = language_model(CACHE)
    prompts = jnp.array([[3, 1, 4], [2, 7, 1]])
    greedy = fnn.generate(decoder, params, state, prompts, 8, temperature=0)
    sample = functools.partial(fnn.generate, decoder, params, state, prompts, 8)
    np.testing.assert_array_equal(sample(key=jax.random.key(5)), sample(key=jax.random.key(5)))
    assert not np.array_equal(sample(key=jax.random.key(5)), sample(key=jax.random.key(6)))
    np.testing.assert_array_equal(sample(key=jax.random.key(5), top_k=1), greedy)
    np.testing.assert_array_equal(sample(key=jax.random.key(5), top_p=1e-6), greedy)


def test_sample_logits_follows_the_distribution_and_its_cuts():
    logits = jnp.log(jnp.array([0.1, 0.6, 0.3]))
    keys = jax.random.split(jax.random.key(0), 20_000)

    @functools.partial(jax.jit, static_argnames=("top_k", "top_p"))
    def draw(keys, top_k=None, top_p=None):
        return jax.vmap(lambda k: fnn.sample_logits(k, logits, top_k=top_k, top_p=top_p))(keys)

    counts = np.bincount(draw(keys), minlength=3) / len(keys)
    np.testing.assert_allclose(counts, [0.1, 0.6, 0.3], atol=0.015)
    assert set(np.unique(draw(keys, top_k=2))) == {1, 2}
    assert set(np.unique(draw(keys, top_p=0.7))) == {1, 2}  # 0.6 < 0.7: the 0.3 joins
    assert set(np.unique(draw(keys, top_p=0.5))) == {1}
    hot = np.bincount(jax.vmap(lambda k: fnn.sample_logits(k, logits, temperature=100.0))(keys), minlength=3)
    np.testing.assert_allclose(hot / len(keys), 1 / 3, atol=0.02)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p, s: fnn.generate(language_model(CACHE), p, s, jnp.array([[1, 2, 3]]), 11, temperature=0),
         r"generate: a prompt of 3 tokens and 11 steps feed 13 positions, more than the cache_length 12"),
        (lambda p, s: fnn.generate(language_model(), p, {}, jnp.array([[1, 2]]), 2, temperature=0),
         r"generate: the state of 'sequential' holds no decoding cache"),
        (lambda p, s: fnn.generate(language_model(CACHE), p, s, jnp.array([[1.0, 2.0]]), 2, temperature=0),
         r"generate: prompts must be int \(batch, time >= 1\), got float32 \(1, 2\)"),
        (lambda p, s: fnn.generate(language_model(CACHE), p, s, jnp.array([[1, 2]]), 2),
         r"generate needs a key to sample at a temperature above 0"),
        (lambda p, s: fnn.sample_logits(jax.random.key(0), jnp.zeros(3), top_p=0.0),
         r"sampling: top_p must be in \(0, 1\], got 0.0"),
        (lambda p, s: fnn.sample_logits(jax.random.key(0), jnp.zeros(3), temperature=-1.0),
         r"sampling: temperature must be a finite number >= 0, got -1.0"),
        (lambda p, s: fnn.sample_logits(jax.random.key(0), jnp.zeros(3), top_k=0),
         r"sampling: top_k must be a positive int, got 0"),
    ],
)  # fmt: skip
def test_generation_errors(call, match):
    params, state, _ = trained_like()
    with pytest.raises(ValueError, match=match):
        call(params, state)


def decode_with(x, train=False, name="mha"):
    layer = fnn.MultiHeadAttention(2, causal=True, cache_length=4, name=name)
    params, state = layer.init(jax.random.key(0), (3, 4))
    return jax.eval_shape(functools.partial(layer.apply, train=train), params, state, x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fnn.MultiHeadAttention(2, cache_length=4, name="mha"),
         r"'mha': cache_length is for causal self-attention: pass causal=True too"),
        (lambda: fnn.MultiHeadAttention(2, causal=True, cache_length=4, name="mha").init(
            jax.random.key(0), {"query": (3, 4), "value": (3, 4)}),
         r"'mha': cache_length is for self-attention; init it with a \(time, features\) input_shape"),
        (lambda: decode_with(jnp.ones((1, 2, 4)), train=True),
         r"'mha' holds a decoding cache \(cache_length=4\): apply it with train=False"),
        (lambda: decode_with(jnp.ones((1, 5, 4))),
         r"'mha' decodes at most cache_length=4 positions a call, got inputs \(1, 5, 4\)"),
        (lambda: decode_with((jnp.ones((1, 2, 4)), jnp.ones((1, 2), bool))),
         r"'mha' decodes plain \(1, time, features\) inputs, without masks; got a tuple"),
    ],
)  # fmt: skip
def test_decoding_cache_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
