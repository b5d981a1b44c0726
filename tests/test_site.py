"""The built documentation site shows what its sources promise.

`mkdocs build --strict` fails on a broken link, but not on a snippet marker that a
formatter mangled (`--8 < --"examples/iris.py"` renders as that literal line): only
the built HTML tells whether a tutorial shows its program.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.M)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def page_text(site: Path, page: Path) -> str:
    """The rendered page as a reader sees it: tags (highlighting spans) dropped, entities decoded."""
    name = "" if page.stem == "index" else page.stem
    return html.unescape(re.sub(r"<[^>]+>", "", (site / "tutorials" / name / "index.html").read_text()))


def test_every_tutorial_includes_a_script_or_writes_its_code_out():
    for page in TUTORIALS:
        text = page.read_text()
        assert "--8" not in SNIPPET.sub("", text), f"{page.name}: a malformed snippet marker"
        if page.stem != "index":
            assert SNIPPET.search(text) or "```python\n" in text, f"{page.name} shows no code"


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_built_tutorial_shows_the_first_and_last_line_of_its_script(site, page):
    text = page_text(site, page)
    assert "--8" not in text
    for match in SNIPPET.finditer(page.read_text()):
        lines = [line for line in (ROOT / match["path"]).read_text().splitlines() if line.strip()]
        assert lines[0] in text and lines[-1] in text, f"{page.name} does not show {match['path']}"


NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_built_notebook_pages_show_their_outputs(site, notebook):
    cells = json.loads(notebook.read_text())["cells"]
    printed = [o["text"] for c in cells if c["cell_type"] == "code" for o in c["outputs"] if "text" in o]
    page = html.unescape(
        re.sub(r"<[^>]+>", "", (site / "notebooks" / notebook.stem / "index.html").read_text())
    )
    last = "".join(printed[-1]).strip().splitlines()[-1]  # the headline figure
    assert last in page, f"{notebook.name}: the page does not show {last!r}"
