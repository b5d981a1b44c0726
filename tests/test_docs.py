"""The documentation's code runs: every fnn snippet of every page, in page order.

Blocks fenced as plain ```python run; blocks with a title (```python
title="TensorFlow 2"``, ``title="train.py (sketch)"``) are shown, not run:
TensorFlow is not installed, and sketches need a cluster or data of your own.
Each page runs in a namespace of its own, its blocks sharing it, as a reader
would paste them.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M)


def runnable_blocks(text: str) -> list[str]:
    blocks = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        if info.split(" ")[0] == "python" and "title=" not in info:
            blocks.append(textwrap.dedent(match["body"]))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if runnable_blocks(p.read_text()))


def test_the_extractor_skips_titled_and_finds_indented_blocks():
    page = '```python\na = 1\n```\n=== "TF"\n\n    ```python title="TensorFlow 2"\n    tf\n    ```\n\n    ```python\n    b = a\n    ```\n'
    assert runnable_blocks(page) == ["a = 1\n", "b = a\n"]


@pytest.mark.standard_promotion  # the pages train with optax, as readers do
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_snippets_run(page, tmp_path, monkeypatch):
    # In this process (a fresh namespace, in a fresh folder): the page shares the worker's warm
    # imports and compilation cache, 2-3 s less than a new interpreter.
    monkeypatch.chdir(tmp_path)
    code = compile("\n".join(runnable_blocks(page.read_text())), str(page.relative_to(ROOT)), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, {"__name__": "__main__"})
