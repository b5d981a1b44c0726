"""A small causal transformer language model on the Zen of Python, character by character.

The text ships with every Python (the `this` module). Windows of 48 characters
predict the next character at every position; two pre-norm transformer blocks
with causal self-attention learn it in about a minute on 2 CPU cores. Prints
the final training loss and a sample generated from the opening words.

Run: python examples/char_transformer.py   (prints the loss and the sample last)
"""

import codecs
import contextlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np

import fnn

with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
    import this
TEXT = codecs.decode(this.s, "rot13")
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 60))
CONTEXT, DIM = 48, 64

chars = sorted(set(TEXT))
index = {c: i for i, c in enumerate(chars)}
ids = np.array([index[c] for c in TEXT], np.int32)
windows = np.stack([ids[i : i + CONTEXT + 1] for i in range(len(ids) - CONTEXT)])
x, y = windows[:, :-1], windows[:, 1:]  # predict every next character

model = fnn.Sequential(
    [
        fnn.Embedding(len(chars), DIM),
        fnn.LearnedPositionalEmbedding(CONTEXT),
        fnn.TransformerEncoderBlock(4, 4 * DIM, causal=True, dropout=0.1),
        fnn.TransformerEncoderBlock(4, 4 * DIM, causal=True, dropout=0.1),
        fnn.LayerNorm(),
        fnn.Dense(len(chars)),
    ]
)
print(f"{len(TEXT)} characters, vocabulary {len(chars)}, {len(x)} windows")
print(f"parameters: {fnn.summary(model, fnn.Shape((CONTEXT,), jnp.int32)).params:,}")
history = fnn.fit(
    model, x, y, loss="sparse_categorical_crossentropy", optimizer=fnn.optimizers.get("adam", learning_rate=2e-3),
    epochs=EPOCHS, batch_size=32, seed=0, verbose=0,
)  # fmt: skip

forward = jax.jit(lambda params, state, window: model.apply(params, state, window, train=False)[0][0, -1])


def generate(prompt: str, length: int, key: jax.Array, temperature: float = 0.5) -> str:
    window = [index[c] for c in prompt[-CONTEXT:]]
    out = prompt
    for i in range(length):
        logits = forward(history.params, history.state, jnp.array([window[-CONTEXT:]], jnp.int32))
        nxt = int(jax.random.categorical(jax.random.fold_in(key, i), logits / temperature))
        window.append(nxt)
        out += chars[nxt]
    return out


sample = generate(TEXT[:CONTEXT], 120, jax.random.key(0))
print("sample:")
print(sample)
print(f"final loss: {history.history['loss'][-1]:.3f} (uniform guessing: {np.log(len(chars)):.3f})")
