"""fnn.models: torchvision's weights load unchanged and give torchvision's outputs.

The fixtures tests/fixtures/interop/zoo_* were written by interop/make_fixtures.py
from torchvision's own classes at tiny widths (random weights, reference logits);
the full-size comparison runs in ``make interop`` (interop/compare.py).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import interop, models
from fnn._core import abstract_init, count_params
from fnn.models._common import AdaptiveAvgPool2D
from fnn.models._resnet import _basic_block, _bottleneck

FIXTURES = Path(__file__).parent / "fixtures" / "interop"

# fnn twins of make_fixtures.zoo_cases(): (model, per-example input shape)
TWINS = {
    "zoo_lenet5": lambda: (models.lenet5(num_classes=5, widths=(2, 4, 8, 6)), (32, 32, 1)),
    "zoo_vgg": lambda: (models.VGG([4, "M", 8, "M", 4, "M"], hidden=8, num_classes=5), (24, 24, 3)),
    "zoo_resnet_basic": lambda: (models.ResNet("basic", [1, 2, 1, 1], width=2, num_classes=5), (24, 24, 3)),
    "zoo_resnet_bottleneck": lambda: (
        models.ResNet("bottleneck", [1, 1, 1, 1], width=2, num_classes=5),
        (24, 24, 3),
    ),
    "zoo_mobilenet_v2": lambda: (
        models.MobileNetV2(
            width_mult=0.25,
            round_nearest=4,
            inverted_residual_setting=[(1, 16, 1, 1), (2, 24, 2, 2)],
            last_channel=16,
            num_classes=5,
        ),
        (24, 24, 3),
    ),
}


def _io(case: str) -> tuple[np.ndarray, np.ndarray]:
    io = interop.read_safetensors(FIXTURES / f"{case}.io.safetensors")
    return io["x"], io["y"]


def _predict(model: fnn.Layer, params, state, x) -> np.ndarray:
    return np.asarray(jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])(params, state, x))


@pytest.mark.parametrize("case", sorted(TWINS))
def test_torchvision_weights_load_unchanged_and_give_torchvision_logits(case):
    model, shape = TWINS[case]()
    state_dict = interop.read_safetensors(FIXTURES / f"{case}.safetensors")
    params, state, report = interop.load_torch(model, shape, state_dict)
    assert report.ok and not report.unused and not report.kept
    # every tensor but BatchNorm's step counters was used, under torchvision's own name
    used = {name for _, names in report.mapped for name in names}
    assert used == {k for k in state_dict if not k.endswith("num_batches_tracked")}
    x, y = _io(case)
    np.testing.assert_allclose(_predict(model, params, state, x), y, atol=1e-4, rtol=0)


def test_without_the_top_the_features_are_torchvisions():
    state_dict = interop.read_safetensors(FIXTURES / "zoo_lenet5.safetensors")
    features = models.lenet5(include_top=False, widths=(2, 4, 8, 6))
    params, state, report = interop.load_torch(features, (32, 32, 1), state_dict, ignore="fc*")
    assert sorted(report.ignored) == [f"fc{i}.{p}" for i in (1, 2, 3) for p in ("bias", "weight")]
    x, y = _io("zoo_lenet5")
    maps = _predict(features, params, state, x)
    assert maps.shape == (2, 5, 5, 4)
    # torchvision-style heads read torch.flatten's channels-first order: the file's fc1..fc3 on them give y
    h = maps.transpose(0, 3, 1, 2).reshape(2, -1)
    for i in (1, 2, 3):
        h = h @ state_dict[f"fc{i}.weight"].T + state_dict[f"fc{i}.bias"]
        h = np.tanh(h) if i < 3 else h
    np.testing.assert_allclose(h, y, atol=1e-4)
    pooled = models.ResNet("basic", [1, 1, 1, 1], width=2, include_top=False, pooling="avg")
    assert fnn.output_shape(pooled, (24, 24, 3)) == (16,)


def test_a_block_trains_its_batch_norms_and_keeps_the_state_structure():
    block = _bottleneck(2, 2, True, jnp.float32)  # with its downsample branch
    rng = np.random.default_rng(0)
    params, state = jax.tree.map(  # random values: no init to compile
        lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), abstract_init(block, (6, 6, 4))
    )
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    y, new_state = jax.jit(lambda p, s, x: block.apply(p, s, x, train=True))(params, state, x)
    assert y.shape == (2, 3, 3, 8) and (np.asarray(y) >= 0).all()
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert sorted(new_state) == ["bn1", "bn2", "bn3", "conv1", "conv2", "conv3", "downsample"]
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), new_state, state)))


def test_full_size_models_have_torchvisions_parameter_counts():
    # torchvision's published num_params (its weights' meta); LeNet-5's by hand. (ResNet-50's and
    # MobileNetV2's, slower to trace, are checked against torchvision itself by interop/compare.py.)
    expected = {
        models.resnet18: 11_689_512,
        models.vgg16: 138_357_544,
        models.lenet5: 6 * 26 + 16 * 151 + 400 * 120 + 120 + 121 * 84 + 85 * 10,
    }
    for build, count in expected.items():
        shape = (32, 32, 1) if build is models.lenet5 else (224, 224, 3)
        params, _ = abstract_init(build(), shape)
        assert count_params(params)[0] == count, build.__name__


def test_adaptive_pool_averages_pytorchs_bins():
    x = np.random.default_rng(0).normal(size=(2, 10, 4, 3)).astype(np.float32)
    y, _ = AdaptiveAvgPool2D((7, 7), name="avgpool").apply({}, {}, jnp.asarray(x), train=False)

    def bins(size, out):  # torch's adaptive_avg_pool2d: [floor(i * in / out), ceil((i + 1) * in / out))
        return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]

    expected = np.stack(
        [np.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in bins(4, 7)], axis=1) for a, b in bins(10, 7)],
        axis=1,
    )
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    same, _ = AdaptiveAvgPool2D((10, 4), name="avgpool").apply({}, {}, jnp.asarray(x), train=False)
    assert same is not None and np.array_equal(same, x)


def test_preprocess_input_is_torchvisions_normalisation():
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = models.preprocess_input(pixels)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, (pixels / 255.0 - mean) / std, rtol=1e-6, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"expects RGB images \(\.\.\., 3\), channels last; got shape \(2, 3, 4\)"
    ):
        models.preprocess_input(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="integer or floating images, got bool"):
        models.preprocess_input(np.zeros((1, 3), bool))


def test_bad_arguments_are_named():
    with pytest.raises(
        ValueError, match="ResNet 'resnet': block must be 'basic' or 'bottleneck', got 'wide'"
    ):
        models.ResNet("wide", [2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"layers must be 4 ints \(blocks per stage\), got \[2, 2\]"):
        models.ResNet("basic", [2, 2])
    with pytest.raises(ValueError, match="resnet50': pooling='avg' applies only with include_top=False"):
        models.resnet50(pooling="avg")
    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max', got 'mean'"):
        models.resnet18(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="num_classes=10 needs include_top=True"):
        models.mobilenet_v2(num_classes=10, include_top=False)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        models.vgg16(num_classes=0)
    with pytest.raises(ValueError, match=r"cfg entries must be positive ints \(channels\) or 'M' .*got 'N'"):
        models.VGG([8, "N"])
    with pytest.raises(
        ValueError, match=r"inverted_residual_setting must be .* stride s 1 or 2, got \[\(6, 24, 2, 3\)\]"
    ):
        models.MobileNetV2(inverted_residual_setting=[(6, 24, 2, 3)])
    with pytest.raises(ValueError, match=r"lenet5 'lenet5': widths must be 4 positive ints"):
        models.lenet5(widths=(6, 16))
    vgg, shape = TWINS["zoo_vgg"]()

    def train_without_key(key):
        params, state = vgg.init(key, shape)
        return vgg.apply(params, state, jnp.zeros((1, *shape)), train=True)

    with pytest.raises(ValueError, match="Dropout 'dropout' needs a PRNG key when train=True"):
        jax.eval_shape(train_without_key, jax.random.key(0))
    # a block fed other channels than it was built for says so instead of broadcasting
    block = _basic_block(4, 1, False, jnp.float32)
    with pytest.raises(
        ValueError,
        match=r"BasicBlock 'basic_block' adds its input .* \(6, 6, 2\) .* \(6, 6, 4\); build the block with downsample=True",
    ):
        fnn.output_shape(block, (6, 6, 2))
