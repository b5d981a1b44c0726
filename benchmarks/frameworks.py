"""The four benchmark models written the idiomatic way in every framework of the suite.

Each ``setup_<framework>(model)`` imports its framework (nothing heavy is imported
at module level, so the worker can time the import) and returns a :class:`Bench`:
a train step on one batch, a way to put a host batch where the framework wants
it, the trainable parameter count, and the framework's own ways of running a
whole epoch over host-side data.

Every model is float32, Adam 1e-3, softmax cross-entropy on integer labels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

LR = 1e-3
SAMPLES = 12_800
MODELS = {  # name: (per-example input shape, batch size, trainable parameters)
    "tiny": ((32,), 32, 2_762),
    "mlp": ((784,), 128, 269_322),
    "cnn": ((28, 28, 1), 64, 61_706),
    "lstm": ((50, 32), 32, 83_722),
}
WIDTHS = {"tiny": (32, 64, 10), "mlp": (784, 256, 256, 10)}
LSTM_UNITS = 128


def mlp_gemm_flops(widths, batch):
    """Floating-point operations of the GEMMs one MLP train step executes: the forward
    product, the weight gradient of every layer, and the input gradient of every
    layer but the first (nobody asks for the gradient of the data)."""
    pairs = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * batch * (2 * sum(pairs) + sum(pairs[1:]))


def data(model: str, channels_first: bool = False):
    """The fixed synthetic data set: ``SAMPLES`` float32 inputs and int32 labels on the host."""
    shape, _, _ = MODELS[model]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES, *shape)).astype(np.float32)
    if channels_first and len(shape) == 3:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, rng.integers(0, 10, SAMPLES).astype(np.int32)


@dataclass
class Bench:
    """What the worker measures.

    Attributes:
        params: trainable parameter count.
        step: ``step(batch) -> loss`` for a batch made by ``put``; it may return before
            the work is done (asynchronous dispatch).
        put: ``put(x, y) -> batch`` from host NumPy arrays.
        sync: blocks until a value returned by ``step`` is computed.
        epochs: extra epoch runners, ``name -> run(x, y, batch, epochs) -> seconds per
            epoch``; every Bench also gets ``loop``: the host-shuffled Python loop.
    """

    params: int
    step: Callable[[Any], Any]
    put: Callable[[np.ndarray, np.ndarray], Any]
    sync: Callable[[Any], Any] = lambda value: value.block_until_ready()
    epochs: dict[str, Callable] = field(default_factory=dict)

    def loop_epochs(self, x, y, batch, epochs):
        """The usual hand-written epoch: permute on the host, feed each batch, sync at the end."""
        times = []
        for epoch in range(epochs):
            start = time.perf_counter()
            order = np.random.default_rng([0, epoch]).permutation(len(x))
            for i in range(0, len(x) - batch + 1, batch):
                rows = order[i : i + batch]
                value = self.step(self.put(x[rows], y[rows]))
            self.sync(value)
            times.append(time.perf_counter() - start)
        return times


def _count(tree):
    import jax

    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def _jax_put(x, y):
    import jax

    return jax.device_put((x, y))


def _carried(step_fn, carry):
    """A jitted ``step(carry, batch) -> (carry, loss)`` with the carry donated, held in a cell."""
    import jax

    run = jax.jit(step_fn, donate_argnums=0)
    cell = [carry]

    def step(batch):
        cell[0], loss = run(cell[0], batch)
        return loss

    return step


def _optax_step(loss_fn, tx):
    import jax
    import optax

    def step(carry, batch):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    return step


def _xent(logits, y):
    import jax.numpy as jnp
    import optax

    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


# --- hand-written JAX + optax: the reference ---------------------------------------------


def setup_jax(model):
    import jax
    import jax.numpy as jnp
    import optax

    glorot = jax.nn.initializers.glorot_uniform()
    key = jax.random.key(0)

    def dense(i, n_in, n_out):
        return {"w": glorot(jax.random.fold_in(key, i), (n_in, n_out)), "b": jnp.zeros((n_out,))}

    def affine(p, x):
        return x @ p["w"] + p["b"]

    if model in WIDTHS:
        widths = WIDTHS[model]
        params = [dense(i, a, b) for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]

        def forward(params, x):
            for p in params[:-1]:
                x = jax.nn.relu(affine(p, x))
            return affine(params[-1], x)

    elif model == "cnn":
        params = {
            "c1": {"w": glorot(jax.random.fold_in(key, 0), (5, 5, 1, 6)), "b": jnp.zeros((6,))},
            "c2": {"w": glorot(jax.random.fold_in(key, 1), (5, 5, 6, 16)), "b": jnp.zeros((16,))},
            "d1": dense(2, 400, 120),
            "d2": dense(3, 120, 84),
            "d3": dense(4, 84, 10),
        }

        def conv(p, x, padding):
            y = jax.lax.conv_general_dilated(
                x, p["w"], (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return jax.nn.relu(y + p["b"])

        def pool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

        def forward(params, x):
            h = pool(conv(params["c1"], x, "SAME"))
            h = pool(conv(params["c2"], h, "VALID")).reshape(x.shape[0], -1)
            h = jax.nn.relu(affine(params["d1"], h))
            return affine(params["d3"], jax.nn.relu(affine(params["d2"], h)))

    else:
        features, units = MODELS["lstm"][0][1], LSTM_UNITS
        params = {
            "w": glorot(jax.random.fold_in(key, 0), (features + units, 4 * units)),
            "b": jnp.zeros((4 * units,)),
        }
        params["dense"] = dense(1, units, 10)

        def forward(params, x):
            # One [x_t, h] @ W matmul per step inside lax.scan: the fastest form on XLA:CPU.
            def cell(carry, x_t):
                h, c = carry
                i, f, g, o = jnp.split(
                    jnp.concatenate([x_t, h], axis=-1) @ params["w"] + params["b"], 4, axis=-1
                )
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

            zeros = jnp.zeros((x.shape[0], units))
            (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
            return affine(params["dense"], h)

    tx = optax.adam(LR)
    train_step = _optax_step(lambda p, x, y: _xent(forward(p, x), y), tx)
    step = _carried(train_step, (params, tx.init(params)))
    carry = [jax.tree.map(jnp.copy, (params, tx.init(params)))]  # the step donates its own

    def scan_epochs(x, y, batch, epochs):
        """The whole epoch in one jitted lax.scan over batches gathered on the device."""
        data = jax.device_put((x, y))

        def epoch_fn(carry, data, rows):
            return jax.lax.scan(lambda c, r: train_step(c, (data[0][r], data[1][r])), carry, rows)

        run, times = jax.jit(epoch_fn, donate_argnums=0), []
        for epoch in range(epochs):
            start = time.perf_counter()
            order = np.random.default_rng([0, epoch]).permutation(len(x)).astype(np.int32)
            carry[0], values = run(carry[0], data, order[: len(x) // batch * batch].reshape(-1, batch))
            values.block_until_ready()
            times.append(time.perf_counter() - start)
        return times

    return Bench(_count(params), step, _jax_put, epochs={"scan": scan_epochs})


# --- fnn -------------------------------------------------------------------------------


def fnn_model(model, fnn):
    if model in WIDTHS:
        widths = WIDTHS[model]
        return fnn.Sequential([fnn.Dense(n, "relu") for n in widths[1:-1]] + [fnn.Dense(widths[-1])])
    if model == "cnn":
        return fnn.Sequential(
            [
                fnn.Conv2D(6, 5, padding="same", activation="relu"),
                fnn.MaxPool2D(2),
                fnn.Conv2D(16, 5, activation="relu"),
                fnn.MaxPool2D(2),
                fnn.Flatten(),
                fnn.Dense(120, "relu"),
                fnn.Dense(84, "relu"),
                fnn.Dense(10),
            ]
        )
    return fnn.Sequential([fnn.LSTM(LSTM_UNITS), fnn.Dense(10)])


def setup_fnn(model, precision=None):
    import jax
    import optax

    import fnn

    net = fnn_model(model, fnn)
    if precision is not None:
        net = fnn.MixedPrecision(net, precision)
    shape = MODELS[model][0]
    params, state = net.init(jax.random.key(0), shape)
    tx = optax.adam(LR)
    run = jax.jit(fnn.make_train_step(net, "sparse_categorical_crossentropy", tx), donate_argnums=(0, 1, 2))
    cell = [params, state, tx.init(params)]

    def step(batch):
        cell[0], cell[1], cell[2], logs = run(cell[0], cell[1], cell[2], batch, None)
        return logs["loss"]

    class EpochTimer(fnn.Callback):
        def on_train_begin(self, run):
            self.times, self.last = [], time.perf_counter()

        def on_epoch_end(self, epoch, logs, run):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    def fit_epochs(x, y, batch, epochs, steps_per_execution="auto"):
        timer = EpochTimer()
        fnn.fit(
            net, x, y, loss="sparse_categorical_crossentropy", optimizer=optax.adam(LR), epochs=epochs,
            batch_size=batch, verbose=0, callbacks=[timer], steps_per_execution=steps_per_execution,
        )  # fmt: skip
        return timer.times

    return Bench(
        _count(params),
        step,
        _jax_put,
        epochs={
            "fit": fit_epochs,
            "fit unfused": lambda x, y, b, e: fit_epochs(x, y, b, e, 1),
            "fit fused": lambda x, y, b, e: fit_epochs(x, y, b, e, len(x) // b),
        },
    )


def setup_fnn_bf16(model):
    return setup_fnn(model, "mixed_bfloat16")


# --- Flax linen and NNX ----------------------------------------------------------------


def setup_flax_linen(model):
    import flax.linen as nn
    import jax
    import optax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            if model in WIDTHS:
                for n in WIDTHS[model][1:-1]:
                    x = nn.relu(nn.Dense(n)(x))
            elif model == "cnn":
                x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
                x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
                x = nn.relu(nn.Dense(84)(nn.relu(nn.Dense(120)(x.reshape(x.shape[0], -1)))))
            else:
                x = nn.RNN(nn.OptimizedLSTMCell(LSTM_UNITS))(x)[:, -1]
            return nn.Dense(10)(x)

    net = Net()
    params = net.init(jax.random.key(0), np.zeros((1, *MODELS[model][0]), np.float32))
    tx = optax.adam(LR)
    train_step = _optax_step(lambda p, x, y: _xent(net.apply(p, x), y), tx)
    return Bench(_count(params), _carried(train_step, (params, tx.init(params))), _jax_put)


def setup_flax_nnx(model):
    import optax
    from flax import nnx

    rngs = nnx.Rngs(0)
    seq = getattr(nnx, "List", list)

    class Net(nnx.Module):
        def __init__(self):
            if model in WIDTHS:
                w = WIDTHS[model]
                self.layers = seq([nnx.Linear(a, b, rngs=rngs) for a, b in zip(w[:-1], w[1:])])
            elif model == "cnn":
                self.c1 = nnx.Conv(1, 6, (5, 5), padding="SAME", rngs=rngs)
                self.c2 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)
                self.layers = seq(
                    [
                        nnx.Linear(400, 120, rngs=rngs),
                        nnx.Linear(120, 84, rngs=rngs),
                        nnx.Linear(84, 10, rngs=rngs),
                    ]
                )
            else:
                self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(MODELS["lstm"][0][1], LSTM_UNITS, rngs=rngs))
                self.layers = seq([nnx.Linear(LSTM_UNITS, 10, rngs=rngs)])

        def __call__(self, x):
            if model == "cnn":
                x = nnx.max_pool(nnx.relu(self.c1(x)), (2, 2), (2, 2))
                x = nnx.max_pool(nnx.relu(self.c2(x)), (2, 2), (2, 2)).reshape(x.shape[0], -1)
            elif model == "lstm":
                x = self.rnn(x)[:, -1]
            for layer in self.layers[:-1]:
                x = nnx.relu(layer(x))
            return self.layers[-1](x)

    net = Net()
    optimizer = nnx.Optimizer(net, optax.adam(LR), wrt=nnx.Param)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _xent(m(x), y))(net)
        optimizer.update(net, grads)
        return loss

    return Bench(_count(nnx.state(net, nnx.Param)), lambda b: train_step(net, optimizer, *b), _jax_put)


# --- Equinox ---------------------------------------------------------------------------


def setup_equinox(model):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    key = jax.random.key(0)
    keys = jax.random.split(key, 6)
    if model in WIDTHS:
        w = WIDTHS[model]
        net = eqx.nn.MLP(w[0], w[-1], w[1], len(w) - 2, activation=jax.nn.relu, key=key)
        forward = jax.vmap
    elif model == "cnn":
        net = eqx.nn.Sequential(
            [
                eqx.nn.Conv2d(1, 6, 5, padding=2, key=keys[0]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.MaxPool2d(2, 2),
                eqx.nn.Conv2d(6, 16, 5, key=keys[1]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.MaxPool2d(2, 2),
                eqx.nn.Lambda(jnp.ravel),
                eqx.nn.Linear(400, 120, key=keys[2]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.Linear(120, 84, key=keys[3]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.Linear(84, 10, key=keys[4]),
            ]
        )
        forward = jax.vmap
    else:

        class LSTMNet(eqx.Module):
            cell: eqx.nn.LSTMCell
            head: eqx.nn.Linear

            def __call__(self, xs):
                def scan_fn(state, x_t):
                    return self.cell(x_t, state), None

                zeros = jnp.zeros((LSTM_UNITS,))
                (h, _), _ = jax.lax.scan(scan_fn, (zeros, zeros), xs)
                return self.head(h)

        net = LSTMNet(
            eqx.nn.LSTMCell(MODELS["lstm"][0][1], LSTM_UNITS, key=keys[0]),
            eqx.nn.Linear(LSTM_UNITS, 10, key=keys[1]),
        )
        forward = jax.vmap

    tx = optax.adam(LR)

    @eqx.filter_jit(donate="all-except-first")
    def train_step(batch, net, opt_state):
        x, y = batch
        loss, grads = eqx.filter_value_and_grad(lambda m: _xent(forward(m)(x), y))(net)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), opt_state, loss

    cell = [net, tx.init(eqx.filter(net, eqx.is_array))]

    def step(batch):
        cell[0], cell[1], loss = train_step(batch, cell[0], cell[1])
        return loss

    return Bench(_count(eqx.filter(net, eqx.is_array)), step, _jax_put)  # images NCHW: run.CHANNELS_FIRST


# --- Haiku -----------------------------------------------------------------------------


def setup_haiku(model):
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax

    def forward(x):
        if model in WIDTHS:
            return hk.nets.MLP(WIDTHS[model][1:])(x)
        if model == "cnn":
            x = hk.max_pool(jax.nn.relu(hk.Conv2D(6, 5, padding="SAME")(x)), 2, 2, "VALID")
            x = hk.max_pool(jax.nn.relu(hk.Conv2D(16, 5, padding="VALID")(x)), 2, 2, "VALID")
            return hk.nets.MLP([120, 84, 10])(hk.Flatten()(x))
        core = hk.LSTM(LSTM_UNITS)
        out, _ = hk.dynamic_unroll(core, jnp.swapaxes(x, 0, 1), core.initial_state(x.shape[0]))
        return hk.Linear(10)(out[-1])

    net = hk.without_apply_rng(hk.transform(forward))
    params = net.init(jax.random.key(0), np.zeros((1, *MODELS[model][0]), np.float32))
    tx = optax.adam(LR)
    train_step = _optax_step(lambda p, x, y: _xent(net.apply(p, x), y), tx)
    return Bench(_count(params), _carried(train_step, (params, tx.init(params))), _jax_put)


# --- Keras 3 on its JAX backend --------------------------------------------------------


def setup_keras(model):
    os.environ.setdefault("KERAS_BACKEND", "jax")  # the worker sets it before timing the import
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()

    keras.utils.set_random_seed(0)
    layers = keras.layers
    stack = [keras.Input(MODELS[model][0])]
    if model in WIDTHS:
        stack += [layers.Dense(n, activation="relu") for n in WIDTHS[model][1:-1]]
    elif model == "cnn":
        stack += [
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
        ]
    else:
        stack += [layers.LSTM(LSTM_UNITS)]
    net = keras.Sequential(stack + [layers.Dense(10)])
    net.compile(
        optimizer=keras.optimizers.Adam(LR), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    def fit_epochs(x, y, batch, epochs):
        timer = EpochTimer()
        timer.times = []
        net.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
        return timer.times

    # train_on_batch returns a host float: it syncs every step, as Keras users see it.
    return Bench(
        sum(int(np.prod(w.shape)) for w in net.trainable_weights),
        lambda b: net.train_on_batch(*b),
        lambda x, y: (x, y),
        sync=lambda value: value,
        epochs={"fit": fit_epochs},
    )


# --- PyTorch eager ---------------------------------------------------------------------


def setup_torch(model):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if model in WIDTHS:
        w = WIDTHS[model]
        mods = []
        for a, b in zip(w[:-1], w[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*mods[:-1])
    elif model == "cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )  # fmt: skip
    else:

        class LSTMNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(MODELS["lstm"][0][1], LSTM_UNITS, batch_first=True)
                # PyTorch's LSTM has two bias vectors; freeze one at zero so the
                # trainable parameters match the other frameworks' single bias.
                self.lstm.bias_hh_l0.requires_grad_(False).data.zero_()
                self.head = nn.Linear(LSTM_UNITS, 10)

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])

        net = LSTMNet()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=LR)
    loss_fn = nn.CrossEntropyLoss()

    def step(batch):
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return Bench(
        sum(p.numel() for p in trainable),
        step,
        lambda x, y: (torch.from_numpy(x), torch.from_numpy(y).long()),
        sync=lambda value: value.item(),
    )


FRAMEWORKS = {  # name: (label, modules whose import is timed, setup)
    "jax": ("hand-written JAX + optax", ["jax", "optax"], setup_jax),
    "fnn": ("fnn", ["fnn"], setup_fnn),
    "fnn_bf16": ("fnn, mixed bfloat16", ["fnn"], setup_fnn_bf16),
    "flax_nnx": ("Flax NNX", ["flax.nnx", "optax"], setup_flax_nnx),
    "flax_linen": ("Flax linen", ["flax.linen", "optax"], setup_flax_linen),
    "equinox": ("Equinox", ["equinox", "optax"], setup_equinox),
    "haiku": ("Haiku", ["haiku", "optax"], setup_haiku),
    "keras": ("Keras 3 (JAX backend)", ["keras"], setup_keras),
    "torch": ("PyTorch eager", ["torch"], setup_torch),
}
