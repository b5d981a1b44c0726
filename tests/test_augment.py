"""Augmentations: shapes, ranges, exact behaviour in limiting cases, determinism, eval identity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import augment

IMAGES = jnp.asarray(np.random.default_rng(0).uniform(size=(16, 6, 5, 3)), jnp.float32)
KEY = jax.random.key(3)

TRANSFORMS = {
    "flip": lambda k, x: augment.random_flip(k, x, vertical=True),
    "crop": lambda k, x: augment.random_crop(k, x, padding=2),
    "translation": lambda k, x: augment.random_translation(k, x, height_factor=0.3, width_factor=0.3),
    "rotation": lambda k, x: augment.random_rotation(k, x, max_degrees=45),
    "brightness": lambda k, x: augment.random_brightness(k, x, max_delta=0.2),
    "contrast": lambda k, x: augment.random_contrast(k, x, lower=0.5, upper=1.5),
    "noise": lambda k, x: augment.gaussian_noise(k, x, stddev=0.1),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_keep_shape_and_dtype_and_are_deterministic_per_key(name):
    fn = TRANSFORMS[name]
    out = fn(KEY, IMAGES)
    assert out.shape == IMAGES.shape and out.dtype == IMAGES.dtype
    np.testing.assert_array_equal(out, fn(KEY, IMAGES))
    assert not np.array_equal(out, fn(jax.random.key(4), IMAGES))
    np.testing.assert_allclose(jax.jit(fn)(KEY, IMAGES), out, rtol=1e-5, atol=1e-6)
    # vmappable: a stack of batches, one key each
    stacked = jax.vmap(fn)(jax.random.split(KEY, 2), jnp.stack([IMAGES, IMAGES]))
    assert stacked.shape == (2, *IMAGES.shape)


def test_flip_crop_translation_and_rotation_move_pixels_without_changing_values():
    flipped = augment.random_flip(KEY, IMAGES)
    for original, image in zip(IMAGES, flipped):
        assert np.array_equal(image, original) or np.array_equal(image, original[:, ::-1])
    assert not np.array_equal(flipped, IMAGES)
    np.testing.assert_array_equal(augment.random_crop(KEY, IMAGES, padding=0), IMAGES)
    shifted = augment.random_crop(KEY, IMAGES, padding=1)
    values = set(np.round(np.asarray(IMAGES), 6).ravel()) | {0.0}
    assert set(np.round(np.asarray(shifted), 6).ravel()) <= values
    np.testing.assert_allclose(augment.random_rotation(KEY, IMAGES, max_degrees=0), IMAGES, atol=1e-6)
    # a 180-degree rotation maps the image onto itself reversed
    half_turn = augment.random_rotation(KEY, IMAGES[:1], max_degrees=180)
    assert half_turn.shape == (1, 6, 5, 3)


def test_brightness_contrast_and_noise_stay_in_their_ranges():
    delta = augment.random_brightness(KEY, IMAGES, max_delta=0.2) - IMAGES
    per_image = np.asarray(delta).reshape(16, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1] * np.ones_like(per_image), atol=1e-6)
    assert np.all(np.abs(per_image) <= 0.2 + 1e-6)
    contrasted = augment.random_contrast(KEY, IMAGES, lower=0.5, upper=1.5)
    np.testing.assert_allclose(contrasted.mean(axis=(1, 2)), IMAGES.mean(axis=(1, 2)), atol=1e-5)
    ratio = np.asarray(contrasted.std(axis=(1, 2)) / IMAGES.std(axis=(1, 2)))
    assert np.all((ratio >= 0.5 - 1e-4) & (ratio <= 1.5 + 1e-4))
    noise = augment.gaussian_noise(KEY, jnp.zeros((100_000,)), stddev=0.5)
    assert abs(float(noise.std()) - 0.5) < 0.01


def test_mixup_and_cutmix_mix_labels_by_the_mixed_share():
    labels = jax.nn.one_hot(jnp.arange(16) % 4, 4)
    x, y = augment.mixup(KEY, IMAGES, labels, alpha=0.4)
    assert x.shape == IMAGES.shape and y.shape == (16, 4)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    # an image of constant value v mixes to lam * v + (1 - lam) * v': the labels record lam
    values = jnp.arange(16.0).reshape(16, 1, 1, 1) * jnp.ones((16, 2, 2, 1))
    identity = jnp.eye(16)
    mixed, mixed_labels = augment.mixup(KEY, values, identity, alpha=0.4)
    np.testing.assert_allclose(mixed[:, 0, 0, 0], mixed_labels @ jnp.arange(16.0), rtol=1e-5)
    cut, cut_labels = augment.cutmix(KEY, values, identity, alpha=1.0)
    np.testing.assert_allclose(cut.mean(axis=(1, 2, 3)), cut_labels @ jnp.arange(16.0), rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError,
        match=r"mixup mixes labels, so it needs one-hot \(float\) labels of shape \(16, classes\), got int32 \(16,\)",
    ):
        augment.mixup(KEY, IMAGES, jnp.arange(16))


def test_augmentation_layers_are_identity_in_eval_and_need_a_key_in_training():
    layer = fnn.RandomRotation(20)
    assert layer.apply({}, {}, IMAGES, train=False)[0] is IMAGES
    with pytest.raises(
        ValueError, match=r"RandomRotation 'random_rotation' needs a PRNG key when train=True"
    ):
        layer.apply({}, {}, IMAGES, train=True)
    out, _ = layer.apply({}, {}, IMAGES, train=True, key=KEY)
    np.testing.assert_array_equal(out, augment.random_rotation(KEY, IMAGES, max_degrees=20))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: augment.random_flip(KEY, jnp.ones((4, 4))), r"random_flip expects images of shape \(batch, height, width, channels\), got \(4, 4\)"),
        (lambda: augment.random_crop(KEY, IMAGES, padding=-1), r"random_crop: padding must be an int >= 0, got -1"),
        (lambda: augment.random_rotation(KEY, IMAGES, max_degrees=200), r"max_degrees must be in \[0, 180\], got 200"),
        (lambda: augment.random_contrast(KEY, IMAGES, lower=2, upper=1), r"need 0 <= lower <= upper, got lower=2, upper=1"),
        (lambda: augment.random_translation(KEY, IMAGES, height_factor=1.5, width_factor=0), r"height_factor must be in \[0, 1\), got 1.5"),
    ],
)  # fmt: skip
def test_augmentation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
