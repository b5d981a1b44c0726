"""Makes profiler-trace-viewer.png for docs/guide/notebooks-and-tracking.md: a digits CNN trained for
two epochs with fnn.Profiler on epoch 1, opened in TensorBoard's Profile tab (Trace Viewer) and
photographed in headless Chromium.

Needs, beside the dev extra: pip install tensorboard-plugin-profile   (and Debian's chromium)
Run: python docs/images/profiler_screenshot.py
"""

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright
from sklearn.datasets import load_digits

import fnn

OUT = Path(__file__).resolve().parent / "profiler-trace-viewer.png"

images, labels = load_digits(return_X_y=True)
x, y = (images / 16).astype(np.float32).reshape(-1, 8, 8, 1), labels.astype(np.int32)
model = fnn.Sequential([
    fnn.Conv2D(16, 3, padding="same", activation="relu"), fnn.MaxPool2D(2), fnn.Flatten(),
    fnn.Dense(64, "relu"), fnn.Dense(10),
])  # fmt: skip
logdir = Path(tempfile.mkdtemp()) / "profile"
fnn.fit(model, x, y, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=2, batch_size=64,
        verbose=0, callbacks=[fnn.Profiler(logdir, epochs=[1])])  # fmt: skip

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
try:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        for _ in range(60):  # TensorBoard takes a few seconds to start
            try:
                page.goto(f"http://127.0.0.1:{port}/data/plugin_entry.html?name=profile")
                break
            except Exception:
                time.sleep(1)
        page.locator("mat-select").nth(1).click(timeout=60_000)  # the Tools menu
        page.get_by_role("option", name="Trace Viewer").click()
        time.sleep(10)  # the trace loads and draws
        page.screenshot(path=str(OUT))
        browser.close()
finally:
    board.terminate()
print(OUT)
