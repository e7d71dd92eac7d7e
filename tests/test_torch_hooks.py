"""torch's module hooks fire on keramic layers and models, as on any torch.nn.Module."""

import numpy as np
import torch

import keramic as keras


def _model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="head")(hidden)
    return keras.Model(inputs, outputs)


def test_forward_hook_sees_the_output_and_can_replace_it():
    model = _model()
    x = torch.randn(5, 3)
    seen = []
    handle = model.get_layer("hidden").register_forward_hook(lambda module, args, output: seen.append(output.detach().clone()))
    expected_hidden = torch.relu(x @ model.get_layer("hidden").kernel + model.get_layer("hidden").bias)
    model(x)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected_hidden)
    handle.remove()
    model(x)
    assert len(seen) == 1

    head = model.get_layer("head")
    handle = head.register_forward_hook(lambda module, args, output: output * 0.0)
    assert torch.count_nonzero(model(x)) == 0
    handle.remove()
    assert torch.count_nonzero(model(x)) > 0


def test_forward_pre_hook_can_change_the_input_and_kwargs_hooks_see_training():
    layer = keras.layers.Dropout(0.5)
    calls = []
    layer.register_forward_pre_hook(lambda module, args: (args[0] * 2.0,))
    layer.register_forward_hook(lambda module, args, kwargs, output: calls.append(kwargs.get("training")), with_kwargs=True)
    out = layer(torch.ones(2, 2), training=False)
    torch.testing.assert_close(out, torch.full((2, 2), 2.0))
    assert calls == [False]


def test_model_level_hook_fires_in_predict_and_backward_hook_in_fit():
    model = _model()
    batches = []
    model.register_forward_hook(lambda module, args, output: batches.append(tuple(output.shape)))
    grads = []
    model.get_layer("head").register_full_backward_hook(lambda module, grad_in, grad_out: grads.append(grad_out[0].shape))
    model.predict(np.ones((6, 3), "float32"), batch_size=4, verbose=0)
    assert batches == [(4, 2), (2, 2)]
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), batch_size=4, epochs=1, verbose=0)
    assert grads and tuple(grads[0]) == (4, 2)


def test_global_forward_hook_reaches_keramic_layers():
    names = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, output: names.append(type(module).__name__))
    try:
        keras.layers.Dense(2)(torch.ones(1, 3))
    finally:
        handle.remove()
    assert "Dense" in names
