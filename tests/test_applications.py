"""keras.applications parity: each architecture is built in real Keras (torch backend) with random
weights, its weights file is loaded into keramic's build of the same architecture, and layer names,
layer configs, parameter counts and predictions must agree."""

import hashlib
import http.server
import json
import os
import threading

import numpy as np
import pytest
import torch

import keramic
import keramic.applications
from keramic.errors import DataDownloadError
from keramic.utils import naming

pytestmark = pytest.mark.interop


@pytest.fixture
def fast_keras_init(keras, monkeypatch):
    """Keras's torch truncated-normal initializer takes most of the reference build time; the
    reference weights are random either way, so draw them from a clipped normal instead."""
    import torch
    from keras.src.backend.torch import random as torch_random

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        values = torch.randn(tuple(shape)).clamp_(-2.0, 2.0) * stddev + mean
        return values.to(torch_random.to_torch_dtype(dtype or "float32"))

    monkeypatch.setattr(torch_random, "truncated_normal", truncated_normal)
    return keras


def _perturb_statistics(model, rng):
    """Non-trivial batch-norm statistics and biases, so that loading them wrong shows in the outputs."""
    for weight in model.weights:
        path = weight.path
        if "moving_variance" in path or path.endswith("/variance"):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        elif any(key in path for key in ("moving_mean", "beta", "bias", "gamma")) or path.endswith("/mean"):
            base = 1.0 if "gamma" in path else 0.0
            weight.assign((base + rng.normal(0.0, 0.1, weight.shape)).astype("float32"))


def _layer_entries(config):
    """Per layer: everything but the graph wiring (whose call kwargs Keras records differently)."""
    plain = json.loads(json.dumps(config, default=str))
    return [{key: value for key, value in layer.items() if key != "inbound_nodes"} for layer in plain["layers"]]


def _keras_constructor(keras, name):
    if name != "NASNetMobile":
        return getattr(keras.applications, name)
    # Keras 3.15 refuses NASNetMobile on its torch backend (it cites an open bug); its generic
    # builder with NASNetMobile's settings is the reference.
    from keras.src.applications import nasnet

    def nasnet_mobile(input_shape=None, **kwargs):
        kwargs.setdefault("name", "nasnet_mobile")
        mobile = {"penultimate_filters": 1056, "num_blocks": 4, "stem_block_filters": 32, "skip_reduction": False}
        return nasnet.NASNet(input_shape, filter_multiplier=2, default_size=224, **mobile, **kwargs)

    return nasnet_mobile


def _assert_same_application(keras, tmp_path, name, size, kwargs, atol=1e-5):
    keras.utils.clear_session()
    naming.reset_names()
    reference = _keras_constructor(keras, name)(weights=None, input_shape=(size, size, 3), **kwargs)
    rng = np.random.default_rng(0)
    _perturb_statistics(reference, rng)
    weights_path = tmp_path / f"{name}.weights.h5"
    reference.save_weights(weights_path)
    naming.reset_names()
    model = getattr(keramic.applications, name)(weights=str(weights_path), input_shape=(size, size, 3), **kwargs)
    assert model.name == reference.name
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    assert model.count_params() == reference.count_params()
    assert _layer_entries(model.get_config()) == _layer_entries(reference.get_config())
    images = rng.uniform(0.0, 255.0, (2, size, size, 3)).astype("float32")
    expected = np.asarray(reference.predict(images, verbose=0))
    got = np.asarray(model.predict(images, verbose=0))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol * scale)


# (architecture, input size, options): small inputs and narrow widths keep each case to seconds.
FAST_CASES = [
    ("ResNet50", 32, {"include_top": False, "pooling": "avg"}),
    ("ResNet50V2", 32, {"classes": 7}),
    ("VGG16", 32, {"include_top": False, "pooling": "max"}),
    ("MobileNet", 32, {"alpha": 0.25, "classes": 5}),
    ("MobileNetV2", 32, {"alpha": 0.35, "include_top": False}),
    ("MobileNetV3Small", 32, {"alpha": 0.75, "include_top": False, "pooling": "avg"}),
    ("EfficientNetB0", 32, {"classes": 3, "classifier_activation": None}),
    ("Xception", 71, {"include_top": False}),
]
# One more per family (the other code paths: dense blocks, inception modules, op nodes, nested
# Sequential stages, fused blocks, NASNet cells); slow, but run in CI.
SLOW_CASES = [
    ("DenseNet121", 32, {"classes": 4}),
    ("InceptionV3", 75, {"include_top": False}),
    ("MobileNetV3Large", 32, {"minimalistic": True, "include_top": False}),
    ("ConvNeXtTiny", 32, {"classes": 6}),
    ("EfficientNetV2B0", 32, {"include_top": False, "pooling": "max"}),
    ("NASNetMobile", 32, {"include_top": False}),
]
# Every other architecture and variant: about 20 CPU-minutes in all, so opt-in.
ALL_CASES = [
    ("ResNet101", 32, {"include_top": False}),
    ("ResNet152", 32, {"include_top": False}),
    ("ResNet101V2", 32, {"include_top": False}),
    ("ResNet152V2", 32, {"include_top": False}),
    ("VGG19", 32, {"classes": 4}),
    ("DenseNet169", 32, {"include_top": False, "pooling": "avg"}),
    ("DenseNet201", 32, {"include_top": False}),
    ("MobileNetV2", 32, {"alpha": 1.3}),
    ("MobileNetV3Small", 32, {}),
    ("MobileNetV3Large", 32, {"alpha": 0.75}),
    ("InceptionResNetV2", 75, {"include_top": False}),
    ("Xception", 71, {"classes": 10}),
    ("EfficientNetB1", 32, {"include_top": False}),
    ("EfficientNetB2", 32, {"include_top": False}),
    ("EfficientNetB3", 32, {"include_top": False}),
    ("EfficientNetB4", 32, {"include_top": False}),
    ("EfficientNetB5", 32, {"include_top": False}),
    ("EfficientNetB6", 32, {"include_top": False}),
    ("EfficientNetB7", 32, {"include_top": False}),
    ("EfficientNetV2B1", 32, {"include_top": False}),
    ("EfficientNetV2B2", 32, {"include_top": False}),
    ("EfficientNetV2B3", 32, {"include_top": False}),
    ("EfficientNetV2S", 32, {"include_top": False}),
    ("EfficientNetV2M", 32, {"include_top": False}),
    ("EfficientNetV2L", 32, {"include_top": False}),
    ("ConvNeXtSmall", 32, {"include_top": False}),
    ("ConvNeXtBase", 32, {"include_top": False, "pooling": "avg"}),
    ("ConvNeXtLarge", 32, {"include_top": False}),
    ("ConvNeXtXLarge", 32, {"include_top": False}),
    ("NASNetLarge", 32, {"include_top": False}),
]


def _case_id(case):
    name, size, kwargs = case
    return "-".join([name, str(size)] + [f"{k}={v}" for k, v in kwargs.items()])


@pytest.mark.parametrize("case", FAST_CASES, ids=_case_id)
def test_application_matches_keras(fast_keras_init, tmp_path, case):
    _assert_same_application(fast_keras_init, tmp_path, *case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=_case_id)
def test_family_matches_keras(fast_keras_init, tmp_path, case):
    _assert_same_application(fast_keras_init, tmp_path, *case)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("KERAMIC_TEST_ALL_APPLICATIONS"),
    reason="every remaining architecture takes about 20 CPU-minutes; set KERAMIC_TEST_ALL_APPLICATIONS=1",
)
@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_every_application_matches_keras(fast_keras_init, tmp_path, case):
    # Layer names, configs and parameter counts are exact; predictions of these deep networks with
    # random weights compound float32 rounding through 100-800 layers, so 1e-3 of the output scale.
    _assert_same_application(fast_keras_init, tmp_path, *case, atol=1e-3)


def test_every_keras_application_exists(keras):
    public = {name for name in dir(keras.applications) if not name.startswith("_")}
    assert public <= set(dir(keramic.applications))
    for module in sorted(name for name in public if name[0].islower()):
        exported = {name for name in dir(getattr(keras.applications, module)) if not name.startswith("_")}
        assert exported <= set(dir(getattr(keramic.applications, module))), module


@pytest.mark.parametrize(
    "module, mode", [("resnet50", "caffe"), ("resnet_v2", "tf"), ("densenet", "torch"), ("vgg19", "caffe")]
)
def test_preprocess_input_matches_keras(keras, module, mode):
    images = np.random.default_rng(1).uniform(0, 255, (2, 4, 5, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(images.copy())
    got = getattr(keramic.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    as_tensor = getattr(keramic.applications, module).preprocess_input(torch.from_numpy(images.copy()))
    np.testing.assert_allclose(as_tensor.numpy(), expected, rtol=1e-6, atol=1e-5)
    assert keramic.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode).shape == images.shape


def test_models_that_preprocess_inside_leave_inputs_alone():
    images = np.arange(6.0).reshape(1, 1, 2, 3)
    for module in ("efficientnet", "efficientnet_v2", "convnext", "mobilenet_v3"):
        assert getattr(keramic.applications, module).preprocess_input(images) is images


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving `tmp_path/www`; yields (base url, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, requests
    finally:
        server.shutdown()
        server.server_close()


def _legacy_h5_weights(keras, model, path):
    """The layout of Keras's published ImageNet files (tf.keras `save_weights` to `.h5`)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_weights_download_verify_cache_and_load(fast_keras_init, tmp_path, http_server, monkeypatch):
    keras = fast_keras_init
    base_url, root, requests = http_server
    keras.utils.clear_session()
    reference = keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False, input_shape=(128, 128, 3))
    _perturb_statistics(reference, np.random.default_rng(2))
    file_name = "mobilenet_2_5_128_tf_no_top.h5"
    _legacy_h5_weights(keras, reference, root / file_name)
    monkeypatch.setattr(keramic.applications.mobilenet, "BASE_WEIGHT_PATH", base_url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    model = keramic.applications.MobileNet(weights="imagenet", alpha=0.25, include_top=False, input_shape=(128, 128, 3))
    cached = tmp_path / "keras_home" / "models" / file_name
    assert cached.read_bytes() == (root / file_name).read_bytes()
    images = np.random.default_rng(3).uniform(-1, 1, (1, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(images, verbose=0), reference.predict(images, verbose=0), atol=1e-5)
    keramic.applications.MobileNet(weights="imagenet", alpha=0.25, include_top=False, input_shape=(128, 128, 3))
    assert requests == [f"/{file_name}"]  # the second model used the cache


def test_imagenet_weights_failing_their_hash_are_refused(fast_keras_init, tmp_path, http_server, monkeypatch):
    keras = fast_keras_init
    base_url, root, _ = http_server
    keras.utils.clear_session()
    reference = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3))
    file_name = "efficientnetb0_notop.h5"
    _legacy_h5_weights(keras, reference, root / file_name)
    monkeypatch.setattr(keramic.applications.efficientnet, "BASE_WEIGHTS_PATH", base_url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(DataDownloadError, match="md5"):
        keramic.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    assert not (tmp_path / "keras_home" / "models" / file_name).exists()
    good_hash = hashlib.md5((root / file_name).read_bytes()).hexdigest()
    monkeypatch.setitem(keramic.applications.efficientnet.WEIGHTS_HASHES, "b0", ("unused", good_hash))
    model = keramic.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    images = np.random.default_rng(4).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    # With ImageNet weights the model divides by the standard deviation once more (Keras's
    # correction for its Normalization layer); the reference has no such layer, so only the
    # weights are compared here.
    for got, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, expected)
    assert model.predict(images, verbose=0).shape == (1, 1, 1, 1280)


def test_offline_imagenet_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(keramic.applications.vgg16, "WEIGHTS_PATH_NO_TOP", "http://127.0.0.1:9/missing.h5")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    expected_place = str(tmp_path / "home" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with pytest.raises(DataDownloadError) as caught:
        keramic.applications.VGG16(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    assert expected_place in str(caught.value)
    assert "6d6bbae143d832006294945121d1f1fc" in str(caught.value)


def test_decode_predictions_reads_the_class_index(tmp_path, http_server, monkeypatch):
    base_url, root, _ = http_server
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (root / "imagenet_class_index.json").write_text(json.dumps(index))
    monkeypatch.setattr(keramic.applications.imagenet_utils, "CLASS_INDEX_PATH", base_url + "imagenet_class_index.json")
    monkeypatch.setattr(
        keramic.applications.imagenet_utils,
        "CLASS_INDEX_MD5",
        hashlib.md5((root / "imagenet_class_index.json").read_bytes()).hexdigest(),
    )
    monkeypatch.setattr(keramic.applications.imagenet_utils, "_class_index", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, [7, 3]] = [0.9, 0.1]
    preds[1, 999] = 1.0
    decoded = keramic.applications.resnet50.decode_predictions(preds, top=2)
    assert decoded[0] == [("n00000007", "class_7", pytest.approx(0.9)), ("n00000003", "class_3", pytest.approx(0.1))]
    assert decoded[1][0][:2] == ("n00000999", "class_999")
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        keramic.applications.imagenet_utils.decode_predictions(np.zeros((1, 10)))


def test_argument_errors_name_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match="classes` must be 1000"):
        keramic.applications.ResNet50(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="existing weights file"):
        keramic.applications.VGG16(weights=str(tmp_path / "nowhere.h5"))
    with pytest.raises(ValueError, match="at least 75x75"):
        keramic.applications.InceptionV3(weights=None, include_top=False, input_shape=(40, 40, 3))
    with pytest.raises(ValueError, match="static"):
        keramic.applications.ResNet50(weights=None, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="pooling"):
        keramic.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="sum")


def test_input_tensor_becomes_the_model_input():
    inputs = keramic.Input(shape=(32, 32, 3))
    model = keramic.applications.MobileNetV2(weights=None, input_tensor=inputs, alpha=0.35, include_top=False)
    assert model.inputs[0] is inputs
    assert model.outputs[0].shape == (None, 1, 1, 1280)
