"""Structured data classification from scratch: Keras's tutorial, ported to fnn, on offline data.

The pattern of keras.io/examples/structured_data/structured_data_classification_from_scratch
(mixed numeric, integer-categorical and string-categorical columns, each encoded
by a preprocessing layer; a small MLP with dropout; a sigmoid output and binary
cross-entropy) on a table every install has: the daily Seattle weather of
2012-2015 bundled with ``vega_datasets`` (``fnn.datasets.seattle_weather()``).

The task: will it rain tomorrow (precipitation above 0 mm)? The features are
today's numbers (precipitation, temp_max, temp_min, wind) through
``fnn.Normalization`` (statistics from ``fnn.normalization_state``, Keras's
``adapt``), the month through a host-side ``IntegerLookup`` and a one-hot
``fnn.CategoryEncoding``, and today's weather word through a ``StringLookup`` and
a one-hot encoding. The split is chronological: 2012-2014 to learn from (its
last 200 days validate), 2015 to test, as a forecaster would be judged. The
weather word's labelling drifts over the years (wet days are mostly "rain" in
2012 and mostly "fog" in 2015), so what it says in the training years need not
hold in the test year: the lookups encode such a column, they cannot mend it.
The majority-class ("dry") and persistence ("tomorrow is like today") baselines
are printed before the headline, so the figure means something. Over training
seeds 0-4 the test accuracy is 0.720-0.725 (majority 0.604, persistence 0.703):
today's weather says only a little about tomorrow's.

FNN_EXAMPLE_SEED sets the training seed (the split stays fixed),
FNN_EXAMPLE_EPOCHS the epochs (default 30).

Run: python examples/structured_data_classification.py   (prints `test accuracy: X` last)
"""

import os

import numpy as np

import fnn
from fnn.preprocessing import IntegerLookup, StringLookup

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the split stays fixed
NUMERIC = ("precipitation", "temp_max", "temp_min", "wind")

table = fnn.datasets.seattle_weather()  # dict of (1461,) columns, one row per day
rain_tomorrow = (table["precipitation"][1:] > 0).astype(np.float32)[:, None]  # (days - 1, 1)
today = {name: column[:-1] for name, column in table.items()}  # the last day has no tomorrow
columns = {
    "numeric": np.stack([today[name] for name in NUMERIC], axis=1),  # float32 (days, 4)
    "month": np.array([int(date[5:7]) for date in today["date"]], np.int32),  # (days,)
    "weather": today["weather"],  # str (days,)
}
test = np.char.startswith(today["date"], "2015")
train_columns = {name: column[~test] for name, column in columns.items()}
test_columns = {name: column[test] for name, column in columns.items()}
y_train, y_test = rain_tomorrow[~test], rain_tomorrow[test]
print(f"{len(y_train)} days to learn from (2012-2014), {len(y_test)} to test (2015)")

# Keras's adapt: statistics and vocabularies come from the training days only.
months = IntegerLookup().adapt(train_columns["month"])
weathers = StringLookup().adapt(train_columns["weather"])
print(f"weather vocabulary: {weathers.get_vocabulary()}")


def encode(cols: dict) -> dict:
    """Strings and raw integers become contiguous ids on the host; JAX arrays hold numbers only."""
    return {"numeric": cols["numeric"], "month": months(cols["month"]), "weather": weathers(cols["weather"])}


x_train, x_test = encode(train_columns), encode(test_columns)
# The last 200 training days (from mid-2014) validate; the 896 before them train (28 batches of 32, none ragged).
x_fit, y_fit = fnn.data.take((x_train, y_train), slice(None, -200))
validation_data = fnn.data.take((x_train, y_train), slice(-200, None))

features = fnn.Sequential(
    [
        fnn.Lambda(lambda x: (x["numeric"], x["month"], x["weather"]), name="columns"),
        fnn.Parallel(
            [
                fnn.Normalization(**fnn.normalization_state(x_fit["numeric"])),
                fnn.CategoryEncoding(months.vocabulary_size(), "one_hot", name="month_one_hot"),
                fnn.CategoryEncoding(weathers.vocabulary_size(), "one_hot", name="weather_one_hot"),
            ]
        ),
        fnn.FanInConcat(),
    ],
    name="features",
)
model = fnn.Sequential([features, fnn.Dense(32, "relu"), fnn.Dropout(0.5), fnn.Dense(1, "sigmoid")])
example_shape = {"numeric": (4,), "month": fnn.Shape((), np.int32), "weather": fnn.Shape((), np.int32)}
print(fnn.summary(model, example_shape))

loss = fnn.losses.get("binary_crossentropy", from_logits=False)  # the model ends in a sigmoid
history = fnn.fit(
    model, x_fit, y_fit, loss=loss, optimizer=fnn.optimizers.get("adam", learning_rate=3e-3),
    metrics=["binary_accuracy"], epochs=int(os.environ.get("FNN_EXAMPLE_EPOCHS", 30)), batch_size=32,
    validation_data=validation_data, seed=SEED, verbose=0,
)  # fmt: skip
h = history.history
print(f"trained {len(history.epochs)} epochs; final val_binary_accuracy {h['val_binary_accuracy'][-1]:.3f}")

test_logs = fnn.evaluate(
    model, history.params, history.state, x_test, y_test, loss=loss, metrics=["binary_accuracy"],
    batch_size=len(y_test),  # one batch, so one compile
)  # fmt: skip
wet_today = x_test["numeric"][:, 0] > 0
print(f"majority-class baseline: {max(y_test.mean(), 1 - y_test.mean()):.3f}")
print(f"persistence baseline (tomorrow like today): {np.mean(wet_today == (y_test[:, 0] == 1)):.3f}")
print(f"test accuracy: {test_logs['binary_accuracy']:.3f}")
