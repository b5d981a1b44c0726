"""Linear regression: fit y = 3x + 2 + noise with a Dense(1) model and SGD.

Run: python examples/linear_regression.py   (prints the learned weight and bias last)
"""

import jax

import fnn

data_key, noise_key, init_key = jax.random.split(jax.random.key(0), 3)
x = jax.random.uniform(data_key, (200, 1), minval=-1.0, maxval=1.0)
y = 3.0 * x + 2.0 + 0.1 * jax.random.normal(noise_key, (200, 1))

model = fnn.Dense(1)
optimizer = fnn.optimizers.get("sgd", learning_rate=0.1)
train_step = jax.jit(fnn.make_train_step(model, "mse", optimizer))

params, state = model.init(init_key, (1,))
opt_state = optimizer.init(params)
for step in range(200):  # full-batch gradient descent
    params, state, opt_state, logs = train_step(params, state, opt_state, (x, y), None)
    if step % 50 == 0:
        print(f"step {step:3d}  mse {float(logs['loss']):.4f}")

weight, bias = float(params["w"][0, 0]), float(params["b"][0])
print(f"learned weight: {weight:.3f}, bias: {bias:.3f} (true 3, 2)")
