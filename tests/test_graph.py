"""fnn.graph: nodes per primitive grouped by layer, edges with shapes, backward pass, renderings."""

from __future__ import annotations

import re
import shutil

import jax
import jax.numpy as jnp
import pytest

import fnn


def lenet():
    return fnn.Sequential(
        [
            fnn.Conv2D(4, 3, activation="relu", name="conv1"),
            fnn.MaxPool2D(2, name="pool1"),
            fnn.Sequential([fnn.Flatten(), fnn.Dense(16, "relu"), fnn.Dense(10)], name="head"),
        ]
    )


def test_a_function_of_arrays_becomes_one_node_per_primitive():
    g = fnn.graph(lambda x, y: jnp.sin(x) * y + 1.0, jnp.ones((2, 3)), jnp.ones((2, 3), jnp.float32))
    assert [n.op for n in g.ops()] == ["sin", "mul", "add"]
    assert [n.op for n in g.nodes if n.kind == "input"] == ["arg0", "arg1"]
    sin, mul, add = g.ops()
    assert [g.edges[e].source for e in mul.inputs] == [sin.id, g.nodes[1].id]
    assert all(g.edges[e].label == "f32[2,3]" for n in g.ops() for e in n.outputs)
    assert g.outputs[0].source == add.id and g.groups() == []


def test_calls_are_inlined_and_loops_stay_single_nodes():
    inner = jax.jit(lambda x: jnp.tanh(x) + 1)
    g = fnn.graph(lambda x: inner(x) * 2, jnp.ones(3))
    assert [n.op for n in g.ops()] == ["tanh", "add", "mul"]
    lstm = fnn.Sequential([fnn.Embedding(10, 4), fnn.LSTM(5), fnn.Dense(2)])
    g = fnn.graph(lstm, fnn.Shape((6,), jnp.int32))
    assert [n.op for n in g.ops() if n.op == "scan"] == ["scan"]
    assert (
        next(n for n in g.nodes if n.op == "x").outputs
        and g.edges[next(n for n in g.nodes if n.op == "x").outputs[0]].label == "i32[1,6]"
    )


def test_a_model_graph_groups_operations_by_layer_path():
    g = fnn.graph(lenet(), (8, 8, 1))
    assert g.groups() == ["conv1", "pool1", "head/flatten", "head/dense", "head/dense_1"]
    inputs = [n.op for n in g.nodes if n.kind == "input"]
    assert "x" in inputs and "params/conv1/w" in inputs and "params/head/dense_1/b" in inputs
    conv = next(n for n in g.ops() if n.op == "conv_general_dilated")
    assert conv.group == "conv1" and g.edges[conv.outputs[0]].label == "f32[1,6,6,4]"
    assert [e.label for e in g.outputs] == ["f32[1,10]"]


def test_collapsed_view_has_one_node_per_layer_and_folds_parameters():
    g = fnn.graph(lenet(), (8, 8, 1)).collapse()
    assert [n.op for n in g.nodes] == ["x", "conv1", "pool1", "head", "output 0"]
    head = next(n for n in g.nodes if n.op == "head")
    assert head.count > 3 and [g.edges[e].label for e in head.inputs] == ["f32[1,3,3,4]"]
    assert [n.op for n in fnn.graph(lenet(), (8, 8, 1)).collapse(depth=2).ops()][-3:] == [
        "head/flatten",
        "head/dense",
        "head/dense_1",
    ]
    with pytest.raises(ValueError, match=r"Graph.collapse: depth must be a positive int, got 0"):
        g.collapse(depth=0)


def test_backward_graph_marks_the_reverse_pass():
    g = fnn.graph(lambda w: jnp.sum(jnp.tanh(w) ** 2), jnp.ones((3, 2)), backward=True)
    forward = [n.op for n in g.ops() if not n.backward]
    backward = [n.op for n in g.ops() if n.backward]
    assert {"tanh", "integer_pow", "reduce_sum"} <= set(forward) and backward[-1] == "add_any"
    assert [e.label for e in g.outputs] == ["f32[]", "f32[3,2]"]  # the value and the gradient
    model_graph = fnn.graph(lenet(), (8, 8, 1), backward=True).collapse()
    names = [n.op + (" (backward)" if n.backward else "") for n in model_graph.ops()]
    assert {"conv1", "conv1 (backward)", "head", "head (backward)"} <= set(names)
    with pytest.raises(ValueError, match=r"fn must return a scalar"):
        fnn.graph(jnp.tanh, jnp.ones(3), backward=True)


def test_dot_has_one_cluster_per_layer_and_labelled_edges():
    g = fnn.graph(lenet(), (8, 8, 1))
    dot = g.to_dot()
    assert dot.startswith('digraph "fnn" {') and dot.count("{") == dot.count("}")
    clusters = re.findall(r'label="([^"]+)"; style=rounded', dot)
    assert clusters == ["conv1", "pool1", "head", "head/flatten", "head/dense", "head/dense_1"]
    edge_labels = re.findall(r'-> "[^"]+" \[label="([^"]+)"\]', dot)
    assert len(edge_labels) == sum(len(e.targets) for e in g.edges.values())
    assert "f32[1,6,6,4]" in edge_labels
    text = g.to_text()
    assert "[conv1] conv_general_dilated <- x, params/conv1/w -> f32[1,6,6,4]" in text


def test_svg_and_png_need_graphviz(monkeypatch, tmp_path):
    g = fnn.graph(jnp.sin, jnp.ones(2))
    if shutil.which("dot"):
        assert b"<svg" in g.to_svg(tmp_path / "g.svg") and (tmp_path / "g.svg").exists()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"Graph.to_png needs Graphviz's `dot` program"):
        g.to_png()


def test_layer_arguments_are_checked():
    with pytest.raises(
        ValueError, match=r"graph: for a Layer, pass one argument: the per-example input shape"
    ):
        fnn.graph(fnn.Dense(2), (3,), (4,))


@pytest.mark.standard_promotion  # optax's Adam inside
def test_the_graph_of_a_whole_train_step():
    model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(3, name="head")])
    tx = fnn.optimizers.get("adam")
    params, state = model.init(jax.random.key(0), (4,))
    step = fnn.make_train_step(model, "sparse_categorical_crossentropy", tx)
    batch = (jnp.ones((2, 4)), jnp.zeros(2, jnp.int32))
    g = fnn.graph(step, params, state, tx.init(params), batch, None)
    assert g.groups() == ["dense", "head"]
    assert any(n.backward and n.group == "head" for n in g.ops())
    assert [e.label for e in g.outputs][:4] == ["f32[8]", "f32[4,8]", "f32[3]", "f32[8,3]"]  # the new params
    assert "input arg2/0/0/mu/dense/w f32[4,8]" in g.to_text()  # Adam's first moment, by path
