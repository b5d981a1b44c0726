"""The playground's epochs per second against a plain-JavaScript network, in the same headless browser.

TensorFlow Playground trains in the page, in plain JavaScript: a loop over the
examples, each one forward and back through the network. This benchmark writes
that approach for the playground's default configuration (circle, features x1
and x2, hidden layers [4, 2], tanh, SGD at 0.03, batches of 10, 250 training
points, one logit with sigmoid cross-entropy), runs it in headless Chromium
from fnn's own initial weights and batch order, and checks that it reaches
fnn's training loss (it is the same network). Then it times:

- ``js train``: the JavaScript network's epochs per second, training only;
- ``js train + views``: the same, plus each epoch the output on the 40×40 grid
  and every neuron's 16×16 heatmap, which the original computes for every frame;
- ``fnn train``: ``Session.train`` in Python (one compiled call per epoch);
- ``fnn page``: the playground's page while playing, as its epoch counter
  advances (training, the frames over server-sent events, and drawing them).

Run: python benchmarks/playground_speed.py --out benchmarks/results
(needs Debian's chromium or FNN_CHROMIUM, and playwright)
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from _common import machine, write_report

import fnn
from fnn.playground import Config, Session
from fnn.playground._server import make_server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

# The original's approach: per-example forward and backward passes, gradients summed over a batch.
# Float64 throughout (JavaScript numbers). Returns the training loss after each epoch and the timings.
JS_NETWORK = """
({layers, x, y, orders, batch, rate, grid, neuronGrid, timedEpochs}) => {
  const sizes = [layers[0].w.length, ...layers.map((l) => l.b.length)];
  const W = layers.map((l) => l.w.map((row) => Float64Array.from(row)));
  const B = layers.map((l) => Float64Array.from(l.b));
  const acts = sizes.map((n) => new Float64Array(n));
  const deltas = sizes.map((n) => new Float64Array(n));
  const gW = W.map((w) => w.map((row) => new Float64Array(row.length)));
  const gB = B.map((b) => new Float64Array(b.length));
  const last = W.length - 1;
  function forward(input) {
    acts[0].set(input);
    for (let l = 0; l <= last; l++) {
      const a = acts[l], out = acts[l + 1];
      for (let j = 0; j < out.length; j++) {
        let z = B[l][j];
        for (let i = 0; i < a.length; i++) z += a[i] * W[l][i][j];
        out[j] = l === last ? z : Math.tanh(z);
      }
    }
    return acts[last + 1][0];
  }
  function backward(target) {
    const z = acts[last + 1][0];
    deltas[last + 1][0] = 1 / (1 + Math.exp(-z)) - target; // d(sigmoid cross-entropy)/d(logit)
    for (let l = last; l >= 0; l--) {
      const a = acts[l], d = deltas[l + 1];
      for (let j = 0; j < d.length; j++) {
        gB[l][j] += d[j];
        for (let i = 0; i < a.length; i++) gW[l][i][j] += a[i] * d[j];
      }
      if (l > 0) {
        for (let i = 0; i < a.length; i++) {
          let s = 0;
          for (let j = 0; j < d.length; j++) s += W[l][i][j] * d[j];
          deltas[l][i] = s * (1 - a[i] * a[i]); // tanh'
        }
      }
    }
  }
  function update() {
    for (let l = 0; l <= last; l++) {
      for (let j = 0; j < B[l].length; j++) { B[l][j] -= rate * gB[l][j] / batch; gB[l][j] = 0; }
      for (let i = 0; i < W[l].length; i++) {
        for (let j = 0; j < W[l][i].length; j++) { W[l][i][j] -= rate * gW[l][i][j] / batch; gW[l][i][j] = 0; }
      }
    }
  }
  function epoch(order) {
    for (let s = 0; s + batch <= order.length; s += batch) {
      for (let k = s; k < s + batch; k++) { forward(x[order[k]]); backward(y[order[k]]); }
      update();
    }
  }
  function loss() {
    let total = 0;
    for (let k = 0; k < x.length; k++) {
      const z = forward(x[k]);
      total += Math.max(z, 0) - z * y[k] + Math.log1p(Math.exp(-Math.abs(z)));
    }
    return total / x.length;
  }
  function views() { // the output over the plane and each neuron's own map, as the original redraws
    let sum = 0;
    for (const n of [grid, neuronGrid]) {
      for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
        sum += forward([-6 + 12 * c / (n - 1), -6 + 12 * r / (n - 1)]);
      }
    }
    return sum;
  }
  const losses = orders.map((order) => { epoch(order); return loss(); });
  const timing = (withViews) => {
    const start = performance.now();
    for (let e = 0; e < timedEpochs; e++) { epoch(orders[e % orders.length]); if (withViews) views(); }
    return timedEpochs / ((performance.now() - start) / 1000);
  };
  return {losses, train: timing(false), trainAndViews: timing(true)};
}
"""


def chromium() -> str:
    found = os.environ.get("FNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("needs chromium (Debian: apt-get install chromium; or set FNN_CHROMIUM)")
    return found


def javascript_run(page, config: Config, epochs: int, timed_epochs: int) -> dict:
    """The JavaScript network from fnn's initial weights, over fnn's batches: its losses and speeds."""
    session = Session(config)
    params = session.carry[0]
    layers = [
        {"w": np.asarray(params[k]["w"]).tolist(), "b": np.asarray(params[k]["b"]).tolist()} for k in params
    ]
    n = len(session.targets["train"])
    orders = [
        fnn.data.shuffle_indices(n, config.seed, e)[: session.batch_rows].tolist() for e in range(epochs)
    ]
    data = {
        "layers": layers,
        "x": session.inputs["train"].tolist(),
        "y": session.targets["train"].tolist(),
        "orders": orders,
        "batch": config.batch_size,
        "rate": config.learning_rate,
        "grid": 40,
        "neuronGrid": 16,
        "timedEpochs": timed_epochs,
    }
    result = page.evaluate(JS_NETWORK, data)
    session.train(epochs)
    result["fnn_losses"] = session.history["train"][1:]
    return result


def fnn_train_speed(config: Config, epochs: int) -> float:
    session = Session(config)
    session.train(2)  # compiles
    start = time.perf_counter()
    session.train(epochs)
    return epochs / (time.perf_counter() - start)


def page_speed(page, seconds: float) -> float:
    """Epochs per second of the playground's page while playing (after its first frames)."""
    epoch = "Number(document.getElementById('epoch').textContent)"
    page.click("#play")
    page.wait_for_function(f"{epoch} >= 10")  # compiled and streaming
    first, start = page.evaluate(epoch), time.perf_counter()
    page.wait_for_timeout(seconds * 1000)
    last, end = page.evaluate(epoch), time.perf_counter()
    page.click("#play")
    return (last - first) / (end - start)


def measure(page, url: str, epochs: int, timed_epochs: int, seconds: float) -> dict:
    """All four speeds, and how far the JavaScript network's losses are from fnn's."""
    config = Config()
    page.goto(url)
    page.wait_for_function("document.getElementById('test_loss').textContent !== '-'")
    js = javascript_run(page, config, epochs, timed_epochs)
    gap = float(np.max(np.abs(np.subtract(js["losses"], js["fnn_losses"]))))
    return {
        "epochs_per_s": {
            "js train": js["train"],
            "js train + views": js["trainAndViews"],
            "fnn train": fnn_train_speed(config, timed_epochs),
            "fnn page": page_speed(page, seconds),
        },
        "loss_gap": gap,
        "losses": {"js": js["losses"], "fnn": js["fnn_losses"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs whose losses are compared")
    parser.add_argument("--timed-epochs", type=int, default=500, help="epochs timed per way")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds the page plays")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    server = make_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(120_000)
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            result = measure(page, url, args.epochs, args.timed_epochs, args.seconds)
            version = browser.version
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    speeds = result["epochs_per_s"]
    table = [
        f"Machine: {machine()}; Chromium {version}. Command: `python benchmarks/playground_speed.py`.",
        "",
        "Default configuration (circle, x1 and x2, hidden [4, 2], tanh, SGD 0.03, batches of 10, 250 points).",
        f"The JavaScript network, from fnn's initial weights and batches, ends {args.epochs} epochs within "
        f"{result['loss_gap']:.1e} of fnn's training loss (float64 against float32).",
        "",
        "| way | epochs/s | ratio to js train + views |",
        "|---|---|---|",
        *(f"| {way} | {v:.0f} | {v / speeds['js train + views']:.2f} |" for way, v in speeds.items()),
        "",
        "TensorFlow Playground's own page trains one epoch per animation frame (its player's `d3.timer` calls "
        "`oneStep`), so at most 60 epochs/s on a 60 Hz display, whatever its network could do.",
    ]
    write_report(args.out, "playground_speed", {"machine": machine(), "chromium": version, **result}, table)


if __name__ == "__main__":
    main()
