"""keramic.metrics: Keras 3 numerics over several batches, configs, lookup and compile's choices."""

import re

import numpy as np
import pytest
import torch

from keramic import losses, metrics
from keramic.errors import UnknownObjectError

BATCH = 8


def _batches(kind, count=3):
    """`count` batches (y_true, y_pred, sample_weight) of one kind of problem, float32."""
    rng = np.random.default_rng({"regression": 0, "binary": 1, "categorical": 2, "sparse": 3}.get(kind, 4))
    out = []
    for index in range(count):
        if kind == "regression":
            y_true, y_pred = rng.normal(size=(BATCH, 3)), rng.normal(size=(BATCH, 3))
        elif kind == "positive":
            y_true, y_pred = rng.uniform(0, 2, (BATCH, 3)), rng.uniform(0, 2, (BATCH, 3))
        elif kind == "binary":
            y_true, y_pred = rng.integers(0, 2, (BATCH, 1)).astype("float64"), rng.uniform(0, 1, (BATCH, 1))
            y_pred[0, 0] = 0.0 if index == 0 else 1.0  # the end points of the thresholds
            y_pred[1:3, 0] = [0.5, 0.3]  # exactly on the thresholds tested
        elif kind == "multilabel":
            y_true, y_pred = rng.integers(0, 2, (BATCH, 4)).astype("float64"), rng.uniform(0, 1, (BATCH, 4))
            y_pred[0] = np.round(y_pred[0], 1)  # ties with evenly spaced thresholds
        elif kind == "logits":
            y_true, y_pred = rng.integers(0, 2, (BATCH, 4)).astype("float64"), rng.normal(0, 2, (BATCH, 4))
        elif kind == "categorical":
            y_true, y_pred = np.eye(5)[rng.integers(0, 5, BATCH)], rng.dirichlet(np.ones(5), BATCH)
            y_pred[0] = [0.3, 0.3, 0.2, 0.1, 0.1]  # a tie for the arg-max and for top-k
        elif kind == "sparse":
            y_true, y_pred = rng.integers(0, 5, (BATCH,)).astype("float64"), rng.dirichlet(np.ones(5), BATCH)
        elif kind == "sparse_column":
            y_true, y_pred = rng.integers(0, 5, (BATCH, 1)).astype("float64"), rng.normal(0, 2, (BATCH, 5))
        elif kind == "classes":
            # Class ids of a segmentation map (4 classes), with -1 (out of range) once.
            y_true, y_pred = rng.integers(0, 4, (BATCH,)).astype("float64"), rng.integers(0, 4, (BATCH,)).astype("float64")
            y_true[3] = -1
        elif kind == "integer_weights":
            y_true, y_pred = rng.integers(0, 3, (BATCH,)).astype("float64"), rng.integers(0, 3, (BATCH,)).astype("float64")
        else:
            raise ValueError(kind)
        weight = None if index == 0 else rng.uniform(0, 2, BATCH)
        if kind == "integer_weights" and weight is not None:
            weight = np.floor(weight * 2)
        if index == 2 and weight is not None:
            weight[:2] = 0.0
        out.append(tuple(None if a is None else torch.tensor(a, dtype=torch.float32) for a in (y_true, y_pred, weight)))
    return out


# (class name, constructor arguments, data kind)
CASES = [
    ("Accuracy", {}, "sparse_column"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.3}, "binary"),
    ("CategoricalAccuracy", {}, "categorical"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("SparseCategoricalAccuracy", {}, "sparse_column"),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("SparseTopKCategoricalAccuracy", {"k": 3}, "sparse_column"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("RootMeanSquaredError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("CosineSimilarity", {}, "regression"),
    ("LogCoshError", {}, "regression"),
    ("KLDivergence", {}, "categorical"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "logits"),
    ("SquaredHinge", {}, "logits"),
    ("CategoricalHinge", {}, "categorical"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "logits"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "categorical"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 1}, "sparse_column"),
    ("TruePositives", {}, "binary"),
    ("FalsePositives", {"thresholds": [0.2, 0.7]}, "multilabel"),
    ("TrueNegatives", {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "multilabel"),
    ("FalseNegatives", {}, "multilabel"),
    ("Precision", {}, "binary"),
    ("Precision", {"thresholds": [0.3, 0.5, 0.9]}, "multilabel"),
    ("Precision", {"thresholds": [0.0, 0.5, 1.0]}, "multilabel"),
    ("Precision", {"top_k": 2}, "multilabel"),
    ("Precision", {"class_id": 2}, "multilabel"),
    ("Precision", {"top_k": 2, "class_id": 1, "thresholds": 0.3}, "categorical"),
    ("Recall", {}, "binary"),
    ("Recall", {"thresholds": [0.3, 0.5, 0.9]}, "multilabel"),
    ("Recall", {"top_k": 1}, "categorical"),
    ("Recall", {"class_id": 3}, "multilabel"),
    ("AUC", {}, "binary"),
    ("AUC", {"num_thresholds": 7}, "multilabel"),
    ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "num_thresholds": 11}, "multilabel"),
    ("AUC", {"curve": "pr", "summation_method": "minoring"}, "multilabel"),
    ("AUC", {"curve": "ROC", "summation_method": "majoring"}, "multilabel"),
    ("AUC", {"curve": "PRGAIN"}, "multilabel"),
    ("AUC", {"thresholds": [0.1, 0.35, 0.5, 0.8]}, "multilabel"),
    ("AUC", {"thresholds": [0.2, 0.4, 0.6, 0.8], "curve": "PR"}, "binary"),
    ("AUC", {"from_logits": True}, "logits"),
    ("AUC", {"multi_label": True}, "multilabel"),
    ("AUC", {"multi_label": True, "num_labels": 4, "curve": "PR", "label_weights": [1.0, 0.0, 2.0, 0.5]}, "multilabel"),
    ("AUC", {"multi_label": True, "thresholds": [0.25, 0.6], "label_weights": [0.5, 1.0, 1.0, 2.0]}, "multilabel"),
    ("AUC", {"label_weights": [0.5, 1.0, 1.0, 2.0]}, "multilabel"),
]


# Metrics whose constructors need arguments, so they sit outside CASES' default-constructor checks.
NEWER_CASES = [
    ("F1Score", {}, "categorical"),
    ("F1Score", {"threshold": 0.5}, "multilabel"),
    ("F1Score", {"average": "micro", "threshold": 0.4}, "multilabel"),
    ("F1Score", {"average": "macro"}, "categorical"),
    ("F1Score", {"average": "weighted", "threshold": 0.6}, "multilabel"),
    ("FBetaScore", {"beta": 2.0}, "categorical"),
    ("FBetaScore", {"beta": 0.5, "average": "weighted", "threshold": 0.3}, "multilabel"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0, 2]}, "classes"),
    ("IoU", {"num_classes": 4, "target_class_ids": [1], "dtype": "float32"}, "classes"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0, 1, 3], "ignore_class": 2, "dtype": "float32"}, "classes"),
    ("IoU", {"num_classes": 3, "target_class_ids": [0, 2]}, "integer_weights"),
    ("IoU", {"num_classes": 5, "target_class_ids": [0, 3], "sparse_y_true": False, "sparse_y_pred": False}, "categorical"),
    ("BinaryIoU", {}, "binary"),
    ("BinaryIoU", {"target_class_ids": [1], "threshold": 0.3, "dtype": "float32"}, "binary"),
    ("MeanIoU", {"num_classes": 4}, "classes"),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 0, "dtype": "float32"}, "classes"),
    ("OneHotIoU", {"num_classes": 5, "target_class_ids": [1, 4], "dtype": "float32"}, "categorical"),
    ("OneHotMeanIoU", {"num_classes": 5, "dtype": "float32"}, "categorical"),
    ("R2Score", {}, "regression"),
    ("R2Score", {"class_aggregation": "variance_weighted_average"}, "regression"),
    ("R2Score", {"class_aggregation": None, "num_regressors": 2}, "regression"),
    ("PearsonCorrelation", {}, "regression"),
    ("PearsonCorrelation", {}, "positive"),
    ("ConcordanceCorrelation", {}, "positive"),
    ("ConcordanceCorrelation", {}, "regression"),
    ("PrecisionAtRecall", {"recall": 0.5}, "binary"),
    ("PrecisionAtRecall", {"recall": 0.8, "num_thresholds": 7, "class_id": 2}, "multilabel"),
    ("RecallAtPrecision", {"precision": 0.6}, "multilabel"),
    ("RecallAtPrecision", {"precision": 0.4, "num_thresholds": 1}, "binary"),
    ("SensitivityAtSpecificity", {"specificity": 0.5}, "multilabel"),
    ("SensitivityAtSpecificity", {"specificity": 0.3, "num_thresholds": 11, "class_id": 0}, "multilabel"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.7}, "binary"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.4, "num_thresholds": 20}, "multilabel"),
]


def _close(ours, theirs, what):
    theirs = torch.as_tensor(theirs).detach().cpu()
    assert ours.shape == theirs.shape, what
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-6, atol=1e-6, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _base_name(name):
    return re.sub(r"_\d+$", "", name)


def _labels(name, kind, y_true):
    # Sparse labels arrive as integers from a data pipeline.
    return y_true.long() if "Sparse" in name and kind.startswith("sparse") else y_true


@pytest.mark.interop
@pytest.mark.parametrize("cases", [CASES, NEWER_CASES], ids=["older", "newer"])
@pytest.mark.filterwarnings("ignore:You are passing weight as `float`")
def test_metrics_match_keras_over_several_batches(keras, cases):
    # One test over many cases: the `keras` fixture costs a Keras session reset per test.
    for name, kwargs, kind in cases:
        ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        for step, (y_true, y_pred, weight) in enumerate(_batches(kind)):
            y_true = _labels(name, kind, y_true)
            ours.update_state(y_true, y_pred, sample_weight=weight)
            theirs.update_state(y_true, y_pred, sample_weight=weight)
            _close(ours.result(), theirs.result(), f"{name}{kwargs} after batch {step}")
        assert [tuple(v.shape) for v in ours.variables] == [tuple(v.shape) for v in theirs.variables], name
        for mine, reference in zip(ours.variables, theirs.variables):
            _close(mine.detach(), reference.value, f"{name}{kwargs} variable {reference.name}")
        ours.reset_state()
        theirs.reset_state()
        _close(ours.result(), theirs.result(), f"{name}{kwargs} after reset")


@pytest.mark.interop
def test_mean_and_sum_match_keras(keras):
    rng = np.random.default_rng(5)
    values_2d = torch.tensor(rng.normal(size=(BATCH, 3)), dtype=torch.float32)
    weights = torch.tensor(rng.uniform(0, 2, BATCH), dtype=torch.float32)
    steps = [
        (values_2d, None),
        (values_2d, weights),
        (values_2d, weights[:, None]),
        (values_2d, torch.tensor(rng.uniform(0, 2, (BATCH, 3)), dtype=torch.float32)),
        (torch.tensor(2.5), 16),  # what the trainer's loss tracker sends
        (values_2d[:, 0], 3.0),
        (torch.tensor(1.0), None),
    ]
    for name in ("Mean", "Sum"):
        ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
        for values, weight in steps:
            ours.update_state(values, sample_weight=weight)
            theirs.update_state(values, sample_weight=weight)
            _close(ours.result(), theirs.result(), f"{name} weight={None if weight is None else np.shape(weight)}")


@pytest.mark.interop
def test_masked_predictions_match_keras(keras):
    y_true, y_pred, weight = _batches("regression")[1]
    mask = torch.tensor([True, False, True, True, False, True, True, True])
    ours_pred, their_pred = y_pred.clone(), y_pred.clone()
    ours_pred._keras_mask = mask
    their_pred._keras_mask = mask
    sparse_true, sparse_pred, _ = _batches("sparse_column")[0]
    for name, kwargs, data in [
        ("MeanSquaredError", {}, (y_true, ours_pred, their_pred)),
        ("MeanAbsoluteError", {}, (y_true, ours_pred, their_pred)),
        ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 2}, (sparse_true.long(),) + (sparse_pred,) * 2),
    ]:
        ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        for sample_weight in (None, weight):
            ours.update_state(data[0], data[1], sample_weight)
            theirs.update_state(data[0], data[2], sample_weight)
            _close(ours.result(), theirs.result(), f"masked {name} weighted={sample_weight is not None}")


@pytest.mark.interop
def test_mean_metric_wrapper_matches_keras(keras):
    ours = metrics.MeanMetricWrapper(losses.huber, name="h", delta=0.5)
    theirs = keras.metrics.MeanMetricWrapper(keras.losses.huber, name="h", delta=0.5)
    for y_true, y_pred, weight in _batches("regression"):
        ours.update_state(y_true, y_pred, weight)
        theirs.update_state(y_true, y_pred, weight)
    _close(ours.result(), theirs.result(), "MeanMetricWrapper(huber)")
    assert ours.get_config() == theirs.get_config()
    rebuilt = metrics.deserialize(metrics.serialize(ours))
    assert rebuilt._fn is losses.huber and rebuilt._fn_kwargs == {"delta": 0.5} and rebuilt.name == "h"


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras serializing its label_weights tensor
def test_configs_match_keras(keras):
    for name, kwargs, _ in CASES:
        kwargs = {**kwargs, "name": "m"}
        ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        expected = theirs.get_config()
        if expected.get("label_weights") is not None:
            expected["label_weights"] = expected["label_weights"].tolist()  # Keras keeps a tensor here
        if "thresholds" in expected and isinstance(expected["thresholds"], list):
            expected["thresholds"] = [float(t) for t in expected["thresholds"]]
        assert ours.get_config() == expected, name
        assert metrics.serialize(ours) == {**keras.metrics.serialize(theirs), "config": expected}, name
        assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config(), name
    for name, kwargs, _ in NEWER_CASES:
        ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        mine, reference = ours.get_config(), theirs.get_config()
        assert _base_name(mine.pop("name")) == _base_name(reference.pop("name")), name
        assert mine == reference, f"{name}{kwargs}"
        assert metrics.deserialize(metrics.serialize(ours)).get_config() == ours.get_config(), name
        assert keras.metrics.deserialize(metrics.serialize(ours)).get_config() == ours.get_config(), name
    for name in sorted({case[0] for case in CASES}):
        ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
        mine, reference = ours.get_config(), theirs.get_config()
        # Auto-generated names are uniquified per process, separately in each library.
        assert _base_name(mine.pop("name")) == _base_name(reference.pop("name")), name
        assert mine == reference, name


def test_configs_by_hand():
    assert metrics.Precision(name="p").get_config() == {
        "name": "p", "dtype": "float32", "thresholds": None, "top_k": None, "class_id": None,
    }  # fmt: skip
    assert metrics.AUC(name="auc").get_config() == {
        "name": "auc", "dtype": "float32", "num_thresholds": 200, "curve": "ROC",
        "summation_method": "interpolation", "multi_label": False, "num_labels": None,
        "label_weights": None, "from_logits": False,
    }  # fmt: skip
    assert metrics.BinaryAccuracy().get_config() == {"name": "binary_accuracy", "dtype": "float32", "threshold": 0.5}
    assert metrics.CosineSimilarity(axis=0).get_config()["axis"] == 0  # kept when not the default
    assert "axis" not in metrics.CosineSimilarity().get_config()


@pytest.mark.interop
def test_get_resolves_the_names_keras_resolves(keras):
    names = [
        "mse", "MSE", "mae", "mape", "msle", "bce", "BCE", "accuracy", "auc", "AUC", "precision", "recall",
        "Precision", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
        "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "categorical_crossentropy",
        "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error", "root_mean_squared_error",
        "true_positives", "false_negatives", "kl_divergence", "log_cosh_error", "cosine_similarity", "hinge",
        "squared_hinge", "categorical_hinge", "poisson", "mean", "sum",
    ]  # fmt: skip
    for name in names:
        ours, theirs = metrics.get(name), keras.metrics.get(name)
        assert type(ours).__name__ == type(theirs).__name__, name
        assert _base_name(ours.name) == _base_name(theirs.name), name
    for name in ("huber", "log_cosh", "no_such_metric"):  # functions Keras' metrics table lacks
        with pytest.raises(ValueError):
            keras.metrics.get(name)
        with pytest.raises(UnknownObjectError):
            metrics.get(name)
    auc = metrics.get({"class_name": "AUC", "config": {"curve": "PR"}})
    assert isinstance(auc, metrics.AUC) and auc.curve == "PR"
    assert metrics.get(None) is None
    assert metrics.get(metrics.binary_accuracy) is metrics.binary_accuracy


# (y_true shape, y_pred shape) -> how Keras 3 picks binary / sparse / categorical.
SHAPES = [((8,), (8, 1)), ((8, 1), (8, 1)), ((8,), (8, 5)), ((8, 1), (8, 5)), ((8, 5), (8, 5)), ((8, 4, 1), (8, 4, 5))]


@pytest.mark.interop
def test_resolve_metric_follows_keras_compile(keras):
    from keras.src.trainers.compile_utils import get_metric

    for true_shape, pred_shape in SHAPES:
        y_true, y_pred = torch.zeros(true_shape), torch.zeros(pred_shape)
        for identifier in ("accuracy", "acc", "Accuracy", "mse", "mae", "auc", "precision", "binary_accuracy"):
            ours = metrics.resolve_metric(identifier, y_true, y_pred)
            theirs = get_metric(identifier, y_true, y_pred)
            assert (type(ours).__name__, ours.name) == (type(theirs).__name__, theirs.name), (identifier, true_shape)
        ours = metrics.resolve_metric(losses.mean_absolute_error, y_true, y_pred)
        theirs = get_metric(keras.losses.mean_absolute_error, y_true, y_pred)
        expected = ("MeanMetricWrapper", "mean_absolute_error")
        assert (type(ours).__name__, ours.name) == (type(theirs).__name__, theirs.name) == expected
        recall = metrics.Recall(name="r")
        assert metrics.resolve_metric(recall, y_true, y_pred) is recall and recall.name == "r"


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras' own fit loop
def test_keras_compile_names_accuracy_like_resolve_metric(keras):
    # What a compiled Keras model actually tracks for metrics=["accuracy"] on a sparse target.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((4, 3), "float32"), np.array([0, 1, 2, 3])
    history = model.fit(x, y, epochs=1, verbose=0)
    tracked = [m for m in model.metrics[1].metrics]
    ours = metrics.resolve_metric("accuracy", torch.as_tensor(y), torch.zeros(4, 4))
    assert [(type(m).__name__, m.name) for m in tracked] == [(type(ours).__name__, ours.name)]
    assert "accuracy" in history.history


def test_crossentropy_metric_alias_follows_shapes_and_loss():
    # Keras 3 rejects "crossentropy" as a metric; keramic resolves it by the accuracy alias' rule.
    chosen = ["Binary", "Binary", "SparseCategorical", "SparseCategorical", "Categorical", "SparseCategorical"]
    for (true_shape, pred_shape), prefix in zip(SHAPES, chosen):
        metric = metrics.resolve_metric("ce", torch.zeros(true_shape), torch.zeros(pred_shape))
        assert type(metric).__name__ == f"{prefix}Crossentropy", (true_shape, pred_shape)
        assert metric.name == "ce" and not metric.from_logits
    metric = metrics.resolve_metric(
        "crossentropy", torch.zeros(8, 5), torch.zeros(8, 5), loss=losses.CategoricalCrossentropy(from_logits=True)
    )
    assert isinstance(metric, metrics.CategoricalCrossentropy) and metric.from_logits


def test_state_is_non_trainable_variables_updated_in_place():
    metric = metrics.Precision(thresholds=[0.3, 0.7], name="p")
    assert [v.path for v in metric.variables] == ["p/true_positives", "p/false_positives"]
    assert all(not v.trainable and not v.requires_grad for v in metric.variables)
    storage = [v.data_ptr() for v in metric.variables]
    y_pred = torch.tensor([0.2, 0.5, 0.9], requires_grad=True)
    result = metric(torch.tensor([0.0, 1.0, 1.0]), y_pred)
    assert not result.requires_grad
    assert [v.data_ptr() for v in metric.variables] == storage
    assert metric.true_positives.tolist() == [2.0, 1.0] and metric.false_positives.tolist() == [0.0, 0.0]
    metric.reset_state()
    assert metric.true_positives.tolist() == [0.0, 0.0]


@pytest.mark.filterwarnings("ignore:You are passing weight as `float`")
def test_update_state_never_reads_values_back_to_the_host(monkeypatch):
    """A read-back (`.item()`, `bool(tensor)`, `.tolist()`, ...) would stall the GPU every step."""
    cases = [(name, kwargs, kind) for name, kwargs, kind in CASES + NEWER_CASES if not kwargs.get("multi_label") or kwargs.get("num_labels")]
    built = [(getattr(metrics, name)(**kwargs), name, kind) for name, kwargs, kind in cases]
    batches = {kind: _batches(kind, count=2) for _, _, kind in cases}

    def forbidden(*args, **kwargs):
        raise AssertionError("update_state read a tensor value back to the host")

    for method in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "cpu"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    for metric, name, kind in built:
        for y_true, y_pred, weight in batches[kind]:
            metric.update_state(_labels(name, kind, y_true), y_pred, sample_weight=weight)
    tracker = metrics.Mean(name="loss")
    tracker.update_state(torch.tensor(0.5), sample_weight=32)
    monkeypatch.undo()
    assert tracker.result().item() == 0.5


def test_custom_metric_subclass():
    class Count(metrics.Metric):
        def __init__(self, name="count", dtype=None):
            super().__init__(name=name, dtype=dtype)
            self.seen = self.add_variable((), "zeros", name="seen")
            self.inner = metrics.Mean(name="inner")

        def update_state(self, values, sample_weight=None):
            self.seen.assign_add(float(len(values)))
            self.inner.update_state(values)

        def result(self):
            return self.seen.detach().clone()

    metric = Count()
    assert metric(torch.ones(3)).item() == 3.0
    assert [v.name for v in metric.variables] == ["seen", "total", "count"]
    metric.reset_state()
    assert metric.result().item() == 0.0 and metric.inner.result().item() == 0.0
    assert metric.get_config() == {"name": "count", "dtype": "float32"}


@pytest.mark.interop
def test_newer_metric_functions_and_names_match_keras(keras):
    (y_true, y_pred, _), *_ = _batches("regression")
    for name in ("pearson_correlation", "concordance_correlation"):
        _close(getattr(metrics, name)(y_true, y_pred), getattr(keras.metrics, name)(y_true, y_pred), name)
        _close(getattr(metrics, name)(y_true, y_pred, axis=0), getattr(keras.metrics, name)(y_true, y_pred, axis=0), name)
    # Loss functions Keras also publishes under keras.metrics.
    (y_true, y_pred, _), *_ = _batches("categorical")
    for name in ("huber", "binary_focal_crossentropy", "categorical_focal_crossentropy"):
        assert getattr(metrics, name) is getattr(losses, name)
        _close(getattr(metrics, name)(y_true, y_pred), getattr(keras.metrics, name)(y_true, y_pred), name)
    for name in ("f1_score", "r2_score", "pearson_correlation", "concordance_correlation", "binary_io_u", "F1Score", "R2Score"):
        ours, theirs = metrics.get(name), keras.metrics.get(name)
        assert type(ours).__name__ == type(theirs).__name__, name
        assert _base_name(ours.name) == _base_name(theirs.name), name


def test_newer_metric_arguments_are_checked():
    with pytest.raises(ValueError, match="average"):
        metrics.F1Score(average="sample")
    with pytest.raises(ValueError, match="beta"):
        metrics.FBetaScore(beta=1)
    with pytest.raises(ValueError, match="threshold"):
        metrics.F1Score(threshold=1.5)
    with pytest.raises(ValueError, match="out of range"):
        metrics.IoU(num_classes=2, target_class_ids=[2])
    with pytest.raises(ValueError, match="class_aggregation"):
        metrics.R2Score(class_aggregation="median")
    with pytest.raises(ValueError, match="recall"):
        metrics.PrecisionAtRecall(recall=1.5)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.SensitivityAtSpecificity(0.5, num_thresholds=0)
    with pytest.raises(ValueError, match="2D inputs"):
        metrics.F1Score().update_state(torch.ones(3), torch.ones(3))
    f1 = metrics.F1Score()
    assert f1.variables == []  # its state is sized by the first batch
    f1.update_state(torch.eye(3), torch.eye(3))
    assert [v.name for v in f1.variables] == ["true_positives", "false_positives", "false_negatives", "intermediate_weights"]
    np.testing.assert_allclose(f1.result().numpy(), [1.0, 1.0, 1.0], atol=1e-6)
