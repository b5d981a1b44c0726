"""Every example runs as a script and prints its headline figure last."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# Examples run in the test's process (runpy), sharing its warm imports, JAX runtime and compilation
# cache: 2-3 s less each than a new interpreter. data_parallel sets JAX's device count before JAX
# starts, so it needs a process of its own.
OWN_PROCESS = {"data_parallel"}
pytestmark = pytest.mark.standard_promotion  # the examples train with optax, as users do


def run(name: str, env: dict | None = None) -> list[str]:
    """Runs ``examples/NAME.py`` as ``__main__`` with ``env`` set and returns its stdout lines."""
    if name not in OWN_PROCESS:
        saved = dict(os.environ)
        os.environ.update(env or {})
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return out.getvalue().strip().splitlines()
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
        "char_gpt",
        "seq2seq_reverse",
        "transfer_learning",
        "pretrained_transfer",
        "two_moons_boundary",
        "tensorboard_demo",
        "data_parallel",
        "auto_mpg_regression",
        "text_classification",
        "structured_data_classification",
        "sklearn_comparison",
        "optuna_search",
        "recommender",
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


# digits_cnn, the flagship, in 15 epochs on seed 1 (regression, issue 19: seed 0 sat exactly on 0.98
# and failed on another CPU; another seed stands in for another machine): 0.986-0.994 over seeds 1-6
# must clear 0.975. Its full 40-epoch run is `make demo`; benchmarks/example_seeds.py measures more.
@pytest.mark.parametrize(
    "name, at_least, png, env",
    [
        (
            "digits_cnn",
            0.975,
            "digits_cnn_training.png",
            {"FNN_EXAMPLE_EPOCHS": "15", "FNN_EXAMPLE_SEED": "1"},
        ),
        ("two_moons_boundary", 0.9, "two_moons_boundary.png", {}),
    ],
)
def test_example_saves_its_plot_and_reaches_its_accuracy(tmp_path, name, at_least, png, env):
    lines = run(name, env={"FNN_EXAMPLE_OUT": str(tmp_path), **env})
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= at_least
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [png]


def test_tensorboard_demo_writes_event_files_and_the_graph(tmp_path):
    lines = run("tensorboard_demo", env={"FNN_EXAMPLE_OUT": str(tmp_path), "FNN_EXAMPLE_EPOCHS": "5"})
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= 0.85
    assert "[conv1] 4 ops <- x -> f32[1,8,8,16]" in lines
    assert f"view them with: tensorboard --logdir {tmp_path / 'tensorboard'}" in lines
    for run_dir in ("train", "validation", "train/hparams"):
        assert list((tmp_path / "tensorboard" / run_dir).glob("events.out.tfevents.*"))
    assert (tmp_path / "digits_cnn_graph.dot").read_text().startswith('digraph "fnn"')


def test_transfer_learning_carries_frozen_features_and_compares_with_scratch(tmp_path):
    # 10 source epochs and the later phases scaled with them: 0.926-0.940 over seeds 0-2 (the
    # script's 30: 0.95-0.96).
    lines = run("transfer_learning", env={"FNN_EXAMPLE_OUT": str(tmp_path), "FNN_EXAMPLE_EPOCHS": "10"})
    assert "loaded from the source (4):" in lines and "  features/conv2d/w" in lines
    assert any(line.startswith("frozen features unchanged: True") for line in lines)
    tuned, scratch = map(
        float, re.fullmatch(r"test accuracy: ([0-9.]+) \(from scratch: ([0-9.]+)\)", lines[-1]).groups()
    )
    assert tuned >= 0.9 and scratch > 0.5
    assert (tmp_path / "digits_0_4" / "manifest.json").is_file()


def test_pretrained_transfer_loads_a_pytorch_checkpoint_into_the_zoo(tmp_path):
    # 5 source epochs and the later phases scaled down with them (the script's 30 give 0.88-0.90 over
    # seeds 0-2); with 5, seeds 0-2 give 0.76-0.87.
    lines = run("pretrained_transfer", env={"FNN_EXAMPLE_OUT": str(tmp_path), "FNN_EXAMPLE_EPOCHS": "5"})
    assert "['conv1.bias', 'conv1.weight', 'conv2.bias', 'conv2.weight', 'fc1.bias'," in lines[1]
    assert "kept as they were (keep=) (1):" in lines and "  fc3" in lines and "  fc3.weight" in lines
    tuned, scratch = map(
        float, re.fullmatch(r"test accuracy: ([0-9.]+) \(from scratch: ([0-9.]+)\)", lines[-1]).groups()
    )
    assert tuned >= 0.65 and scratch > 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5_digits_0_4.safetensors"]


def test_char_gpt_learns_and_samples_with_the_cache():
    lines = run("char_gpt", env={"FNN_EXAMPLE_EPOCHS": "1"})
    uniform = float(re.fullmatch(r"uniform guessing: ([0-9.]+) bits per char", lines[-2]).group(1))
    bits = float(re.fullmatch(r"validation bits per char: ([0-9.]+)", lines[-1]).group(1))
    assert bits < uniform - 3.0  # 2.78 bits after its one epoch here (uniform: 6.64)
    assert lines[lines.index("sample:") + 1].startswith("The for statement")


def test_seq2seq_reverses_digit_strings():
    # 0.996 exact matches after the 2 epochs run here; 1.000 after the full 10.
    assert headline("seq2seq_reverse", "exact-match accuracy", env={"FNN_EXAMPLE_EPOCHS": "2"}) >= 0.9


def test_sklearn_comparison_scores_the_mlp_beside_the_classic_models():
    # 30 epochs and 2 folds here (the script: 60 and 5); over seeds 0-4 the MLP's test accuracy is
    # 0.951-0.958 (143 test tumours: 0.93 is ten errors).
    lines = run("sklearn_comparison", env={"FNN_EXAMPLE_EPOCHS": "30", "FNN_EXAMPLE_FOLDS": "2"})
    rows = {
        m.group(1): float(m.group(2))
        for line in lines
        if (m := re.match(r"(\S+(?: \S+)*) +[0-9.]+ ± [0-9.]+ +([0-9.]+)", line))
    }
    assert set(rows) == {"logistic regression", "random forest", "gradient boosting", "fnn MLP"}
    assert min(rows.values()) > 0.9
    assert float(re.fullmatch(r"fnn MLP test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= 0.93


def test_optuna_search_prunes_trials_and_scores_the_best_on_the_test_split():
    # 6 trials of 6 epochs here (the script: 16 of 15): the best configuration scores 0.936-0.950 over
    # seeds 0-2.
    lines = run("optuna_search", env={"FNN_EXAMPLE_TRIALS": "6", "FNN_EXAMPLE_EPOCHS": "6"})
    states = [m.group(1) for line in lines if (m := re.match(r" +\d+  (\w+) ", line))]
    assert len(states) == 6 and set(states) <= {"complete", "pruned"} and "complete" in states
    assert re.fullmatch(r"\d of 6 trials pruned; best: \{'learning_rate': .*\}", lines[-2])
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= 0.9


def test_recommender_beats_its_baselines():
    # 10 epochs here (the script: 20). Over training seeds 0-4: RMSE 0.546-0.638 (noise floor 0.400,
    # item means 1.139), recall@10 0.186-0.202 (most popular 0.044, the true factors 0.309).
    lines = run("recommender", env={"FNN_EXAMPLE_EPOCHS": "10"})
    rmse, floor, means = map(
        float,
        re.search(
            r"RMSE: ([0-9.]+) \(noise floor ([0-9.]+), item means ([0-9.]+)\)", "\n".join(lines)
        ).groups(),
    )
    assert floor < rmse < 0.8 < means
    popular = float(re.search(r"most popular ([0-9.]+)", "\n".join(lines)).group(1))
    recall = float(re.fullmatch(r"two-tower recall@10: ([0-9.]+)", lines[-1]).group(1))
    assert recall > 0.12 > 2 * popular


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
    # fnn_bf16 (5 s more) runs in `make bench` only.
    run_benchmark("run", "--quick", "--models", "tiny", "--frameworks", "jax", "fnn", "haiku",
                  "--out", str(tmp_path))  # fmt: skip
    results = {r["framework"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    for name in ("jax", "fnn"):
        assert results[name]["params"] == 2_762 and results[name]["step_ms"]["median"] > 0
    assert results["fnn"]["epoch_samples_per_s"].keys() >= {"loop", "fit", "fit unfused", "fit fused"}
    if importlib.util.find_spec("haiku") is None:
        assert results["haiku"] == {"framework": "haiku", "model": "tiny", "skipped": "not installed"}
    table = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets" in table and "tiny: step time" in table and "CPU: " in table


def test_readme_example_runs():
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
    assert float(re.search(r"test accuracy: ([0-9.]+)", out.getvalue()).group(1)) >= 0.95


def test_data_parallel_benchmark_runs_on_simulated_devices(tmp_path):
    run_benchmark("data_parallel", "--devices", "2", "--models", "mlp", "--epochs", "1", "--samples", "512",
                  "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "data_parallel.json").read_text())["results"]
    assert [(r["devices"], r["mesh"]) for r in results] == [(1, False), (2, True)]
    assert all(r["samples_per_s"] > 0 for r in results)
    assert "| mlp | 2 | yes |" in (tmp_path / "data_parallel.md").read_text()


def test_example_seeds_benchmark_reports_each_examples_spread(tmp_path):
    run_benchmark("example_seeds", "--examples", "iris", "--seeds", "1", "--out", str(tmp_path))
    (row,) = json.loads((tmp_path / "example_seeds.json").read_text())["results"]
    assert len(row["native"]) == 1 and row["min"] == row["median"] == row["max"] == row["native"][0]
    assert "| iris | test accuracy |" in (tmp_path / "example_seeds.md").read_text()


@pytest.mark.standard_promotion  # fit's Adam, as in the fit tests
def test_auto_mpg_regression_matches_the_tensorflow_tutorial(tmp_path, monkeypatch, capsys):
    # Run in this process (runpy), not a subprocess: it shares the worker's warm imports and JAX
    # runtime, about 4 s less of the suite's time. The tutorial's split and models: over training
    # seeds 0-4 the DNN's test MAE is 1.711-1.825 in the full 100-epoch run (the tutorial's: about
    # 1.6-1.8) and 1.880-1.968 in the 30 epochs run here (the same with --xla_cpu_max_isa=AVX2).
    monkeypatch.setenv("FNN_EXAMPLE_OUT", str(tmp_path))
    monkeypatch.setenv("FNN_EXAMPLE_EPOCHS", "30")
    runpy.run_path(str(EXAMPLES / "auto_mpg_regression.py"), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "406 cars, 392 without missing values"
    table = dict(re.fullmatch(r"  (.+?) +([0-9.]+)", line).groups() for line in lines[-4:-1])
    assert float(table["dnn"]) < float(table["linear"]) < float(table["horsepower linear"])
    assert float(re.fullmatch(r"test MAE: ([0-9.]+)", lines[-1]).group(1)) <= 2.2
    for png in ("auto_mpg_loss.png", "auto_mpg_predictions.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.standard_promotion  # fit's Adam, as in the fit tests
def test_text_classification_reads_an_aclimdb_folder_and_beats_bag_of_words(monkeypatch, capsys):
    # In this process (runpy), like the Auto MPG test: no second import of jax and fnn. Without
    # FNN_IMDB_DIR the example writes its synthetic corpus as aclImdb/ and reads it with
    # fnn.datasets.imdb. Over training seeds 0-4: 0.845-0.872 in the default 20 epochs, 0.822-0.840
    # in the 12 here (the same with --xla_cpu_max_isa=AVX2); the naive Bayes baseline is 0.558.
    monkeypatch.delenv("FNN_IMDB_DIR", raising=False)
    monkeypatch.setenv("FNN_EXAMPLE_EPOCHS", "12")
    runpy.run_path(str(EXAMPLES / "text_classification.py"), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("data: a SYNTHETIC corpus in the aclImdb layout")
    assert lines[1] == "1200 training and 600 test reviews"
    baseline = float(re.fullmatch(r"bag-of-words baseline \(naive Bayes\): ([0-9.]+)", lines[-2]).group(1))
    accuracy = float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1))
    assert baseline < 0.7 and accuracy >= 0.78, (baseline, accuracy)


@pytest.mark.standard_promotion  # fit's Adam, as in the fit tests
def test_structured_data_classification_beats_its_baselines(monkeypatch, capsys):
    # In this process (runpy), as above. Over training seeds 0-4 the test accuracy is 0.720-0.725
    # (the same with --xla_cpu_max_isa=AVX2); always "dry" scores 0.604, "like today" 0.703.
    monkeypatch.delenv("FNN_EXAMPLE_EPOCHS", raising=False)
    runpy.run_path(str(EXAMPLES / "structured_data_classification.py"), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:2] == [
        "1096 days to learn from (2012-2014), 364 to test (2015)",
        "weather vocabulary: ['[UNK]', 'sun', 'rain', 'fog', 'drizzle', 'snow']",
    ]
    assert lines[-3:-1] == [
        "majority-class baseline: 0.604",
        "persistence baseline (tomorrow like today): 0.703",
    ]
    assert float(re.fullmatch(r"test accuracy: ([0-9.]+)", lines[-1]).group(1)) >= 0.705
