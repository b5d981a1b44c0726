"""Writes the small reference fixtures of tests/test_interop.py from the real PyTorch and Keras.

Each case is a tiny model with random weights (every weight, statistic and bias
drawn at random, so that a wrong map cannot hide behind zeros or ones), saved as
the ecosystem saves it, plus ``<case>.io.safetensors`` holding an input ``x`` and
the reference output ``y`` in fnn's layout (channels last). The suite loads
these into the matching fnn models without torch or keras installed.

Run it in the interop environment (``make interop-fixtures``); nothing is downloaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
import torch_zoo  # interop/torch_zoo.py: torchvision's models, importable on a CPU-only torch
from torch import nn

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/interop")
rng = np.random.default_rng(0)


def randomize_torch(module: nn.Module) -> None:
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                value = rng.normal(0, 0.5, t.shape)
                if name.endswith("running_var"):
                    value = np.abs(value) + 0.5
                t.copy_(torch.from_numpy(value.astype(np.float32)))


def randomize_keras(model: keras.Model) -> None:
    weights = []
    for w in model.weights:
        value = rng.normal(0, 0.5, w.shape)
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        weights.append(value.astype(np.float32))
    model.set_weights(weights)


def save_io(case: str, x: np.ndarray, y: np.ndarray) -> None:
    safetensors.numpy.save_file(
        {"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y)}, OUT / f"{case}.io.safetensors"
    )


def torch_case(case: str, module: nn.Module, x: np.ndarray, to_fnn=lambda y: y, x_torch=None) -> None:
    """Saves ``module``'s random weights and its output on ``x`` (``x_torch``: the same input in
    PyTorch's layout, when it differs), brought to fnn's layout by ``to_fnn``."""
    randomize_torch(module)
    module.eval()
    with torch.no_grad():
        y = module(torch.from_numpy(x if x_torch is None else x_torch))
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{case}.safetensors"
    )
    save_io(case, x, to_fnn(y.numpy()))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.gru = nn.GRU(5, 4, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(8, 3, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        h, _ = self.gru(h)
        return self.rnn(h)[0]


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(x, x, x, need_weights=False)[0]
        return self.encoder(h)


def torch_cases() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    torch_case("torch_mlp", mlp, rng.normal(size=(4, 5)).astype(np.float32))

    cnn = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, groups=4),  # depthwise, multiplier 2
        nn.ConvTranspose2d(8, 3, 2, stride=2),
    )
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    torch_case(
        "torch_cnn",
        cnn,
        x,
        x_torch=np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
        to_fnn=lambda y: y.transpose(0, 2, 3, 1),
    )

    ids = rng.integers(0, 10, size=(2, 7))
    torch_case("torch_rnn", Recurrent(), ids, x_torch=ids)

    torch_case("torch_attention", Attention(), rng.normal(size=(2, 5, 8)).astype(np.float32))


def keras_case(case: str, model: keras.Model, x: np.ndarray, archive: bool = False) -> None:
    randomize_keras(model)
    model.save_weights(OUT / f"{case}.weights.h5")
    if archive:
        model.save(OUT / f"{case}.keras")
    save_io(case, x, np.asarray(model(x, training=False)))


def keras_cases() -> None:
    L = keras.layers
    mlp = keras.Sequential([keras.Input((5,)), L.Dense(8, activation="relu"), L.Dense(3)])
    keras_case("keras_mlp", mlp, rng.normal(size=(4, 5)).astype(np.float32), archive=True)

    cnn = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            L.Conv2D(4, 3, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
            L.SeparableConv2D(5, 3, padding="same"),
            L.Conv2DTranspose(3, 2, strides=2),
            L.GlobalAveragePooling2D(),
            keras.Sequential([L.Dense(4), L.Dense(2)]),
        ]
    )
    keras_case("keras_cnn", cnn, rng.normal(size=(2, 6, 6, 3)).astype(np.float32))

    rnn = keras.Sequential(
        [
            keras.Input((7,), dtype="int32"),
            L.Embedding(10, 6),
            L.LSTM(5, return_sequences=True),
            L.Bidirectional(L.GRU(4, return_sequences=True)),
            L.GRU(3, reset_after=False, return_sequences=True),
            L.SimpleRNN(3),
            L.Dense(2),
        ]
    )
    keras_case("keras_rnn", rnn, rng.integers(0, 10, size=(2, 7)).astype(np.int32))

    x_in = keras.Input((5, 8))
    h = L.MultiHeadAttention(2, key_dim=3)(x_in, x_in)
    h = L.LayerNormalization()(h)
    attention = keras.Model(x_in, L.Dense(4)(h))
    keras_case("keras_attention", attention, rng.normal(size=(2, 5, 8)).astype(np.float32))


def zoo_case(case: str, module: nn.Module, x: np.ndarray, zoo_rng: np.random.Generator) -> None:
    """A tiny torchvision-built model for tests/test_models.py: weights, NHWC input, logits."""
    torch_zoo.randomize(module, zoo_rng)
    module.eval()
    with torch.no_grad():
        y = module(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{case}.safetensors"
    )
    save_io(case, x, y)


def zoo_cases() -> None:
    """fnn.models' families, tiny, built from torchvision's own blocks (the twins are in tests/test_models.py)."""
    zoo_rng = np.random.default_rng(23)  # its own stream: the cases above keep their bytes
    torch.manual_seed(23)

    def images(size: int = 24, channels: int = 3) -> np.ndarray:
        # 24x24: odd feature maps (3x3) meet the strided convolutions and VGG's 7x7 adaptive pool
        return zoo_rng.normal(size=(2, size, size, channels)).astype(np.float32)

    zoo_case("zoo_lenet5", torch_zoo.LeNet5(5, (2, 4, 8, 6)), images(32, 1), zoo_rng)
    zoo_case("zoo_vgg", torch_zoo.TinyVGG([4, "M", 8, "M", 4, "M"], 8, 5), images(), zoo_rng)
    basic = torch_zoo.TinyResNet(torch_zoo.BasicBlock, [1, 2, 1, 1], 2, 5)
    zoo_case("zoo_resnet_basic", basic, images(), zoo_rng)
    bottleneck = torch_zoo.TinyResNet(torch_zoo.Bottleneck, [1, 1, 1, 1], 2, 5)
    zoo_case("zoo_resnet_bottleneck", bottleneck, images(), zoo_rng)
    setting = [[1, 16, 1, 1], [2, 24, 2, 2]]  # no expansion; stride 2; a residual with expansion
    mobilenet = torch_zoo.tiny_mobilenet_v2(5, 0.25, setting, 4, 16)
    zoo_case("zoo_mobilenet_v2", mobilenet, images(), zoo_rng)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    torch_cases()
    keras_cases()
    zoo_cases()
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:8d}  {f}")
