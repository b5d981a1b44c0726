"""Recurrent layers against step-by-step NumPy references; masking, reversal, state and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def np_simple(p, h, x):
    return np.tanh(x @ p["w_x"] + h @ p["w_h"] + p["b"])


def np_lstm(p, state, x):
    h, c = state
    z = x @ p["w_x"] + h @ p["w_h"] + p["b"]
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def np_gru(p, h, x):
    xz, xr, xh = np.split(x @ p["w_x"] + p["b_x"], 3, axis=-1)
    hz, hr, hh = np.split(h @ p["w_h"] + p["b_h"], 3, axis=-1)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    return z * h + (1 - z) * np.tanh(xh + r * hh)


def run_numpy(kind, p, x):
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    batch, units = x.shape[0], p["w_h"].shape[0]
    h = np.zeros((batch, units))
    state = (h, np.zeros((batch, units)))
    outputs = []
    for t in range(x.shape[1]):
        if kind == "lstm":
            state = np_lstm(p, state, x[:, t])
            h = state[0]
        else:
            h = (np_simple if kind == "simple" else np_gru)(p, h, x[:, t])
        outputs.append(h)
    return np.stack(outputs, axis=1)


LAYERS = {"simple": fnn.SimpleRNN, "lstm": fnn.LSTM, "gru": fnn.GRU}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_cells_scanned_over_time_match_a_numpy_loop(kind):
    layer = LAYERS[kind](4, return_sequences=True)
    params, state = layer.init(jax.random.key(0), (6, 3))
    params = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params
    )  # non-zero biases
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    y, _ = layer.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, run_numpy(kind, params, x.astype(np.float64)), rtol=1e-4, atol=1e-5)


def padded_batch(seed=0, time=7, features=3):
    rng = np.random.default_rng(seed)
    lengths = np.array([7, 3, 5, 1])
    x = rng.standard_normal((4, time, features)).astype(np.float32)
    garbage = rng.standard_normal(x.shape).astype(np.float32) * 100
    mask = np.arange(time)[None, :] < lengths[:, None]
    return np.where(mask[..., None], x, garbage), mask, lengths


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_changes_neither_outputs_nor_final_state(kind, reverse):
    x, mask, lengths = padded_batch()
    seq = fnn.RNN(
        {"simple": fnn.SimpleRNNCell, "lstm": fnn.LSTMCell, "gru": fnn.GRUCell}[kind](3),
        return_sequences=True, return_state=True, reverse=reverse,
    )  # fmt: skip
    params, _ = seq.init(jax.random.key(0), (7, 3))
    ((ys, out_mask), final), _ = seq.apply(params, {}, (x, mask), train=False)
    np.testing.assert_array_equal(out_mask, mask)
    (ys_len, _), final_len = seq.apply(params, {}, (x, lengths), train=False)[0]
    np.testing.assert_array_equal(ys_len, ys)
    for b, n in enumerate(lengths):
        (alone, alone_final), _ = seq.apply(params, {}, x[b : b + 1, :n], train=False)
        np.testing.assert_allclose(ys[b, :n], alone[0], rtol=1e-5, atol=1e-6)
        jax.tree.map(
            lambda f, a: np.testing.assert_allclose(f[b], a[0], rtol=1e-5, atol=1e-6), final, alone_final
        )
    last = fnn.RNN(fnn.LSTMCell(3), reverse=reverse)
    p_last, _ = last.init(jax.random.key(0), (7, 3))
    y_last, _ = last.apply(p_last, {}, (x, mask), train=False)
    for b, n in enumerate(lengths):
        alone, _ = last.apply(p_last, {}, x[b : b + 1, :n], train=False)
        np.testing.assert_allclose(y_last[b], alone[0], rtol=1e-5, atol=1e-6)


def test_bidirectional_merges_a_forward_and_a_backward_pass():
    x, mask, lengths = padded_batch(seed=1)
    bi = fnn.Bidirectional(fnn.GRUCell(2), return_sequences=True)
    params, _ = bi.init(jax.random.key(0), (7, 3))
    (y, _), _ = bi.apply(params, {}, (x, mask), train=False)
    forward, backward = fnn.GRU(2, return_sequences=True), fnn.GRU(2, return_sequences=True, reverse=True)
    for b, n in enumerate(lengths):
        f, _ = forward.apply(params["forward"], {}, x[b : b + 1, :n], train=False)
        r, _ = backward.apply(params["backward"], {}, x[b : b + 1, :n], train=False)
        np.testing.assert_allclose(y[b, :n], np.concatenate([f[0], r[0]], axis=-1), rtol=1e-5, atol=1e-6)
    summed = fnn.Bidirectional(fnn.GRUCell(2), merge_mode="sum")
    y_sum, _ = summed.apply(params, {}, x[:, :4], train=False)
    assert y_sum.shape == (4, 2)


def test_initial_state_continues_a_sequence():
    x = np.random.default_rng(2).standard_normal((2, 8, 3)).astype(np.float32)
    layer = fnn.RNN(fnn.LSTMCell(4), return_sequences=True, return_state=True)
    params, _ = layer.init(jax.random.key(0), (8, 3))
    (full, full_state), _ = layer.apply(params, {}, x, train=False)
    (first, mid_state), _ = layer.apply(params, {}, x[:, :5], train=False)
    (rest, end_state), _ = layer.apply(params, {}, {"x": x[:, 5:], "initial_state": mid_state}, train=False)
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), full, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), end_state, full_state)


def test_embedding_looks_up_rows_and_masks_padding():
    emb = fnn.Embedding(5, 3, mask_index=0)
    params, state = emb.init(jax.random.key(0), fnn.Shape((4,), jnp.int32))
    table = np.asarray(params["table"])
    assert np.all(np.abs(table) <= 0.05)
    ids = np.array([[1, 4, 0, 0]], np.int32)
    (vectors, mask), _ = emb.apply(params, state, ids, train=False)
    np.testing.assert_array_equal(vectors[0], table[ids[0]])
    np.testing.assert_array_equal(mask, [[True, True, False, False]])
    out_of_range, _ = fnn.Embedding(5, 3).apply(params, state, np.array([[7]], np.int32), train=False)
    assert np.all(np.isnan(out_of_range))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: fnn.LSTM(3).apply(fnn.LSTM(3).init(jax.random.key(0), (4, 2))[0], {}, jnp.ones((4, 2)), train=False),
         ValueError, r"RNN 'lstm' expects inputs of shape \(batch, time, features\), got \(4, 2\)"),
        (lambda: fnn.LSTM(3).apply(fnn.LSTM(3).init(jax.random.key(0), (4, 2))[0], {}, (jnp.ones((2, 4, 2)), jnp.ones((2, 5), bool)), train=False),
         ValueError, r"RNN 'lstm': the mask must be bool \(batch, time\) = \(2, 4\) or int lengths \(2,\); got bool \(2, 5\) for inputs \(2, 4, 2\)"),
        (lambda: fnn.LSTM(3).init(jax.random.key(0), (4,)), ValueError,
         r"RNN 'lstm' expects a per-example input_shape \(time, features\), got \(4,\)"),
        (lambda: fnn.Bidirectional(fnn.GRUCell(2), merge_mode="max"), ValueError,
         r"Bidirectional 'bidirectional': merge_mode must be one of \['ave', 'concat', 'mul', 'sum'\], got 'max'"),
        (lambda: fnn.Embedding(5, 3).apply({"table": jnp.zeros((5, 3))}, {}, jnp.ones((1, 2)), train=False), TypeError,
         r"Embedding 'embedding' expects integer token ids, got float32 of shape \(1, 2\)"),
        (lambda: fnn.Embedding(5, 3, mask_index=5), ValueError, r"Embedding 'embedding': mask_index must be in \[0, 5\), got 5"),
        (lambda: fnn.LSTMCell(0), ValueError, r"LSTMCell 'lstm_cell': units must be a positive int, got 0"),
    ],
)  # fmt: skip
def test_recurrent_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
