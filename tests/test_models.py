"""Functional, Sequential and subclassed models: graphs, layer order, configs, weights."""

import numpy as np
import pytest

import keramic
from keramic import layers


def mlp(input_dim=8, hidden=16):
    inputs = keramic.Input(shape=(input_dim,), name="digits")
    x = layers.Dense(hidden, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(hidden, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keramic.Model(inputs=inputs, outputs=outputs, name="3_layer_mlp")


def test_functional_model_runs_its_graph():
    model = mlp()
    assert isinstance(model, keramic.models.Functional)
    assert [layer.name for layer in model.layers] == ["digits", "dense_1", "dense_2", "predictions"]
    x = np.random.rand(5, 8).astype("float32")
    manual = x
    for layer in model.layers[1:]:
        manual = layer(manual).detach().numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), manual, rtol=1e-6)
    assert model.get_layer("dense_2") is model.layers[2]
    assert model.output_shape == (None, 10)


def _order_graph(module):
    L = module.layers
    a = module.Input((4,), name="a")
    b = module.Input((4,), name="b")
    shared = L.Dense(4, name="shared")
    cat = L.Concatenate(name="cat")([shared(a), shared(b)])
    deep = L.Dense(4, name="deep")(L.Dense(4, name="deeper")(shared(a)))
    o1 = L.Dense(1, name="o1")(cat)
    o2 = L.Dense(2, name="o2")(L.Add(name="add")([deep, shared(b)]))
    return module.Model([a, b], {"o2": o2, "o1": o1})


@pytest.mark.interop
def test_layer_order_is_keras_order(keras):
    """Depth descending, then first visit (keras-v3-format.md section 5.4), checked against Keras."""
    ours = _order_graph(keramic)
    theirs = _order_graph(keras)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    out = ours.predict([np.ones((2, 4)), np.zeros((2, 4))], verbose=0)
    assert out["o1"].shape == (2, 1) and out["o2"].shape == (2, 2)


def test_dict_inputs_are_matched_by_name():
    a = keramic.Input((3,), name="left")
    b = keramic.Input((2,), name="right")
    out = layers.Dense(1)(layers.Concatenate()([a, b]))
    model = keramic.Model({"left": a, "right": b}, out)
    x = {"right": np.ones((4, 2), "float32"), "left": np.zeros((4, 3), "float32")}
    assert model.predict(x, verbose=0).shape == (4, 1)


def test_nested_model_and_shared_layers():
    inner_in = keramic.Input((4,))
    inner = keramic.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="encoder")
    a = keramic.Input((4,))
    b = keramic.Input((4,))
    merged = layers.Concatenate()([inner(a), inner(b)])
    model = keramic.Model([a, b], layers.Dense(1)(merged))
    assert inner in model.layers
    assert len(model.weights) == 4  # inner kernel+bias once, head kernel+bias
    x = np.random.rand(2, 4).astype("float32")
    out = model.predict([x, x], verbose=0)
    assert out.shape == (2, 1)


def test_functional_config_round_trip_rebuilds_the_same_graph():
    model = mlp()
    config = model.get_config()
    assert config["input_layers"] == ["digits", 0, 0]
    assert config["output_layers"] == ["predictions", 0, 0]
    dense = config["layers"][1]
    assert dense["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["digits", 0, 0]
    clone = keramic.models.Functional.from_config(config)
    clone.set_weights(model.get_weights())
    x = np.random.rand(3, 8).astype("float32")
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_sequential_with_input_add_pop_and_deferred_build():
    model = keramic.Sequential([keramic.Input((6,)), layers.Dense(4), layers.Dense(2)])
    assert model.built and model.output_shape == (None, 2)
    assert len(model.layers) == 2
    model.add(layers.Dense(3))
    assert model.output_shape == (None, 3)
    popped = model.pop()
    assert popped.units == 3 and model.output_shape == (None, 2)

    deferred = keramic.Sequential()
    deferred.add(layers.Dense(4, activation="relu"))
    deferred.add(layers.Dense(1))
    assert not deferred.built
    out = deferred(np.ones((5, 7), dtype="float32"))
    assert deferred.built and tuple(out.shape) == (5, 1)
    assert [tuple(w.shape) for w in deferred.weights] == [(7, 4), (4,), (4, 1), (1,)]


def test_sequential_input_shape_keyword_creates_input_layer():
    model = keramic.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(1)])
    assert model.built and model.input_shape == (None, 3)
    config = model.get_config()
    assert config["layers"][0]["class_name"] == "InputLayer"
    assert config["build_input_shape"] == [None, 3]
    clone = keramic.Sequential.from_config(config)
    assert [tuple(w.shape) for w in clone.weights] == [(3, 4), (4,), (4, 1), (1,)]


def test_subclassed_model_tracks_attributes_lists_and_dicts():
    class Net(keramic.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [layers.Dense(8, activation="relu"), layers.Dense(8)]
            self.heads = {"out": layers.Dense(2)}

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return self.heads["out"](x)

    net = Net()
    out = net(np.ones((3, 5), dtype="float32"))
    assert tuple(out.shape) == (3, 2)
    assert len(net.layers) == 3
    assert len(net.trainable_weights) == 6
    assert net.count_params() == 5 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2


def test_summary_reports_keras_parameter_counts():
    model = mlp(input_dim=784, hidden=64)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 55,050" in text
    assert "Trainable params: 55,050" in text
    assert "dense_1 (Dense)" in text and "(None, 64)" in text


def test_disconnected_graph_is_refused():
    a = keramic.Input((2,))
    b = keramic.Input((2,))
    out = layers.Dense(1)(b)
    with pytest.raises(ValueError, match="disconnected"):
        keramic.Model(a, out)


@pytest.mark.interop
def test_summary_matches_keras_totals_and_rows(keras):
    def build(module):
        inputs = module.Input(shape=(784,), name="digits")
        x = module.layers.Dense(64, activation="relu", name="dense_1")(inputs)
        x = module.layers.BatchNormalization(name="bn")(x)
        outputs = module.layers.Dense(10, activation="softmax", name="predictions")(x)
        model = module.Model(inputs, outputs, name="mlp")
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.train_on_batch(np.ones((2, 784), "float32"), np.zeros(2))
        return model

    ours, theirs = [], []
    build(keramic).summary(print_fn=ours.append)
    build(keras).summary(print_fn=lambda line, **kw: theirs.append(line))
    ours_text, theirs_text = "\n".join(ours), "\n".join(theirs)
    totals = [line for line in theirs_text.splitlines() if "params" in line]
    assert totals and all(line in ours_text for line in totals)
    for name in ("digits (InputLayer)", "dense_1 (Dense)", "bn (BatchNormalization)", "(None, 64)", "50,240"):
        assert name in ours_text
