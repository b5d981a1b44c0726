"""A small GPT-style character language model, then text sampled with a key/value cache.

The text ships with every Python: the topics of its own documentation
(`pydoc_data.topics`, about 465,000 characters); its first 150,000 characters
train, the next 15,000 validate. Two Llama-style decoder blocks (RMSNorm,
grouped-query attention with rotary positions, SwiGLU), stacked with
`fnn.Repeat` so they compile once, learn to predict every next character of
64-character windows in about a minute on 2 CPU cores. The same params then
decode with `fnn.generate`: the decoding model's attention keeps a cache of
keys and values, so each new character costs one position, not a whole
re-run. Prints a sample, then the validation bits per character last
(uniform guessing: log2 of the vocabulary).

Run: python examples/char_gpt.py   (FNN_EXAMPLE_EPOCHS=2 for a quick run)
"""

import math
import os
import pydoc_data.topics

import jax
import jax.numpy as jnp
import numpy as np

import fnn

EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 6))
CONTEXT, DIM, TRAIN, VALIDATION = 64, 64, 150_000, 15_000

topics = pydoc_data.topics.topics
text = "".join(topics[name] for name in sorted(topics))[: TRAIN + VALIDATION]
chars = sorted(set(text))
ids = np.array([chars.index(c) for c in text], np.int32)


def windows(part: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of CONTEXT + 1 characters: inputs and the next character at every position."""
    w = np.stack([part[i : i + CONTEXT + 1] for i in range(0, len(part) - CONTEXT, stride)])
    return w[:, :-1], w[:, 1:]


x, y = windows(ids[:TRAIN], CONTEXT // 2)
x_val, y_val = windows(ids[TRAIN:], CONTEXT)


def gpt(cache_length=None):
    block = fnn.TransformerDecoderBlock(4, 3 * DIM, num_key_value_heads=2, cache_length=cache_length)
    return fnn.Sequential(
        [fnn.Embedding(len(chars), DIM), fnn.Repeat(block, 2), fnn.RMSNorm(), fnn.Dense(len(chars))]
    )


model = gpt()
print(f"{len(text)} characters, vocabulary {len(chars)}, {len(x)} training windows")
print(f"parameters: {fnn.summary(model, fnn.Shape((CONTEXT,), jnp.int32)).params:,}")
history = fnn.fit(
    model, x, y, loss="sparse_categorical_crossentropy", optimizer=fnn.optimizers.get("adam", learning_rate=3e-3),
    epochs=EPOCHS, batch_size=32, validation_data=(x_val, y_val), seed=0, verbose=0,
)  # fmt: skip

prompt = "The for statement"
decoder = gpt(cache_length=CONTEXT)
_, empty_cache = decoder.init(jax.random.key(0), fnn.Shape((CONTEXT,), jnp.int32))
tokens = fnn.generate(
    decoder, history.params, empty_cache, jnp.array([[chars.index(c) for c in prompt]]),
    CONTEXT - len(prompt), key=jax.random.key(0), temperature=0.7, top_p=0.95,
)  # fmt: skip
print("sample:")
print(prompt + "".join(chars[int(t)] for t in tokens[0]))
print(f"uniform guessing: {math.log2(len(chars)):.3f} bits per char")
print(f"validation bits per char: {history.history['val_loss'][-1] / math.log(2):.3f}")
