"""A layer given a `DTypePolicyMap` computes with the map's entry for its path, as Keras 3.

Keras sets a layer's `path` as its build starts (name scopes, building layers, name) and looks up
`compute_dtype`, `variable_dtype` and `quantization_mode` there; before the build, and for paths
the map does not name, the map's default applies. `dtype_policy` stays the map.
"""

import numpy as np

import keramic


def _mapped_layers(lib):
    policies = lib.dtype_policies
    mapping = policies.DTypePolicyMap(default_policy="float32")
    mapping["outer/.*first"] = policies.DTypePolicy("bfloat16")
    mapping["second"] = policies.DTypePolicy("mixed_float16")
    mapping["third"] = policies.get("int8_from_float32")
    return [lib.layers.Dense(3, name=name, dtype=mapping) for name in ("first", "second", "third", "fourth")]


def _describe(lib):
    layers = _mapped_layers(lib)
    before = [(layer.path, layer.compute_dtype, layer.quantization_mode) for layer in layers]
    with lib.name_scope("outer"):
        layers[0].build((None, 4))
    for layer in layers[1:]:
        layer.build((None, 4))
    x = np.ones((2, 4), "float32")
    after = []
    for layer in layers:
        weights = [(w.path, lib.backend.standardize_dtype(w.dtype)) for w in layer.weights]
        output = lib.backend.standardize_dtype(layer(x).dtype)
        policy = type(layer.dtype_policy).__name__
        after.append((layer.path, layer.compute_dtype, layer.variable_dtype, layer.quantization_mode, weights, output, policy))
    return before, after


def test_layers_compute_with_their_paths_entry_as_keras(keras):
    assert _describe(keramic) == _describe(keras)


def test_layer_paths_in_a_functional_model_are_keras_paths(keras):
    def paths(lib):
        inputs = lib.Input((4,))
        with lib.name_scope("block"):
            hidden = lib.layers.Dense(3, name="hidden")(inputs)
        outputs = lib.layers.Dense(2, name="head")(hidden)
        model = lib.Model(inputs, outputs)
        return [layer.path for layer in model.layers]

    assert paths(keramic) == paths(keras)
