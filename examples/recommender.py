"""Recommendations: matrix factorisation for ratings and a two-tower model for retrieval, with Embedding layers.

The data is generated offline from known latent factors, so the figures have a
floor to compare with: every user and item has a hidden 8-dimensional taste
vector. A user rates an item (explicit feedback) with the dot product of the
two, their biases and noise of standard deviation 0.4; a user interacts with
items (implicit feedback) drawn with probability growing with that dot product.

- Matrix factorisation predicts ratings from a user and an item embedding (a
  factor vector and a bias each) and is scored by RMSE on held-out ratings,
  beside the noise floor and the RMSE of predicting each item's mean rating.
- A two-tower model embeds users and items apart (an Embedding and an MLP each)
  and learns from interactions alone with an in-batch softmax: each user's
  item against the other items of the batch. It is scored by recall@10 on each
  user's held-out interactions, beside recommending the most popular items.

Run: python examples/recommender.py   (prints `two-tower recall@10: X` last)
"""

import os

import jax.numpy as jnp
import numpy as np
import optax

import fnn

EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 20))
SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data stays fixed
USERS, ITEMS, FACTORS, NOISE = 600, 400, 8, 0.4

# --- the data: known factors, explicit ratings and implicit interactions --------------------
rng = np.random.default_rng(0)
taste_users = rng.normal(size=(USERS, FACTORS)) / FACTORS**0.25
taste_items = rng.normal(size=(ITEMS, FACTORS)) / FACTORS**0.25
bias_users, bias_items = 0.3 * rng.normal(size=USERS), 0.3 * rng.normal(size=ITEMS)
affinity = taste_users @ taste_items.T

pairs = rng.choice(USERS * ITEMS, size=30_000, replace=False)  # 12.5% of all (user, item) pairs rated
user_ids, item_ids = (pairs // ITEMS).astype(np.int32), (pairs % ITEMS).astype(np.int32)
ratings = 3.0 + affinity[user_ids, item_ids] + bias_users[user_ids] + bias_items[item_ids]
ratings = (ratings + NOISE * rng.normal(size=len(pairs))).astype(np.float32)
cut = int(0.8 * len(pairs))
train, test = slice(0, cut), slice(cut, None)


def interactions(per_user: int) -> np.ndarray:
    """``per_user`` distinct items per user, drawn with probability proportional to exp(2 * affinity)."""
    weights = np.exp(2.0 * affinity)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.stack([rng.choice(ITEMS, size=per_user, replace=False, p=w) for w in weights]).astype(np.int32)


seen = interactions(25)  # (users, 25): the first 20 train, the last 5 are held out
seen_train, seen_test = seen[:, :20], seen[:, 20:]

# --- matrix factorisation: rating = mean + user bias + item bias + user factors . item factors -----


def matrix_factorisation(mean: float) -> fnn.Layer:
    """``(user ids, item ids)`` ``(batch,)`` each -> predicted ratings ``(batch, 1)``."""
    l2 = fnn.regularizers.l2(1e-4)
    embed = lambda count, name: fnn.Embedding(count, FACTORS + 1, embeddings_regularizer=l2, name=name)  # noqa: E731

    def rating(vectors):
        user, item = vectors  # (batch, factors + 1): the factors and, last, the bias
        dot = jnp.sum(user[:, :FACTORS] * item[:, :FACTORS], axis=-1, keepdims=True)
        return mean + dot + user[:, FACTORS:] + item[:, FACTORS:]

    return fnn.Sequential([fnn.Parallel([embed(USERS, "users"), embed(ITEMS, "items")]), fnn.Lambda(rating)])


mean = float(ratings[train].mean())
mf = matrix_factorisation(mean)
history = fnn.fit(
    mf, (user_ids[train], item_ids[train]), ratings[train][:, None], loss="mse",
    optimizer=fnn.optimizers.get("adam", learning_rate=1e-2), epochs=EPOCHS, batch_size=256, seed=SEED,
    verbose=0,
)  # fmt: skip
predicted = np.asarray(fnn.predict(mf, history.params, history.state, (user_ids[test], item_ids[test])))[:, 0]
rmse = float(np.sqrt(np.mean((predicted - ratings[test]) ** 2)))
item_means = np.bincount(item_ids[train], ratings[train], ITEMS) / np.maximum(
    np.bincount(item_ids[train], None, ITEMS), 1
)
baseline = float(np.sqrt(np.mean((item_means[item_ids[test]] - ratings[test]) ** 2)))
print(f"{len(pairs)} ratings of {ITEMS} items by {USERS} users; {cut} to train, {len(pairs) - cut} to test")
print(f"matrix factorisation test RMSE: {rmse:.3f} (noise floor {NOISE:.3f}, item means {baseline:.3f})")

# --- two towers: users and items embedded apart, trained on interactions with an in-batch softmax ----


def tower(count: int, name: str) -> fnn.Layer:
    """Ids ``(batch,)`` -> unit vectors ``(batch, 32)``."""
    normalise = fnn.Lambda(lambda v: v / jnp.linalg.norm(v, axis=-1, keepdims=True), name="normalise")
    return fnn.Sequential(
        [fnn.Embedding(count, 64), fnn.Dense(64, "relu"), fnn.Dense(32), normalise], name=name
    )


user_tower, item_tower = tower(USERS, "user_tower"), tower(ITEMS, "item_tower")
towers = fnn.Parallel([user_tower, item_tower])
users_of = np.repeat(np.arange(USERS, dtype=np.int32), seen_train.shape[1])
items_of = seen_train.reshape(-1)
# log-frequency correction: the batch holds popular items more often, so they are negatives more often
log_frequency = jnp.log(np.bincount(items_of, minlength=ITEMS) / len(items_of) + 1e-9)


def in_batch_softmax(params, state, batch, key):
    """Each user's item against the batch's other items; duplicates of the item are not negatives."""
    (users, items), _ = batch
    (u, v), state = towers.apply(params, state, (users, items), train=True, key=key)
    logits = u @ v.T / 0.3 - log_frequency[items][None, :]
    duplicate = (items[:, None] == items[None, :]) & ~jnp.eye(len(items), dtype=bool)
    logits = jnp.where(duplicate, -1e9, logits)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(len(items))).mean()
    return loss, ({}, state)


history = fnn.fit(
    towers, (users_of, items_of), items_of, optimizer="adam", epochs=EPOCHS, batch_size=256, seed=SEED,
    train_step=fnn.make_train_step_from_loss(in_batch_softmax, "adam"), verbose=0,
)  # fmt: skip
user_vectors, item_vectors = (
    np.asarray(
        fnn.predict(t, history.params[t.name], history.state[t.name], np.arange(count, dtype=np.int32))
    )
    for t, count in ((user_tower, USERS), (item_tower, ITEMS))
)


def recall_at_10(scores: np.ndarray) -> float:
    """The share of each user's held-out items among its 10 best-scored items it has not interacted with."""
    scores = np.array(scores, np.float64)
    np.put_along_axis(scores, seen_train, -np.inf, axis=1)
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = (top[:, :, None] == seen_test[:, None, :]).any(axis=1).sum(axis=1)
    return float(np.mean(hits / seen_test.shape[1]))


popularity = np.broadcast_to(np.bincount(items_of, minlength=ITEMS).astype(np.float64), (USERS, ITEMS))
print(f"{len(items_of)} interactions to train, {seen_test.size} held out ({seen_test.shape[1]} per user)")
print(
    f"recall@10: random {10 / (ITEMS - seen_train.shape[1]):.3f}, most popular {recall_at_10(popularity):.3f}"
)
print(f"recall@10 of the true factors: {recall_at_10(affinity):.3f}")
print(f"two-tower recall@10: {recall_at_10(user_vectors @ item_vectors.T):.3f}")
