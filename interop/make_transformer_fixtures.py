"""Writes the Hugging Face fixtures of tests/test_models_transformers.py from the real transformers.

Each case is a tiny Hugging Face model built from a config (no download) with
every float tensor drawn at random (LayerNorm scales included, so that a wrong
map cannot hide behind ones and zeros), saved as ``save_pretrained`` saves it
(``hf_<case>.safetensors``: the names of the published checkpoints; transformers
5 renames some modules internally, ViT's for one, but writes these names),
plus ``hf_<case>.io.safetensors`` with the inputs (images channels last, fnn's
layout) and the reference outputs. The suite loads them into the matching
fnn.models transformers without torch or transformers installed.

Run it in the interop environment; nothing is downloaded::

    .venv-interop/bin/python interop/make_transformer_fixtures.py tests/fixtures/interop
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from torch_zoo import import_torchvision  # noqa: E402  (interop/torch_zoo.py)

# transformers imports torchvision whenever it is installed: import it first where a wheel built
# for CUDA next to a CPU-only torch cannot load its operators (these models need none of them).
import_torchvision()

import numpy as np  # noqa: E402
import safetensors.numpy  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/interop")
rng = np.random.default_rng(0)

# The tiny configurations; tests/test_models_transformers.py builds the same fnn models.
BERT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16, type_vocab_size=2)  # fmt: skip
GPT2 = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
VIT = dict(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=32)  # fmt: skip


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every float tensor drawn from normal(0, 0.5); eval mode (no dropout)."""
    with torch.no_grad():
        for t in model.state_dict().values():  # tied tensors (GPT-2's lm_head) are drawn twice, same storage
            if t.dtype.is_floating_point:
                t.copy_(torch.from_numpy(rng.normal(0, 0.5, t.shape).astype(np.float32)))
    return model.eval()


def save(case: str, model: torch.nn.Module, **io: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(Path(tmp) / "model.safetensors", OUT / f"hf_{case}.safetensors")
    safetensors.numpy.save_file(
        {k: np.ascontiguousarray(v) for k, v in io.items()}, OUT / f"hf_{case}.io.safetensors"
    )


def tokens(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``(2, 8)`` and a mask that pads the second sequence's last three tokens."""
    ids = rng.integers(0, vocab, size=(2, 8)).astype(np.int32)
    mask = np.ones((2, 8), np.int32)
    mask[1, 5:] = 0
    return ids, mask


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).long()


def bert() -> None:
    model = randomize(BertModel(BertConfig(**BERT)))
    ids, mask = tokens(BERT["vocab_size"])
    types = rng.integers(0, 2, size=ids.shape).astype(np.int32)
    with torch.no_grad():
        out = model(input_ids=t(ids), attention_mask=t(mask), token_type_ids=t(types))
        plain = model(input_ids=t(ids))
    save(
        "bert", model, input_ids=ids, attention_mask=mask, token_type_ids=types,
        y=out.last_hidden_state.numpy(), pooled=out.pooler_output.numpy(),
        y_plain=plain.last_hidden_state.numpy(),
    )  # fmt: skip


def gpt2() -> None:
    model = randomize(GPT2LMHeadModel(GPT2Config(**GPT2)))
    ids, mask = tokens(GPT2["vocab_size"])
    with torch.no_grad():
        logits = model(input_ids=t(ids), attention_mask=t(mask)).logits
        plain = model(input_ids=t(ids)).logits
        hidden = model.transformer(input_ids=t(ids)).last_hidden_state
    save("gpt2", model, input_ids=ids, attention_mask=mask, y=logits.numpy(), y_plain=plain.numpy(),
         hidden=hidden.numpy())  # fmt: skip


def vit() -> None:
    x = rng.normal(size=(2, VIT["image_size"], VIT["image_size"], 3)).astype(np.float32)
    pixel_values = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW
    model = randomize(ViTForImageClassification(ViTConfig(**VIT, num_labels=3)))
    with torch.no_grad():
        logits = model(pixel_values).logits
    save("vit", model, x=x, y=logits.numpy())

    base = randomize(ViTModel(ViTConfig(**VIT), add_pooling_layer=True))
    with torch.no_grad():
        out = base(pixel_values)
    save("vit_base", base, x=x, y=out.last_hidden_state.numpy(), pooled=out.pooler_output.numpy())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    bert()
    gpt2()
    vit()
    for f in sorted(OUT.glob("hf_*")):
        print(f"{f.stat().st_size:8d}  {f}")
