"""Sequence classification that needs memory: an LSTM over padded, variable-length sequences.

Each sequence holds 5 to 40 random tokens (1..9), right-padded with 0. The label
says whether the *first* token is above 5, so the network must carry it through
up to 39 distracting steps. Embedding(mask_index=0) makes the mask; the LSTM
skips padded steps, so padding never changes a prediction. The trivial baseline
(the majority class) scores about 0.56.

Run: python examples/sequence_classification.py   (prints `test accuracy: X` last)
"""

import os

import numpy as np

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
MAX_LEN, VOCAB = 40, 10


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, MAX_LEN + 1, n)
    tokens = rng.integers(1, VOCAB, (n, MAX_LEN)).astype(np.int32)
    tokens[np.arange(MAX_LEN)[None, :] >= lengths[:, None]] = 0  # right padding
    return tokens, (tokens[:, 0] > 5).astype(np.int32)


x_train, y_train = make_data(4000, seed=0)
x_test, y_test = make_data(1000, seed=1)

model = fnn.Sequential([fnn.Embedding(VOCAB, 16, mask_index=0), fnn.LSTM(32), fnn.Dense(2)])
print(fnn.summary(model, fnn.Shape((MAX_LEN,), np.int32)))
loss = "sparse_categorical_crossentropy"
history = fnn.fit(
    model, x_train, y_train, loss=loss, optimizer=fnn.optimizers.get("adam", learning_rate=3e-3),
    metrics=["accuracy"], epochs=15, batch_size=64, validation_split=0.1, seed=SEED, verbose=2,
)  # fmt: skip
baseline = max(np.mean(y_test), 1 - np.mean(y_test))
test = fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=["accuracy"])
print(f"majority-class baseline: {baseline:.3f}")
print(f"test accuracy: {test['accuracy']:.3f}")
