"""Sum to twenty: a Dense(3) layer and a Lambda that sums its outputs, trained with
SGD (learning rate 1e-3) on the single input [2, 3, 7] toward the target 20.

Run: python examples/sum_to_twenty.py   (prints the prediction after each of 10 steps)
"""

import jax
import jax.numpy as jnp

import fnn

model = fnn.Sequential([fnn.Dense(3), fnn.Lambda(lambda h: jnp.sum(h, axis=-1, keepdims=True), name="sum")])
optimizer = fnn.optimizers.get("sgd", learning_rate=1e-3)
train_step = jax.jit(fnn.make_train_step(model, "mse", optimizer))

x = jnp.array([[2.0, 3.0, 7.0]])
y = jnp.array([[20.0]])
params, state = model.init(jax.random.key(0), (3,))
opt_state = optimizer.init(params)
prediction, _ = model.apply(params, state, x, train=False)
print(f"before training: prediction {float(prediction[0, 0]):.3f}")
for step in range(1, 11):
    params, state, opt_state, _ = train_step(params, state, opt_state, (x, y), None)
    prediction, _ = model.apply(params, state, x, train=False)
    print(f"step {step:2d}: prediction {float(prediction[0, 0]):.3f}")
print(f"final prediction: {float(prediction[0, 0]):.3f} (target 20)")
