"""fnn.interop: PyTorch and Keras weights in and out, checked against the real libraries' outputs.

The fixtures in tests/fixtures/interop were written by interop/make_fixtures.py
from torch and keras themselves (random weights, reference outputs), so these
tests need neither library.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import interop
from fnn._core import abstract_init

FIXTURES = Path(__file__).parent / "fixtures" / "interop"


def _io(case: str) -> tuple[np.ndarray, np.ndarray]:
    io = interop.read_safetensors(FIXTURES / f"{case}.io.safetensors")
    x = io["x"].astype(np.int32) if io["x"].dtype.kind == "i" else io["x"]
    return x, io["y"]


# fnn twins of the fixture models: (model, per-example input shape)
def torch_mlp():
    return fnn.Sequential([fnn.Dense(8), fnn.Relu(), fnn.Dense(3)]), (5,)


def torch_cnn():
    return fnn.Sequential([
        fnn.Conv2D(4, 3, padding=1),
        fnn.BatchNorm(epsilon=1e-5),
        fnn.Relu(),
        fnn.DepthwiseConv2D(3, depth_multiplier=2, padding=1),
        fnn.Conv2DTranspose(3, 2, strides=2),
    ]), (6, 6, 3)  # fmt: skip


def torch_rnn():
    return fnn.Sequential([
        fnn.Embedding(10, 6, name="emb"),
        fnn.LSTM(5, return_sequences=True, name="lstm"),
        fnn.Bidirectional(fnn.GRU(4, return_sequences=True), name="gru"),
        fnn.SimpleRNN(3, return_sequences=True, name="rnn"),
    ]), fnn.Shape((7,), jnp.int32)  # fmt: skip


def torch_attention():
    return fnn.Sequential([
        fnn.MultiHeadAttention(2, name="attention"),
        fnn.TransformerEncoderBlock(2, 16, dropout=0.0, name="encoder"),
    ]), (5, 8)  # fmt: skip


def keras_mlp():
    return fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.Dense(3)]), (5,)


def keras_cnn():
    return fnn.Sequential([
        fnn.Conv2D(4, 3, padding="same"),
        fnn.BatchNorm(),
        fnn.Relu(),
        fnn.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        fnn.SeparableConv2D(5, 3, padding="same"),
        fnn.Conv2DTranspose(3, 2, strides=2),
        fnn.GlobalAvgPool(),
        fnn.Sequential([fnn.Dense(4), fnn.Dense(2)]),
    ]), (6, 6, 3)  # fmt: skip


def keras_rnn():
    return fnn.Sequential([
        fnn.Embedding(10, 6),
        fnn.LSTM(5, return_sequences=True),
        fnn.Bidirectional(fnn.GRU(4, return_sequences=True)),
        fnn.GRU(3, reset_after=False, return_sequences=True),
        fnn.SimpleRNN(3),
        fnn.Dense(2),
    ]), fnn.Shape((7,), jnp.int32)  # fmt: skip


def keras_attention():
    return fnn.Sequential([fnn.MultiHeadAttention(2, key_dim=3), fnn.LayerNorm(), fnn.Dense(4)]), (5, 8)


TWINS = {f.__name__: f for f in (torch_mlp, torch_cnn, torch_rnn, torch_attention)} | {
    f.__name__: f for f in (keras_mlp, keras_cnn, keras_rnn, keras_attention)
}


def _load(case: str, source=None):
    model, shape = TWINS[case]()
    if case.startswith("torch"):
        return model, shape, interop.load_torch(model, shape, source or FIXTURES / f"{case}.safetensors")
    return model, shape, interop.load_keras(model, shape, source or FIXTURES / f"{case}.weights.h5")


@pytest.mark.parametrize("case", sorted(TWINS))
def test_outputs_match_the_library_that_wrote_the_weights_and_export_gives_its_file_back(case):
    model, shape, (params, state, report) = _load(case)
    assert report.ok and not report.unused
    x, y = _io(case)
    out, _ = jax.jit(lambda p, s, x: model.apply(p, s, x, train=False))(params, state, jnp.asarray(x))
    np.testing.assert_allclose(out, y, atol=1e-5, rtol=1e-5)

    if case.startswith("torch"):
        original = interop.read_safetensors(FIXTURES / f"{case}.safetensors")
        # the fnn names equal the layers' default names, which nn.Sequential would number: say so
        names = {k: k for k in ("lstm", "gru", "rnn")} if case == "torch_rnn" else None
        exported = interop.to_torch(model, shape, params, state, names=names)
    else:
        original = interop.read_keras(FIXTURES / f"{case}.weights.h5")
        original = {k: v for k, v in original.items() if not k.startswith("optimizer")}
        exported = interop.to_keras(model, shape, params, state)
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        if name.endswith("num_batches_tracked"):
            continue
        if "bias_" in name and "gru" not in name:  # PyTorch's two biases come back as their sum and 0
            value = (
                original[name.replace("bias_hh", "bias_ih")] + original[name.replace("bias_ih", "bias_hh")]
            )
            value = value if "bias_ih" in name else np.zeros_like(value)
        np.testing.assert_allclose(exported[name], value, rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_keras_archive_is_read_without_its_config(tmp_path):
    model, shape, (params, state, _) = _load("keras_mlp", FIXTURES / "keras_mlp.keras")
    x, y = _io("keras_mlp")
    np.testing.assert_allclose(model.apply(params, state, jnp.asarray(x), train=False)[0], y, atol=1e-5)
    # an archive whose config names code but that holds no weights is refused, never imported
    hostile = tmp_path / "model.keras"
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("config.json", '{"class_name": "Lambda", "config": {"function": "os.system"}}')
    with pytest.raises(interop.ForeignFileError, match="without model.weights.h5"):
        interop.load_keras(model, shape, hostile)


def test_saved_files_load_back(tmp_path):
    rng = np.random.default_rng(0)
    for twin, save, load in [
        (torch_cnn, interop.save_torch, interop.load_torch),
        (keras_cnn, interop.save_keras, interop.load_keras),
    ]:
        model, shape = twin()
        variables = jax.tree.map(  # random values: no init to compile
            lambda s: rng.normal(size=s.shape).astype(s.dtype), abstract_init(model, shape)
        )
        save(tmp_path / "m", model, shape, *variables)
        loaded = load(model, shape, tmp_path / "m")
        assert jax.tree.all(jax.tree.map(np.array_equal, variables, tuple(loaded[:2])))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_pickle_files_are_refused_by_name(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04anything")
    with pytest.raises(interop.ForeignFileError, match="(?s)never unpickles.*safetensors.torch.save_file"):
        interop.load_torch(*torch_mlp(), path)


def test_pickle_content_is_refused_whatever_the_name(tmp_path):
    zipped = tmp_path / "model.safetensors"
    with zipfile.ZipFile(zipped, "w") as z:  # what torch.save writes
        z.writestr("archive/data.pkl", b"\x80\x02")
    with pytest.raises(interop.ForeignFileError, match="PyTorch pickle"):
        interop.load_torch(*torch_mlp(), zipped)
    (tmp_path / "w.weights.h5").write_bytes(b"\x80\x04pickle")
    with pytest.raises(interop.ForeignFileError, match="a pickle"):
        interop.load_keras(*keras_mlp(), tmp_path / "w.weights.h5")


def test_truncated_and_flipped_files_fail_clearly(tmp_path):
    data = (FIXTURES / "torch_mlp.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(interop.ForeignFileError, match="not a valid safetensors file"):
        interop.load_torch(*torch_mlp(), tmp_path / "cut.safetensors")
    data = (FIXTURES / "keras_mlp.weights.h5").read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(interop.ForeignFileError, match="not a readable HDF5 file"):
        interop.load_keras(*keras_mlp(), tmp_path / "cut.weights.h5")


def test_every_mismatch_is_reported_and_raises():
    tensors = dict(interop.read_safetensors(FIXTURES / "torch_mlp.safetensors"))
    tensors["2.weight"] = np.zeros((5, 8), np.float32)  # wrong shape
    tensors["extra.weight"] = np.zeros(3, np.float32)  # left over
    del tensors["0.bias"]  # missing
    model, shape = torch_mlp()
    with pytest.raises(interop.WeightsMismatchError) as caught:
        interop.load_torch(model, shape, tensors)
    report = caught.value.report
    assert report.missing == ("dense (Dense): the file has no 0.bias (8,)",)
    assert report.mismatched == ("2.weight: the file has shape (5, 8), dense_1 (Dense) expects (3, 8)",)
    assert report.unused == ("extra.weight",)
    assert "MISSING" in str(caught.value) and "UNUSED" in str(caught.value)


def test_keep_ignore_and_names():
    tensors = dict(interop.read_safetensors(FIXTURES / "torch_mlp.safetensors"))
    head = {"w": jnp.zeros((8, 7)), "b": jnp.zeros(7)}
    model = fnn.Sequential([fnn.Dense(8, name="features"), fnn.Relu(), fnn.Dense(7, name="head")])
    params, state = model.init(jax.random.key(0), (5,))
    params = {**params, "head": head}
    loaded = interop.load_torch(
        model, (5,), tensors, params=params, state=state, names={"features": "0"}, keep="head", ignore="2.*"
    )
    assert jax.tree.all(jax.tree.map(jnp.array_equal, loaded.params["head"], head))
    assert loaded.report.kept == ("head",)
    assert sorted(loaded.report.ignored) == ["2.bias", "2.weight"]
    np.testing.assert_array_equal(loaded.params["features"]["w"], tensors["0.weight"].T)
    with pytest.raises(ValueError, match=r"names: \['nope'\] are not layer paths"):
        interop.load_torch(model, (5,), tensors, names={"nope": "0"})


def test_dtypes_widen_silently_reported_and_never_narrow():
    tensors = {
        k: v.astype(jnp.bfloat16)
        for k, v in interop.read_safetensors(FIXTURES / "torch_mlp.safetensors").items()
    }
    loaded = interop.load_torch(*torch_mlp(), tensors)
    assert loaded.params["dense"]["w"].dtype == jnp.float32 and len(loaded.report.cast) == 4
    wide = {k: v.astype(np.float64) for k, v in tensors.items()}
    with pytest.raises(
        interop.WeightsMismatchError, match="has float64, dense .Dense. expects float32 .pass cast=True"
    ):
        interop.load_torch(*torch_mlp(), wide)
    assert interop.load_torch(*torch_mlp(), wide, cast=True).report.ok


def test_a_layer_without_a_layout_is_named():
    def Scale(name="scale"):
        return fnn.Layer(
            lambda k, s: ({"s": jnp.ones(())}, {}), lambda p, s, x, *, train, key=None: (x, s), name
        )

    model = fnn.Sequential([fnn.Dense(2), Scale()])
    with pytest.raises(
        interop.WeightsMismatchError, match=r"scale \(a custom layer\): fnn has no torch layout"
    ):
        interop.load_torch(
            model, (3,), {"0.weight": np.zeros((2, 3), np.float32), "0.bias": np.zeros(2, np.float32)}
        )
    with pytest.raises(ValueError, match="PyTorch's GRU has no reset_after=False form"):
        gru = fnn.GRU(3, reset_after=False)
        interop.to_torch(gru, (4, 2), *gru.init(jax.random.key(0), (4, 2)))


def test_a_dense_after_a_flatten_takes_pytorch_s_channels_first_order():
    # torch: Sequential(Conv2d(2, 3, 1), Flatten(), Linear(3*2*2, 2)) flattens (C, H, W) (review of issue 23)
    rng = np.random.default_rng(0)
    conv, linear = (
        rng.normal(size=(3, 2, 1, 1)).astype(np.float32),
        rng.normal(size=(2, 12)).astype(np.float32),
    )
    tensors = {
        "0.weight": conv,
        "0.bias": np.zeros(3, np.float32),
        "2.weight": linear,
        "2.bias": np.zeros(2, np.float32),
    }
    model = fnn.Sequential([fnn.Conv2D(3, 1), fnn.Flatten(), fnn.Dropout(0.5), fnn.Dense(2)])
    params, state, _ = interop.load_torch(
        model, (2, 2, 2), {k.replace("2.", "3."): v for k, v in tensors.items()}
    )
    x = rng.normal(size=(1, 2, 2, 2)).astype(np.float32)
    features = np.einsum("bhwi,oi->bohw", x, conv[:, :, 0, 0]).reshape(1, -1)  # torch's flatten order
    y, _ = model.apply(params, state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, features @ linear.T, rtol=1e-5, atol=1e-5)
    exported = interop.to_torch(model, (2, 2, 2), params, state)
    np.testing.assert_array_equal(exported["3.weight"], linear)
    nested = fnn.Sequential([fnn.Conv2D(3, 1), fnn.Flatten(), fnn.Sequential([fnn.Dense(2)])])  # VGG's shape
    variables = {"conv2d": params["conv2d"], "flatten": {}, "sequential": {"dense": params["dense"]}}
    exported = interop.to_torch(
        nested, (2, 2, 2), variables, {"conv2d": {}, "flatten": {}, "sequential": {"dense": {}}}
    )
    np.testing.assert_array_equal(exported["2.0.weight"], linear)


def test_wrappers_keep_the_names_and_two_layers_never_share_one():
    inner = fnn.Sequential([fnn.Dense(3), fnn.Relu(), fnn.Dense(2)])
    for model in (fnn.MixedPrecision(inner, "bfloat16"), fnn.InferenceMode(inner), fnn.Remat(inner)):
        params, state = model.init(jax.random.key(0), (4,))
        assert sorted(interop.to_torch(model, (4,), params, state)) == [
            "0.bias",
            "0.weight",
            "2.bias",
            "2.weight",
        ]
    model = fnn.Sequential([fnn.Dense(3, name="a"), fnn.Dense(3, name="b")])
    with pytest.raises(ValueError, match="layers 'a' and 'b' both map to the foreign name 'x'"):
        interop.to_torch(model, (3,), *model.init(jax.random.key(0), (3,)), names={"a": "x", "b": "x"})


def test_keras_branches_of_the_same_class_need_names():
    model = fnn.Sequential(
        [fnn.FanOut(2), fnn.Parallel([fnn.Dense(2, name="a"), fnn.Dense(2, name="b")]), fnn.FanInSum()]
    )
    params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(
        ValueError, match=r"cannot see across the branches holding \['parallel/a', 'parallel/b'\]"
    ):
        interop.to_keras(model, (3,), params, state)
    names = {"parallel/a": "layers/dense_1", "parallel/b": "layers/dense"}
    exported = interop.to_keras(model, (3,), params, state, names=names)
    np.testing.assert_array_equal(exported["layers/dense/vars/0"], params["parallel"]["b"]["w"])


def test_a_deeper_pytorch_rnn_maps_layer_by_layer():
    rng = np.random.default_rng(0)
    shapes = {"weight_ih": (20, 3), "weight_hh": (20, 5), "bias_ih": (20,), "bias_hh": (20,)}
    tensors = {
        f"lstm.{n}_l{i}": rng.normal(size=s).astype(np.float32) for i in (0, 1) for n, s in shapes.items()
    }
    tensors["lstm.weight_ih_l1"] = rng.normal(size=(20, 5)).astype(np.float32)  # layer 1 reads layer 0
    model = fnn.Sequential([fnn.LSTM(5, return_sequences=True), fnn.LSTM(5)])
    with pytest.raises(
        interop.WeightsMismatchError, match=r"num_layers > 1.*names=\{fnn layer path: 'lstm:<layer>'\}"
    ):
        interop.load_torch(model, (4, 3), tensors, names={"lstm": "lstm"})
    loaded = interop.load_torch(model, (4, 3), tensors, names={"lstm": "lstm:0", "lstm_1": "lstm:1"})
    np.testing.assert_array_equal(loaded.params["lstm_1"]["w_h"], tensors["lstm.weight_hh_l1"].T)


def test_hdf5_files_cannot_reach_other_files_or_claim_what_they_do_not_hold(tmp_path):
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    for i, make in enumerate([
        lambda f: f.create_dataset("layers/dense/vars/0", (4,), np.float32, external=[(str(secret), 0, 16)]),
        lambda f: f.__setitem__("layers/dense/vars/0", h5py.ExternalLink(str(secret), "/x")),
        lambda f: f.create_dataset("layers/dense/vars/0", data=np.zeros(4096, np.float32), compression="gzip"),
        lambda f: f.create_dataset("layers/dense/vars/0", (1 << 28,), np.float32),  # declared, never written
    ]):  # fmt: skip
        path = tmp_path / f"{i}.weights.h5"
        with h5py.File(path, "w") as f:
            make(f)
        with pytest.raises(
            interop.ForeignFileError, match="external|ExternalLink|Keras writes none|stores other"
        ):
            interop.read_keras(path)


def test_bfloat16_round_trips_through_keras_files(tmp_path):
    model = fnn.Sequential([fnn.Dense(2, dtype=jnp.bfloat16)])
    params, state = model.init(jax.random.key(0), fnn.Shape((3,), jnp.bfloat16))
    interop.save_keras(tmp_path / "m.weights.h5", model, fnn.Shape((3,), jnp.bfloat16), params, state)
    loaded = interop.load_keras(model, fnn.Shape((3,), jnp.bfloat16), tmp_path / "m.weights.h5")
    assert loaded.params["dense"]["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(loaded.params["dense"]["w"], params["dense"]["w"])


def test_keras_reads_the_zoo_s_channels_first_flatten_in_its_own_order():
    # fnn.models flatten as PyTorch does (channels first) for torchvision's weights; Keras's Dense
    # after Flatten reads channels last, so load_keras/to_keras reorder that Dense's rows (a Keras
    # VGG16's fc1 loads into fnn.models.vgg16: interop/results.md).
    model = fnn.models.lenet5(num_classes=3)
    rng = np.random.default_rng(0)
    params, state = jax.tree.map(
        lambda s: rng.normal(size=s.shape).astype(s.dtype), abstract_init(model, (32, 32, 1))
    )
    exported = interop.to_keras(model, (32, 32, 1), params, state)
    fc1 = params["fc1"]["w"]  # rows in (C, H, W) = (16, 5, 5) order
    keras_rows = fc1.reshape(16, 5, 5, -1).transpose(1, 2, 0, 3).reshape(fc1.shape)
    np.testing.assert_array_equal(exported["layers/dense/vars/0"], keras_rows)
    loaded = interop.load_keras(model, (32, 32, 1), exported)
    np.testing.assert_array_equal(loaded.params["fc1"]["w"], fc1)


def test_only_a_flatten_of_a_channels_first_map_reorders_the_next_dense():
    # Review of issue 23: a flatten of a (T, F) sequence, of embeddings or of a rank-2 input keeps
    # PyTorch's order; one at the end of a nested Sequential still reorders the Dense after it;
    # a weighted layer between the flatten and the Dense is refused, not loaded in the wrong order.
    def torch_weight(model, shape, path, name):
        params, state = abstract_init(model, shape)
        params = jax.tree.map(
            lambda s: np.arange(np.prod(s.shape), dtype=np.float32).reshape(s.shape), params
        )
        exported = interop.to_torch(model, shape, params, jax.tree.map(np.zeros_like, state))
        w = params
        for k in path:
            w = w[k]
        return exported[name], np.asarray(w["w"])

    for model, shape in [
        (fnn.Sequential([fnn.Flatten(), fnn.Dense(2)]), (4, 3)),
        (fnn.Sequential([fnn.Embedding(5, 3), fnn.Flatten(), fnn.Dense(2)]), fnn.Shape((4,), jnp.int32)),
    ]:
        exported, w = torch_weight(model, shape, ["dense"], f"{len(model.children(shape)) - 1}.weight")
        np.testing.assert_array_equal(exported, w.T)
    model = fnn.Sequential([fnn.Sequential([fnn.Conv2D(2, 1), fnn.Relu(), fnn.Flatten()]), fnn.Dense(3)])
    exported, w = torch_weight(model, (2, 2, 1), ["dense"], "1.weight")
    np.testing.assert_array_equal(exported, w.reshape(2, 2, 2, 3).transpose(2, 0, 1, 3).reshape(8, 3).T)
    model = fnn.Sequential([fnn.Conv2D(2, 1), fnn.Flatten(), fnn.BatchNorm(), fnn.Dense(3)])
    with pytest.raises(
        ValueError, match=r"batch_norm \(BatchNorm\) sits between a flatten and the next Dense"
    ):
        interop.to_torch(model, (2, 2, 1), *abstract_init(model, (2, 2, 1)))


def test_keras_export_nests_a_sequential_in_a_sequential_or_writes_one_flat_model():
    model = fnn.Sequential([fnn.Sequential([fnn.Dense(2)]), fnn.Dense(1)])
    params, state = abstract_init(model, (3,))
    params = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), params)
    assert sorted(interop.to_keras(model, (3,), params, state)) == [
        "layers/dense/vars/0", "layers/dense/vars/1",
        "layers/sequential/layers/dense/vars/0", "layers/sequential/layers/dense/vars/1",
    ]  # fmt: skip
    flat = interop.to_keras(model, (3,), params, state, flat=True)
    assert sorted(flat) == [
        "layers/dense/vars/0",
        "layers/dense/vars/1",
        "layers/dense_1/vars/0",
        "layers/dense_1/vars/1",
    ]
    assert interop.load_keras(model, (3,), flat).report.ok  # a flat file loads into the nested model


def test_the_error_lists_the_problems_first_and_hints_at_channels_first_shapes():
    model = fnn.Sequential([fnn.Conv2D(4, 3), fnn.Flatten(), fnn.Dense(2)])
    params, state = abstract_init(model, (6, 6, 3))
    tensors = interop.to_torch(
        model, (6, 6, 3), *jax.tree.map(lambda s: np.ones(s.shape, s.dtype), (params, state))
    )
    with pytest.raises(
        interop.WeightsMismatchError,
        match=r"(?s)^load_torch: the weights do not fit the model\nMISMATCHED.*"
        r"\(0 layers loaded, 0 kept, 0 tensors ignored.*is input_shape \(3, 6, 6\) channels first\? Pass \(6, 6, 3\)",
    ):
        interop.load_torch(model, (3, 6, 6), tensors)
