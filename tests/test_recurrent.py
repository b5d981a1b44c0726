"""Recurrent layers against step-by-step NumPy references; masking, reversal, state and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import _random


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


def np_gru_reset_before(p, h, x):
    # Keras's reset_after=False: the reset gate scales h before its projection; one bias.
    xz, xr, xh = np.split(x @ p["w_x"] + p["b"], 3, axis=-1)
    uz, ur, uh = np.split(p["w_h"], 3, axis=-1)
    z, r = sigmoid(xz + h @ uz), sigmoid(xr + h @ ur)
    return z * h + (1 - z) * np.tanh(xh + (r * h) @ uh)


def np_step(kind, p, state, x):
    """One step of one example: ``(new_state, output)``; an LSTM's state is ``{"h", "c"}``."""
    if kind == "lstm":
        h, c = np_lstm(p, (state["h"], state["c"]), x)
        return {"h": h, "c": c}, h
    h = {"simple": np_simple, "gru": np_gru, "gru_reset_before": np_gru_reset_before}[kind](p, state, x)
    return h, h


def run_masked(kind, p, x, mask, *, reverse=False, masked_outputs="repeat", initial=None):
    """Each example alone in float64, its valid steps only: (outputs, last valid outputs, final states).

    A masked step outputs zeros or (``"repeat"``) the output of the valid step processed before it.
    """
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    batch, time = mask.shape
    units = p["w_h"].shape[0]
    ys, lasts, finals = np.zeros((batch, time, units)), [], []
    for b in range(batch):
        zero = np.zeros(units)
        state = {"h": zero, "c": zero} if kind == "lstm" else zero
        if initial is not None:
            state = jax.tree.map(lambda a: np.asarray(a, np.float64)[b], initial)
        y = zero
        for t in reversed(range(time)) if reverse else range(time):
            if mask[b, t]:
                state, y = np_step(kind, p, state, np.asarray(x[b, t], np.float64))
                ys[b, t] = y
            elif masked_outputs == "repeat":
                ys[b, t] = y
        lasts.append(y)
        finals.append(state)
    return ys, np.stack(lasts), jax.tree.map(lambda *a: np.stack(a), *finals)


# Right padding, holes with left padding, and an empty row.
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0]], bool)


def random_params(layer, input_shape, seed=1):
    """Float32 params of the layer's layout, drawn by NumPy (non-zero biases; no init to compile)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: layer.init(key, input_shape), jax.random.key(0))[0]
    return jax.tree.map(lambda a: 0.5 * rng.standard_normal(a.shape).astype(np.float32), shapes)


def jitted(layer):
    """``layer.apply`` compiled as one program: faster here than op-by-op dispatch, and checks jit too."""
    return jax.jit(layer.apply, static_argnames="train")


def assert_close(actual, expected):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5), actual, expected)


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
        lambda a: a + 0.1 * _random.normal(jax.random.key(1), a.shape), params
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
    params, state = bi.init(jax.random.key(0), (7, 3))
    (y, _), _ = bi.apply(params, state, (x, mask), train=False)
    forward, backward = fnn.GRU(2, return_sequences=True), fnn.GRU(2, return_sequences=True, reverse=True)
    for b, n in enumerate(lengths):
        f, _ = forward.apply(params["forward"], {}, x[b : b + 1, :n], train=False)
        r, _ = backward.apply(params["backward"], {}, x[b : b + 1, :n], train=False)
        np.testing.assert_allclose(y[b, :n], np.concatenate([f[0], r[0]], axis=-1), rtol=1e-5, atol=1e-6)
    summed = fnn.Bidirectional(fnn.GRUCell(2), merge_mode="sum")
    y_sum, _ = summed.apply(params, state, x[:, :4], train=False)
    assert y_sum.shape == (4, 2)


@pytest.mark.parametrize("sequences", [False, True])
def test_bidirectional_wraps_a_layer_as_in_keras(sequences):
    # Issue 20: Bidirectional(fnn.LSTM(8)), the Keras idiom, raised "object of type 'int' has no len()".
    x, mask, lengths = padded_batch(seed=2)
    bi = fnn.Bidirectional(fnn.LSTM(3, return_sequences=sequences), merge_mode="concat")
    params, state = bi.init(jax.random.key(0), (7, 3))
    assert jax.tree.map(jnp.shape, params) == {
        "forward": {"b": (12,), "w_h": (3, 12), "w_x": (3, 12)},
        "backward": {"b": (12,), "w_h": (3, 12), "w_x": (3, 12)},
    }
    y, _ = bi.apply(params, state, (x, lengths), train=False)  # lengths, as a mask
    # The same as the cell form, and as a forward and a reversed LSTM on each unpadded example.
    y_cell, _ = fnn.Bidirectional(fnn.LSTMCell(3), return_sequences=sequences).apply(
        params, state, (x, mask), train=False
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), y, y_cell)
    if sequences:
        y, out_mask = y
        np.testing.assert_array_equal(out_mask, mask)
    forward = fnn.LSTM(3, return_sequences=sequences)
    backward = fnn.LSTM(3, return_sequences=sequences, reverse=True)
    for b, n in enumerate(lengths):
        f, _ = forward.apply(params["forward"], {}, x[b : b + 1, :n], train=False)
        r, _ = backward.apply(params["backward"], {}, x[b : b + 1, :n], train=False)
        expected = np.concatenate([f[0], r[0]], axis=-1)
        np.testing.assert_allclose(y[b, :n] if sequences else y[b], expected, rtol=1e-5, atol=1e-6)


def test_bidirectional_summary_lists_both_directions():
    s = fnn.summary(fnn.Bidirectional(fnn.GRU(2)), (5, 3))
    assert [r.path for r in s.rows] == ["bidirectional", "bidirectional/forward", "bidirectional/backward"]
    assert s.rows[0].output_shape == (4,) and s.params == 2 * (3 * 6 + 2 * 6 + 2 * 6)


def test_initial_state_continues_a_sequence():
    x = np.random.default_rng(2).standard_normal((2, 8, 3)).astype(np.float32)
    layer = fnn.RNN(fnn.LSTMCell(4), return_sequences=True, return_state=True)
    params, _ = layer.init(jax.random.key(0), (8, 3))
    (full, full_state), _ = layer.apply(params, {}, x, train=False)
    (first, mid_state), _ = layer.apply(params, {}, x[:, :5], train=False)
    (rest, end_state), _ = layer.apply(params, {}, {"x": x[:, 5:], "initial_state": mid_state}, train=False)
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), full, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), end_state, full_state)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_embedding_gives_nan_for_negative_and_too_large_ids_never_another_row(compiled):
    # Issue 20: id -1 gave the last row (jnp.take's "fill" mode counts negative ids from the end).
    emb = fnn.Embedding(5, 3)
    params, state = emb.init(jax.random.key(0), fnn.Shape((5,), jnp.int32))
    ids = jnp.array([[-1, 5, -5, 2, 1000]], jnp.int32)

    def lookup(p, ids):
        return emb.apply(p, state, ids, train=False)[0]

    vectors = np.asarray((jax.jit(lookup) if compiled else lookup)(params, ids))
    assert np.all(np.isnan(vectors[0, [0, 1, 2, 4]]))
    np.testing.assert_array_equal(vectors[0, 3], params["table"][2])


@pytest.mark.standard_promotion
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bool_])
def test_embedding_rejects_float_and_bool_ids(dtype):
    emb = fnn.Embedding(5, 3)
    params, state = emb.init(jax.random.key(0), fnn.Shape((2,), jnp.int32))
    with pytest.raises(
        TypeError,
        match=rf"Embedding 'embedding' expects integer inputs \(token ids\), got {jnp.dtype(dtype)} of shape "
        r"\(1, 2\); .*x.astype\(jnp.int32\)",
    ):
        emb.apply(params, state, jnp.ones((1, 2), dtype), train=False)


@pytest.mark.standard_promotion
@pytest.mark.parametrize("make", [fnn.SimpleRNN, fnn.LSTM, fnn.GRU])
def test_recurrent_layers_check_the_feature_size_and_dtype_of_their_inputs(make):
    # Issue 20: a wrong feature size reached XLA's dot_general; an int32 sequence was cast silently.
    layer = make(4, name="rnn")
    params, state = layer.init(jax.random.key(0), (6, 3))
    with pytest.raises(
        ValueError,
        match=r"RNN 'rnn' expects inputs of shape \(batch, time, 3\) \(its params were built for 3 features\), "
        r"got \(2, 6, 5\)",
    ):
        layer.apply(params, state, jnp.ones((2, 6, 5)), train=False)
    with pytest.raises(TypeError, match=r"RNN 'rnn' expects float32 inputs .*got int32 of shape \(2, 6, 3\)"):
        layer.apply(params, state, jnp.ones((2, 6, 3), jnp.int32), train=False)


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
        (lambda: fnn.Embedding(5, 3, mask_index=5), ValueError, r"Embedding 'embedding': mask_index must be an int in \[0, vocab_size-1=4\], got 5"),
        (lambda: fnn.Embedding(5, 3, mask_index=0.5), ValueError, r"Embedding 'embedding': mask_index must be an int in \[0, vocab_size-1=4\], got 0.5"),
        (lambda: fnn.Bidirectional(fnn.LSTM(3), return_sequences=True), ValueError,
         r"Bidirectional 'bidirectional': return_sequences belongs to the wrapped layer 'lstm': build it with it, "
         r"e.g. Bidirectional\(LSTM\(8, return_sequences=True\)\)"),
        (lambda: fnn.Bidirectional(8), TypeError,
         r"Bidirectional 'bidirectional' expects a recurrent layer such as LSTM\(8\) or a Cell such as LSTMCell\(8\), got int"),
        (lambda: fnn.Bidirectional(fnn.Layer(lambda k, s: ({}, {}), lambda p, s, x, *, train, key=None: ((x[:, 0, 0], x), s), "first")).apply(
            {"forward": {}, "backward": {}}, {"forward": {}, "backward": {}}, jnp.ones((1, 4, 3)), train=False), TypeError,
         r"Bidirectional 'bidirectional' merges outputs \(batch, units\) or \(batch, time, units\), optionally with their "
         r"mask and then with the final state \(return_state=True\); its layer 'first' returned \(\(1,\), \(1, 4, 3\)\)"),
        (lambda: fnn.Bidirectional(fnn.LSTM(3), return_state=False), ValueError,
         r"Bidirectional 'bidirectional': return_state belongs to the wrapped layer 'lstm': build it with it, "
         r"e.g. Bidirectional\(LSTM\(8, return_state=False\)\)"),
        (lambda: fnn.RNN(fnn.GRUCell(2), masked_outputs="last"), ValueError,
         r"RNN 'gru': masked_outputs must be one of \('zeros', 'repeat'\), got 'last'"),
        (lambda: fnn.LSTM(2, masked_outputs=None, name="enc"), ValueError,
         r"RNN 'enc': masked_outputs must be one of \('zeros', 'repeat'\), got None"),
        (lambda: fnn.GRU(2, reset_after="no"), TypeError, r"GRUCell 'gru_cell': reset_after must be True or False, got 'no'"),
        (lambda: fnn.RNN(fnn.LSTM(3)), TypeError,
         r"RNN expects a Cell such as LSTMCell\(8\), got the Layer 'lstm'; a layer such as LSTM\(8\) already is "
         r"RNN\(LSTMCell\(8\)\): use it as it is"),
        (lambda: fnn.LSTMCell(0), ValueError, r"LSTMCell 'lstm_cell': units must be a positive int, got 0"),
        (lambda: fnn.GRU(3).apply(fnn.GRU(3).init(jax.random.key(0), (4, 2))[0], {}, {"x": jnp.ones((2, 4, 2)), "initial_state": jnp.ones((2, 5))}, train=False),
         ValueError, r"RNN 'gru': initial_state must be shaped like the cell's carry for this batch, float32\(2, 3\), got float32\(2, 5\)"),
    ],
)  # fmt: skip
def test_recurrent_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "kind, make, options",
    [
        ("simple", fnn.SimpleRNN, {"masked_outputs": "zeros"}),
        ("lstm", fnn.LSTM, {"reverse": True}),
        ("gru", fnn.GRU, {"masked_outputs": "zeros", "reverse": True}),
        ("gru_reset_before", fnn.GRU, {"masked_outputs": "repeat", "reset_after": False}),
    ],
)
def test_shortcuts_with_masks_and_return_state_match_a_numpy_loop(kind, make, options):
    # Issue 23: GRU(reset_after=False), masked steps repeating (the default, as Keras 3) or outputting zeros,
    # and return_state on the LSTM/GRU/SimpleRNN shortcuts.
    x = np.random.default_rng(3).standard_normal((4, 6, 2)).astype(np.float32)
    layer = make(3, return_sequences=True, return_state=True, **options)
    params = random_params(layer, (6, 2))
    if kind == "gru_reset_before":  # Keras's layout: one bias (3U,), which bias_regularizer sees
        assert jax.tree.map(np.shape, params) == {"w_x": (2, 9), "w_h": (3, 9), "b": (9,)}
        cell = fnn.GRUCell(3, reset_after=False, bias_regularizer=lambda b: jnp.sum(b * jnp.arange(9.0)))
        losses = cell.penalties.apply({}, params, None, train=True)["losses"]
        np.testing.assert_allclose(losses["bias_regularizer"], params["b"] @ np.arange(9.0), rtol=1e-5)
    ((ys, out_mask), final), _ = jitted(layer)(params, {}, (x, MASK), train=False)
    reverse = options.get("reverse", False)
    masked_outputs = options.get("masked_outputs", "repeat")
    expected_ys, expected_last, expected_final = run_masked(
        kind, params, x, MASK, reverse=reverse, masked_outputs=masked_outputs
    )
    np.testing.assert_array_equal(out_mask, MASK)
    assert_close(ys, expected_ys)
    assert_close(final, expected_final)
    # The final h is the last valid output, which return_sequences=False returns (tested in the next test).
    np.testing.assert_allclose(final["h"] if kind == "lstm" else final, expected_last, rtol=1e-4, atol=1e-5)


def test_bidirectional_returns_both_directions_final_states():
    # Issue 23: Keras's Bidirectional(..., return_state=True) returns [output, *forward, *backward].
    x = np.random.default_rng(4).standard_normal((4, 6, 2)).astype(np.float32)
    bi = fnn.Bidirectional(fnn.LSTM(3, return_sequences=True, return_state=True))
    params = random_params(bi, (6, 2))
    state = {"forward": {}, "backward": {}}
    ((y, out_mask), states), _ = jitted(bi)(params, state, (x, MASK), train=False)
    f_ys, _, f_final = run_masked("lstm", params["forward"], x, MASK, masked_outputs="zeros")
    b_ys, _, b_final = run_masked("lstm", params["backward"], x, MASK, reverse=True, masked_outputs="zeros")
    np.testing.assert_array_equal(out_mask, MASK)
    assert_close(y, np.concatenate([f_ys, b_ys], axis=-1))  # masked steps are zeros in both halves
    assert_close(states, {"forward": f_final, "backward": b_final})
    # A cell, without return_sequences (the last valid outputs), with one initial state per
    # direction given as the states come back.
    cell = fnn.Bidirectional(fnn.GRUCell(3, reset_after=False), return_state=True, merge_mode="sum")
    params = random_params(cell, (6, 2), seed=2)
    initial = {"forward": np.full((4, 3), 0.5, np.float32), "backward": np.full((4, 3), -0.5, np.float32)}
    (y, states), _ = jitted(cell)(
        params, state, {"x": x, "mask": MASK, "initial_state": initial}, train=False
    )
    _, f_last, f_final = run_masked(
        "gru_reset_before", params["forward"], x, MASK, initial=initial["forward"]
    )
    _, b_last, b_final = run_masked(
        "gru_reset_before", params["backward"], x, MASK, reverse=True, initial=initial["backward"]
    )
    assert_close(y, f_last + b_last)
    assert_close(states, {"forward": f_final, "backward": b_final})
