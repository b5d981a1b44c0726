"""fnn.tensorboard: event files read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import fnn
from fnn.tensorboard import TensorBoard, Writer, filter_image, graph_def
from tests.fitting import LOSS, digits

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def read(logdir):
    events = EventAccumulator(
        str(logdir), size_guidance={"histograms": 0, "images": 0, "scalars": 0, "tensors": 0}
    )
    events.Reload()
    return events


def cnn():
    return fnn.Sequential(
        [
            fnn.Reshape((8, 8, 1)),
            fnn.Conv2D(4, 3, activation="relu", name="conv"),
            fnn.MaxPool2D(2, name="pool"),
            fnn.Flatten(),
            fnn.Dense(10, name="head"),
        ]
    )


def test_writer_scalars_histograms_images_text(tmp_path):
    with Writer(tmp_path) as writer:
        for step in range(3):
            writer.scalars({"loss": 1.0 / (step + 1), "accuracy": jnp.asarray(0.5)}, step, prefix="train/")
        writer.histograms({"dense": {"w": jnp.arange(6.0)}}, step=2)
        writer.image("filters", np.eye(4), step=1)
        writer.text("notes", "hello **board**")
    events = read(tmp_path)
    tags = events.Tags()
    assert set(tags["scalars"]) == {"train/loss", "train/accuracy"}
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("train/loss")] == [
        (0, 1.0),
        (1, 0.5),
        (2, 0.3333),
    ]
    histogram = events.Histograms("dense/w")[0]
    assert histogram.step == 2 and histogram.histogram_value.num == 6 and histogram.histogram_value.max == 5
    image = events.Images("filters")[0]
    assert (image.width, image.height, image.step) == (4, 4, 1)
    assert "notes/text_summary" in tags["tensors"]
    with pytest.raises(
        ValueError, match=r"Writer.image: expected \(H, W\) or \(H, W, 1\|3\|4\), got shape \(2, 2, 2\)"
    ):
        Writer(tmp_path / "x").image("bad", np.zeros((2, 2, 2)), 0)


def test_the_graph_has_one_group_per_layer_with_shapes(tmp_path):
    with Writer(tmp_path) as writer:
        writer.graph(cnn(), (64,))
    graph = read(tmp_path).Graph()
    top = {node.name.split("/")[0] for node in graph.node}
    assert top == {"reshape", "conv", "pool", "flatten", "head", "inputs", "outputs"}
    conv = next(node for node in graph.node if node.op == "conv_general_dilated")
    assert conv.name.startswith("conv/") and "conv/w" in conv.input
    dims = [d.size for d in conv.attr["_output_shapes"].list.shape[0].dim]
    assert dims == [1, 6, 6, 4]
    names = {node.name for node in graph.node}
    assert all(i in names for node in graph.node for i in node.input)  # every edge joins two nodes
    backward = graph_def(fnn.graph(cnn(), (64,), backward=True))
    assert any(node.name.startswith("gradients/conv/") for node in backward.node)


def test_the_callback_writes_train_and_validation_runs(tmp_path):
    x, y = digits(200)
    board = TensorBoard(
        tmp_path,
        histogram_freq=2,
        update_freq=2,
        write_images=True,
        hparams={"optimizer": "adam", "lr": 1e-3},
    )
    fnn.fit(
        cnn(), x, y, loss=LOSS, metrics=["accuracy"], epochs=2, batch_size=32, validation_split=0.2,
        verbose=0, callbacks=[board],
    )  # fmt: skip
    train, validation = read(tmp_path / "train"), read(tmp_path / "validation")
    assert set(train.Tags()["scalars"]) == {
        "epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss", "batch_accuracy"
    }  # fmt: skip
    # 160 training examples / 32: 5 steps an epoch, logged after steps 2 and 4 of each.
    assert [e.step for e in train.Scalars("batch_loss")] == [2, 4, 7, 9]
    assert set(validation.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    assert [e.step for e in validation.Scalars("epoch_loss")] == [1, 2]
    params = {"conv/w", "conv/b", "head/w", "head/b"}
    assert set(train.Tags()["histograms"]) == params | {f"gradients/{p}" for p in params}
    assert [h.step for h in train.Histograms("head/w")] == [2]
    assert train.Tags()["images"] == ["conv/w/filters"] and train.Tags()["graph"]
    hparams_run = tmp_path / "train" / "hparams"
    assert {"hparam/loss", "hparam/val_accuracy"} <= set(read(hparams_run).Tags()["scalars"])
    with pytest.raises(ValueError, match=r"TensorBoard: histogram_freq must be an int >= 0, got -1"):
        TensorBoard(tmp_path, histogram_freq=-1)
    with pytest.raises(
        ValueError, match=r"TensorBoard: update_freq must be 'epoch' or a positive int, got 0"
    ):
        TensorBoard(tmp_path, update_freq=0)


def test_filter_image_tiles_the_filters():
    kernel = np.arange(3 * 3 * 2 * 5, dtype=np.float32).reshape(3, 3, 2, 5)
    image = filter_image(kernel)
    assert image.shape == (2 * 4 - 1, 3 * 4 - 1) and image.min() == 0.0 and image.max() == 1.0
    with pytest.raises(ValueError, match=r"expected a \(kh, kw, in, out\) kernel, got shape \(3, 3\)"):
        filter_image(kernel[:, :, 0, 0])


def test_the_projector_gets_each_embedding_table_with_its_labels(tmp_path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    words = [f"word{i}" for i in range(12)]
    model = fnn.Sequential([fnn.Embedding(12, 4), fnn.Flatten(), fnn.Dense(2)])
    x = np.random.default_rng(0).integers(0, 12, size=(32, 5)).astype(np.int32)
    y = (x.sum(1) % 2).astype(np.int32)
    board = TensorBoard(
        tmp_path, embeddings_freq=1, embeddings_metadata={"embedding": words}, write_graph=False
    )
    history = fnn.fit(model, x, y, loss=LOSS, optimizer="sgd", epochs=2, verbose=0, callbacks=[board])
    config = projector_config_pb2.ProjectorConfig()
    text_format.Parse((tmp_path / "train" / "projector_config.pbtxt").read_text(), config)
    assert [e.tensor_name for e in config.embeddings] == ["embedding:00001", "embedding:00002"]
    last = config.embeddings[-1]
    table = np.loadtxt(tmp_path / "train" / last.tensor_path, delimiter="\t")
    np.testing.assert_allclose(table, history.params["embedding"]["table"], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "train" / last.metadata_path).read_text().split() == words
    with pytest.raises(ValueError, match=r"embeddings_metadata names \['embed'\], which are not Embedding layers; "
                       r"the model's are \['embedding'\]"):  # fmt: skip
        fnn.fit(
            model,
            x,
            y,
            loss=LOSS,
            verbose=0,
            callbacks=[TensorBoard(tmp_path, embeddings_metadata={"embed": words})],
        )


def test_pr_curves_are_read_back_by_tensorboard(tmp_path):
    labels = np.array([0, 0, 1, 1])
    with Writer(tmp_path) as writer:
        writer.pr_curve("positive", labels, np.array([0.1, 0.6, 0.4, 0.9]), step=1)
        with pytest.raises(
            ValueError, match=r"needs one 0/1 label per probability, got 4 labels with values \[0, 2\]"
        ):
            writer.pr_curve("bad", np.array([0, 2, 0, 2]), np.array([0.1, 0.6, 0.4, 0.9]), step=1)
        with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
            writer.pr_curve("bad", labels, np.array([0.1, 1.6, 0.4, 0.9]), step=1)
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert events.Tags()["tensors"] == ["positive"]
    from tensorboard.util import tensor_util

    # rows: true positives, false positives, true negatives, false negatives, precision, recall
    data = tensor_util.make_ndarray(events.Tensors("positive")[0].tensor_proto)
    assert data.shape == (6, 127)
    assert data[0, 0] == 2 and data[1, 0] == 2  # at threshold 0 every example is positive: 2 TP, 2 FP


def test_the_profiler_traces_the_chosen_epoch_for_the_profile_tab(tmp_path):
    x, y = digits(64)
    model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(10)])
    fnn.fit(model, x, y, loss=LOSS, epochs=2, verbose=0, callbacks=[fnn.Profiler(tmp_path, epochs=1)])
    traces = list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_a_run_that_fails_mid_trace_stops_the_trace(tmp_path):
    class Fails(fnn.Callback):
        def on_epoch_end(self, epoch, logs, run):
            raise RuntimeError("boom")

    x, y = digits(64)
    model = fnn.Sequential([fnn.Dense(10)])
    with pytest.raises(RuntimeError, match="boom"):
        fnn.fit(
            model, x, y, loss=LOSS, epochs=1, verbose=0, callbacks=[fnn.Profiler(tmp_path, epochs=0), Fails()]
        )
    fnn.fit(
        model, x, y, loss=LOSS, epochs=1, verbose=0, callbacks=[fnn.Profiler(tmp_path / "again", epochs=0)]
    )
