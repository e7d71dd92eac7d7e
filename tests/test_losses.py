"""keramic.losses: Keras 3 numerics (weights, masks, reductions), names, configs and lookup."""

import numpy as np
import pytest
import torch

from keramic import losses
from keramic.errors import UnknownObjectError

BATCH = 8


def _data(kind, seed=0):
    """(y_true, y_pred) float32 tensors of one kind of problem."""
    rng = np.random.default_rng(seed)
    if kind == "regression":
        y_true, y_pred = rng.normal(size=(BATCH, 5)), rng.normal(size=(BATCH, 5))
        y_pred[0, :2] = y_true[0, :2]  # zero errors
        y_pred[1, 0] = y_true[1, 0] + 3.0  # beyond the default Huber delta
    elif kind == "positive":
        y_true, y_pred = rng.uniform(0, 3, (BATCH, 5)), rng.uniform(0, 3, (BATCH, 5))
        y_true[0, 0] = 0.0  # MAPE's epsilon floor
    elif kind == "rank1":
        y_true, y_pred = rng.normal(size=(BATCH,)), rng.normal(size=(BATCH, 1))
    elif kind == "binary":
        y_true = rng.integers(0, 2, (BATCH, 5)).astype("float64")
        y_pred = rng.uniform(0, 1, (BATCH, 5))
        y_pred[0, :2] = [0.0, 1.0]  # clipped to [eps, 1 - eps]
    elif kind == "binary_rank1":
        y_true, y_pred = rng.integers(0, 2, (BATCH,)).astype("float64"), rng.uniform(0, 1, (BATCH, 1))
    elif kind == "binary_logits":
        y_true, y_pred = rng.integers(0, 2, (BATCH, 5)).astype("float64"), rng.normal(0, 3, (BATCH, 5))
    elif kind == "signed":
        y_true, y_pred = rng.choice([-1.0, 1.0], (BATCH, 5)), rng.normal(size=(BATCH, 5))
    elif kind == "categorical":
        y_true = np.eye(4)[rng.integers(0, 4, BATCH)]
        y_pred = rng.uniform(0, 1, (BATCH, 4))  # rows do not sum to 1: Keras renormalises
        y_pred[0] = [0.0, 0.0, 1.0, 0.0]
    elif kind == "categorical_logits":
        y_true, y_pred = np.eye(4)[rng.integers(0, 4, BATCH)], rng.normal(0, 3, (BATCH, 4))
    elif kind == "sparse":
        y_true, y_pred = rng.integers(0, 4, (BATCH,)), rng.uniform(0, 1, (BATCH, 4))
    elif kind == "sparse_column":
        y_true, y_pred = rng.integers(0, 4, (BATCH, 1)), rng.normal(0, 3, (BATCH, 4))
    elif kind == "distribution":
        y_true, y_pred = rng.dirichlet(np.ones(4), BATCH), rng.dirichlet(np.ones(4), BATCH)
    elif kind == "segmentation":
        y_true, y_pred = rng.integers(0, 2, (BATCH, 6)).astype("float64"), rng.uniform(0, 1, (BATCH, 6))
    elif kind == "sparse_probabilities":
        y_true, y_pred = rng.integers(0, 4, (BATCH,)), rng.dirichlet(np.ones(4), BATCH)
    elif kind == "embeddings":
        # Labels with repeats and one singleton (no positive pair: zero loss, masked out).
        y_true = np.array([0, 1, 0, 2, 1, 0, 1, 3])
        y_pred = rng.normal(size=(BATCH, 3))
        y_pred /= np.linalg.norm(y_pred, axis=1, keepdims=True)
    elif kind == "sparse_ctc":
        # Label sequences padded with 0 (the blank); 6 time steps of 5-class logits.
        y_true = np.array([[1, 2, 2, 0], [3, 0, 0, 0], [4, 1, 3, 2], [2, 2, 0, 0]] * 2)
        y_pred = rng.normal(size=(BATCH, 6, 5))
    else:
        raise ValueError(kind)
    return torch.tensor(y_true, dtype=torch.float32), torch.tensor(y_pred, dtype=torch.float32)


# (class name, constructor arguments, data kind)
CASES = [
    ("MeanSquaredError", {}, "regression"),
    ("MeanSquaredError", {}, "rank1"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("Huber", {}, "regression"),
    ("Huber", {"delta": 0.3}, "regression"),
    ("LogCosh", {}, "regression"),
    ("CosineSimilarity", {}, "regression"),
    ("CosineSimilarity", {"axis": 0}, "regression"),
    ("KLDivergence", {}, "distribution"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "binary_logits"),
    ("Hinge", {}, "signed"),
    ("SquaredHinge", {}, "binary_logits"),
    ("SquaredHinge", {}, "signed"),
    ("CategoricalHinge", {}, "categorical_logits"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits"),
    ("BinaryCrossentropy", {}, "binary_rank1"),
    ("BinaryFocalCrossentropy", {}, "binary"),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5}, "binary"),
    ("BinaryFocalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "categorical"),
    ("CategoricalCrossentropy", {"from_logits": True}, "categorical_logits"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.3}, "categorical_logits"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse_column"),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 2}, "sparse_column"),
    ("SparseCategoricalCrossentropy", {"ignore_class": 1}, "sparse"),
    ("CategoricalFocalCrossentropy", {}, "categorical"),
    ("CategoricalFocalCrossentropy", {"alpha": 0.5, "gamma": 1.5, "label_smoothing": 0.1}, "categorical"),
    ("CategoricalFocalCrossentropy", {"from_logits": True}, "categorical_logits"),
    ("CategoricalGeneralizedCrossEntropy", {"q": 0.5}, "sparse_probabilities"),
    ("CategoricalGeneralizedCrossEntropy", {"q": 0.2}, "sparse_probabilities"),
    ("Circle", {}, "embeddings"),
    ("Circle", {"gamma": 10.0, "margin": 0.25, "remove_diagonal": False}, "embeddings"),
    ("CTC", {}, "sparse_ctc"),
    ("Dice", {}, "segmentation"),
    ("Dice", {"axis": -1}, "segmentation"),
    ("Tversky", {}, "segmentation"),
    ("Tversky", {"alpha": 0.3, "beta": 0.7, "axis": -1}, "segmentation"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"]


def _close(ours, theirs, what=""):
    theirs = torch.as_tensor(theirs).detach().cpu()
    assert ours.dtype == theirs.dtype, what
    assert ours.shape == theirs.shape, what
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, msg=lambda m: f"{what}: {m}")


def _weights(seed=1):
    return torch.tensor(np.random.default_rng(seed).uniform(0, 2, BATCH), dtype=torch.float32)


def _input(tensor, kind):
    # Keras data pipelines hand sparse labels over as integers.
    return tensor.long() if kind.startswith("sparse") else tensor


@pytest.mark.interop
def test_loss_classes_match_keras(keras):
    # One test over all cases: the `keras` fixture costs a Keras session reset per test.
    for name, kwargs, kind in CASES:
        y_true, y_pred = _data(kind)
        y_true = _input(y_true, kind)
        ours, theirs = getattr(losses, name)(**kwargs), getattr(keras.losses, name)(**kwargs)
        per_sample = theirs.call(y_true, y_pred)
        _close(ours.call(y_true, y_pred), per_sample, f"{name}{kwargs}.call")
        weighable = per_sample.dim() >= 1 and per_sample.shape[0] == BATCH  # not CosineSimilarity(axis=0)
        for sample_weight in (None, _weights()) if weighable else (None,):
            what = f"{name}{kwargs} {kind} weighted={sample_weight is not None}"
            _close(ours(y_true, y_pred, sample_weight), theirs(y_true, y_pred, sample_weight), what)


@pytest.mark.interop
def test_loss_functions_match_keras(keras):
    for name, kwargs, kind in CASES:
        function = getattr(losses, name)().fn.__name__
        y_true, y_pred = _data(kind)
        y_true = _input(y_true, kind)
        try:
            theirs = getattr(keras.losses, function)(y_true, y_pred, **kwargs)
        except (ValueError, RuntimeError) as error:  # e.g. mismatched ranks: only the Loss fixes them
            with pytest.raises(type(error)):
                getattr(losses, function)(y_true, y_pred, **kwargs)
            continue
        _close(getattr(losses, function)(y_true, y_pred, **kwargs), theirs, f"{function}{kwargs} {kind}")


@pytest.mark.interop
def test_reductions_and_weights_match_keras(keras):
    y_true, y_pred = _data("regression")
    flat_weights = (_weights(), _weights()[:, None], torch.tensor(1.5))
    # Sequences (batch, steps, 1): per-step losses, weighted per sample or per step.
    sequence_true, sequence_pred = (t.reshape(BATCH, 5, 1) for t in _data("regression", seed=4))
    step_weights = (_weights()[:, None], _weights()[:, None].expand(BATCH, 5), _weights().reshape(BATCH, 1, 1))
    for name in ("MeanAbsoluteError", "Huber"):
        for reduction in REDUCTIONS:
            ours = getattr(losses, name)(reduction=reduction)
            theirs = getattr(keras.losses, name)(reduction=reduction)
            for sample_weight in flat_weights:
                what = f"{name} {reduction} weights {tuple(sample_weight.shape)}"
                _close(ours(y_true, y_pred, sample_weight), theirs(y_true, y_pred, sample_weight), what)
            for sample_weight in step_weights:
                what = f"{name} {reduction} sequence weights {tuple(sample_weight.shape)}"
                expected = theirs(sequence_true, sequence_pred, sample_weight)
                _close(ours(sequence_true, sequence_pred, sample_weight), expected, what)


@pytest.mark.interop
def test_masks_on_predictions_match_keras(keras):
    y_true, y_pred = _data("regression")
    sample_mask = torch.tensor([True, False, True, True, False, True, True, True])
    step_mask = torch.rand(BATCH, 5, generator=torch.Generator().manual_seed(3)) > 0.4
    cases = [
        (y_true, y_pred, sample_mask, (None, _weights())),
        (y_true, y_pred, torch.zeros(BATCH, dtype=torch.bool), (None, _weights())),
        # A sequence output (batch, steps, features) masked per step.
        (y_true[..., None], y_pred[..., None], step_mask, (None, _weights()[:, None].expand(BATCH, 5).contiguous())),
    ]
    for reduction, (case_true, case_pred, mask, weights) in [(r, c) for r in REDUCTIONS for c in cases]:
        ours_pred, their_pred = case_pred.clone(), case_pred.clone()
        ours_pred._keras_mask = mask
        their_pred._keras_mask = mask
        ours = losses.MeanSquaredError(reduction=reduction)
        theirs = keras.losses.MeanSquaredError(reduction=reduction)
        for sample_weight in weights:
            what = f"{reduction} mask {tuple(mask.shape)} weighted={sample_weight is not None}"
            _close(ours(case_true, ours_pred, sample_weight), theirs(case_true, their_pred, sample_weight), what)


@pytest.mark.interop
def test_ignore_class_mask_combines_with_prediction_mask(keras):
    y_true, y_pred = _data("sparse_column")
    y_true = y_true.long()
    mask = torch.tensor([True, True, False, True, True, True, False, True])
    ours_pred, their_pred = y_pred.clone(), y_pred.clone()
    ours_pred._keras_mask = mask
    their_pred._keras_mask = mask
    for reduction in REDUCTIONS:
        ours = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1, reduction=reduction)
        theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1, reduction=reduction)
        _close(ours(y_true, ours_pred, _weights()), theirs(y_true, their_pred, _weights()), reduction)


def test_ignore_class_keeps_gradients_finite():
    y_true = torch.tensor([0, 1, 2, 1])
    y_pred = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]], requires_grad=True)
    loss = losses.SparseCategoricalCrossentropy(ignore_class=1)(y_true, y_pred)
    loss.backward()
    assert torch.isfinite(y_pred.grad).all()
    assert torch.all(y_pred.grad[1] == 0) and torch.all(y_pred.grad[3] == 0)
    # Averaged over the two kept samples only.
    expected = -(np.log(0.7) + np.log(0.6)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_reductions_by_hand():
    y_true = torch.zeros(4, 1)
    y_pred = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0])
    mae = losses.MeanAbsoluteError
    assert mae()(y_true, y_pred).item() == pytest.approx(2.5)
    assert mae(reduction="sum")(y_true, y_pred, weights).item() == pytest.approx(11.0)
    assert mae()(y_true, y_pred, weights).item() == pytest.approx(11.0 / 4)
    assert mae(reduction="mean_with_sample_weight")(y_true, y_pred, weights).item() == pytest.approx(11.0 / 4)
    assert mae(reduction=None)(y_true, y_pred, weights).tolist() == [1.0, 0.0, 6.0, 4.0]
    assert mae(reduction="sum")(torch.zeros(0, 1), torch.zeros(0, 1)).shape == (0,)
    with pytest.raises(ValueError, match="reduction"):
        mae(reduction="average")


def test_accepts_numpy_and_keeps_gradients():
    y_pred = torch.tensor([[0.2, 0.8], [0.6, 0.4]], requires_grad=True)
    loss = losses.CategoricalCrossentropy()(np.array([[0, 1], [1, 0]]), y_pred)
    loss.backward()
    assert loss.dtype == torch.float32 and y_pred.grad is not None
    assert loss.item() == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-6)


@pytest.mark.interop
def test_default_configs_match_keras(keras):
    for name in sorted({case[0] for case in CASES}):
        ours, theirs = getattr(losses, name)(), getattr(keras.losses, name)()
        expected = theirs.get_config()
        if name == "Huber":
            expected["delta"] = 1.0  # keramic keeps delta (Keras drops it); see Huber.get_config
        assert ours.get_config() == expected, name
        assert losses.serialize(ours) == {**keras.losses.serialize(theirs), "config": expected}, name


@pytest.mark.interop
def test_configs_with_arguments_match_keras(keras):
    for name, kwargs, _ in CASES:
        kwargs = {**kwargs, "name": "custom", "reduction": "sum"}
        ours, theirs = getattr(losses, name)(**kwargs), getattr(keras.losses, name)(**kwargs)
        expected = theirs.get_config()
        if name == "Huber":
            expected["delta"] = kwargs.get("delta", 1.0)
        if name == "CosineSimilarity" and "axis" in kwargs:
            expected["axis"] = kwargs["axis"]  # keramic keeps a non-default axis
        assert ours.get_config() == expected, name
        rebuilt = type(ours).from_config(ours.get_config())
        assert rebuilt.get_config() == ours.get_config(), name


@pytest.mark.interop
def test_keras_reads_keramic_huber_config(keras):
    # The extra "delta" key is accepted by Keras' own from_config.
    config = losses.Huber(delta=2.5).get_config()
    assert config == {"name": "huber_loss", "reduction": "sum_over_batch_size", "delta": 2.5}
    assert keras.losses.Huber.from_config(config).fn is keras.losses.huber
    assert losses.Huber.from_config(config).delta == 2.5
    assert losses.deserialize(losses.serialize(losses.Huber(delta=2.5))).delta == 2.5


@pytest.mark.interop
def test_functions_serialize_like_keras(keras):
    for name in ("mean_squared_error", "huber", "log_cosh", "sparse_categorical_crossentropy", "cosine_similarity"):
        ours = losses.serialize(getattr(losses, name))
        assert ours == keras.losses.serialize(getattr(keras.losses, name))
        assert losses.deserialize(ours) is getattr(losses, name)
    # Aliases never change the name a function is written under.
    assert losses.serialize(losses.get("mse"))["config"] == "mean_squared_error"


@pytest.mark.interop
def test_get_resolves_the_names_keras_resolves(keras):
    names = [
        "mse", "MSE", "mae", "MAE", "mape", "MAPE", "msle", "MSLE", "kld", "KLD", "bce", "BCE",
        "kl_divergence", "huber", "log_cosh", "poisson", "hinge", "squared_hinge", "categorical_hinge",
        "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
        "binary_focal_crossentropy", "cosine_similarity", "mean_squared_error",
    ]  # fmt: skip
    for name in names:
        ours, theirs = losses.get(name), keras.losses.get(name)
        assert ours.__name__ == theirs.__name__, name
    for name in sorted({case[0] for case in CASES}):
        assert type(losses.get(name)).__name__ == name
    assert losses.get("logcosh") is losses.log_cosh  # Keras' legacy spelling
    loss = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert isinstance(loss, losses.CategoricalCrossentropy) and loss.from_logits
    assert losses.get(None) is None
    instance = losses.Hinge()
    assert losses.get(instance) is instance
    with pytest.raises(UnknownObjectError):
        losses.get("no_such_loss")


@pytest.mark.interop
def test_resolve_loss_follows_keras_compile(keras):
    from keras.src.trainers.compile_utils import get_loss

    shapes = [((8,), (8, 1)), ((8, 1), (8, 1)), ((8,), (8, 3)), ((8, 1), (8, 3)), ((8, 3), (8, 3))]
    for true_shape, pred_shape in shapes:
        y_true, y_pred = torch.zeros(true_shape), torch.zeros(pred_shape)
        for identifier in ("crossentropy", "CE", "mse", losses.mean_absolute_error, losses.Huber(name="h")):
            ours = losses.resolve_loss(identifier, y_true, y_pred)
            keras_identifier = identifier
            if callable(identifier) and not isinstance(identifier, losses.Loss):
                keras_identifier = keras.losses.mean_absolute_error
            elif isinstance(identifier, losses.Loss):
                keras_identifier = keras.losses.Huber(name="h")
            theirs = get_loss(keras_identifier, y_true, y_pred)
            assert ours.name == theirs.name
            assert ours.fn.__name__ == theirs.fn.__name__
    wrapped = losses.resolve_loss("mse")
    assert isinstance(wrapped, losses.LossFunctionWrapper)
    assert wrapped(torch.zeros(2, 2), torch.ones(2, 2)).item() == 1.0
    with pytest.raises(ValueError, match="shapes"):
        losses.resolve_loss("crossentropy")


def test_loss_function_wrapper_round_trips():
    wrapper = losses.LossFunctionWrapper(losses.huber, name="h", delta=2.0)
    config = wrapper.get_config()
    assert config == {
        "name": "h",
        "reduction": "sum_over_batch_size",
        "fn": {"module": "builtins", "class_name": "function", "config": "huber", "registered_name": "function"},
        "delta": 2.0,
    }
    rebuilt = losses.deserialize(losses.serialize(wrapper))
    assert rebuilt.fn is losses.huber and rebuilt._fn_kwargs == {"delta": 2.0}


def test_custom_loss_subclass():
    class Scaled(losses.Loss):
        def call(self, y_true, y_pred):
            return 2.0 * torch.mean(torch.abs(y_true - y_pred), dim=-1)

    loss = Scaled()
    assert loss.name.startswith("scaled")
    assert loss(torch.zeros(2, 3), torch.ones(2, 3)).item() == 2.0
    assert loss.get_config() == {"name": loss.name, "reduction": "sum_over_batch_size"}
    with pytest.raises(NotImplementedError):
        losses.Loss()(torch.zeros(1), torch.zeros(1))


@pytest.mark.interop
def test_reductions_of_the_newer_losses_match_keras(keras):
    # Circle masks its zero-loss samples, so averaging reductions divide by the kept ones only.
    cases = [
        ("CategoricalFocalCrossentropy", {}, "categorical"),
        ("CategoricalGeneralizedCrossEntropy", {}, "sparse_probabilities"),
        ("Circle", {}, "embeddings"),
        ("CTC", {}, "sparse_ctc"),
        ("Dice", {"axis": -1}, "segmentation"),
        ("Dice", {}, "segmentation"),
        ("Tversky", {"axis": -1}, "segmentation"),
    ]
    for name, kwargs, kind in cases:
        y_true, y_pred = _data(kind)
        y_true = _input(y_true, kind)
        for reduction in REDUCTIONS:
            ours = getattr(losses, name)(reduction=reduction, **kwargs)
            theirs = getattr(keras.losses, name)(reduction=reduction, **kwargs)
            for sample_weight in (None, _weights(), torch.tensor(1.5)):
                what = f"{name}{kwargs} {reduction} weights {None if sample_weight is None else tuple(sample_weight.shape)}"
                if name == "Dice" and not kwargs and sample_weight is not None and sample_weight.dim():
                    continue  # one value for the whole batch: Keras fails on per-sample weights there
                if name == "Circle" and sample_weight is not None and not sample_weight.dim():
                    continue  # Keras multiplies its mask into a 0-d weight in place, which torch refuses
                # A copy: Keras on torch multiplies a mask into the caller's weights in place.
                expected = theirs(y_true, y_pred, None if sample_weight is None else sample_weight.clone())
                _close(ours(y_true, y_pred, sample_weight), expected, what)


def test_newer_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="q must be in the interval"):
        losses.CategoricalGeneralizedCrossEntropy(q=1.5)
    with pytest.raises(ValueError, match="max_length"):
        losses.ctc(torch.ones(2, 3, 4), torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="axis"):
        losses.categorical_focal_crossentropy(torch.ones(2, 3), torch.ones(2, 3), axis=True)
    for name in ("ctc", "dice", "tversky", "circle", "categorical_generalized_cross_entropy"):
        assert losses.get(name) is getattr(losses, name)
