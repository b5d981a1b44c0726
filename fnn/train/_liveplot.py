"""LivePlot: training curves redrawn in a notebook as ``fit`` runs, or a PNG at the end elsewhere."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fnn.train._callbacks import Callback, Logs
from fnn.train._run import FitRun


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where displays can be updated in place)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    ip = get() if get is not None else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


class LivePlot(Callback):
    """Draws the loss and metric curves (train and validation) after every epoch of ``fit``.

    In a Jupyter notebook the figure is one output, redrawn in place after each
    epoch. Elsewhere (a script, a terminal) nothing is drawn while training, and
    the figure is written to ``path`` when training ends. Either way the figure
    is :func:`fnn.plot.history`'s, and it needs matplotlib (``fnn[plot]``).

    Args:
        path: where to write the final figure as PNG (or the suffix's format);
            ``None`` in a notebook writes nothing. Outside one, ``None`` means
            ``"training.png"``.
        metrics: the log entries to draw (without ``val_``); all by default.

    Examples:
        >>> import tempfile, os, numpy as np, fnn
        >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
        >>> x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
        >>> _ = fnn.fit(fnn.Dense(1), x, x[:, :1], loss="mse", optimizer="sgd", epochs=2, verbose=0,
        ...             callbacks=[fnn.LivePlot(path)])
        >>> os.path.getsize(path) > 0
        True
    """

    primary_only = True

    def __init__(self, path: str | os.PathLike | None = None, *, metrics: Sequence[str] | None = None):
        self.path, self.metrics = (Path(path) if path is not None else None), metrics
        self.logs: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self._handle: Any = None

    def on_train_begin(self, run: FitRun) -> None:
        self.logs, self.epochs, self._handle = {}, [], None

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        self.epochs.append(epoch)
        for name, value in logs.items():
            self.logs.setdefault(name, []).append(float(value))
        if in_notebook():
            from IPython.display import SVG, display

            from fnn import _display

            image = SVG(_display.figure_svg(self._figure()))
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)

    def _figure(self) -> Any:
        from fnn import plot

        class _Run:  # plot.history reads .history and .epochs
            history, epochs = self.logs, self.epochs

        return plot.history(_Run, metrics=self.metrics)

    def on_train_end(self, run: FitRun) -> None:
        path = self.path if self.path is not None or in_notebook() else Path("training.png")
        if path is not None and self.epochs:
            from fnn import plot

            plot.save(self._figure(), path)
