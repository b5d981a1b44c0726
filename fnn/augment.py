"""Data augmentation: pure, jittable, vmappable functions of an explicit key and a batch.

Images are channels-last batches ``(batch, height, width, channels)``; each
example gets its own random draw from the one ``key``. The same key gives the
same result. Every transform is also a layer (``RandomFlip()``, ...) that is
active only with ``train=True`` and the identity in eval, so a model can carry
its augmentation and a fused :func:`fnn.fit` runs it on the device.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fnn import augment
    >>> images = jnp.arange(2 * 4 * 4 * 1.0).reshape(2, 4, 4, 1)
    >>> augment.random_flip(jax.random.key(0), images).shape
    (2, 4, 4, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fnn import _random
from fnn._checks import check_int
from fnn._core import Layer, check_input_dtype, check_name, default_name, make_layer, require_key


def _images(fn: str, images: ArrayLike) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{fn} expects images of shape (batch, height, width, channels), got {images.shape}")
    return images


def _per_example(values: jax.Array, ndim: int) -> jax.Array:
    """Reshapes ``(batch,)`` draws to broadcast against a rank-``ndim`` batch."""
    return values.reshape((-1,) + (1,) * (ndim - 1))


def random_flip(
    key: jax.Array, images: ArrayLike, *, horizontal: bool = True, vertical: bool = False
) -> jax.Array:
    """Flips each image left-right (and/or upside down) with probability 1/2.

    Args:
        key: PRNG key.
        images: ``(batch, height, width, channels)``.
        horizontal: flip along the width.
        vertical: flip along the height.

    Returns:
        The images, same shape and dtype.
    """
    images = _images("random_flip", images)
    for axis, enabled, k in zip((2, 1), (horizontal, vertical), jax.random.split(key)):
        if enabled:
            flip = jax.random.bernoulli(k, 0.5, (images.shape[0],))
            images = jnp.where(_per_example(flip, 4), jnp.flip(images, axis=axis), images)
    return images


def _shift_crop(key: jax.Array, images: jax.Array, pad_h: int, pad_w: int, fill: float) -> jax.Array:
    """Pads by (pad_h, pad_w) on each side, then cuts the original size at a random offset."""
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)), constant_values=fill)
    k_h, k_w = jax.random.split(key)
    top = jax.random.randint(k_h, (batch,), 0, 2 * pad_h + 1)
    left = jax.random.randint(k_w, (batch,), 0, 2 * pad_w + 1)

    def crop(image: jax.Array, t: jax.Array, lft: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (t, lft, 0), (height, width, channels))

    return jax.vmap(crop)(padded, top, left)


def random_crop(key: jax.Array, images: ArrayLike, *, padding: int, fill: float = 0.0) -> jax.Array:
    """Pads each image by ``padding`` pixels with ``fill``, then crops back to its size at a random offset.

    The classic CIFAR augmentation; output shape equals input shape.
    """
    images = _images("random_crop", images)
    padding = check_int("random_crop", "padding", padding, low=0)
    return _shift_crop(key, images, padding, padding, fill)


def random_translation(
    key: jax.Array, images: ArrayLike, *, height_factor: float, width_factor: float, fill: float = 0.0
) -> jax.Array:
    """Shifts each image by up to ``factor * size`` pixels along each axis, filling with ``fill``."""
    images = _images("random_translation", images)
    for arg, factor in (("height_factor", height_factor), ("width_factor", width_factor)):
        if not 0 <= factor < 1:
            raise ValueError(f"random_translation: {arg} must be in [0, 1), got {factor!r}")
    _, height, width, _ = images.shape
    return _shift_crop(key, images, int(height_factor * height), int(width_factor * width), fill)


def random_rotation(key: jax.Array, images: ArrayLike, *, max_degrees: float, fill: float = 0.0) -> jax.Array:
    """Rotates each image about its centre by an angle in ``[-max_degrees, max_degrees]``.

    Bilinear interpolation; pixels from outside the image take ``fill``.
    """
    images = _images("random_rotation", images)
    if not 0 <= max_degrees <= 180:
        raise ValueError(f"random_rotation: max_degrees must be in [0, 180], got {max_degrees!r}")
    batch, height, width, _ = images.shape
    dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
    angles = jax.random.uniform(key, (batch,), dtype, -max_degrees, max_degrees) * (math.pi / 180)
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij")
    center_r, center_c = (height - 1) / 2, (width - 1) / 2

    def rotate(image: jax.Array, angle: jax.Array) -> jax.Array:
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        # The source pixel of each output pixel: the inverse rotation of its coordinates.
        src_r = cos * (rows - center_r) - sin * (cols - center_c) + center_r
        src_c = sin * (rows - center_r) + cos * (cols - center_c) + center_c

        def channel(plane: jax.Array) -> jax.Array:
            return jax.scipy.ndimage.map_coordinates(
                plane, [src_r, src_c], order=1, mode="constant", cval=fill
            )

        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(rotate)(images, angles).astype(images.dtype)


def random_brightness(key: jax.Array, images: ArrayLike, *, max_delta: float) -> jax.Array:
    """Adds one offset in ``[-max_delta, max_delta]`` to every pixel of each image."""
    images = _images("random_brightness", images)
    if max_delta < 0:
        raise ValueError(f"random_brightness: max_delta must be >= 0, got {max_delta!r}")
    delta = jax.random.uniform(key, (images.shape[0],), images.dtype, -max_delta, max_delta)
    return images + _per_example(delta, 4)


def random_contrast(key: jax.Array, images: ArrayLike, *, lower: float, upper: float) -> jax.Array:
    """Scales each image's deviation from its per-channel mean by a factor in ``[lower, upper]``."""
    images = _images("random_contrast", images)
    if not 0 <= lower <= upper:
        raise ValueError(f"random_contrast: need 0 <= lower <= upper, got lower={lower!r}, upper={upper!r}")
    factor = _per_example(jax.random.uniform(key, (images.shape[0],), images.dtype, lower, upper), 4)
    mean = jnp.mean(images, axis=(1, 2), keepdims=True)
    return (images - mean) * factor + mean


def gaussian_noise(key: jax.Array, x: ArrayLike, *, stddev: float) -> jax.Array:
    """Adds zero-mean Gaussian noise of standard deviation ``stddev`` (any shape)."""
    x = jnp.asarray(x)
    if stddev < 0:
        raise ValueError(f"gaussian_noise: stddev must be >= 0, got {stddev!r}")
    return x + stddev * _random.normal(key, x.shape, x.dtype)


def _check_soft_labels(fn: str, x: jax.Array, y: ArrayLike) -> jax.Array:
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.floating) or y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{fn} mixes labels, so it needs one-hot (float) labels of shape ({x.shape[0]}, classes), got "
            f"{y.dtype} {y.shape}; convert with jax.nn.one_hot(labels, classes)"
        )
    return y


def mixup(key: jax.Array, x: ArrayLike, y: ArrayLike, *, alpha: float = 0.2) -> tuple[jax.Array, jax.Array]:
    """Mixes each example with a random partner: ``lam * a + (1 - lam) * b``, labels alike.

    Args:
        key: PRNG key.
        x: a batch ``(batch, ...)``.
        y: one-hot or soft labels ``(batch, classes)``.
        alpha: ``lam ~ Beta(alpha, alpha)``, one per example.

    Returns:
        The mixed ``(x, y)``.

    Examples:
        >>> x, y = jnp.ones((4, 3)), jax.nn.one_hot(jnp.arange(4) % 2, 2)
        >>> _, mixed = mixup(jax.random.key(0), x, y)
        >>> [round(float(s), 5) for s in mixed.sum(axis=1)]
        [1.0, 1.0, 1.0, 1.0]
    """
    x = jnp.asarray(x)
    y = _check_soft_labels("mixup", x, y)
    if alpha <= 0:
        raise ValueError(f"mixup: alpha must be positive, got {alpha!r}")
    k_lam, k_perm = jax.random.split(key)
    lam = jax.random.beta(k_lam, alpha, alpha, (x.shape[0],)).astype(x.dtype)
    partner = jax.random.permutation(k_perm, x.shape[0])
    mixed_x = _per_example(lam, x.ndim) * x + _per_example(1 - lam, x.ndim) * x[partner]
    mixed_y = lam[:, None] * y + (1 - lam)[:, None] * y[partner]
    return mixed_x, mixed_y


def cutmix(
    key: jax.Array, images: ArrayLike, y: ArrayLike, *, alpha: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Pastes a random box from a partner image into each image; labels mix by the box's area.

    Args:
        key: PRNG key.
        images: ``(batch, height, width, channels)``.
        y: one-hot or soft labels ``(batch, classes)``.
        alpha: the box covers ``1 - lam`` of the image, ``lam ~ Beta(alpha, alpha)``.

    Returns:
        The mixed ``(images, y)``; each label weight is the exact pixel share.
    """
    images = _images("cutmix", images)
    y = _check_soft_labels("cutmix", images, y)
    if alpha <= 0:
        raise ValueError(f"cutmix: alpha must be positive, got {alpha!r}")
    batch, height, width, _ = images.shape
    k_lam, k_r, k_c, k_perm = jax.random.split(key, 4)
    lam = jax.random.beta(k_lam, alpha, alpha, (batch,))
    cut = jnp.sqrt(1 - lam)
    box_h, box_w = jnp.round(cut * height), jnp.round(cut * width)
    center_r = jax.random.uniform(k_r, (batch,)) * height
    center_c = jax.random.uniform(k_c, (batch,)) * width
    top, bottom = jnp.clip(center_r - box_h / 2, 0, height), jnp.clip(center_r + box_h / 2, 0, height)
    left, right = jnp.clip(center_c - box_w / 2, 0, width), jnp.clip(center_c + box_w / 2, 0, width)
    rows = jnp.arange(height, dtype=jnp.float32).reshape(1, height, 1)
    cols = jnp.arange(width, dtype=jnp.float32).reshape(1, 1, width)
    inside = (
        (rows >= jnp.floor(top).reshape(-1, 1, 1))
        & (rows < jnp.floor(bottom).reshape(-1, 1, 1))
        & (cols >= jnp.floor(left).reshape(-1, 1, 1))
        & (cols < jnp.floor(right).reshape(-1, 1, 1))
    )
    partner = jax.random.permutation(k_perm, batch)
    mixed = jnp.where(inside[..., None], images[partner], images)
    share = (1 - jnp.mean(inside, axis=(1, 2))).astype(y.dtype)[:, None]
    return mixed, share * y + (1 - share) * y[partner]


# ------------------------------------------------------------------------------ layers


def _augment_layer(kind: str, name: str | None, transform: Callable[[jax.Array, Any], jax.Array]) -> Layer:
    """A layer applying ``transform(key, x)`` with ``train=True`` and the identity in eval."""
    name = check_name(kind, name or default_name(kind))

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params
        check_input_dtype(kind, name, x, jnp.floating)  # in eval too: a model takes one dtype
        if not train:
            return x, state
        return transform(require_key(kind, name, key), x), state

    return make_layer(kind, name, init, apply)


def RandomFlip(*, horizontal: bool = True, vertical: bool = False, name: str | None = None) -> Layer:
    """:func:`random_flip` as a layer (training only)."""
    return _augment_layer(
        "RandomFlip", name, lambda k, x: random_flip(k, x, horizontal=horizontal, vertical=vertical)
    )


def RandomCrop(padding: int, *, fill: float = 0.0, name: str | None = None) -> Layer:
    """:func:`random_crop` as a layer (training only)."""
    return _augment_layer("RandomCrop", name, lambda k, x: random_crop(k, x, padding=padding, fill=fill))


def RandomTranslation(
    height_factor: float, width_factor: float, *, fill: float = 0.0, name: str | None = None
) -> Layer:
    """:func:`random_translation` as a layer (training only).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = RandomTranslation(0.1, 0.1)
        >>> x = jnp.ones((2, 8, 8, 1))
        >>> layer.apply({}, {}, x, train=False)[0] is x
        True
    """
    return _augment_layer(
        "RandomTranslation",
        name,
        lambda k, x: random_translation(
            k, x, height_factor=height_factor, width_factor=width_factor, fill=fill
        ),
    )


def RandomRotation(max_degrees: float, *, fill: float = 0.0, name: str | None = None) -> Layer:
    """:func:`random_rotation` as a layer (training only)."""
    return _augment_layer(
        "RandomRotation", name, lambda k, x: random_rotation(k, x, max_degrees=max_degrees, fill=fill)
    )


def RandomBrightness(max_delta: float, *, name: str | None = None) -> Layer:
    """:func:`random_brightness` as a layer (training only)."""
    return _augment_layer("RandomBrightness", name, lambda k, x: random_brightness(k, x, max_delta=max_delta))


def RandomContrast(lower: float, upper: float, *, name: str | None = None) -> Layer:
    """:func:`random_contrast` as a layer (training only)."""
    return _augment_layer(
        "RandomContrast", name, lambda k, x: random_contrast(k, x, lower=lower, upper=upper)
    )


def GaussianNoise(stddev: float, *, name: str | None = None) -> Layer:
    """:func:`gaussian_noise` as a layer (training only), for any input shape."""
    return _augment_layer("GaussianNoise", name, lambda k, x: gaussian_noise(k, x, stddev=stddev))
