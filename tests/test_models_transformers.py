"""fnn.models' Hugging Face transformers (BERT, GPT-2, ViT) against the real transformers' outputs.

The fixtures in tests/fixtures/interop (``hf_*``) were written by
interop/make_transformer_fixtures.py from transformers itself: tiny models from
configs with random weights, saved with ``save_pretrained``, and their outputs.
These tests load the files unchanged with ``fnn.interop.load_torch`` into the
matching fnn models, so they need neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import interop
from fnn.models._bert import bert
from fnn.models._gpt2 import gpt2, gpt2_lm_head
from fnn.models._vit import vit, vit_preprocess_input

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
TOKENS = fnn.Shape((8,), jnp.int32)
# the configurations of interop/make_transformer_fixtures.py
BERT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16, type_vocab_size=2)  # fmt: skip
GPT2 = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)
VIT = dict(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=32)  # fmt: skip
IMAGE = (16, 16, 3)
TOL = 1e-4


def _io(case: str) -> dict[str, np.ndarray]:
    return interop.read_safetensors(FIXTURES / f"hf_{case}.io.safetensors")


def _weights(case: str) -> dict[str, np.ndarray]:
    return interop.read_safetensors(FIXTURES / f"hf_{case}.safetensors")


def _jit(fn):
    # LLVM's level 0: these tiny programs run once, so compile time is what counts (the same math)
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def _close(got, want) -> None:
    assert np.shape(got) == np.shape(want)
    assert np.abs(np.asarray(got) - want).max() <= TOL


def test_bert_matches_hugging_face_with_padding_mask_and_token_types():
    io = _io("bert")
    model = bert(**BERT)
    params, state, report = interop.load_torch(model, TOKENS, FIXTURES / "hf_bert.safetensors")
    assert report.ok and len(report.mapped) == 4 + 2 * 8 + 1  # embeddings, 8 per block, pooler
    batch = {k: jnp.asarray(io[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}

    @_jit
    def run(params, batch):
        masked = model.apply(params, state, batch, train=False)[0]
        plain = model.apply(params, state, batch["input_ids"], train=False)[0]  # ids alone: no mask, type 0
        return masked, plain

    (hidden, pooled), (plain, _) = run(params, batch)
    _close(hidden, io["y"])
    _close(pooled, io["pooled"])
    _close(plain, io["y_plain"])
    # the mask mattered: without it, the padded sequence's first tokens come out otherwise
    (unmasked, _), _ = run(params, {**batch, "attention_mask": jnp.ones((2, 8), jnp.int32)})
    assert np.abs(unmasked[1, :5] - io["y"][1, :5]).max() > 1e-2


def test_gpt2_matches_hugging_face_and_is_causal():
    io = _io("gpt2")
    lm, base = gpt2_lm_head(**GPT2), gpt2(**GPT2)
    weights = _weights("gpt2")  # GPT2LMHeadModel.save_pretrained: "transformer." names, lm_head tied (absent)
    lm_params, state, _ = interop.load_torch(lm, TOKENS, weights)
    base_weights = {k.removeprefix("transformer."): v for k, v in weights.items()}  # a GPT2Model's names
    base_params, base_state, _ = interop.load_torch(base, TOKENS, base_weights)
    ids, mask = jnp.asarray(io["input_ids"]), jnp.asarray(io["attention_mask"])
    changed = ids.at[:, 5:].set((ids[:, 5:] + 1) % GPT2["vocab_size"])  # other tokens after position 4

    @_jit
    def run(lm_params, base_params, key):
        logits = lm.apply(lm_params, state, {"input_ids": ids, "attention_mask": mask}, train=False)[0]
        both = jnp.concatenate([ids, changed])
        hidden = base.apply(base_params, base_state, both, train=False)[0]
        return logits, hidden, base.apply(base_params, base_state, ids, train=True, key=key)[0]

    logits, hidden, dropped = run(lm_params, base_params, jax.random.key(0))
    _close(logits, io["y"])
    _close(hidden[:2], io["hidden"])
    _close(hidden[:2] @ base_params["wte"]["table"].T, io["y_plain"])  # the head tied to wte
    # causal: changing tokens 5.. leaves the states at 0..4 exactly as they were, and only those
    np.testing.assert_array_equal(hidden[2:, :5], hidden[:2, :5])
    assert np.abs(hidden[2:, 5:] - hidden[:2, 5:]).min(axis=-1).max() > 0
    # training: dropout (GPT-2's 0.1) drawn from the key, the same for the same key
    assert np.abs(dropped - hidden[:2]).max() > 1e-2
    np.testing.assert_array_equal(run(lm_params, base_params, jax.random.key(0))[2], dropped)
    assert np.abs(run(lm_params, base_params, jax.random.key(1))[2] - dropped).max() > 1e-2
    # the export writes the file's names and layouts back (Conv1D's weight untransposed)
    exported = interop.to_torch(lm, TOKENS, lm_params, state)
    assert exported.keys() == weights.keys()
    for k, v in weights.items():
        np.testing.assert_array_equal(exported[k], v)


def test_gpt2_state_dict_with_the_tied_head_loads_with_ignore():
    weights = _weights("gpt2")
    state_dict = {**weights, "lm_head.weight": weights["transformer.wte.weight"]}  # what state_dict() lists
    report = interop.load_torch(gpt2_lm_head(**GPT2), TOKENS, state_dict, ignore="lm_head.weight").report
    assert report.ignored == ("lm_head.weight",) and not report.unused


def test_vit_matches_hugging_face_classifier_and_base_model():
    io, io_base = _io("vit"), _io("vit_base")
    classifier = vit(**VIT, num_classes=3)
    base = vit(**VIT, include_top=False, add_pooling_layer=True)
    weights = _weights("vit")
    cls_params, state, _ = interop.load_torch(classifier, IMAGE, weights)
    base_params, base_state, _ = interop.load_torch(base, IMAGE, FIXTURES / "hf_vit_base.safetensors")

    @_jit
    def run(cls_params, base_params):
        logits = classifier.apply(cls_params, state, jnp.asarray(io["x"]), train=False)[0]
        return logits, base.apply(base_params, base_state, jnp.asarray(io_base["x"]), train=False)[0]

    logits, (hidden, pooled) = run(cls_params, base_params)
    _close(logits, io["y"])
    _close(hidden, io_base["y"])
    _close(pooled, io_base["pooled"])
    exported = interop.to_torch(classifier, IMAGE, cls_params, state)  # cls_token and the patch conv back
    assert exported.keys() == weights.keys()
    for k, v in weights.items():
        np.testing.assert_array_equal(exported[k], v)


def test_vit_preprocess_input_is_hugging_face_normalisation():
    pixels = np.array([[[[0, 51, 255]]]], np.uint8)
    np.testing.assert_allclose(vit_preprocess_input(pixels), (pixels / 255 - 0.5) / 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match=r"expects RGB images \(\.\.\., 3\)"):
        vit_preprocess_input(np.zeros((1, 2, 2, 1)))


def test_dropout_needs_a_key_in_training():
    model = gpt2(**GPT2)
    params, state = fnn._core.abstract_init(model, TOKENS)
    ids = jax.ShapeDtypeStruct((2, 8), jnp.int32)
    with pytest.raises(ValueError, match="GPT2Model 'gpt2' needs a PRNG key when train=True"):
        jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=True), params, state, ids)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: bert(hidden_size=10, num_attention_heads=3),
            "hidden_size=10 must be a multiple of num_attention_heads=3",
        ),
        (lambda: bert(hidden_act="swish"), "hidden_act must be one of"),
        (lambda: bert(hidden_dropout_prob=1.0), "hidden_dropout_prob must be in"),
        (lambda: bert(layer_norm_eps=0.0), "epsilon must be a positive float"),
        (lambda: gpt2(n_layer=0), "n_layer must be a positive int"),
        (lambda: vit(image_size=30, patch_size=4), "image_size=30 must be a multiple of patch_size=4"),
        (lambda: vit(add_pooling_layer=True), "add_pooling_layer=True needs include_top=False"),
    ],
)
def test_bad_configs_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [
        (
            fnn.Shape((17,), jnp.int32),
            ValueError,
            r"position embeddings for at most 16 tokens, got input_ids of shape \(2, 17\)",
        ),
        ((8,), TypeError, r"BertModel 'bert' expects integer input_ids \(token ids\), got float32"),
        (
            fnn.Shape((2, 8), jnp.int32),
            ValueError,
            r"expects input_ids of shape \(batch, T\), got shape \(2, 2, 8\)",
        ),
        ({"input_ids": TOKENS, "mask": TOKENS}, ValueError, r"got keys \['input_ids', 'mask'\]"),
        (
            {"input_ids": TOKENS, "attention_mask": fnn.Shape((8,), jnp.float32)},
            TypeError,
            "attention_mask must be integer or bool",
        ),
        (
            {"input_ids": TOKENS, "token_type_ids": fnn.Shape((7,), jnp.int32)},
            ValueError,
            r"token_type_ids must have input_ids' shape \(2, 8\)",
        ),
    ],
)
def test_bad_token_inputs_are_named(shape, error, match):
    with pytest.raises(error, match=match):
        fnn.output_shape(bert(**BERT), shape)


def test_bad_image_size_is_named():
    with pytest.raises(ValueError, match=r"ViTModel 'vit' expects images \(batch, 16, 16, 3\)"):
        fnn.output_shape(vit(**VIT), (32, 32, 3))
