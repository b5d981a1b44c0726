"""Sequence to sequence with cross-attention: a Transformer learns to reverse digit strings.

An encoder (embeddings, learned positions, two TransformerEncoderBlocks) reads
8 random digits; a decoder (two TransformerDecoderBlocks with causal
self-attention and cross-attention to the encoder's output, stacked with
`fnn.Repeat`) writes them backwards, trained with teacher forcing: it sees the
start token and the true digits so far. The model is one custom layer, two
functions over fnn layers and their params and state. At test time the decoder writes one digit at a time
from its own previous ones (greedy). Prints the exact-match accuracy on 500
new strings last.

Run: python examples/seq2seq_reverse.py   (FNN_EXAMPLE_EPOCHS=3 for a quick run)
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

import fnn

EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 10))
LENGTH, DIM, START = 8, 64, 10  # digits are tokens 0-9; 10 starts the output
VOCAB = 11


def pairs(n: int, seed: int) -> tuple[dict, np.ndarray]:
    """``n`` digit strings, the decoder's teacher-forced inputs, and the reversed strings."""
    digits = np.random.default_rng(seed).integers(0, 10, size=(n, LENGTH)).astype(np.int32)
    target = digits[:, ::-1]
    shifted = np.concatenate([np.full((n, 1), START, np.int32), target[:, :-1]], axis=1)
    return {"source": digits, "target_in": shifted}, np.ascontiguousarray(target)


def Seq2Seq(name: str = "seq2seq") -> fnn.Layer:
    encoder = fnn.Sequential(
        [
            fnn.Embedding(VOCAB, DIM),
            fnn.LearnedPositionalEmbedding(LENGTH),
            fnn.Repeat(fnn.TransformerEncoderBlock(4, 2 * DIM, dropout=0.0), 2),
            fnn.LayerNorm(),
        ]
    )
    embed = fnn.Embedding(VOCAB, DIM)
    decoder = fnn.Repeat(fnn.TransformerDecoderBlock(4, 2 * DIM, cross_attention=True), 2)
    head = fnn.Sequential([fnn.RMSNorm(), fnn.Dense(VOCAB)])

    parts = {"encoder": encoder, "embed": embed, "decoder": decoder, "head": head}

    def init(key, input_shape):
        shapes = {
            "encoder": input_shape["source"],
            "embed": input_shape["target_in"],
            "decoder": {"x": (LENGTH, DIM), "memory": (LENGTH, DIM)},
            "head": (LENGTH, DIM),
        }
        made = {
            n: part.init(jax.random.fold_in(key, i), shapes[n]) for i, (n, part) in enumerate(parts.items())
        }
        return {n: m[0] for n, m in made.items()}, {n: m[1] for n, m in made.items()}

    def apply(params, state, x, *, train, key=None):
        def run(part, inputs):  # no part changes its state (no BatchNorm) or needs a key (no dropout)
            return parts[part].apply(params[part], state[part], inputs, train=train)[0]

        memory = run("encoder", x["source"])
        h = run("decoder", {"x": run("embed", x["target_in"]), "memory": memory})["x"]
        return run("head", h), state

    return fnn.Layer(init, apply, name)


model = Seq2Seq()
x, y = pairs(8000, seed=0)
x_test, y_test = pairs(500, seed=1)
shapes = {"source": fnn.Shape((LENGTH,), jnp.int32), "target_in": fnn.Shape((LENGTH,), jnp.int32)}
print(f"parameters: {fnn.summary(model, shapes).params:,}")
history = fnn.fit(
    model, x, y, loss="sparse_categorical_crossentropy", optimizer=fnn.optimizers.get("adam", learning_rate=2e-3),
    epochs=EPOCHS, batch_size=64, seed=0, verbose=0,
)  # fmt: skip


@jax.jit
def greedy(params, state, source):
    """Writes the output one digit at a time, each from the digits it wrote before."""

    def write(t, target_in):
        logits, _ = model.apply(params, state, {"source": source, "target_in": target_in}, train=False)
        digit = jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32)
        return target_in.at[:, t + 1].set(digit) if t + 1 < LENGTH else target_in, digit

    target_in = jnp.full(source.shape, START, jnp.int32)
    digits = []
    for t in range(LENGTH):  # LENGTH is small: unrolled, one program
        target_in, digit = write(t, target_in)
        digits.append(digit)
    return jnp.stack(digits, axis=1)


written = np.asarray(greedy(history.params, history.state, x_test["source"]))
print(f"final training loss: {history.history['loss'][-1]:.4f}")
print(f"{x_test['source'][0].tolist()} -> {written[0].tolist()}")
print(f"exact-match accuracy: {np.mean((written == y_test).all(axis=1)):.3f}")
