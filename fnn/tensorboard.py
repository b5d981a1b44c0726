"""TensorBoard without TensorFlow: event files through tensorboardX (``pip install 'fnn[tensorboard]'``).

- :class:`Writer`: scalars, histograms, images, text, hyper-parameters and the
  model's graph, for custom training loops.
- :class:`TensorBoard`: the ``fit`` callback. Like Keras, it writes
  ``logdir/train`` and ``logdir/validation`` runs with the same tags
  (``epoch_loss``, ``epoch_accuracy``, ...), so TensorBoard overlays them.
- :func:`graph_def`: a :class:`fnn.Graph` as TensorBoard's GraphDef, with
  operations grouped by layer (``dense/dot_general``), each layer's
  parameters inside its group, gradient operations under ``gradients/``, and
  output shapes on the edges.

View with ``tensorboard --logdir LOGDIR``.

Example:
    >>> import tempfile, fnn
    >>> with fnn.tensorboard.Writer(tempfile.mkdtemp()) as writer:
    ...     writer.scalar("loss", 0.25, step=1)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fnn._checks import check_int
from fnn._core import Layer, path_str
from fnn._graph import Graph
from fnn._graph import graph as trace_graph
from fnn.train._callbacks import Callback, FitRun, Logs
from fnn.train._tracking import Track

__all__ = ["Profiler", "TensorBoard", "Writer", "filter_image", "graph_def"]


def _tensorboardx() -> Any:
    try:
        import tensorboardX
    except ImportError as e:
        raise ImportError("fnn.tensorboard needs tensorboardX: pip install 'fnn[tensorboard]'") from e
    return tensorboardX


def _tb_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]", "_", text)


def graph_def(graph: Graph) -> Any:
    """A :class:`fnn.Graph` as a TensorBoard ``GraphDef`` protocol buffer.

    Node names carry the layer path, so TensorBoard draws one box per layer;
    inputs named ``params/<layer>/...`` sit inside their layer's box.
    """
    _tensorboardx()
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboardX.proto.versions_pb2 import VersionDef

    names = {}
    for n in graph.nodes:
        if n.kind == "input":
            name = n.op.removeprefix("params/").removeprefix("state/") if "/" in n.op else f"inputs/{n.op}"
        elif n.kind == "output":
            name = f"outputs/{n.op.replace(' ', '_')}"
        else:
            scope = ("gradients/" if n.backward else "") + n.group
            name = f"{scope}/{n.op}_{n.id}" if scope else f"{n.op}_{n.id}"
        names[n.id] = _tb_name(name)
    nodes = []
    for n in graph.nodes:
        shapes = [
            TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in graph.edges[e].shape])
            for e in n.outputs
        ]
        attr = {"_output_shapes": AttrValue(list=AttrValue.ListValue(shape=shapes))}
        if n.outputs:
            attr["dtype"] = AttrValue(s=" ".join(graph.edges[e].dtype for e in n.outputs).encode())
        op = {"input": "Placeholder", "output": "Identity"}.get(n.kind, n.op)
        inputs = [names[graph.edges[e].source] for e in n.inputs]
        nodes.append(NodeDef(name=names[n.id], op=op, input=inputs, attr=attr))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


class Writer:
    """Writes TensorBoard event files under ``logdir`` (a context manager; call :meth:`close`).

    Values may be JAX or NumPy arrays; they are fetched to the host.
    """

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 10):
        self.logdir = Path(logdir)
        self._writer = _tensorboardx().SummaryWriter(logdir=str(self.logdir), flush_secs=flush_secs)

    def scalar(self, tag: str, value: Any, step: int) -> None:
        """One scalar value at ``step``."""
        self._writer.add_scalar(tag, float(np.asarray(jax.device_get(value))), step)

    def scalars(self, values: Mapping[str, Any], step: int, *, prefix: str = "") -> None:
        """Several scalars at ``step``, tagged ``prefix + name``."""
        for name, value in values.items():
            self.scalar(prefix + name, value, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        """The distribution of an array's values."""
        self._writer.add_histogram(tag, np.asarray(jax.device_get(values), np.float64).ravel(), step)

    def histograms(self, tree: Any, step: int, *, prefix: str = "") -> None:
        """One histogram per array of a pytree (params, gradients), tagged by path (``dense/w``)."""
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            self.histogram(prefix + path_str(path), leaf, step)

    def image(self, tag: str, image: Any, step: int) -> None:
        """An image ``(height, width)`` or ``(height, width, channels)`` with values in [0, 1]."""
        array = np.asarray(jax.device_get(image), np.float32)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"Writer.image: expected (H, W) or (H, W, 1|3|4), got shape {array.shape}")
        self._writer.add_image(tag, array, step, dataformats="HWC")

    def embedding(self, tag: str, table: Any, step: int = 0, *, labels: Any = None) -> None:
        """The Projector tab: a ``(rows, features)`` table (an ``Embedding`` layer's), each row
        labelled by ``labels`` (one string per row) when given."""
        matrix = np.asarray(jax.device_get(table), np.float32)
        if matrix.ndim != 2:
            raise ValueError(
                f"Writer.embedding: {tag!r} must be a (rows, features) table, got shape {matrix.shape}"
            )
        if labels is not None:
            labels = [str(label) for label in labels]
            if len(labels) != len(matrix):
                raise ValueError(
                    f"Writer.embedding: {tag!r} has {len(matrix)} rows but {len(labels)} labels; give one per row"
                )
        self._writer.add_embedding(matrix, metadata=labels, global_step=step, tag=_tb_name(tag))

    def pr_curve(
        self, tag: str, labels: Any, probabilities: Any, step: int, *, thresholds: int = 127
    ) -> None:
        """The PR Curves tab: binary ``labels`` (0/1, or bool) against predicted ``probabilities`` in [0, 1]."""
        truth = np.asarray(jax.device_get(labels)).ravel()
        scores = np.asarray(jax.device_get(probabilities), np.float64).ravel()
        if truth.shape != scores.shape or not np.isin(truth, (0, 1)).all():
            raise ValueError(
                f"Writer.pr_curve: {tag!r} needs one 0/1 label per probability, got {truth.size} labels "
                f"with values {sorted(set(truth.tolist()))[:5]} and {scores.size} probabilities"
            )
        if not ((scores >= 0) & (scores <= 1)).all():
            raise ValueError(
                f"Writer.pr_curve: {tag!r}: probabilities must lie in [0, 1] (apply a sigmoid or softmax)"
            )
        self._writer.add_pr_curve(tag, truth.astype(bool), scores, step, num_thresholds=thresholds)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A (Markdown) text."""
        self._writer.add_text(tag, text, step)

    def hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float], *, name: str = "hparams"
    ) -> None:
        """A run's hyper-parameters and final metrics, for TensorBoard's HParams tab."""
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
        self._writer.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in metrics.items()}, name=name)

    def graph(self, graph: Graph | Layer, input_shape: Any = None, *, backward: bool = False) -> None:
        """The Graphs tab: a :class:`fnn.Graph`, or a model traced on ``input_shape``."""
        if isinstance(graph, Layer):
            graph = trace_graph(graph, input_shape, backward=backward)
        self._writer._get_file_writer().add_onnx_graph(graph_def(graph))  # writes any GraphDef

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def filter_image(kernel: Any) -> np.ndarray:
    """A 2-D convolution kernel ``(kh, kw, in, out)`` as one grayscale image of its filters.

    Each filter (its first input channel) is scaled to [0, 1] and the filters
    are tiled in a near-square grid with one-pixel gaps.
    """
    w = np.asarray(jax.device_get(kernel), np.float32)
    if w.ndim != 4:
        raise ValueError(f"filter_image: expected a (kh, kw, in, out) kernel, got shape {w.shape}")
    kh, kw, _, count = w.shape
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    grid = np.zeros((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.float32)
    for i in range(count):
        f = w[:, :, 0, i]
        f = (f - f.min()) / (np.ptp(f) or 1.0)
        r, c = divmod(i, cols)
        grid[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = f
    return grid


def _embedding_tables(params: Any) -> dict[str, Any]:
    """``{layer path: table}`` of the Embedding layers in a params tree."""
    return {
        path_str(path[:-1]): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if path_str(path[-1:]) == "table" and np.ndim(leaf) == 2
    }


class TensorBoard(Track):
    """Logs a ``fit`` run for TensorBoard.

    Writes ``logdir/train`` and ``logdir/validation``: each epoch's logs as
    scalars (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate`` ...),
    parameter and gradient histograms (``dense/w``, ``gradients/dense/w``; the
    gradients of the first training batch) every ``histogram_freq`` epochs,
    with ``update_freq=N`` also the training logs every N steps
    (``batch_loss`` ..., the mean over those steps, at the global step), the
    first 2-D convolution's filters as an image (``write_images``), the
    model's graph, and the run's hyper-parameters with its final metrics
    (``hparams``; with the epochs and the parameter count). It is a
    :class:`fnn.tracking.Track` over :class:`fnn.tracking.TensorBoard` in
    Keras's layout, plus what only TensorBoard shows.

    Args:
        logdir: where to write.
        histogram_freq: epochs between parameter histograms (0: none).
        update_freq: ``"epoch"``, or a number of steps between ``batch_*``
            scalars (fused execution then runs at most that many steps per call).
        write_graph: write the model's graph (traced once, at the start).
        write_images: write the first 2-D convolution's filters each epoch.
        hparams: hyper-parameters to record with the final metrics.
        embeddings_freq: epochs between writes of every ``Embedding`` layer's
            table to the Projector tab (0: none).
        embeddings_metadata: ``{layer path: labels}`` (one string per row,
            e.g. the vocabulary) for the Projector, e.g. ``{"embedding": words}``.

    Examples:
        >>> import tempfile
        >>> board = TensorBoard(tempfile.mkdtemp(), histogram_freq=1, hparams={"lr": 1e-3})
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        *,
        histogram_freq: int = 0,
        update_freq: int | str = "epoch",
        write_graph: bool = True,
        write_images: bool = False,
        hparams: Mapping[str, Any] | None = None,
        embeddings_freq: int = 0,
        embeddings_metadata: Mapping[str, Any] | None = None,
    ):
        from fnn.tracking import TensorBoard as TensorBoardLogger

        histogram_freq = check_int("TensorBoard", "histogram_freq", histogram_freq, low=0)
        self.embeddings_freq = check_int("TensorBoard", "embeddings_freq", embeddings_freq, low=0)
        self.embeddings_metadata = dict(embeddings_metadata or {})
        if update_freq != "epoch" and (
            isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1
        ):
            raise ValueError(
                f"TensorBoard: update_freq must be 'epoch' or a positive int, got {update_freq!r}"
            )
        self.board = TensorBoardLogger(logdir, split_validation=True)
        every_steps = None if update_freq == "epoch" else update_freq
        super().__init__(self.board, hparams=hparams, every_steps=every_steps)
        self.logdir = Path(logdir)
        self.histogram_freq, self.write_graph, self.write_images = histogram_freq, write_graph, write_images

    def on_train_begin(self, run: FitRun) -> None:
        unknown = sorted(set(self.embeddings_metadata) - set(_embedding_tables(run.train_state.params)))
        if unknown:
            raise ValueError(
                f"TensorBoard: embeddings_metadata names {unknown}, which are not Embedding layers; the "
                f"model's are {sorted(_embedding_tables(run.train_state.params))}"
            )
        super().on_train_begin(run)
        if self.write_graph and run.input_shape is not None:
            self.board.train.graph(run.model, run.input_shape)

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        super().on_epoch_end(epoch, logs, run)
        step, train = epoch + 1, self.board.train
        params = run.train_state.params
        if self.histogram_freq and step % self.histogram_freq == 0:
            train.histograms(params, step)
            if run.gradients is not None:
                train.histograms(run.gradients(), step, prefix="gradients/")
        if self.embeddings_freq and step % self.embeddings_freq == 0:
            for name, table in _embedding_tables(params).items():
                train.embedding(name, table, step, labels=self.embeddings_metadata.get(name))
        if self.write_images:
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
                if np.ndim(leaf) == 4:
                    train.image(f"{path_str(path)}/filters", filter_image(leaf), step)
                    break
        train.flush()
        self.board.validation.flush()


class Profiler(Callback):
    """Records a ``jax.profiler`` trace of chosen epochs, for TensorBoard's Profile tab.

    The trace (``logdir/plugins/profile/<time>/<host>.xplane.pb``) holds every
    compiled program's device and host activity; open it with
    ``tensorboard --logdir LOGDIR`` and the ``tensorboard-plugin-profile``
    package, or in Perfetto (the ``.trace.json.gz`` beside it). The first
    epoch includes compiling, so the default is the second.

    Args:
        logdir: where to write (the same one as :class:`TensorBoard`'s is fine).
        epochs: the epochs (0-based) to trace, each from its start until its
            steps have finished.

    Examples:
        >>> import tempfile
        >>> profiler = Profiler(tempfile.mkdtemp(), epochs=[1])
    """

    primary_only = True

    def __init__(self, logdir: str | os.PathLike, *, epochs: Any = (1,)):
        epochs = [epochs] if isinstance(epochs, int) else list(epochs)
        self.epochs = {check_int("Profiler", "epochs", e, low=0) for e in epochs}
        self.logdir, self._tracing = Path(logdir), False

    def on_epoch_begin(self, epoch: int, run: FitRun) -> None:
        if epoch in self.epochs and not self._tracing:
            jax.profiler.start_trace(str(self.logdir))
            self._tracing = True

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        if self._tracing:
            jax.block_until_ready(run.train_state)
            self.close()

    def on_train_end(self, run: FitRun) -> None:
        self.close()

    def close(self) -> None:
        """Stops a trace in progress (``fit`` calls it however the run ends)."""
        if self._tracing:
            self._tracing = False
            jax.profiler.stop_trace()
