"""The Layer base: naming, lazy build, weights, trainable switch, losses, masking, configs."""

import numpy as np
import pytest
import torch

import keramic
from keramic import layers
from keramic.utils import naming


class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w", regularizer="l2")
        self.counter = self.add_weight(shape=(), initializer="zeros", trainable=False, name="counter")

    def call(self, x):
        self.add_loss(x.abs().mean())
        return x * self.w * self.factor


def test_auto_names_follow_keras_snake_case_and_counters():
    naming.reset_names()
    assert layers.Dense(2).name == "dense"
    assert layers.Dense(2).name == "dense_1"
    assert naming.to_snake_case("BatchNormalization") == "batch_normalization"
    assert naming.to_snake_case("RMSprop") == "rm_sprop"
    assert naming.to_snake_case("PReLU") == "p_re_lu"
    assert naming.to_snake_case("Conv2DTranspose") == "conv2d_transpose"
    assert layers.Dense(2, name="given").name == "given"


def test_build_is_lazy_and_weights_are_ordered_trainable_first():
    layer = Scale(name="scale")
    assert not layer.built and layer.weights == []
    out = layer(np.ones((3, 4), dtype="float32"))
    assert layer.built
    assert out.shape == (3, 4)
    assert [w.name for w in layer.weights] == ["w", "counter"]
    assert [w.path for w in layer.weights] == ["scale/w", "scale/counter"]
    assert [w.name for w in layer.trainable_weights] == ["w"]
    assert [w.name for w in layer.non_trainable_weights] == ["counter"]
    assert layer.get_build_config() == {"input_shape": [3, 4]}


def test_trainable_switch_moves_weights_and_stops_gradients():
    layer = Scale()
    layer(np.ones((1, 2), dtype="float32"))
    layer.trainable = False
    assert layer.trainable_weights == []
    assert len(layer.non_trainable_weights) == 2
    assert not layer.w.requires_grad
    layer.trainable = True
    assert [w.name for w in layer.trainable_weights] == ["w"]
    assert layer.w.requires_grad


def test_losses_collect_add_loss_and_regularizers_and_reset_per_call():
    layer = Scale()
    layer(np.full((2, 2), 3.0, dtype="float32"))
    values = sorted(float(v.detach()) for v in layer.losses)
    # add_loss: mean |x| = 3; L2 regularizer 0.01 * sum(w^2) = 0.02
    assert values == pytest.approx([0.02, 3.0])
    layer(np.full((2, 2), 1.0, dtype="float32"))
    assert sorted(float(v.detach()) for v in layer.losses) == pytest.approx([0.02, 1.0])


def test_set_weights_checks_count_and_shapes():
    layer = layers.Dense(3)
    layer(np.zeros((1, 2), dtype="float32"))
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        layer.set_weights([np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        layer.set_weights([np.zeros((3, 3)), np.zeros(3)])
    layer.set_weights([np.ones((2, 3)), np.arange(3)])
    np.testing.assert_array_equal(layer.get_weights()[1], [0, 1, 2])


def test_sublayers_in_lists_and_dicts_are_tracked():
    class Block(layers.Layer):
        def __init__(self):
            super().__init__()
            self.stack = [layers.Dense(2), layers.Dense(3)]
            self.named = {"head": layers.Dense(1)}

        def call(self, x):
            for layer in self.stack:
                x = layer(x)
            return self.named["head"](x)

    block = Block()
    block(np.zeros((1, 4), dtype="float32"))
    assert [tuple(w.shape) for w in block.weights] == [(4, 2), (2,), (2, 3), (3,), (3, 1), (1,)]


def test_custom_layer_config_captures_constructor_arguments():
    config = Scale(factor=5.0, name="s").get_config()
    assert config["factor"] == 5.0 and config["name"] == "s" and config["trainable"] is True
    assert config["dtype"]["class_name"] == "DTypePolicy"
    clone = Scale.from_config(config)
    assert clone.factor == 5.0 and clone.name == "s"


def test_training_argument_propagates_to_nested_layers():
    seen = []

    class Probe(layers.Layer):
        def call(self, x, training=None):
            seen.append(training)
            return x

    class Outer(layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = Probe()

        def call(self, x):
            return self.inner(x)

    outer = Outer()
    outer(torch.zeros(1), training=True)
    outer(torch.zeros(1))
    assert seen == [None, True, None]  # as Keras: the first call traces the unbuilt Outer (training unset)


def test_unknown_keyword_argument_is_rejected():
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        layers.Dense(2, unitz=3)


def test_layers_are_torch_modules_exposing_parameters():
    layer = layers.Dense(2)
    layer(np.zeros((1, 3), dtype="float32"))
    assert isinstance(layer, torch.nn.Module)
    assert {id(p) for p in layer.parameters()} == {id(w) for w in layer.weights}
    assert isinstance(layer.kernel, keramic.Variable)


def test_calling_build_directly_marks_the_layer_built_once():
    layer = layers.Dense(3)
    layer.build((None, 2))
    assert layer.built and len(layer.weights) == 2
    layer.set_weights([np.ones((2, 3)), np.zeros(3)])
    out = layer(np.ones((1, 2), dtype="float32"))
    assert len(layer.weights) == 2
    np.testing.assert_allclose(out.detach().numpy(), [[2.0, 2.0, 2.0]])
    assert layer.get_build_config() == {"input_shape": [None, 2]}
