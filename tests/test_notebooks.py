"""The course notebooks (notebooks/): saved without outputs, and run top to bottom in a kernel of this
environment, their headline figures and rich outputs checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks need the dev extra (nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="the notebooks need the dev extra (nbclient, ipykernel)")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RENDERED = ROOT / "docs" / "notebooks"  # run with their outputs by `make notebooks`, for the site
CELL_TIMEOUT_S = 300  # a hung cell fails the test instead of the suite


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel of this environment for the module's notebooks: each starts with ``%reset -f``, so
    nothing of the one before it is left but warm imports (2-3 s a notebook)."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")  # jupyter_client maps "python3" to sys.executable
    manager.start_kernel(cwd=str(tmp_path_factory.mktemp("notebooks")))
    yield manager
    manager.shutdown_kernel(now=True)


def executed(path: Path, kernel):
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell('get_ipython().run_line_magic("reset", "-f")'))
    client = nbclient.NotebookClient(notebook, km=kernel, timeout=CELL_TIMEOUT_S)
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    return notebook


def outputs(notebook) -> list[dict]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def printed(notebook) -> str:
    return "".join(o.get("text", "") for o in outputs(notebook) if o.output_type == "stream")


def figure(notebook, label: str) -> float:
    """The number printed after ``label: `` (the last such line)."""
    return float(re.findall(rf"^{label}: ([-0-9.]+)", printed(notebook), re.M)[-1])


def kinds(notebook) -> set[str]:
    return {kind for o in outputs(notebook) for kind in o.get("data", {})}


def test_there_are_notebooks_and_each_is_saved_clean():
    assert [p.name for p in NOTEBOOKS][:4] == [
        "01_tensors_and_graphs.ipynb", "02_autodiff.ipynb", "03_sum_to_twenty.ipynb", "04_iris.ipynb",
    ]  # fmt: skip
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3", path.name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.source[:60])


CHECKS = {
    # the summary and the graph of a model show as rich output (HTML)
    "01_tensors_and_graphs": lambda nb: "text/html" in kinds(nb) and "lambda ; a:f32[2,2]" in printed(nb),
    "02_autodiff": lambda nb: "gradients match finite differences" in printed(nb),
    "03_sum_to_twenty": lambda nb: (
        abs(float(re.search(r"final prediction: ([0-9.]+)", printed(nb))[1]) - 20) < 1
    ),
    "05_house_prices": lambda nb: figure(nb, "test R2") > 0.9,
    "06_digits_mlp": lambda nb: figure(nb, "test accuracy") > 0.9 and "image/png" in kinds(nb),
    "07_lenet_augmentation_transfer": lambda nb: (
        min(figure(nb, "transferred"), figure(nb, "from scratch")) > 0.8
    ),
    "08_lstm": lambda nb: (
        figure(nb, "test accuracy") > 0.9 and "padding changes nothing: True" in printed(nb)
    ),
    "09_tensorboard": lambda nb: figure(nb, "test accuracy") > 0.8 and "histograms: [" in printed(nb),
    # LivePlot drew its curves in the notebook; 0.867-0.900 over seeds (10 epochs of Adam)
    "04_iris": lambda nb: (
        "image/svg+xml" in kinds(nb) and float(re.search(r"test accuracy: ([0-9.]+)", printed(nb))[1]) >= 0.8
    ),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_runs_top_to_bottom_and_shows_its_figures(path, kernel):
    notebook = executed(path, kernel)
    assert CHECKS[path.stem](notebook), printed(notebook)[-2000:]


def test_the_site_shows_each_notebook_run_with_its_current_cells():
    assert sorted(p.name for p in RENDERED.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        source, shown = (nbformat.read(p, as_version=4) for p in (path, RENDERED / path.name))
        stale = [c.source for c in source.cells] != [c.source for c in shown.cells]
        assert not stale, f"docs/notebooks/{path.name} is out of date: run `make notebooks`"
        code = [cell for cell in shown.cells if cell.cell_type == "code"]
        assert all(cell.execution_count for cell in code), path.name  # run, top to bottom
        assert not [o for o in outputs(shown) if o.output_type == "error"], path.name
        assert CHECKS[path.stem](shown), path.name
