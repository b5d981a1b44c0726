"""fnn.preprocessing: StringLookup, IntegerLookup and TextVectorization against hand-written references."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fnn
from fnn.preprocessing import IntegerLookup, StringLookup, TextVectorization

# Counts: b 3, a 2, d 2, c 1, e 1; the mask token "PAD" is never counted.
TOKENS = [["a", "b", "b", "PAD"], ["d", "b", "a", "PAD"], ["c", "d", "e", "PAD"]]


def test_index_layout_matches_keras():
    lookup = StringLookup(mask_token="PAD", num_oov_indices=2).adapt(TOKENS)
    # mask, OOV ids, then descending count with ties by descending token (Keras's lexsort[::-1]).
    assert lookup.get_vocabulary() == ["PAD", "[UNK]", "[UNK]", "b", "d", "a", "e", "c"]
    assert lookup.get_vocabulary(include_special_tokens=False) == ["b", "d", "a", "e", "c"]
    assert lookup.vocabulary_size() == 8
    # max_tokens counts the special ids too; outside the mask, ids follow the layout in every mode.
    small = StringLookup(max_tokens=4, mask_token="PAD").adapt(TOKENS)
    assert small.get_vocabulary() == ["PAD", "[UNK]", "b", "d"]
    assert small([["b", "a", "PAD", "zzz"]]).tolist() == [[2, 1, 0, 1]]
    assert StringLookup(mask_token="PAD", output_mode="multi_hot").adapt(TOKENS).get_vocabulary()[:2] == [
        "[UNK]",
        "b",
    ]
    ints = IntegerLookup(mask_token=0).adapt(np.array([[5, 9, 9, 0], [5, 2, 7, 0]]))
    assert ints.get_vocabulary() == [0, -1, 9, 5, 7, 2]
    # Two OOV ids: unknown ints go to v % 2 (Keras's floormod), after the mask id.
    two = IntegerLookup([10, 20], num_oov_indices=2, mask_token=0)
    assert two(np.array([20, 3, 4, 0, 10])).tolist() == [4, 2, 1, 0, 3]
    assert two(np.array([20, 3])).dtype == np.int32


def test_encodings_against_numpy():
    vocab = ["x", "y", "z"]
    batch = [["y", "y", "q", ""], ["z", "", "", ""]]
    ids = np.array([[2, 2, 0, -1], [3, -1, -1, -1]])  # "" is the mask: dropped outside int mode
    counts = np.zeros((2, 4))
    for r, row in enumerate(ids):
        for i in row[row >= 0]:
            counts[r, i] += 1
    got = {m: StringLookup(vocab, mask_token="", output_mode=m)(batch) for m in ("multi_hot", "count")}
    np.testing.assert_array_equal(got["count"], counts)
    np.testing.assert_array_equal(got["multi_hot"], np.minimum(counts, 1))
    assert got["count"].dtype == np.float32
    one_hot = StringLookup(vocab, output_mode="one_hot")(np.array([["z"], ["w"]]))
    np.testing.assert_array_equal(one_hot, np.eye(4)[[3, 0]])
    padded = StringLookup(vocab, output_mode="count", max_tokens=6, pad_to_max_tokens=True)([["x", "x"]])
    np.testing.assert_array_equal(padded, [[0, 2, 0, 0, 0, 0]])
    inverse = StringLookup(vocab, mask_token="", invert=True)
    assert inverse(np.array([[4, 0, 1, 9]])).tolist() == [["z", "", "[UNK]", "[UNK]"]]


def test_text_vectorization_int_mode_and_tf_idf():
    docs = ["The cat sat.", "the DOG sat, the end!", "a cat"]
    tv = TextVectorization(output_sequence_length=4).adapt(docs)
    # the 3, sat 2, cat 2, then ties by descending token: end, dog, a.
    assert tv.get_vocabulary() == ["", "[UNK]", "the", "sat", "cat", "end", "dog", "a"]
    assert tv(["the cat", "a bird sat on the dog"]).tolist() == [[2, 4, 0, 0], [7, 1, 3, 1]]
    ragged = TextVectorization(vocabulary=["the", "cat"], standardize=None)(["the cat", "The"])
    assert ragged.tolist() == [[2, 3], [1, 0]]
    bigrams = TextVectorization(vocabulary=["a", "b", "a b"], ngrams=2, standardize=None)(["a b c"])
    assert bigrams.tolist() == [[2, 3, 1, 4, 1]]  # unigrams a b c, then bigrams "a b", "b c"

    tfidf = TextVectorization(output_mode="tf_idf").adapt(docs)
    vocab = tfidf.get_vocabulary(include_special_tokens=False)
    tokenized = [d.lower().replace(".", "").replace(",", "").replace("!", "").split() for d in docs]
    df = np.array([sum(t in doc for doc in tokenized) for t in vocab], float)
    idf = np.log(1 + len(docs) / (1 + df))
    weights = np.concatenate([[idf.mean()], idf])  # the OOV id gets the mean weight, as in Keras
    query = ["the the cat zebra"]
    tf = np.zeros(len(weights))
    for token in ["the", "the", "cat", "zebra"]:
        tf[vocab.index(token) + 1 if token in vocab else 0] += 1
    np.testing.assert_allclose(tfidf(query)[0], tf * weights, rtol=1e-6)
    assert tfidf(query).shape == (1, len(vocab) + 1)


def test_adapt_from_batches_equals_adapt_from_concatenation_and_never_mutates():
    docs = np.array(["a b", "b c c", "d a", "c", "e e b"])
    base = TextVectorization(output_mode="tf_idf", max_tokens=5)
    whole = base.adapt(docs)
    streamed = base.adapt([docs[:2], docs[2:4], docs[4:]])
    generated = base.adapt(iter([docs[:3], docs[3:]]))
    for other in (streamed, generated):
        assert other.get_vocabulary() == whole.get_vocabulary()
        np.testing.assert_array_equal(other(docs), whole(docs))
    with pytest.raises(ValueError, match="TextVectorization has no vocabulary"):
        base(docs)  # adapt returned a new object
    lookup = IntegerLookup()
    batches = [np.array([[3, 1], [1, 1]]), np.array([[4, 3]])]
    assert lookup.adapt(batches).get_vocabulary() == lookup.adapt(np.concatenate(batches)).get_vocabulary()


def test_json_round_trip_is_exact():
    docs = ["the cat sat", "the dog", "a cat and a dog"]
    objects = [
        TextVectorization(output_mode="tf_idf", ngrams=(1, 2), max_tokens=8).adapt(docs),
        TextVectorization(output_sequence_length=3).adapt(docs),
        StringLookup(mask_token="", num_oov_indices=2).adapt([["x", "y", "y"]]),
        IntegerLookup(mask_token=0, output_mode="count").adapt(np.array([[4, 4, 7, 0]])),
    ]
    inputs = [docs, docs, [["y", "q", ""]], np.array([[7, 4, 9, 0]])]
    for obj, x in zip(objects, inputs, strict=True):
        text = obj.to_json()
        json.loads(text)  # plain JSON
        back = type(obj).from_json(text)
        assert back.get_vocabulary() == obj.get_vocabulary() and back.config == obj.config
        np.testing.assert_array_equal(back(x), obj(x))
        assert back.to_json() == text
    unadapted = StringLookup(max_tokens=5)
    assert StringLookup.from_json(unadapted.to_json()).config == unadapted.config
    with pytest.raises(ValueError, match="not valid JSON"):
        StringLookup.from_json("{not json")
    with pytest.raises(ValueError, match="class 'IntegerLookup', got 'StringLookup'"):
        IntegerLookup.from_json(objects[2].to_json())
    broken = json.loads(objects[2].to_json())
    del broken["config"]["mask_token"]
    with pytest.raises(ValueError, match="config must have keys"):
        StringLookup.from_json(json.dumps(broken))
    with pytest.raises(ValueError, match="cannot save a callable standardize"):
        TextVectorization(standardize=str.upper).to_json()


def test_clear_errors():
    with pytest.raises(ValueError, match="StringLookup has no vocabulary.*adapt"):
        StringLookup()(["a"])
    with pytest.raises(TypeError, match="expects str inputs, got bytes"):
        StringLookup(["a"])(np.array([b"a"]))
    with pytest.raises(TypeError, match="expects str inputs, got int 1"):
        StringLookup(["a"])(["a", 1])
    with pytest.raises(TypeError, match="expects integer inputs, got an array of dtype float64"):
        IntegerLookup([1, 2])(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="expects integer data, got bool True"):
        IntegerLookup().adapt([True, 1])
    with pytest.raises(ValueError, match=r"repeated entries \['a'\]"):
        StringLookup(["a", "b", "a"])
    with pytest.raises(ValueError, match="contains the mask token 'PAD' at index 1"):
        StringLookup(["a", "PAD"], mask_token="PAD")
    with pytest.raises(ValueError, match=r"num_oov_indices=0 .* e\.g\. \['c'\]"):
        StringLookup(["a"], num_oov_indices=0)(["a", "c"])
    with pytest.raises(ValueError, match="more than max_tokens=3"):
        StringLookup(["a", "b", "c"], max_tokens=3)
    with pytest.raises(ValueError, match="invert=True needs output_mode='int'"):
        StringLookup(invert=True, output_mode="count")
    with pytest.raises(ValueError, match="output_mode must be one of"):
        TextVectorization(output_mode="one_hot")
    with pytest.raises(ValueError, match="output_sequence_length is only used with output_mode='int'"):
        TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(ValueError, match="needs idf_weights"):
        StringLookup(["a"], output_mode="tf_idf")
    with pytest.raises(ValueError, match="shape \\(batch,\\) or \\(batch, 1\\)"):
        TextVectorization(vocabulary=["a"])(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="holds no tokens"):
        TextVectorization().adapt(["", "!!"])


@pytest.mark.standard_promotion  # optax inside fit
def test_ids_train_an_embedding_model():
    sentences = [
        f"{w} movie {v}" for w in ("good", "great", "bad", "awful") for v in ("ok", "fine", "so", "yes")
    ]
    labels = np.array([1] * 8 + [0] * 8, np.int32)
    tv = TextVectorization(output_sequence_length=4).adapt(sentences)
    ids = tv(sentences)
    assert ids.shape == (16, 4) and ids.dtype == np.int32
    model = fnn.Sequential([fnn.Embedding(tv.vocabulary_size(), 8), fnn.GlobalAvgPool(), fnn.Dense(2)])
    history = fnn.fit(
        model, ids, labels, loss="sparse_categorical_crossentropy", epochs=1, batch_size=8, verbose=0
    )
    assert np.isfinite(history.history["loss"][-1])
