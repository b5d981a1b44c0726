"""Full-size equivalence of fnn's model zoo with the real libraries: ``make interop``.

Usage: ``.venv-interop/bin/python interop/compare.py interop/results`` writes
``interop/results.json`` and ``interop/results.md``.

For each case the reference model is built by the real library with random
weights (torchvision ``weights=None``: nothing is downloaded), its weights are
saved as the ecosystem saves them, loaded into the fnn model with
:mod:`fnn.interop`, and both run on the same input; the bar is a max abs error of
1e-4 (float32). A case is a :class:`Case`: a name, what the reference is, and a
``run(rng) -> Measured`` function, so models from other libraries (a BERT or
GPT-2 from ``transformers`` configs, a ViT) are appended to :data:`CASES` with a
``run`` of their own.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import compare_transformers  # interop/compare_transformers.py: BERT, GPT-2, ViT from transformers configs
import jax
import numpy as np
import safetensors.torch
import torch
import torch_zoo  # interop/torch_zoo.py: torchvision's models, importable on a CPU-only torch

import fnn
from fnn import interop, models
from fnn._core import count_params

BAR = 1e-4


@dataclasses.dataclass(frozen=True)
class Measured:
    """What one case measured."""

    params: int  # the reference's parameter count (fnn's must be equal)
    fnn_params: int
    max_abs_error: float  # max |fnn - reference| over the outputs
    max_abs_output: float  # max |reference|: the scale the error is measured against
    output_shape: tuple[int, ...]
    tensors_loaded: int  # foreign tensors the load used
    tensors_ignored: int  # foreign tensors it left on purpose (BatchNorm's step counters)
    layers_loaded: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    reference: str  # the real library's model, as its user would build it
    fnn: str  # the fnn model it is compared with
    run: Callable[[np.random.Generator], Measured]


def measure(
    reference_params: int, model: fnn.Layer, loaded: Any, x: np.ndarray, expected: np.ndarray, start: float
) -> Measured:
    """Runs the loaded fnn model on ``x`` and compares with the reference's ``expected`` output."""
    params, state, report = loaded
    got = np.asarray(jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])(params, state, x))
    return Measured(
        params=reference_params,
        fnn_params=count_params(params)[0],
        max_abs_error=float(np.max(np.abs(got - expected))),
        max_abs_output=float(np.max(np.abs(expected))),
        output_shape=tuple(got.shape),
        tensors_loaded=sum(len(n) for _, n in report.mapped),
        tensors_ignored=len(report.ignored),
        layers_loaded=len(report.mapped),
        seconds=time.perf_counter() - start,
    )


def _torch_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def torch_case(
    name: str,
    reference: str,
    build_torch: Callable[[], torch.nn.Module],
    build_fnn: Callable[[], fnn.Layer],
    input_shape: tuple[int, ...],
) -> Case:
    """A PyTorch reference with the library's own random initialisation and random BatchNorm
    layers (scales, shifts, and statistics calibrated on a random batch, then perturbed: see
    ``torch_zoo.randomize``), saved as safetensors and loaded by ``fnn.interop.load_torch``."""

    def run(rng: np.random.Generator) -> Measured:
        start = time.perf_counter()
        torch.manual_seed(int(rng.integers(2**31)))
        module = build_torch()
        nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
        batch = rng.normal(size=(8, *input_shape)).astype(np.float32)
        torch_zoo.randomize(module, rng, calibrate=nchw(batch), library_init=True)
        module.eval()
        if input_shape[-1] == 3:  # images as a user has them, through fnn's torchvision normalisation
            pixels = rng.integers(0, 256, size=(2, *input_shape), dtype=np.uint8)
            x = np.asarray(models.preprocess_input(pixels))
        else:
            x = rng.normal(size=(2, *input_shape)).astype(np.float32)
        with torch.no_grad():
            expected = module(nchw(x)).numpy()
        reference_params = _torch_params(module)
        model = build_fnn()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.safetensors"
            safetensors.torch.save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path)
            del module
            params, state, report = interop.load_torch(model, input_shape, path)
        return measure(reference_params, model, (params, state, report), x, expected, start)

    return Case(name, reference, f"fnn.models.{build_fnn.__name__}()", run)


tv = torch_zoo.torchvision.models

CASES: list[Case] = [
    torch_case(
        "LeNet-5",
        "torch_zoo.LeNet5() (the usual PyTorch LeNet-5)",
        torch_zoo.LeNet5,
        models.lenet5,
        (32, 32, 1),
    ),
    torch_case(
        "VGG-16",
        "torchvision.models.vgg16(weights=None)",
        lambda: tv.vgg16(weights=None),
        models.vgg16,
        (224, 224, 3),
    ),
    torch_case(
        "ResNet-18",
        "torchvision.models.resnet18(weights=None)",
        lambda: tv.resnet18(weights=None),
        models.resnet18,
        (224, 224, 3),
    ),
    torch_case(
        "ResNet-50",
        "torchvision.models.resnet50(weights=None)",
        lambda: tv.resnet50(weights=None),
        models.resnet50,
        (224, 224, 3),
    ),
    torch_case(
        "MobileNetV2",
        "torchvision.models.mobilenet_v2(weights=None)",
        lambda: tv.mobilenet_v2(weights=None),
        models.mobilenet_v2,
        (224, 224, 3),
    ),
]


def keras_vgg16(rng: np.random.Generator) -> Measured:
    """Keras Applications' VGG16 (the same network as torchvision's, flattened channels last) with
    random weights and biases, its ``.weights.h5`` loaded by ``fnn.interop.load_keras``."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    start = time.perf_counter()
    net = keras.applications.VGG16(weights=None, classifier_activation=None)
    net.set_weights([rng.normal(0, np.sqrt(2 / max(1, np.prod(w.shape[:-1]))), w.shape).astype(np.float32)
                     for w in net.get_weights()])  # fmt: skip
    x = np.asarray(models.preprocess_input(rng.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)))
    expected = np.asarray(net(x, training=False))
    model = models.vgg16()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg16.weights.h5"
        net.save_weights(path)
        params, state, report = interop.load_keras(model, (224, 224, 3), path)
    return measure(int(net.count_params()), model, (params, state, report), x, expected, start)


CASES.append(
    Case(
        "VGG-16 (Keras)",
        "keras.applications.VGG16(weights=None, classifier_activation=None)",
        "fnn.models.vgg16()",
        keras_vgg16,
    )  # fmt: skip
)

# Hugging Face transformers, from configs (interop/compare_transformers.py).
_HF_FNN = {
    "BERT-base": "fnn.models.bert()",
    "GPT-2": "fnn.models.gpt2_lm_head()",
    "ViT-Tiny": "fnn.models.vit_tiny()",
}
CASES += [
    Case(c.name, c.reference, _HF_FNN.get(c.name, "fnn.models"), lambda rng, c=c: Measured(**c.run(rng)))
    for c in compare_transformers.cases()
]


def versions() -> dict[str, str]:
    import keras
    import torchvision
    import transformers

    return {
        "fnn": getattr(fnn, "__version__", "?"),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "keras": keras.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0].platform),
    }


def markdown(results: list[dict], env: dict[str, str], date: str) -> str:
    lines = [
        "# fnn.models against the real libraries",
        "",
        f"Generated by `make interop` (interop/compare.py) on {date}: {', '.join(f'{k} {v}' for k, v in env.items())}.",
        "Each reference model is built by its library with random weights (its own initialisation, nothing",
        "downloaded; BatchNorm scales, shifts and statistics randomised, the statistics calibrated on a random",
        "batch so that activations keep a trained network's scale), saved as safetensors, loaded into the fnn model with",
        "`fnn.interop`, and both run on the same float32 batch of 2 (LeNet-5: 32x32x1; the CNNs: 224x224 RGB",
        "images through `fnn.models.preprocess_input`; ViT-Tiny: through `vit_preprocess_input`; BERT and GPT-2:",
        "128 random tokens, the second sequence padded on the right). Hugging Face models are built from their",
        "configs, randomised (biases and LayerNorms too) and written with `save_pretrained`, the names of",
        "published checkpoints; Keras's VGG16 is written with `save_weights` and read with `load_keras`.",
        f"The bar is a max abs error of {BAR:.0e} over the outputs (logits, or BERT's",
        "hidden states and pooled output), and fnn's parameter count must equal the reference's.",
        "",
        "| model | reference | fnn | params | max abs error | max abs output | bar | result |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['model']} | `{r['reference']}` | `{r['fnn']}` | | | | {BAR:.0e} | ERROR: {r['error']} |"
            )
            continue
        lines.append(
            f"| {r['model']} | `{r['reference']}` | `{r['fnn']}` | {r['params']:,} | {r['max_abs_error']:.2e} | "
            f"{r['max_abs_output']:.3g} | {BAR:.0e} | {'pass' if r['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"


def main(prefix: str) -> int:
    rng = np.random.default_rng(0)
    results = []
    for case in CASES:
        print(f"{case.name} ...", flush=True)
        try:
            m = case.run(rng)
        except Exception as e:  # a broken case is recorded, and the others still run
            results.append({"model": case.name, "reference": case.reference, "fnn": case.fnn, "pass": False,
                            "error": f"{type(e).__name__}: {e}".splitlines()[0]})  # fmt: skip
            print(f"  ERROR {results[-1]['error']}", flush=True)
            continue
        ok = m.max_abs_error <= BAR and m.params == m.fnn_params
        results.append(
            {
                "model": case.name,
                "reference": case.reference,
                "fnn": case.fnn,
                **dataclasses.asdict(m),
                "pass": ok,
            }
        )
        print(f"  {m.params:,} params, max abs error {m.max_abs_error:.2e} (logits up to "
              f"{m.max_abs_output:.3g}), {'pass' if ok else 'FAIL'} in {m.seconds:.0f} s", flush=True)  # fmt: skip
    env = versions()
    date = datetime.date.today().isoformat()
    out = Path(prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"date": date, "bar": BAR, "environment": env, "results": results}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results, env, date))
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("interop", "results")))
