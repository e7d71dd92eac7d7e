"""The newer losses and metrics in compiled models: `.keras` and `.h5` files keep them, and files
cross between keramic and real Keras 3 with the same evaluation results."""

import warnings

import numpy as np
import pytest

import keramic
from keramic import layers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _metrics(m):
    return [
        m.F1Score(average="micro", threshold=0.5),
        m.FBetaScore(average="macro", beta=2.0),
        m.R2Score(),
        m.BinaryIoU(target_class_ids=[1]),
        m.OneHotMeanIoU(num_classes=2),
        m.PrecisionAtRecall(0.5, num_thresholds=20),
        m.SpecificityAtSensitivity(0.3),
        m.ConcordanceCorrelation(),
    ]


LOSSES = {
    "tversky": lambda m: m.Tversky(alpha=0.3, beta=0.7, axis=-1),
    "dice": lambda m: m.Dice(),
    "categorical_focal_crossentropy": lambda m: m.CategoricalFocalCrossentropy(gamma=1.5),
}


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 4)).astype("float32"), np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]


def _evaluate(model):
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.evaluate(x, y, verbose=0, return_dict=True)


def _loss(model):
    return model._compile_args["loss"]  # keramic's models keep compile's arguments here (no `model.loss`)


def _assert_same_logs(ours, theirs, context):
    assert sorted(ours) == sorted(theirs), context
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6, err_msg=f"{context}: {key}")


@pytest.mark.interop
def test_compiled_losses_and_metrics_survive_every_file_form(keras, tmp_path):
    x, y = _data()
    for name, make_loss in LOSSES.items():
        keramic.utils.set_random_seed(0)
        model = keramic.Sequential([keramic.Input((4,)), layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss=make_loss(keramic.losses), metrics=_metrics(keramic.metrics))
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        expected = _evaluate(model)
        model.save(tmp_path / f"{name}.keras")
        model.save(tmp_path / f"{name}.h5")
        for suffix in ("keras", "h5"):
            loaded = keramic.saving.load_model(tmp_path / f"{name}.{suffix}")
            assert type(_loss(loaded)) is type(_loss(model))
            assert _loss(loaded).get_config() == _loss(model).get_config(), suffix
            _assert_same_logs(_evaluate(loaded), expected, f"{name} reloaded from .{suffix}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = keras.saving.load_model(tmp_path / f"{name}.keras")
        assert theirs.loss.get_config() == _loss(model).get_config()
        _assert_same_logs(_evaluate(theirs), expected, f"{name}: Keras evaluating keramic's file")


@pytest.mark.interop
def test_keras_compiled_files_load_here(keras, tmp_path):
    x, y = _data()
    for name, make_loss in LOSSES.items():
        keras.utils.set_random_seed(0)
        theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        theirs.compile(optimizer="adam", loss=make_loss(keras.losses), metrics=_metrics(keras.metrics))
        theirs.fit(x, y, epochs=1, batch_size=8, verbose=0)
        theirs.save(tmp_path / f"{name}.keras")
        ours = keramic.saving.load_model(tmp_path / f"{name}.keras")
        assert _loss(ours).get_config() == theirs.loss.get_config()
        _assert_same_logs(_evaluate(ours), _evaluate(theirs), f"{name}: Keras's file evaluated here")
