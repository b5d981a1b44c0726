"""Every example runs as a script and prints its headline figure last."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, env: dict | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_every_example_is_tested():
    tested = {
        "iris",
        "linear_regression",
        "sum_to_twenty",
        "digits_mlp",
        "diabetes_regression",
        "breast_cancer",
        "digits_cnn",
        "sequence_classification",
        "char_transformer",
        "transfer_learning",
        "two_moons_boundary",
        "tensorboard_demo",
        "data_parallel",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def headline(name: str, label: str = "test accuracy", env: dict | None = None) -> float:
    """The figure ``label`` that example ``name`` prints last."""
    last = run(name, env)[-1]
    return float(re.fullmatch(rf"{label}: ([-0-9.]+)", last).group(1))


# Each bar sits below the lowest figure measured over training seeds 0-4 and two CPU code paths
# (benchmarks/results/example_seeds.md; `python benchmarks/example_seeds.py --seeds 5 --isa AVX2`).
# XLA compiles different float code for different CPUs, so another machine is another draw, and
# seed 0's figure here is only one of them.
@pytest.mark.parametrize(
    "name, label, at_least",
    [
        ("iris", "test accuracy", 0.9),  # 30 test flowers: 0.933 is two errors
        ("digits_mlp", "test accuracy", 0.94),
        ("diabetes_regression", "test R2", 0.40),
        ("breast_cancer", "test accuracy", 0.94),
        ("sequence_classification", "test accuracy", 0.9),
        ("data_parallel", "test accuracy", 0.93),
    ],
)
def test_example_reaches_its_headline_figure(name, label, at_least):
    assert headline(name, label) >= at_least


@pytest.mark.parametrize(
    "name, at_least, png",
    [("digits_cnn", 0.98, "digits_cnn_training.png"), ("two_moons_boundary", 0.9, "two_moons_boundary.png")],
)
def test_example_saves_its_plot_and_reaches_its_accuracy(tmp_path, name, at_least, png):
    lines = run(name, env={"FNN_EXAMPLE_OUT": str(tmp_path)})
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= at_least
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [png]


def test_flagship_clears_its_bar_on_other_seeds_too(tmp_path):
    # Regression (issue 19): seed 0 sat exactly on 0.98 and failed on another CPU. Other seeds
    # stand in for other machines; in a 15-epoch run (0.986-0.994 over seeds 1-6) their mean must
    # clear 0.975. The full 40-epoch run is checked above, on seed 0.
    env = {"FNN_EXAMPLE_OUT": str(tmp_path), "FNN_EXAMPLE_EPOCHS": "15"}
    accuracies = [headline("digits_cnn", env={**env, "FNN_EXAMPLE_SEED": seed}) for seed in "12"]
    assert sum(accuracies) / 2 >= 0.975, accuracies


def test_tensorboard_demo_writes_event_files_and_the_graph(tmp_path):
    lines = run("tensorboard_demo", env={"FNN_EXAMPLE_OUT": str(tmp_path), "FNN_EXAMPLE_EPOCHS": "5"})
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= 0.85
    assert "[conv1] 4 ops <- x -> f32[1,8,8,16]" in lines
    assert f"view them with: tensorboard --logdir {tmp_path / 'tensorboard'}" in lines
    for run_dir in ("train", "validation", "train/hparams"):
        assert list((tmp_path / "tensorboard" / run_dir).glob("events.out.tfevents.*"))
    assert (tmp_path / "digits_cnn_graph.dot").read_text().startswith('digraph "fnn"')


def test_transfer_learning_carries_frozen_features_and_compares_with_scratch(tmp_path):
    lines = run("transfer_learning", env={"FNN_EXAMPLE_OUT": str(tmp_path)})
    assert "loaded from the source (4):" in lines and "  features/conv2d/w" in lines
    assert any(line.startswith("frozen features unchanged: True") for line in lines)
    tuned, scratch = map(
        float, re.fullmatch(r"test accuracy: ([0-9.]+) \(from scratch: ([0-9.]+)\)", lines[-1]).groups()
    )
    assert tuned >= 0.92 and scratch > 0.5
    assert (tmp_path / "digits_0_4" / "manifest.json").is_file()


def test_char_transformer_learns_and_samples():
    lines = run("char_transformer", env={"FNN_EXAMPLE_EPOCHS": "3"})
    loss, uniform = map(
        float, re.fullmatch(r"final loss: ([0-9.]+) \(uniform guessing: ([0-9.]+)\)", lines[-1]).groups()
    )
    assert loss < uniform - 0.5
    assert lines[lines.index("sample:") + 1].startswith("The Zen of Python")


def test_linear_regression_recovers_weight_and_bias():
    last = run("linear_regression")[-1]
    weight, bias = map(float, re.match(r"learned weight: ([-0-9.]+), bias: ([-0-9.]+)", last).groups())
    assert weight == pytest.approx(3.0, abs=0.05) and bias == pytest.approx(2.0, abs=0.05)


def test_sum_to_twenty_approaches_twenty():
    lines = run("sum_to_twenty")
    predictions = [
        float(m.group(1)) for line in lines if (m := re.match(r"step +\d+: prediction ([-0-9.]+)", line))
    ]
    assert len(predictions) == 10
    gaps = [abs(20 - p) for p in predictions]
    assert all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1.0
    assert lines[-1].startswith("final prediction:")


def run_benchmark(name: str, *args: str) -> None:
    """Runs ``benchmarks/NAME.py`` with ``args`` and requires it to succeed."""
    path = EXAMPLES.parent / "benchmarks" / f"{name}.py"
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr


def test_streaming_benchmark_runs_and_reports(tmp_path):
    run_benchmark("streaming", "--samples", "256", "--batch-size", "64", "--epochs", "2", "--chunk", "2",
                  "--models", "mlp", "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "streaming.json").read_text())
    assert (
        results["mlp"]["ratio"] > 0
        and "best stream / best in memory" in (tmp_path / "streaming.md").read_text()
    )


def test_checkpoint_benchmark_runs_and_reports(tmp_path):
    run_benchmark("checkpoint_io", "--rounds", "1", "--megabytes", "1", "--out", str(tmp_path))
    results = json.loads((tmp_path / "checkpoint_io.json").read_text())
    assert results["save_ratio_fnn_over_safetensors"] > 0 and results["fit_ratio_with_backups"] > 0
    assert "ratio" in (tmp_path / "checkpoint_io.md").read_text()


def test_speed_suite_runs_each_pair_and_skips_missing_peers(tmp_path):
    # The test environment has no peers installed: they must come out as skipped, not as numbers.
    run_benchmark("run", "--quick", "--models", "tiny", "--frameworks", "jax", "fnn", "fnn_bf16", "haiku",
                  "--out", str(tmp_path))  # fmt: skip
    results = {r["framework"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    for name in ("jax", "fnn", "fnn_bf16"):
        assert results[name]["params"] == 2_762 and results[name]["step_ms"]["median"] > 0
    assert results["fnn"]["epoch_samples_per_s"].keys() >= {"loop", "fit", "fit fused"}
    if importlib.util.find_spec("haiku") is None:
        assert results["haiku"] == {"framework": "haiku", "model": "tiny", "skipped": "not installed"}
    table = (tmp_path / "results.md").read_text()
    assert "## Targets" in table and "tiny: step time" in table


def test_readme_example_runs():
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert float(re.search(r"test accuracy: ([0-9.]+)", done.stdout).group(1)) >= 0.95


def test_data_parallel_benchmark_runs_on_simulated_devices(tmp_path):
    run_benchmark("data_parallel", "--devices", "2", "--models", "mlp", "--epochs", "1", "--samples", "512",
                  "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "data_parallel.json").read_text())["results"]
    assert [(r["devices"], r["mesh"]) for r in results] == [(1, False), (2, True)]
    assert all(r["samples_per_s"] > 0 for r in results)
    assert "| mlp | 2 | yes |" in (tmp_path / "data_parallel.md").read_text()


def test_example_seeds_benchmark_reports_each_examples_spread(tmp_path):
    run_benchmark("example_seeds", "--examples", "iris", "--seeds", "2", "--out", str(tmp_path))
    (row,) = json.loads((tmp_path / "example_seeds.json").read_text())["results"]
    assert len(row["native"]) == 2 and row["min"] <= row["median"] <= row["max"]
    assert "| iris | test accuracy |" in (tmp_path / "example_seeds.md").read_text()
