"""Parity with real Keras 3 (torch backend) for the issue #12 leftovers: `utils.Config`,
`audio_dataset_from_directory`, `utils.bounding_boxes`, `keras.quantizers`' functions, `utils.legacy`, `remat`,
`visualization.draw_segmentation_masks`, bfloat16
`convert_to_numpy` and `fit(steps_per_epoch=...)` on arrays."""

import warnings
import wave

import numpy as np
import pytest
import torch

import keramic
from keramic.utils.bounding_boxes.formats import FORMATS


def test_config_behaves_as_keras_config(keras):
    for module in (keras, keramic):
        config = module.utils.Config(a=1, b={"x": 2})
        config.d = 5
        config["e"] = 6
        assert (config.a, config["b"], len(config), list(config), "a" in config) == (1, {"x": 2}, 4, ["a", "b", "d", "e"], True)
        assert config.as_dict() == {"a": 1, "b": {"x": 2}, "d": 5, "e": 6}
        assert config.to_json() == '{"a": 1, "b": {"x": 2}, "d": 5, "e": 6}'
        assert repr(config) == "<Config {'a': 1, 'b': {'x': 2}, 'd': 5, 'e': 6}>"
        with pytest.raises(AttributeError):
            config.missing
        with pytest.raises(KeyError):
            config["missing"]
        config.freeze()
        assert config.frozen
        for mutate in (lambda: setattr(config, "f", 1), lambda: config.__setitem__("f", 1), lambda: config.pop("a"),
                       lambda: config.update({"f": 1}), lambda: config.__delitem__("a")):
            with pytest.raises(ValueError):
                mutate()
        config.unfreeze()
        config.update({"z": 1}, y=2)
        assert (config.pop("z"), config.get("q", 3), list(config.keys())) == (1, 3, ["a", "b", "d", "e", "y"])


def _write_wav(path, samples, channels=1):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(samples.astype("<i2").tobytes())


@pytest.fixture
def audio_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("no", "yes"):
        (tmp_path / name).mkdir()
        for index, frames in enumerate((5, 9, 7)):
            _write_wav(tmp_path / name / f"{index}.wav", rng.integers(-32768, 32767, frames))
    return tmp_path


@pytest.mark.parametrize("options", [{"batch_size": 2}, {"batch_size": 4, "output_sequence_length": 6, "label_mode": "categorical"}])
def test_audio_dataset_from_directory_matches_keras(keras, audio_folder, options):
    expected = list(keras.utils.audio_dataset_from_directory(str(audio_folder), shuffle=False, verbose=False, **options))
    got = list(keramic.utils.audio_dataset_from_directory(str(audio_folder), shuffle=False, verbose=False, **options))
    assert len(got) == len(expected)
    for (ex, ey), (gx, gy) in zip(expected, got):
        np.testing.assert_array_equal(np.asarray(gx), keras.ops.convert_to_numpy(ex))
        np.testing.assert_array_equal(np.asarray(gy), keras.ops.convert_to_numpy(ey))


def test_audio_dataset_names_a_file_it_cannot_read(tmp_path):
    """Clips are read batch by batch (as Keras's tf.data pipeline reads them), so the error comes
    when the broken file's batch is read, naming the file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    dataset = keramic.utils.audio_dataset_from_directory(str(tmp_path), verbose=False)
    with pytest.raises(keramic.errors.FileFormatError, match="broken.wav"):
        list(dataset)


def _boxes():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 20, (2, 3, 2))
    return np.concatenate([corner, corner + rng.uniform(1, 10, (2, 3, 2))], -1).astype("float32")


def test_bounding_box_convert_format_matches_keras_for_every_pair(keras):
    boxes = _boxes()
    for source in FORMATS:
        given = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(boxes, "xyxy", source, height=40, width=30))
        for target in FORMATS:
            expected = keras.utils.bounding_boxes.convert_format(given, source, target, height=40, width=30)
            got = keramic.utils.bounding_boxes.convert_format(given, source, target, height=40, width=30)
            np.testing.assert_allclose(got.numpy(), keras.ops.convert_to_numpy(expected), atol=1e-4, err_msg=f"{source}->{target}")
    with pytest.raises(ValueError, match="height"):
        keramic.utils.bounding_boxes.convert_format(boxes, "xyxy", "rel_xyxy")


def test_bounding_box_iou_and_clipping_match_keras(keras):
    boxes = _boxes()
    for fmt in ("xyxy", "center_xywh"):
        expected = keras.utils.bounding_boxes.compute_iou(boxes[0], boxes[1], fmt)
        got = keramic.utils.bounding_boxes.compute_iou(boxes[0], boxes[1], fmt)
        np.testing.assert_allclose(got.numpy(), keras.ops.convert_to_numpy(expected), atol=1e-6)
    padded = boxes.copy()
    padded[0, 0] = -1
    expected = keras.utils.bounding_boxes.compute_iou(padded, boxes, "xyxy", use_masking=True)
    got = keramic.utils.bounding_boxes.compute_iou(padded, boxes, "xyxy", use_masking=True)
    np.testing.assert_allclose(got.numpy(), keras.ops.convert_to_numpy(expected), atol=1e-6)
    data = {"boxes": boxes * 2 - 5, "labels": np.array([[1, 2, 3], [4, 5, 6]])}
    expected = keras.utils.bounding_boxes.clip_to_image_size(data, height=20, width=25)
    got = keramic.utils.bounding_boxes.clip_to_image_size(data, height=20, width=25)
    for key in ("boxes", "labels"):
        np.testing.assert_allclose(got[key].numpy(), keras.ops.convert_to_numpy(expected[key]), atol=1e-6)


def test_bounding_box_geometry_matches_keras(keras):
    ours, theirs = keramic.utils.bounding_boxes, keras.utils.bounding_boxes
    boxes = _boxes()
    anchors = boxes[0][::-1].copy()

    def check(got, expected):
        np.testing.assert_allclose(got.numpy(), keras.ops.convert_to_numpy(expected), atol=1e-5)

    check(ours.crop(boxes, 1, 2, 8, 9), theirs.crop(boxes, 1, 2, 8, 9))
    check(ours.pad(boxes, 1, 2), theirs.pad(boxes, 1, 2))
    check(ours.compute_ciou(boxes[0], boxes[1], "xyxy"), theirs.compute_ciou(boxes[0], boxes[1], "xyxy"))
    check(ours.compute_ciou(boxes, boxes[:, ::-1], "center_xywh"), theirs.compute_ciou(boxes, boxes[:, ::-1], "center_xywh"))
    for encoding in ("center_yxhw", "center_xywh"):
        for variance in (None, [0.1, 0.1, 0.2, 0.2]):
            options = {"variance": variance}
            expected = theirs.encode_box_to_deltas(anchors, boxes, "xyxy", "xywh", encoding_format=encoding, **options)
            got = ours.encode_box_to_deltas(anchors, boxes, "xyxy", "xywh", encoding_format=encoding, **options)
            check(got, expected)
            options.update(encoded_format=encoding, image_shape=(40, 30, 3))
            check(ours.decode_deltas_to_boxes(anchors, got.numpy(), "xyxy", "rel_xyxy", **options),
                  theirs.decode_deltas_to_boxes(anchors, expected, "xyxy", "rel_xyxy", **options))
    delta = keras.ops.convert_to_tensor(boxes[0])
    check(ours.decode_deltas_to_boxes({"p3": anchors}, {"p3": boxes[0]}, "xyxy", "xyxy")["p3"],
          theirs.decode_deltas_to_boxes({"p3": anchors}, {"p3": delta}, "xyxy", "xyxy")["p3"])
    with pytest.raises(ValueError, match="variance"):
        ours.encode_box_to_deltas(anchors, boxes, "xyxy", "xyxy", variance=[1.0, 2.0])


def _same(got, expected):
    got, expected = keramic.ops.convert_to_numpy(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got.astype("float32"), expected.astype("float32"), atol=1e-5)


def test_abs_max_quantize_and_int4_packing_match_keras(keras):
    ours, theirs = keramic.quantizers, keras.quantizers
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32") * 3
    for axis in (-1, 0, (0, 1)):
        for got, expected in zip(ours.abs_max_quantize(x, axis), theirs.abs_max_quantize(x, axis)):
            _same(got, keras.ops.convert_to_numpy(expected))
    for got, expected in zip(ours.AbsMaxQuantizer(axis=0)(x), theirs.AbsMaxQuantizer(axis=0)(x)):
        _same(got, keras.ops.convert_to_numpy(expected))
    assert ours.AbsMaxQuantizer(axis=0).get_config() == theirs.AbsMaxQuantizer(axis=0).get_config()
    assert ours.get("abs_max_quantizer").get_config() == theirs.get("abs_max_quantizer").get_config()
    restored = ours.deserialize(ours.serialize(ours.AbsMaxQuantizer(axis=1)))
    assert isinstance(restored, ours.AbsMaxQuantizer) and restored.axis == (1,)
    values = np.random.default_rng(1).integers(-8, 8, (5, 3)).astype("int8")
    for axis in (0, 1, -1):
        packed, shape, length = ours.pack_int4(values, axis=axis)
        expected, expected_shape, expected_length = theirs.pack_int4(values, axis=axis)
        _same(packed, keras.ops.convert_to_numpy(expected))
        assert (shape, length) == (tuple(expected_shape), expected_length)
        _same(ours.unpack_int4(packed, length, axis=axis), values)


def test_float8_helpers_and_fake_quant_match_keras(keras):
    ours, theirs = keramic.quantizers, keras.quantizers
    for amax in (4.0, 0.0, np.inf, np.nan):
        args = (np.float32(amax), np.float32(2.0), np.float32(448.0))
        _same(ours.compute_float8_scale(*args, margin=1), keras.ops.convert_to_numpy(theirs.compute_float8_scale(*args, margin=1)))
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    history = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    _same(ours.compute_float8_amax_history(x, history), keras.ops.convert_to_numpy(theirs.compute_float8_amax_history(x, history)))
    values = np.array([0.3, -700, 1000.1, 1e-4], "float32")
    for scale, dtype, compute in ((2.0, "float8_e4m3fn", "float32"), (0.5, "float8_e5m2", "bfloat16")):
        expected = theirs.quantize_and_dequantize(values, np.float32(scale), dtype, compute)
        _same(ours.quantize_and_dequantize(values, np.float32(scale), dtype, compute), keras.ops.convert_to_numpy(expected))
    y = np.linspace(-1.3, 1.7, 7).astype("float32")
    for options in ({"num_bits": 3}, {"num_bits": 3, "narrow_range": True}):
        _same(ours.fake_quant_with_min_max_vars(y, -1.0, 1.0, **options),
              keras.ops.convert_to_numpy(theirs.fake_quant_with_min_max_vars(y, -1.0, 1.0, **options)))
    channels = np.stack([y, y * 2], axis=-1)
    low, high = np.array([-1.0, -2.0], "float32"), np.array([1.0, 0.5], "float32")
    _same(ours.fake_quant_with_min_max_vars(channels, low, high, num_bits=4, axis=-1),
          keras.ops.convert_to_numpy(theirs.fake_quant_with_min_max_vars(channels, low, high, num_bits=4, axis=-1)))
    gradients = []
    for module in (keramic, keras):
        tensor = torch.tensor(y, requires_grad=True)
        module.quantizers.fake_quant_with_min_max_vars(tensor, -1.0, 1.0, num_bits=3).sum().backward()
        gradients.append(tensor.grad)
    assert torch.equal(gradients[0], gradients[1])


def test_remat_recomputes_the_forward_pass_in_backward_as_keras(keras):
    results = []
    for module in (keras, keramic):
        calls = []

        def block(x):
            calls.append(1)
            return torch.sin(x) * x

        x = torch.linspace(-1, 1, 5, requires_grad=True)
        output = module.remat(block)(x)
        output.sum().backward()
        results.append((len(calls), output.detach(), x.grad))
    (keras_calls, keras_output, keras_grad), (calls, output, grad) = results
    assert calls == keras_calls == 2  # once forward, once again in backward
    assert torch.allclose(output, keras_output) and torch.allclose(grad, keras_grad)


def test_legacy_serialization_matches_keras_2_form(keras):
    keramic.utils.clear_session()  # layer names ("dense") must not depend on tests that ran before
    configs = []
    for module in (keras, keramic):
        legacy = module.utils.legacy
        layer = module.layers.Dense(2, activation="relu", kernel_regularizer=module.regularizers.L2(0.1))
        config = legacy.serialize_keras_object(layer)
        restored = legacy.deserialize_keras_object(config, module_objects={"Dense": module.layers.Dense})
        assert isinstance(restored, module.layers.Dense) and restored.get_config() == layer.get_config()
        configs.append((config, legacy.serialize_keras_object(module.activations.relu),
                        legacy.serialize_keras_object(module.optimizers.Adam(0.5))))
    assert configs[0] == configs[1]
    legacy = keramic.utils.legacy
    assert legacy.deserialize_keras_object("relu", module_objects={"relu": keramic.activations.relu}) is keramic.activations.relu
    with pytest.raises(keramic.errors.UnknownObjectError, match="Unknown layer: 'Mystery'"):
        legacy.deserialize_keras_object({"class_name": "Mystery", "config": {}}, printable_module_name="layer")


def test_draw_segmentation_masks_matches_keras(keras):
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3)).astype("uint8")
    masks = np.random.default_rng(1).integers(0, 3, (2, 4, 5, 1)).astype("int32")
    masks[0, 0, 0] = -1
    colors = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0)}
    for options in ({"num_classes": 3}, {"num_classes": 3, "color_mapping": colors, "alpha": 0.5},
                    {"num_classes": 4, "blend": False}, {"num_classes": 5, "alpha": 0.3, "ignore_index": 2}):
        expected = keras.visualization.draw_segmentation_masks(images, masks, **options)
        got = keramic.visualization.draw_segmentation_masks(images, masks, **options)
        assert type(got).__name__ == type(expected).__name__, options
        _same(got, keras.ops.convert_to_numpy(expected))
    first = {"num_classes": 3, "data_format": "channels_first"}
    expected = keras.visualization.draw_segmentation_masks(images.transpose(0, 3, 1, 2), masks.transpose(0, 3, 1, 2), **first)
    _same(keramic.visualization.draw_segmentation_masks(images.transpose(0, 3, 1, 2), masks.transpose(0, 3, 1, 2), **first), expected)
    with pytest.raises(TypeError, match="integer"):
        keramic.visualization.draw_segmentation_masks(images, masks.astype("float32"), num_classes=3)


def test_convert_to_numpy_keeps_bfloat16_as_keras(keras):
    values = [1.5, 2.25, -3.0]
    expected = keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(values, dtype="bfloat16"))
    got = keramic.ops.convert_to_numpy(keramic.ops.convert_to_tensor(values, dtype="bfloat16"))
    assert got.dtype == expected.dtype and str(got.dtype) == "bfloat16"
    np.testing.assert_array_equal(got.astype("float32"), expected.astype("float32"))
    back = keramic.ops.convert_to_tensor(got)
    assert back.dtype == torch.bfloat16 and back.float().tolist() == values


def _train(module, steps_per_epoch, epochs, validation_steps=None):
    x = np.linspace(-1, 1, 40 * 3, dtype="float32").reshape(40, 3)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")) + 0.1
    model = module.Sequential([module.Input((3,)), module.layers.Dense(1)])
    model.set_weights([np.full((3, 1), 0.1, "float32"), np.zeros(1, "float32")])
    model.compile(module.optimizers.SGD(0.1), "mse")
    counts = []

    class CountBatches(module.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counts.append(0)

        def on_train_batch_end(self, batch, logs=None):
            counts[-1] += 1

    validation = {"validation_data": (x, y), "validation_steps": validation_steps} if validation_steps else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, batch_size=8, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                            verbose=0, callbacks=[CountBatches()], **validation)
    return counts, history.history, model.get_weights()


@pytest.mark.parametrize("steps_per_epoch, epochs, validation_steps", [(2, 3, None), (3, 3, 2), (10, 2, None)])
def test_fit_honours_steps_per_epoch_on_arrays_as_keras(keras, steps_per_epoch, epochs, validation_steps):
    expected = _train(keras, steps_per_epoch, epochs, validation_steps)
    got = _train(keramic, steps_per_epoch, epochs, validation_steps)
    assert got[0] == expected[0]
    assert got[1].keys() == expected[1].keys()
    for key in expected[1]:
        np.testing.assert_allclose(got[1][key], expected[1][key], rtol=1e-4, err_msg=key)
    for ours, theirs in zip(got[2], expected[2]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_evaluate_and_predict_honour_steps_on_arrays_as_keras(keras):
    x = np.linspace(-1, 1, 40 * 3, dtype="float32").reshape(40, 3)
    y = x.sum(axis=1, keepdims=True)
    results = []
    for module in (keras, keramic):
        model = module.Sequential([module.Input((3,)), module.layers.Dense(1)])
        model.set_weights([np.full((3, 1), 0.1, "float32"), np.zeros(1, "float32")])
        model.compile("sgd", "mse")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.append([model.evaluate(x, y, batch_size=8, steps=steps, verbose=0) for steps in (2, 9)]
                           + [model.predict(x, batch_size=8, steps=steps, verbose=0) for steps in (2, 9)])
    (*expected_losses, expected_2, expected_9), (*losses, got_2, got_9) = results
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
    assert got_2.shape == expected_2.shape == (16, 1) and got_9.shape == expected_9.shape == (40, 1)
    np.testing.assert_allclose(got_9, expected_9, rtol=1e-5)


def test_explicit_safe_mode_wins_over_enable_unsafe_deserialization(tmp_path):
    """A deliberate difference from Keras 3.15, where `enable_unsafe_deserialization()` overrides
    an explicit `safe_mode=True` and the Lambda's code is loaded: here the caller's explicit
    `safe_mode=True` is honoured, so code asked not to run never runs."""
    model = keramic.Sequential([keramic.Input((2,)), keramic.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    keramic.config.enable_unsafe_deserialization()
    try:
        with pytest.raises(keramic.errors.UnsafeDeserializationError):
            keramic.saving.load_model(path, safe_mode=True)
        assert keramic.saving.load_model(path).predict(np.ones((1, 2), "float32"), verbose=0)[0, 0] == 2.0
    finally:
        from keramic.serialization import serialize

        serialize._state.safe_mode = None
