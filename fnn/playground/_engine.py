"""The playground's training: a validated configuration and a session that trains it with fnn."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn
from fnn.playground._data import DATASETS, FEATURES, RANGE, feature_columns, make_dataset

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
REGULARIZATIONS = ("none", "l1", "l2")
PROBLEMS = ("classification", "regression")
GRID = 40  # the decision surface is sampled on GRID x GRID points
WEIGHT_LIMIT = 10.0  # a weight set by hand stays within [-10, 10], as in TensorFlow Playground
NEURON_GRID = 16  # each node's own heatmap (features, hidden units), smaller, as in TensorFlow Playground
POINTS = 500


class ConfigError(ValueError):
    """A configuration value out of range; ``field`` names it."""

    def __init__(self, field: str, expected: str, got: Any):
        super().__init__(f"{field} must be {expected}, got {got!r}")
        self.field = field


@dataclasses.dataclass(frozen=True)
class Config:
    """What the page's controls set. Ranges are checked by :func:`parse_config`."""

    dataset: str = "circle"
    noise: float = 0.0  # percent, 0-50
    train_ratio: float = 0.5
    batch_size: int = 10
    features: tuple[str, ...] = ("x1", "x2")
    hidden: tuple[int, ...] = (4, 2)
    activation: str = "tanh"
    learning_rate: float = 0.03
    optimizer: str = "sgd"
    regularization: str = "none"
    regularization_rate: float = 0.0
    problem: str = "classification"
    seed: int = 0


def _number(raw: Mapping, field: str, kind: type, low: float, high: float) -> Any:
    value = raw[field]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)  # NaN and infinities: no int() of them, no range holds them
        or (kind is int and value != int(value))
    ):
        raise ConfigError(field, f"{'an int' if kind is int else 'a number'} in [{low}, {high}]", value)
    if not low <= value <= high:
        raise ConfigError(field, f"in [{low}, {high}]", value)
    return kind(value)


def _choice(raw: Mapping, field: str, options: tuple[str, ...]) -> str:
    if raw[field] not in options:
        raise ConfigError(field, f"one of {list(options)}", raw[field])
    return raw[field]


def parse_config(raw: Any) -> Config:
    """A :class:`Config` from JSON-like data; missing fields take their defaults.

    Raises:
        ConfigError: naming the first field out of range, with the expected and the actual value.

    Examples:
        >>> parse_config({"dataset": "spiral", "hidden": [8, 8]}).hidden
        (8, 8)
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("configuration", "a JSON object", raw)
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ConfigError("configuration", f"made of the fields of Config (unknown: {unknown})", dict(raw))
    raw = {**dataclasses.asdict(Config()), **raw}
    features = raw["features"]
    if (
        not isinstance(features, (list, tuple))
        or not features
        or not all(isinstance(f, str) for f in features)  # a list of lists would not even hash
        or not set(features) <= set(FEATURES)
    ):
        raise ConfigError("features", f"a non-empty list drawn from {list(FEATURES)}", features)
    if len(set(features)) != len(features):
        raise ConfigError("features", "a list without repeats", features)
    hidden = raw["hidden"]
    if not isinstance(hidden, (list, tuple)) or len(hidden) > 6:
        raise ConfigError("hidden", "a list of at most 6 layer sizes", hidden)
    for i, n in enumerate(hidden):
        _number({f"hidden[{i}]": n}, f"hidden[{i}]", int, 1, 8)
    return Config(
        dataset=_choice(raw, "dataset", DATASETS),
        noise=_number(raw, "noise", float, 0, 50),
        train_ratio=_number(raw, "train_ratio", float, 0.1, 0.9),
        batch_size=_number(raw, "batch_size", int, 1, 30),
        features=tuple(f for f in FEATURES if f in features),  # the page's order, whatever was sent
        hidden=tuple(int(n) for n in hidden),
        activation=_choice(raw, "activation", ACTIVATIONS),
        learning_rate=_number(raw, "learning_rate", float, 1e-5, 10),
        optimizer=_choice(raw, "optimizer", OPTIMIZERS),
        regularization=_choice(raw, "regularization", REGULARIZATIONS),
        regularization_rate=_number(raw, "regularization_rate", float, 0, 10),
        problem=_choice(raw, "problem", PROBLEMS),
        seed=_number(raw, "seed", int, 0, 2**31 - 1),
    )


def build_model(config: Config) -> fnn.Layer:
    """Hidden ``Dense`` layers with the chosen activation, then one output unit (a logit or a value)."""
    activation = None if config.activation == "linear" else config.activation
    return fnn.Sequential([fnn.Dense(n, activation) for n in config.hidden] + [fnn.Dense(1)])


def build_optimizer(config: Config) -> optax.GradientTransformation:
    return fnn.optimizers.get(config.optimizer, learning_rate=config.learning_rate)


def make_loss(model: fnn.Layer, config: Config):
    """``loss(params, state, x, y) -> (penalised loss, data loss)``: cross-entropy on logits or MSE, plus L1/L2."""

    def loss(params: Any, state: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = model.apply(params, state, x, train=False)[0][:, 0]
        if config.problem == "classification":
            data = jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))
        else:
            data = jnp.mean((out - y) ** 2)
        weights = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "w"]
        if config.regularization == "l1":
            data_plus = data + config.regularization_rate * sum(jnp.sum(jnp.abs(w)) for w in weights)
        elif config.regularization == "l2":
            data_plus = data + config.regularization_rate * sum(0.5 * jnp.sum(w**2) for w in weights)
        else:
            data_plus = data
        return data_plus, data

    return loss


class Session:
    """One playground run: data, model, optimiser state and the loss curves so far.

    ``train(epochs)`` runs whole epochs of minibatch steps in one compiled call
    (a ``lax.scan`` over the epoch's batches, the state donated).
    """

    def __init__(self, config: Config):
        self.config = config
        x, y = make_dataset(config.dataset, POINTS, config.noise, config.seed)
        cut = int(round(POINTS * config.train_ratio))
        self.points = {"train": x[:cut], "test": x[cut:]}
        self.targets = {"train": y[:cut], "test": y[cut:]}
        self.inputs = {k: feature_columns(v, config.features) for k, v in self.points.items()}
        self.model = build_model(config)
        self.optimizer = build_optimizer(config)
        self.loss = make_loss(self.model, config)
        steps = max(cut // config.batch_size, 1)
        self.batch_rows = steps * config.batch_size

        def step(carry, batch):
            (params, opt_state), (x, y) = carry, batch
            grads = jax.grad(lambda p: self.loss(p, self.state, x, y)[0])(params)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        def epoch(carry, x, y, order):
            return fnn.fused_steps(step, carry, (x, y), order.reshape(steps, config.batch_size))

        self._epoch = jax.jit(epoch, donate_argnums=0)
        self._losses = jax.jit(
            lambda p: [
                self.loss(p, self.state, self.inputs[k], self.targets[k])[1] for k in ("train", "test")
            ]
        )
        grid = np.linspace(-RANGE, RANGE, GRID, dtype=np.float32)
        mesh = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)  # row-major: y down the rows
        self._surface_inputs = feature_columns(mesh, config.features)
        self._surface = jax.jit(
            lambda p: self.model.apply(p, self.state, self._surface_inputs, train=False)[0][:, 0]
        )
        coarse = np.linspace(-RANGE, RANGE, NEURON_GRID, dtype=np.float32)
        every = feature_columns(np.stack(np.meshgrid(coarse, coarse), -1).reshape(-1, 2), FEATURES)
        plane = every[:, [FEATURES.index(f) for f in config.features]]  # the model's inputs
        scaled = every / np.maximum(np.abs(every).max(0), 1e-6)  # each in [-1, 1]
        self._feature_maps = {name: _json_numbers(scaled[:, i], 2) for i, name in enumerate(FEATURES)}
        self._neurons = jax.jit(lambda p: _hidden_outputs(self.model, p, self.state, plane))
        self.reset()

    def reset(self) -> None:
        """Back to the seed's initial weights, epoch 0 and empty curves."""
        params, self.state = self.model.init(jax.random.key(self.config.seed), (len(self.config.features),))
        self.carry = (params, self.optimizer.init(params))
        self.epoch = 0
        self.history: dict[str, list[float]] = {"train": [], "test": []}
        self.edits: list[tuple[int, int, int, int, float]] = []  # (epoch, layer, from, to, value)
        self._record()

    def _record(self) -> None:
        train, test = (float(v) for v in self._losses(self.carry[0]))
        self.history["train"].append(train)
        self.history["test"].append(test)

    def train(self, epochs: int = 1) -> None:
        """Runs ``epochs`` epochs, each over a fresh shuffle of the training points."""
        for _ in range(epochs):
            order = fnn.data.shuffle_indices(len(self.targets["train"]), self.config.seed, self.epoch)
            order = order[: self.batch_rows].astype(np.int32)
            self.carry = self._epoch(self.carry, self.inputs["train"], self.targets["train"], order)
            self.epoch += 1
            self._record()

    @property
    def diverged(self) -> bool:
        """Whether the latest losses are NaN or infinite: training blew up, and no epoch will mend it."""
        return not all(math.isfinite(self.history[k][-1]) for k in ("train", "test"))

    def set_weight(self, raw: Any) -> None:
        """Sets one weight, as a click on its line does: ``{"layer", "from", "to", "value"}``, with
        ``layer`` counted from the inputs and ``from`` the unit (or used feature) the line leaves.

        Training goes on from the edited weight, and :meth:`code` replays the edit at this epoch.

        Raises:
            ConfigError: a field missing or out of range, named.
        """
        params, opt_state = self.carry
        names = list(params)
        if not isinstance(raw, Mapping):
            raise ConfigError("weight", "a JSON object", raw)
        for field in ("layer", "from", "to", "value"):
            if field not in raw:
                raise ConfigError(field, "given", None)
        layer = _number(raw, "layer", int, 0, len(names) - 1)
        rows, columns = params[names[layer]]["w"].shape
        source = _number(raw, "from", int, 0, rows - 1)
        target = _number(raw, "to", int, 0, columns - 1)
        value = _number(raw, "value", float, -WEIGHT_LIMIT, WEIGHT_LIMIT)
        self.carry = (with_weight(params, layer, source, target, value), opt_state)
        self.edits.append((self.epoch, layer, source, target, value))
        for part, loss in zip(("train", "test"), self._losses(self.carry[0])):
            self.history[part][-1] = float(loss)  # this epoch's point, now with the edit

    def code(self) -> str:
        """The playground's "Show code": a script that trains this configuration as far as this session
        and prints the same losses (:func:`fnn.playground.script`)."""
        from fnn.playground._code import script

        return script(self.config, self.epoch, self.edits)

    def _repr_html_(self) -> str:
        """For notebooks: the output over the input plane with the points, the loss curves, the
        losses, and the "Show code" script (collapsed)."""
        from fnn import _display

        shot = self.snapshot()
        losses = f"epoch {self.epoch}: training loss {_loss_text(shot['train_loss'])}, test loss "
        losses += _loss_text(shot["test_loss"]) + (" (diverged)" if shot["diverged"] else "")
        code = f"<details><summary>Show code</summary>{_display.preformatted(self.code())}</details>"
        return _display.block(
            _display.paragraph(
                f"Playground session: {self.config.dataset}, hidden {list(self.config.hidden)}"
            ),
            _surface_svg(shot, self.config.problem == "regression") + _curves_svg(shot["history"]),
            _display.paragraph(losses),
            code,
        )

    def snapshot(self) -> dict[str, Any]:
        """What the page draws, as JSON-ready data: NaN and infinities as ``None``, flagged ``diverged``."""
        params = self.carry[0]
        surface = np.asarray(self._surface(params))
        if self.config.problem == "classification":
            surface = 2 / (1 + np.exp(-surface)) - 1  # probability of class 1, mapped to [-1, 1]
        layers = [params[name] for name in params]  # in layer order
        return {
            "epoch": self.epoch,
            "diverged": self.diverged,
            "train_loss": _json_numbers(self.history["train"][-1]),
            "test_loss": _json_numbers(self.history["test"][-1]),
            "history": {k: _json_numbers(v) for k, v in self.history.items()},  # a copy: training goes on
            "grid": GRID,
            "range": RANGE,
            "surface": _json_numbers(surface, 4),
            "weights": [_json_numbers(p["w"], 4) for p in layers],
            "biases": [_json_numbers(p["b"], 4) for p in layers],
            "points": {k: _json_numbers(v, 3) for k, v in self.points.items()},
            "targets": {k: _json_numbers(v, 3) for k, v in self.targets.items()},
            "features": list(self.config.features),
            # Each node's output over the plane, NEURON_GRID x NEURON_GRID, row-major with y up the
            # rows: every input feature (used or not) scaled to [-1, 1], and each hidden layer's units.
            "neuron_grid": NEURON_GRID,
            "feature_maps": self._feature_maps,
            "neurons": [_json_numbers(np.asarray(h).T, 2) for h in self._neurons(params)],
        }


def _json_numbers(values: Any, decimals: int | None = None) -> Any:
    """``values`` (a number or an array) as JSON-ready floats or nested lists, NaN and infinities as ``None``.

    JSON has no NaN, and a diverged run has plenty: ``None`` reaches the page as ``null``.
    """
    array = np.asarray(values, dtype=np.float64)
    if decimals is not None:
        array = np.round(array, decimals)
    return np.where(np.isfinite(array), array, None).tolist()


def with_weight(params: Any, layer: int, source: int, target: int, value: float) -> Any:
    """``params`` with the ``layer``-th Dense layer's weight ``w[source, target]`` set to ``value``."""
    name = list(params)[layer]
    w = params[name]["w"]
    return {**params, name: {**params[name], "w": w.at[source, target].set(jnp.asarray(value, w.dtype))}}


def _hidden_outputs(model: fnn.Layer, params: Any, state: Any, x: np.ndarray) -> list[jax.Array]:
    """Each hidden layer's outputs ``(points, units)`` on inputs ``x``: the model's own layers applied
    one after another (its output layer left out)."""
    outputs, h = [], jnp.asarray(x)
    for name, layer, _ in model.children((x.shape[-1],))[:-1]:
        h, _ = layer.apply(params[name], state[name], h, train=False)
        outputs.append(h)
    return outputs


# TensorFlow Playground's colour scale, as the page's: #f59322 at -1, #e8eaeb at 0, #0877bd at 1.
ORANGE, MIDDLE, BLUE = (245, 147, 34), (232, 234, 235), (8, 119, 189)


def _colour(value: float | None) -> str:
    """The colour of ``value`` in [-1, 1] (clipped) on TensorFlow Playground's scale; grey for NaN."""
    if value is None:
        return "rgb(160,160,160)"
    t = max(-1.0, min(1.0, value))
    end = BLUE if t >= 0 else ORANGE
    r, g, b = (math.floor(m + (e - m) * abs(t) + 0.5) for m, e in zip(MIDDLE, end))  # JavaScript's Math.round
    return f"rgb({r},{g},{b})"


def _loss_text(value: float | None) -> str:
    return "NaN" if value is None else f"{value:.4f}"


def _surface_svg(shot: dict[str, Any], regression: bool, size: int = 240) -> str:
    """The output surface (GRID x GRID cells, y up) with the training points (white ring) and test
    points (black ring)."""
    n, span = shot["grid"], 2 * shot["range"]
    cell = size / n
    rects = [
        f'<rect x="{col * cell:.2f}" y="{(n - 1 - row) * cell:.2f}" width="{cell:.2f}" height="{cell:.2f}" '
        f'fill="{_colour(shot["surface"][row * n + col])}"/>'
        for row in range(n)
        for col in range(n)
    ]
    dots = []
    for part, ring in (("train", "white"), ("test", "black")):
        for (px, py), target in zip(shot["points"][part], shot["targets"][part]):
            x, y = (px / span + 0.5) * size, (0.5 - py / span) * size
            value = None if target is None else (target if regression else 2 * target - 1)
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_colour(value)}" stroke="{ring}"/>'
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}">{"".join(rects)}{"".join(dots)}</svg>'
    )


def _curves_svg(history: dict[str, list], width: int = 240, height: int = 120) -> str:
    """Training (grey) and test (black) loss by epoch, as the page's chart."""
    finite = [v for k in ("train", "test") for v in history[k] if v is not None]
    top = max(finite, default=1.0) or 1.0
    lines = []
    for part, stroke in (("train", "gray"), ("test", "black")):
        values = history[part]
        step = width / max(len(values) - 1, 1)
        points = " ".join(
            f"{i * step:.1f},{height - v / top * (height - 4):.1f}"
            for i, v in enumerate(values)
            if v is not None
        )
        lines.append(f'<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="1.5"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(lines)}</svg>'
    )
