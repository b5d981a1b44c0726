"""Every layer and combinator with an example input, for the shared contract tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

import fnn


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], fnn.Layer]
    input_shape: tuple
    needs_key: bool = False  # apply(train=True) needs a PRNG key
    # (numpy Generator, batch) -> input batch; standard normal floats when None
    make_input: Callable[[np.random.Generator, int], Any] | None = None
    # Where the layer computes in bfloat16 on purpose, float64 finite differences cannot
    # match it and XLA's fusions may round differently under jit (test_precision checks
    # it against float32 instead).
    bfloat16: bool = False
    # The inputs apply takes: "float" (int and bool are a TypeError naming the layer), "int"
    # (token ids: floats are the error) or "any" (shape-only layers).
    takes: str = "float"


def tokens(time, vocab, pad=True):
    """Int token batches (batch, time), right-padded with 0 after a random length when ``pad``."""

    def make(rng, batch):
        ids = rng.integers(1, vocab, size=(batch, time)).astype(np.int32)
        if pad:
            lengths = rng.integers(1, time + 1, size=batch)
            ids[np.arange(time)[None, :] >= lengths[:, None]] = 0
        return ids

    return make


def masked(time, features):
    """(x, mask) batches: float sequences and a bool mask of random valid lengths."""

    def make(rng, batch):
        lengths = rng.integers(1, time + 1, size=batch)
        x = rng.standard_normal((batch, time, features)).astype(np.float32)
        return x, np.arange(time)[None, :] < lengths[:, None]

    return make


class Shapes(dict):
    """A dict input_shape (multi-input layers) that hashes, as every Case field must."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))


def cross(q_time, kv_time, features, heads):
    """Cross-attention dicts: query and value (feature sizes ``features``) and every mask."""

    def make(rng, batch):
        x = {
            k: rng.standard_normal((batch, t, f)).astype(np.float32)
            for k, t, f in zip(("query", "value"), (q_time, kv_time), features)
        }
        return {
            **x,
            "query_mask": rng.random((batch, q_time)) < 0.8,
            "value_mask": rng.random((batch, kv_time)) < 0.8,
            "attention_mask": rng.random((batch, heads, q_time, kv_time)) < 0.8,
        }

    return make


def decoder_inputs(time, features, memory_time, memory_features):
    """Decoder-block dicts: padded sequences, and an encoder memory with its own padding."""

    def make(rng, batch):
        x, mask = masked(time, features)(rng, batch)
        memory, memory_mask = masked(memory_time, memory_features)(rng, batch)
        return {"x": x, "mask": mask, "memory": memory, "memory_mask": memory_mask}

    return make


def _branchy() -> fnn.Layer:
    return fnn.Sequential(
        [
            fnn.FanOut(2),
            fnn.Parallel([fnn.Dense(3, "tanh"), fnn.Sequential([fnn.Dense(2), fnn.Gelu()])]),
            fnn.FanInConcat(),
        ]
    )


CASES = [
    Case("dense", lambda: fnn.Dense(4), (3,)),
    Case("dense_tanh_nobias", lambda: fnn.Dense(2, "tanh", use_bias=False), (5,)),
    Case("dense_rank3", lambda: fnn.Dense(3, "sigmoid"), (4, 2)),
    Case(
        "dense_regularized",
        lambda: fnn.Dense(
            3,
            "tanh",
            kernel_regularizer="l2",
            bias_regularizer=fnn.regularizers.l1(0.1),
            activity_regularizer=fnn.regularizers.l1_l2(0.01, 0.1),
        ),
        (4,),
    ),
    Case("activity_regularization", lambda: fnn.ActivityRegularization(l1=0.01, l2=0.1), (3, 2)),
    Case("lambda", lambda: fnn.Lambda(lambda x: jnp.sin(x) * 2.0), (3,), takes="any"),
    Case("identity", lambda: fnn.Identity(), (2, 3), takes="any"),
    Case("flatten", lambda: fnn.Flatten(), (2, 3, 2), takes="any"),
    Case("reshape", lambda: fnn.Reshape((3, -1)), (6,), takes="any"),
    Case("dropout", lambda: fnn.Dropout(0.3), (8,), needs_key=True),
    Case("activation_kwargs", lambda: fnn.Activation("leaky_relu", negative_slope=0.2), (4,)),
    *[Case(f"activation_{ctor.__name__}", ctor, (4,)) for ctor in fnn.layers.ACTIVATION_LAYERS],
    Case(
        "sequential",
        lambda: fnn.Sequential([fnn.Dense(5, "tanh"), fnn.Dropout(0.2), fnn.Dense(2)]),
        (3,),
        needs_key=True,
    ),
    Case("sequential_nested", lambda: fnn.Sequential([fnn.Sequential([fnn.Dense(3)]), fnn.Dense(3)]), (2,)),
    Case("branches", _branchy, (4,)),
    Case("fan_in_sum", lambda: fnn.Sequential([fnn.FanOut(3), fnn.FanInSum()]), (2,), takes="any"),
    Case("residual", lambda: fnn.Residual(fnn.Sequential([fnn.Dense(3, "tanh"), fnn.Dense(3)])), (3,)),
    Case(
        "remat_with_batchnorm_and_dropout",
        lambda: fnn.Remat(
            fnn.Sequential([fnn.Dense(4, "tanh"), fnn.BatchNorm(), fnn.Dropout(0.5)]), policy="dots_saveable"
        ),
        (3,),
        needs_key=True,
    ),
    Case(
        "mixed_precision_with_float32_batchnorm",
        lambda: fnn.MixedPrecision(
            fnn.Sequential(
                [fnn.MixedPrecision(fnn.BatchNorm(), "float32"), fnn.Dense(4, "tanh"), fnn.Dense(2)]
            )
        ),
        (3,),
        bfloat16=True,
    ),
    Case(
        "inference_mode",
        lambda: fnn.InferenceMode(fnn.Sequential([fnn.Dense(4), fnn.BatchNorm(), fnn.Dropout(0.5)])),
        (3,),
    ),
    # vision
    Case("conv1d", lambda: fnn.Conv1D(3, 3, strides=2, padding="same"), (7, 2)),
    Case("conv2d", lambda: fnn.Conv2D(4, (3, 2), padding="valid", activation="tanh"), (5, 4, 3)),
    Case("conv2d_dilated_groups", lambda: fnn.Conv2D(4, 2, dilation=2, groups=2, padding=(1, 0)), (5, 5, 2)),
    Case("conv3d", lambda: fnn.Conv3D(2, 2, padding="same"), (3, 4, 3, 2)),
    Case("conv1d_transpose", lambda: fnn.Conv1DTranspose(2, 3, strides=2), (4, 3)),
    Case("conv2d_transpose", lambda: fnn.Conv2DTranspose(3, 3, strides=2, padding="same"), (3, 3, 2)),
    Case("conv3d_transpose", lambda: fnn.Conv3DTranspose(2, 2, strides=(1, 2, 1)), (2, 2, 2, 1)),
    Case("depthwise_conv2d", lambda: fnn.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (4, 4, 2)),
    Case("separable_conv2d", lambda: fnn.SeparableConv2D(3, 2), (4, 4, 2)),
    Case("max_pool1d", lambda: fnn.MaxPool1D(2), (6, 2)),
    Case("max_pool2d_same", lambda: fnn.MaxPool2D(3, strides=2, padding="same"), (5, 5, 2)),
    Case("max_pool3d", lambda: fnn.MaxPool3D(2), (4, 4, 2, 1)),
    Case("avg_pool1d", lambda: fnn.AvgPool1D(3, strides=1, padding="same"), (5, 2)),
    Case("avg_pool2d", lambda: fnn.AvgPool2D(2), (4, 4, 3)),
    Case("avg_pool3d_padded", lambda: fnn.AvgPool3D(2, padding=1), (2, 3, 2, 1)),
    Case("global_max_pool", lambda: fnn.GlobalMaxPool(), (3, 3, 2)),
    Case("global_avg_pool", lambda: fnn.GlobalAvgPool(keepdims=True), (3, 4)),
    Case("batch_norm", lambda: fnn.BatchNorm(momentum=0.9), (3, 3, 2)),
    Case("layer_norm", lambda: fnn.LayerNorm(), (2, 4)),
    Case("group_norm", lambda: fnn.GroupNorm(2), (3, 4)),
    Case("rms_norm", lambda: fnn.RMSNorm(), (5,)),
    Case("spatial_dropout", lambda: fnn.SpatialDropout(0.5), (3, 3, 4), needs_key=True),
    Case("random_flip", lambda: fnn.RandomFlip(vertical=True), (4, 4, 2), needs_key=True),
    Case("random_crop", lambda: fnn.RandomCrop(1), (4, 4, 1), needs_key=True),
    Case("random_translation", lambda: fnn.RandomTranslation(0.25, 0.25), (4, 4, 1), needs_key=True),
    Case("random_rotation", lambda: fnn.RandomRotation(30), (5, 5, 2), needs_key=True),
    Case("random_brightness", lambda: fnn.RandomBrightness(0.2), (3, 3, 1), needs_key=True),
    Case("random_contrast", lambda: fnn.RandomContrast(0.5, 1.5), (3, 3, 2), needs_key=True),
    Case("gaussian_noise", lambda: fnn.GaussianNoise(0.1), (5,), needs_key=True),
    # preprocessing
    Case("normalization", lambda: fnn.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 1.0, 0.25]), (3,)),
    Case("rescaling", lambda: fnn.Rescaling(0.5, offset=1.0), (2,)),
    # sequences
    Case(
        "embedding",
        lambda: fnn.Embedding(7, 3),
        fnn.Shape((4,), jnp.int32),
        make_input=tokens(4, 7, pad=False),
        takes="int",
    ),
    Case(
        "embedding_masked",
        lambda: fnn.Embedding(7, 3, mask_index=0),
        fnn.Shape((5,), jnp.int32),
        make_input=tokens(5, 7),
        takes="int",
    ),
    Case("simple_rnn", lambda: fnn.SimpleRNN(3), (4, 2)),
    Case("lstm_sequences", lambda: fnn.LSTM(3, return_sequences=True), (4, 2)),
    Case("gru_reverse", lambda: fnn.GRU(3, reverse=True, reset_after=False), (4, 2)),  # Keras's other GRU
    Case("lstm_masked", lambda: fnn.LSTM(3), ((5, 2), fnn.Shape((5,), jnp.bool_)), make_input=masked(5, 2)),
    Case(
        "bidirectional_masked",
        lambda: fnn.Bidirectional(fnn.GRUCell(2), return_sequences=True, return_state=True, merge_mode="sum"),
        ((4, 3), fnn.Shape((4,), jnp.bool_)),
        make_input=masked(4, 3),
    ),
    Case("gru", lambda: fnn.GRU(3), (4, 2)),  # the default, reset_after=True
    # Cross-attention with every mask, causal, dropout and the scores; self-attention and (x, mask)
    # inputs reach attention through transformer_block (one case: the suite's time).
    Case(
        "attention_cross_masks_scores",
        lambda: fnn.MultiHeadAttention(
            2, key_dim=2, value_dim=1, output_dim=3, causal=True, dropout=0.2, return_attention_scores=True
        ),
        Shapes(
            query=(3, 4),
            value=(4, 2),
            query_mask=fnn.Shape((3,), jnp.bool_),
            value_mask=fnn.Shape((4,), jnp.bool_),
            attention_mask=fnn.Shape((2, 3, 4), jnp.bool_),
        ),
        make_input=cross(3, 4, (4, 2), heads=2),
        needs_key=True,
    ),
    Case(
        "decoder_block_cross",
        lambda: fnn.TransformerDecoderBlock(2, 8, cross_attention=True, dropout=0.1),
        Shapes(
            x=(4, 4), mask=fnn.Shape((4,), jnp.bool_), memory=(3, 2), memory_mask=fnn.Shape((3,), jnp.bool_)
        ),
        make_input=decoder_inputs(4, 4, 3, 2),
        needs_key=True,
    ),
    # Two GPT-2-style blocks with multi-query attention, RoPE and padded keys (the
    # dot_product_attention path in float32), run by lax.scan.
    Case(
        "repeat_decoder_blocks",
        lambda: fnn.Repeat(
            fnn.TransformerDecoderBlock(2, 8, num_key_value_heads=1, norm="layer", mlp="gelu", use_bias=True),
            2,
        ),
        ((4, 4), fnn.Shape((4,), jnp.bool_)),
        make_input=masked(4, 4),
    ),
    Case("sinusoidal_positions", lambda: fnn.SinusoidalPositionalEmbedding(), (5, 4)),
    Case("learned_positions", lambda: fnn.LearnedPositionalEmbedding(8), (5, 4)),
    Case(
        "transformer_block",
        lambda: fnn.TransformerEncoderBlock(2, 8),
        ((4, 4), fnn.Shape((4,), jnp.bool_)),
        needs_key=True,
        make_input=masked(4, 4),
    ),
]
