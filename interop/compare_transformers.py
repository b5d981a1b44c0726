"""Full-size equivalence of fnn.models' transformers with Hugging Face transformers (random weights).

For each case, the Hugging Face model is built from its config (no download),
given random weights (transformers' own initialisation, plus random biases and
LayerNorm parameters so that a wrong map cannot hide behind zeros and ones),
written with ``save_pretrained`` (the names of published checkpoints), loaded
into the fnn model with :func:`fnn.interop.load_torch`, and both are run on the
same random batch; the result is the largest absolute difference of their outputs.

Used by interop/compare.py; runs alone too::

    .venv-interop/bin/python interop/compare_transformers.py

Interface: ``cases()`` returns :class:`Case` s (BERT-base, GPT-2, ViT-Tiny), each with

- ``name`` (``"BERT-base"``) and ``reference`` (how the Hugging Face model is built, for the table);
- ``build_reference()``: the Hugging Face ``torch.nn.Module``, random weights, eval mode;
- ``build_fnn()``: ``(fnn model, per-example input shape)``;
- ``inputs(rng)``: ``(keyword arguments of the Hugging Face forward as torch tensors, the fnn
  input)`` from a ``numpy.random.Generator``;
- ``outputs(reference_output, fnn_output)``: ``[(reference array, fnn array), ...]``, the pairs
  compared (fnn's layout);
- ``run(rng)``: all of it; returns a dict with the fields of compare.py's ``Measured``
  (``params`` (the reference's), ``fnn_params``, ``max_abs_error``, ``max_abs_output``,
  ``output_shape``, ``tensors_loaded``, ``tensors_ignored``, ``layers_loaded``, ``seconds``),
  so compare.py appends ``Case(c.name, c.reference, lambda rng, c=c: Measured(**c.run(rng)))``.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from torch_zoo import import_torchvision  # noqa: E402  (interop/torch_zoo.py)

# transformers imports torchvision whenever it is installed: import it first where a wheel built
# for CUDA next to a CPU-only torch cannot load its operators (these models need none of them).
import_torchvision()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import fnn  # noqa: E402
from fnn import interop  # noqa: E402
from fnn.models._bert import bert  # noqa: E402
from fnn.models._gpt2 import gpt2_lm_head  # noqa: E402
from fnn.models._vit import vit_preprocess_input, vit_tiny  # noqa: E402

BAR = 1e-4
SEQUENCE = 128  # tokens per sequence for BERT and GPT-2; the second sequence is padded


class Case(NamedTuple):
    name: str
    reference: str
    build_reference: Callable[[], torch.nn.Module]
    build_fnn: Callable[[], tuple[fnn.Layer, Any]]
    inputs: Callable[[np.random.Generator], tuple[dict[str, torch.Tensor], Any]]
    outputs: Callable[[Any, Any], list[tuple[np.ndarray, np.ndarray]]]

    def run(self, rng: np.random.Generator) -> dict[str, Any]:
        """Builds both models, loads the reference's ``save_pretrained`` file into fnn's, compares."""
        start = time.perf_counter()
        torch.manual_seed(int(rng.integers(2**31)))
        reference = self.build_reference()
        model, input_shape = self.build_fnn()
        with tempfile.TemporaryDirectory() as tmp:
            reference.save_pretrained(tmp)
            params, state, report = interop.load_torch(model, input_shape, Path(tmp) / "model.safetensors")
        torch_inputs, x = self.inputs(rng)
        with torch.no_grad():
            expected = reference(**torch_inputs)
        got = jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])(params, state, x)
        pairs = [(np.asarray(a), np.asarray(b)) for a, b in self.outputs(expected, got)]
        return {
            "params": sum(p.numel() for p in reference.parameters()),  # tied weights once
            "fnn_params": sum(math.prod(a.shape) for a in jax.tree.leaves(params)),
            "max_abs_error": max(float(np.abs(b - a).max()) for a, b in pairs),
            "max_abs_output": max(float(np.abs(a).max()) for a, _ in pairs),
            "output_shape": tuple(pairs[0][1].shape),
            "tensors_loaded": sum(len(n) for _, n in report.mapped),
            "tensors_ignored": len(report.ignored),
            "layers_loaded": len(report.mapped),
            "seconds": time.perf_counter() - start,
        }


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Random biases and LayerNorm parameters on top of transformers' initialisation; eval mode."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.LayerNorm):
                sub.weight.copy_(1 + 0.1 * torch.randn_like(sub.weight))
                sub.bias.copy_(0.1 * torch.randn_like(sub.bias))
            elif getattr(sub, "bias", None) is not None and isinstance(sub.bias, torch.nn.Parameter):
                sub.bias.copy_(0.02 * torch.randn_like(sub.bias))
    return module.eval()


def _tokens(rng: np.random.Generator, vocab: int, types: bool) -> tuple[dict[str, torch.Tensor], dict]:
    ids = rng.integers(0, vocab, size=(2, SEQUENCE)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, SEQUENCE - 28 :] = 0  # right padding
    arrays = {"input_ids": ids, "attention_mask": mask}
    if types:
        arrays["token_type_ids"] = (np.arange(SEQUENCE) >= SEQUENCE // 2).astype(np.int32)[None].repeat(2, 0)
    torch_inputs = {k: torch.from_numpy(v).long() for k, v in arrays.items()}
    return torch_inputs, {k: jnp.asarray(v) for k, v in arrays.items()}


def _images(rng: np.random.Generator) -> tuple[dict[str, torch.Tensor], jax.Array]:
    """RGB pixels as a user has them, through fnn's ViTImageProcessor normalisation."""
    pixels = rng.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    x = np.asarray(vit_preprocess_input(pixels))
    return {"pixel_values": torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))}, jnp.asarray(x)


def cases() -> list[Case]:
    """BERT-base (``BertModel``), GPT-2 small (``GPT2LMHeadModel``) and ViT-Tiny (``ViTForImageClassification``)."""
    tokens = fnn.Shape((SEQUENCE,), jnp.int32)
    vit_tiny_config = dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                           image_size=224, patch_size=16, num_labels=1000)  # fmt: skip
    return [
        Case(
            "BERT-base",
            "transformers.BertModel(BertConfig())",
            lambda: _randomize(transformers.BertModel(transformers.BertConfig())),
            lambda: (bert(), tokens),
            lambda rng: _tokens(rng, 30522, types=True),
            lambda ref, out: [(ref.last_hidden_state, out[0]), (ref.pooler_output, out[1])],
        ),
        Case(
            "GPT-2",
            "transformers.GPT2LMHeadModel(GPT2Config())",
            lambda: _randomize(transformers.GPT2LMHeadModel(transformers.GPT2Config())),
            lambda: (gpt2_lm_head(), tokens),
            lambda rng: _tokens(rng, 50257, types=False),
            lambda ref, out: [(ref.logits, out)],
        ),
        Case(
            "ViT-Tiny",
            "transformers.ViTForImageClassification(ViTConfig(<ViT-Tiny>))",
            lambda: _randomize(
                transformers.ViTForImageClassification(transformers.ViTConfig(**vit_tiny_config))
            ),
            lambda: (vit_tiny(), (224, 224, 3)),
            _images,
            lambda ref, out: [(ref.logits, out)],
        ),
    ]


if __name__ == "__main__":
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, jax {jax.__version__}")
    rng = np.random.default_rng(0)
    passed = True
    for case in cases():
        r = case.run(rng)
        passed &= r["max_abs_error"] <= BAR and r["params"] == r["fnn_params"]
        print(f"{case.name:10s} {r['params']:>11,} params  {r['tensors_loaded']:4d} tensors  "
              f"max abs error {r['max_abs_error']:.2e} (outputs up to {r['max_abs_output']:.3g})  "
              f"{'pass' if r['max_abs_error'] <= BAR else 'FAIL'}  ({r['seconds']:.0f} s)")  # fmt: skip
    sys.exit(0 if passed else 1)
