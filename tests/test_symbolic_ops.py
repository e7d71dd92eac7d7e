"""`keras.ops` and Python operators on symbolic tensors: graph nodes, shape/dtype inference, and
Functional configs that move both ways between real Keras 3 and keramic."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic import ops


def _build(lib, lib_ops):
    """The same Functional model in Keras or keramic: ops, operators and slicing on symbolic tensors."""
    x = lib.Input((3, 4), name="x")
    y = lib.Input((4,), name="y")
    mean = lib_ops.mean(x, axis=1)
    scaled = (mean + 1.0) * y
    sliced = lib_ops.transpose(x[:, :2], (0, 2, 1))
    merged = lib_ops.concatenate([-scaled, lib_ops.reshape(x, (-1, 12))], axis=-1)
    gated = lib_ops.cast(merged > 0, "float32") * lib_ops.exp(merged)
    first_half = lib_ops.split(x, 2, axis=-1)[0]
    arithmetic = lib_ops.squeeze(x[:, :1, ...], axis=1) ** 2 / (1 + abs(y)) - 3 // (y + 5)
    attention = lib_ops.softmax(lib_ops.matmul(x, lib_ops.expand_dims(y, -1)), axis=1)
    masked = lib_ops.where(y > 0.5, y, lib_ops.zeros_like(y)) % 0.3
    stacked = lib_ops.sum(lib_ops.stack([y, y * 2], axis=1), axis=-1, keepdims=True)
    logic = lib_ops.cast((y > 0.2) & ~(y > 0.8) | (y < 0.1) ^ (y > 0.5), "float32")
    compared = lib_ops.cast((y <= 0.5) != (y >= 0.25), "int32")
    misc = lib_ops.clip(lib_ops.max(x, axis=-1) - lib_ops.min(x, axis=-1), 0.1, 0.9) @ lib_ops.ones((3, 2))
    layer_out = lib.layers.Dense(3, name="dense")(lib_ops.relu(scaled))
    outputs = [gated, first_half, sliced, arithmetic, attention, masked, stacked, logic, compared, misc, layer_out]
    return lib.Model([x, y], outputs)


def _inputs():
    rng = np.random.default_rng(1)
    return [rng.random((2, 3, 4)).astype("float32"), rng.random((2, 4)).astype("float32")]


@pytest.mark.interop
def test_a_keras_model_with_op_nodes_loads_here_and_predicts_the_same(keras, tmp_path):
    model = _build(keras, keras.ops)
    path = tmp_path / "ops.keras"
    model.save(path)
    expected = model.predict(_inputs(), verbose=0)
    loaded = keramic.saving.load_model(path)
    got = loaded.predict(_inputs(), verbose=0)
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.interop
def test_a_keramic_model_with_op_nodes_loads_in_keras(keras, tmp_path):
    keramic.backend.clear_session()
    model = _build(keramic, ops)
    reference = _build(keras, keras.ops)
    path = tmp_path / "ops.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for want, have in zip(loaded.predict(_inputs(), verbose=0), model.predict(_inputs(), verbose=0)):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
    # The op entries are the ones Keras writes: module, class, registered name, config, node arguments.
    ours = json.loads(json.dumps(model.get_config()))
    theirs = json.loads(json.dumps(reference.get_config()))
    strip = ("build_config",)

    def entries(config):
        return [{k: v for k, v in entry.items() if k not in strip} for entry in config["layers"]
                if entry["module"].startswith("keras.src.ops")]

    assert entries(ours) == entries(theirs)


@pytest.mark.interop
def test_rearrange_nodes_with_keyword_sizes_move_both_ways(keras, tmp_path):
    # Keras infers rearrange's output shape only with a known batch size.
    data = np.random.default_rng(2).random((2, 3, 4)).astype("float32")
    theirs_in = keras.Input((3, 4), batch_size=2)
    theirs = keras.Model(theirs_in, keras.ops.rearrange(theirs_in, "b h (w c) -> b (c h) w", c=2))
    theirs.save(tmp_path / "keras.keras")
    loaded = keramic.saving.load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(loaded.predict(data, verbose=0), theirs.predict(data, verbose=0))
    ours_in = keramic.Input((3, 4), batch_size=2)
    ours = keramic.Model(ours_in, ops.rearrange(ours_in, "b h (w c) -> b (c h) w", c=2))
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "ours.keras").predict(data, verbose=0),
                               ours.predict(data, verbose=0))


OUTPUT_SPECS = [
    ("mean", lambda o, x: o.mean(x, axis=1)), ("sum_keepdims", lambda o, x: o.sum(x, axis=-1, keepdims=True)),
    ("argmax", lambda o, x: o.argmax(x, axis=-1)), ("cast_int", lambda o, x: o.cast(x, "int8")),
    ("sqrt_of_int", lambda o, x: o.sqrt(o.cast(x, "int32"))), ("reshape", lambda o, x: o.reshape(x, (-1, 2, 6))),
    ("transpose", lambda o, x: o.transpose(x)), ("expand", lambda o, x: o.expand_dims(x, 1)),
    ("matmul", lambda o, x: o.matmul(x, o.ones((4, 5)))), ("one_hot", lambda o, x: o.one_hot(o.cast(x[:, 0, 0], "int32"), 5)),
    ("take", lambda o, x: o.take(x, [0, 2], axis=1)), ("tile", lambda o, x: o.tile(x, (1, 2, 1))),
    ("pad", lambda o, x: o.pad(x, ((0, 0), (1, 1), (2, 0)))), ("top_k", lambda o, x: o.top_k(x, 2)[0]),
    ("stack", lambda o, x: o.stack([x, x], axis=-1)), ("unstack", lambda o, x: o.unstack(x, axis=1)[0]),
    ("einsum", lambda o, x: o.einsum("bij,bkj->bik", x, x)), ("conv", lambda o, x: o.conv(x, o.ones((2, 4, 3)))),
    ("softmax", lambda o, x: o.softmax(x)), ("compare", lambda o, x: x > 0.5), ("floor_div_int", lambda o, x: o.cast(x, "int32") // 2),
    ("slice", lambda o, x: x[:, 1:, ::2]), ("index", lambda o, x: x[0]), ("ellipsis", lambda o, x: x[..., -1]),
    ("newaxis", lambda o, x: x[:, None]), ("var", lambda o, x: o.var(x, axis=(1, 2))), ("norm", lambda o, x: o.norm(x, axis=-1)),
]


# top_k's indices are left out: Keras 3.15 declares int32 symbolically but returns int64 eagerly
# (keramic follows the eager numbers).


@pytest.mark.interop
def test_symbolic_output_shapes_and_dtypes_match_keras(keras):
    problems = []
    for label, fn in OUTPUT_SPECS:
        want = fn(keras.ops, keras.Input((3, 4)))
        have = fn(ops, keramic.Input((3, 4)))
        if (tuple(want.shape), want.dtype) != (tuple(have.shape), have.dtype):
            problems.append(f"{label}: Keras {tuple(want.shape)} {want.dtype}, keramic {tuple(have.shape)} {have.dtype}")
    assert problems == []


@pytest.mark.interop
def test_each_python_operator_records_the_node_keras_records(keras):
    def node_class(tensor):
        return type(tensor._keras_history[0]).__name__

    cases = {
        "+": lambda a, b: a + b, "r+": lambda a, b: 1 + a, "-": lambda a, b: a - b, "r-": lambda a, b: 2 - a,
        "*": lambda a, b: a * 2, "/": lambda a, b: a / b, "r/": lambda a, b: 1 / a, "//": lambda a, b: a // 2,
        "%": lambda a, b: a % 2, "**": lambda a, b: a ** 2, "r**": lambda a, b: 2 ** a, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= 1, ">": lambda a, b: a > b, ">=": lambda a, b: a >= 1, "!=": lambda a, b: a != b,
        "neg": lambda a, b: -a, "abs": lambda a, b: abs(a), "getitem": lambda a, b: a[:, 0],
        "&": lambda a, b: (a > 0) & (b > 0), "|": lambda a, b: (a > 0) | (b > 0), "^": lambda a, b: (a > 0) ^ (b > 0),
        "~": lambda a, b: ~(a > 0), "@": lambda a, b: keras_matmul(a),
    }

    def keras_matmul(a):
        return a[:, :, None] @ a[:, None, :]

    for label, fn in cases.items():
        want = fn(keras.Input((3,)), keras.Input((3,)))
        have = fn(keramic.Input((3,)), keramic.Input((3,)))
        assert node_class(have) == node_class(want), label
        assert (tuple(have.shape), have.dtype) == (tuple(want.shape), want.dtype), label


def test_operations_list_layers_and_op_nodes_in_keras_order(keras):
    """`model.operations`: every input, layer and `keras.ops` node of the graph, in Keras's order
    (`model.layers` leaves the op nodes out)."""

    def kinds(lib):
        a, b = lib.Input((4,)), lib.Input((4,), name="b")
        x = lib.layers.Dense(3)(a)
        summed = lib.layers.Add()([x, lib.layers.Dense(3)(b)])
        joined = lib.ops.concatenate([x * 2.0, summed], axis=-1)
        model = lib.Model([a, b], [lib.ops.mean(x, axis=1), lib.ops.abs(joined) + 1])
        return [type(o).__name__ for o in model.operations], [type(o).__name__ for o in model.layers]

    assert kinds(keramic) == kinds(keras)


def test_equality_stays_identity_so_tensors_work_as_keys():
    a, b = keramic.Input((3,)), keramic.Input((3,))
    assert (a == a) is True and (a == b) is False
    assert {a: 1, b: 2}[b] == 2
    assert a in [b, a]


def test_wrong_shapes_fail_at_graph_building_naming_the_op_and_shapes():
    x = keramic.Input((3,))
    with pytest.raises(ValueError, match=r"Matmul.*\(None, 3\).*\(4, 5\)"):
        ops.matmul(x, ops.ones((4, 5)))
    with pytest.raises(ValueError, match=r"Add.*shape=\(None, 3\).*shape=\(None, 4\)"):
        x + keramic.Input((4,))
    with pytest.raises(ValueError, match="Reshape"):
        ops.reshape(x, (4, 5))


def test_a_loaded_graph_never_imports_a_module_named_in_the_file():
    x = keramic.Input((2,), name="x")
    model = keramic.Model(x, ops.sum(x * 2.0, axis=-1))
    config = model.get_config()
    rebuilt = keramic.Model.from_config(json.loads(json.dumps(config)))
    np.testing.assert_allclose(rebuilt.predict(np.ones((1, 2), "float32"), verbose=0), [4.0])
    hostile = json.loads(json.dumps(config))
    for entry in hostile["layers"]:
        if entry["class_name"] == "Sum":
            entry["module"], entry["class_name"], entry["registered_name"] = "os", "system", "system"
    with pytest.raises(keramic.errors.UnknownObjectError, match="system"):
        keramic.Model.from_config(hostile)


def test_op_nodes_run_eagerly_inside_the_model_with_gradients():
    x = keramic.Input((4,))
    hidden = keramic.layers.Dense(3)(x)
    model = keramic.Model(x, ops.mean(ops.square(hidden) + hidden * 0.5, axis=-1))
    data = torch.ones((2, 4))
    model(data).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert len(model.layers) == 2  # op nodes are not layers, as in Keras


@pytest.mark.interop
def test_activations_relu_with_arguments_on_symbolic_tensors_moves_both_ways(keras, tmp_path):
    """Keras records `activations.relu(x, max_value=...)` as its own ReLU operation, not a layer."""
    x = np.array([[-1.0, 3.0, 9.0]], "float32")
    theirs_in = keras.Input((3,))
    theirs = keras.Model(theirs_in, keras.activations.relu(theirs_in, negative_slope=0.1, max_value=6.0))
    theirs.save(tmp_path / "theirs.keras")
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(keramic.saving.load_model(tmp_path / "theirs.keras").predict(x, verbose=0), expected, rtol=1e-6)
    ours_in = keramic.Input((3,))
    ours = keramic.Model(ours_in, keramic.activations.relu(ours_in, negative_slope=0.1, max_value=6.0))
    def entry(model):  # the node as written, its (session-numbered) name aside
        node = json.loads(json.dumps(model.get_config()["layers"][1]))
        return {key: node[key] for key in ("module", "class_name", "registered_name")}, {k: v for k, v in node["config"].items() if k != "name"}

    assert entry(ours) == entry(theirs)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0), expected, rtol=1e-6)
