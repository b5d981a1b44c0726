"""Every layer and combinator with an example input, for the shared contract tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

import fnn


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], fnn.Layer]
    input_shape: tuple
    needs_key: bool = False  # apply(train=True) needs a PRNG key


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
    Case("lambda", lambda: fnn.Lambda(lambda x: jnp.sin(x) * 2.0), (3,)),
    Case("identity", lambda: fnn.Identity(), (2, 3)),
    Case("flatten", lambda: fnn.Flatten(), (2, 3, 2)),
    Case("reshape", lambda: fnn.Reshape((3, -1)), (6,)),
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
    Case("fan_in_sum", lambda: fnn.Sequential([fnn.FanOut(3), fnn.FanInSum()]), (2,)),
    Case("residual", lambda: fnn.Residual(fnn.Sequential([fnn.Dense(3, "tanh"), fnn.Dense(3)])), (3,)),
]
