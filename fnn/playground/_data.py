"""The playground's datasets: the five of TensorFlow Playground, seeded, in NumPy."""

from __future__ import annotations

import numpy as np

DATASETS = ("circle", "xor", "gauss", "spiral", "plane", "multi_gauss")
REGRESSION_DATASETS = ("plane", "multi_gauss")  # targets in [-1, 1]; the others are labels 0/1
FEATURES = ("x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)")
RANGE = 6.0  # points and the decision surface cover [-RANGE, RANGE]^2


def make_dataset(name: str, n: int = 500, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(n, 2)`` and targets ``(n,)``: labels 0/1, or values in [-1, 1] for the regression
    sets, ``"plane"`` and ``"multi_gauss"`` (six bumps, alternately up and down).

    ``noise`` is in percent (0-50), as in TensorFlow Playground.

    Examples:
        >>> x, y = make_dataset("spiral", 100, noise=10, seed=1)
        >>> x.shape, y.shape, sorted(set(y.tolist()))
        ((100, 2), (100,), [0.0, 1.0])
    """
    if name not in DATASETS:
        raise ValueError(f"make_dataset: name must be one of {list(DATASETS)}, got {name!r}")
    rng = np.random.default_rng(seed)
    scale = noise / 100.0
    half = n // 2
    if name == "circle":
        radius = np.concatenate([rng.uniform(0, 2.5, half), rng.uniform(3.5, 5.0, n - half)])
        angle = rng.uniform(0, 2 * np.pi, n)
        x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], 1) + rng.normal(0, scale * 5, (n, 2))
        y = (np.arange(n) < half).astype(np.float64)
    elif name == "xor":
        x = rng.uniform(-5, 5, (n, 2))
        x += np.sign(x) * 0.3  # keep points off the axes, where the label flips
        y = (x[:, 0] * x[:, 1] >= 0).astype(np.float64)
        x += rng.normal(0, scale * 5, (n, 2))
    elif name == "gauss":
        centres = np.where((np.arange(n) < half)[:, None], 2.0, -2.0)
        x = centres + rng.normal(0, 0.5 + scale * 4, (n, 2))
        y = (np.arange(n) < half).astype(np.float64)
    elif name == "spiral":
        t = np.concatenate([np.linspace(0, 1, half), np.linspace(0, 1, n - half)])
        delta = np.where(np.arange(n) < half, 0.0, np.pi)
        radius, angle = 5 * t, 1.75 * 2 * np.pi * t + delta
        x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], 1) + rng.normal(0, scale * 2, (n, 2))
        y = (np.arange(n) < half).astype(np.float64)
    elif name == "plane":  # a regression target in [-1, 1]
        x = rng.uniform(-RANGE, RANGE, (n, 2))
        y = (x[:, 0] + x[:, 1]) / (2 * RANGE) + rng.normal(0, scale, n)
    else:  # multi_gauss: bumps of height +1 and -1 on a 3 x 2 grid, as TensorFlow Playground's
        x = rng.uniform(-RANGE, RANGE, (n, 2))
        centres = np.array([[cx, cy] for cy in (2.5, -2.5) for cx in (-4.0, 0.0, 4.0)])
        signs = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
        bumps = np.exp(-np.sum((x[:, None, :] - centres) ** 2, -1) / 2.0)  # (n, 6), width 1
        y = np.clip(bumps @ signs, -1, 1) + rng.normal(0, scale, n)
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order].astype(np.float32)


def feature_columns(x: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The chosen input features of points ``(n, 2)``, as ``(n, len(features))``.

    Examples:
        >>> feature_columns(np.array([[1.0, 2.0]]), ("x1", "x1*x2", "x2^2")).tolist()
        [[1.0, 2.0, 4.0]]
    """
    x1, x2 = x[:, 0], x[:, 1]
    table = {
        "x1": x1, "x2": x2, "x1^2": x1**2, "x2^2": x2**2, "x1*x2": x1 * x2,
        "sin(x1)": np.sin(x1), "sin(x2)": np.sin(x2),
    }  # fmt: skip
    return np.stack([table[f] for f in features], 1).astype(np.float32)
