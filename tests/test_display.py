"""Rich notebook displays: Summary, Graph and History as HTML, and the LivePlot callback.

The HTML must be well-formed (parsed here as XML) and escape every text it shows;
tests/test_playground_browser.py renders it in headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import fnn
from fnn._core import Summary, SummaryRow
from fnn.train import _liveplot

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def model():
    return fnn.Sequential([fnn.Dense(4, "relu"), fnn.Dense(2)])


def trained(epochs=3, callbacks=()):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    return fnn.fit(model(), x, x[:, :2], loss="mse", optimizer="sgd", epochs=epochs, verbose=0,
                   validation_split=0.25, callbacks=list(callbacks))  # fmt: skip


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # raises on anything not well formed


def cells(root: ET.Element) -> list[list[str]]:
    return [[c.text or "" for c in row] for row in root.iter("tr")]


def test_a_summary_shows_as_an_html_table_with_the_same_figures_as_its_text():
    summary = fnn.summary(model(), (3,))
    root = parsed(summary._repr_html_())
    rows = cells(root)
    assert rows[0] == ["Layer", "Output shape", "Params", "State"]
    assert rows[1:] == [["sequential", "(2,)", "26", "0"], ["sequential/dense", "(4,)", "16", "0"],
                        ["sequential/dense_1", "(2,)", "10", "0"]]  # fmt: skip
    assert "Trainable params: 26" in ET.tostring(root, encoding="unicode")


def test_html_escapes_what_it_shows():
    row = SummaryRow("<script>alert(1)</script>", 0, (1,), 1, 0)
    markup = Summary('a"&<b>', (1,), (1,), (row,), 1, 0, 4)._repr_html_()
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    root = parsed(markup)
    assert 'Model "a"&<b>"' in "".join(root.itertext())


def test_a_graph_without_graphviz_shows_its_text_and_says_why(monkeypatch):
    graph = fnn.graph(model(), (3,))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    root = parsed(graph._repr_html_())
    assert root.find("pre").text == graph.to_text()
    assert "Graphviz's `dot` is not installed" in root.find("p").text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_a_graph_with_graphviz_shows_as_inline_svg():
    root = parsed(fnn.graph(model(), (3,))._repr_html_())
    assert root[0].tag.endswith("svg")


def test_a_history_shows_its_curves_and_last_epochs():
    history = trained()
    root = parsed(history._repr_html_())
    assert root.find("p").text == "History: 3 epoch(s)"
    assert any(child.tag.endswith("svg") for child in root)  # the curves, inline
    rows = cells(root)
    assert rows[0] == ["epoch", *history.history]
    assert len(rows) == 4 and rows[-1][0] == "2"
    assert float(rows[-1][1]) == pytest.approx(history.history["loss"][-1], rel=1e-3)


def test_live_plot_writes_a_png_at_the_end_outside_a_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained(epochs=2, callbacks=[fnn.LivePlot()])
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_plot_redraws_one_output_in_place_in_a_notebook(tmp_path, monkeypatch):
    shown = []

    class Handle:
        def update(self, image):
            shown.append(("update", image.data))

    def display(image, display_id):
        shown.append(("display", image.data))
        return Handle()

    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display, ipython_display.SVG = display, lambda data: types.SimpleNamespace(data=data)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    monkeypatch.setattr(_liveplot, "in_notebook", lambda: True)
    monkeypatch.chdir(tmp_path)
    trained(epochs=3, callbacks=[fnn.LivePlot()])
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(parsed(svg).tag.endswith("svg") for _, svg in shown)
    assert os.listdir(tmp_path) == []  # in a notebook, no file unless asked


def test_summary_cost_is_xla_s_count_and_matches_the_closed_forms():
    # Dense(F -> U): 2FU multiply-adds + U bias adds. Conv2D 3x3 (valid), C -> K channels on H x W:
    # 2 * 9 * C * K per output position, + K bias adds per position.
    model = fnn.Sequential([fnn.Conv2D(8, 3), fnn.Flatten(), fnn.Dense(10)])
    summary = fnn.summary(model, (10, 10, 2), cost=True)
    flops = {r.path: r.flops for r in summary.rows}
    assert flops["sequential/conv2d"] == 2 * 9 * 2 * 8 * 64 + 8 * 64
    assert flops["sequential/dense"] == 2 * 512 * 10 + 10
    assert (
        flops["sequential"]
        == flops["sequential/conv2d"] + flops["sequential/dense"] + flops["sequential/flatten"]
    )
    for r in summary.rows:  # the arguments alone: params and the input
        assert r.memory >= 4 * r.params, r
    text = str(summary)
    assert "FLOPs/example" in text and f"{int(flops['sequential']):,}" in text
    root = parsed(summary._repr_html_())
    assert cells(root)[0][-2:] == ["FLOPs/example", "Memory (bytes)"]
    assert "FLOPs" not in str(fnn.summary(model, (10, 10, 2)))  # only when asked: it compiles every layer


def test_reports_show_as_collapsible_lists():
    from fnn.interop._convert import WeightsReport

    _, report = fnn.checkpoint.transfer(
        {"a": np.zeros(2), "b": np.zeros(3)}, {"a": np.ones(2), "c": np.ones(1)}
    )
    root = parsed(report._repr_html_())
    listed = {d.find("summary").text: [li.text for li in d.iter("li")] for d in root.iter("details")}
    assert listed == {"loaded from the source (1)": ["a"], "freshly initialised (1)": ["b"],
                      "not used from the source (1)": ["c"]}  # fmt: skip
    weights = WeightsReport(mapped=(("dense", ("fc.weight", "fc.bias")),), unused=("<extra>",))
    root = parsed(weights._repr_html_())
    assert root.find("p/b").text == "weights that do not fit"
    assert [d.find("summary").text for d in root.iter("details")] == [
        "UNUSED from the file (1)",
        "loaded (1)",
    ]
    assert "&lt;extra&gt;" in weights._repr_html_()


def test_a_playground_session_shows_its_surface_points_curves_and_code():
    from fnn.playground import Session, parse_config
    from fnn.playground._engine import GRID, POINTS

    session = Session(parse_config({"dataset": "xor", "hidden": [4], "seed": 3}))
    session.train(3)
    root = parsed(session._repr_html_())
    ns = "{http://www.w3.org/2000/svg}"
    surface, curves = root.findall(f"{ns}svg")
    assert len(surface.findall(f"{ns}rect")) == GRID * GRID
    assert len(surface.findall(f"{ns}circle")) == POINTS  # training and test points
    assert len(curves.findall(f"{ns}polyline")[0].get("points").split()) == 4  # epochs 0-3
    shown = ET.tostring(root, encoding="unicode", method="text")
    assert f"training loss {session.history['train'][-1]:.4f}" in shown
    assert root.find("details/summary").text == "Show code" and session.code() in shown
    # The page's colour scale (TensorFlow Playground's): -1 orange, 0 light grey, 1 blue; NaN grey.
    from fnn.playground._engine import _colour

    assert [_colour(v) for v in (-1.0, 0.0, 1.0, None)] == [
        "rgb(245,147,34)", "rgb(232,234,235)", "rgb(8,119,189)", "rgb(160,160,160)",
    ]  # fmt: skip
