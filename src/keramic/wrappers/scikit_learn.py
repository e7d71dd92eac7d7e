"""scikit-learn estimators that fit and predict with a keramic model, as `keras.wrappers` does.

`model` is a compiled Model (cloned, with its compile settings, at each `fit`) or a callable
`model(X=..., y=..., **model_kwargs)` that returns a compiled model for the (processed) data.
Inputs are checked by scikit-learn's `validate_data` (so `n_features_in_` is set and later calls
must match); targets are made 2-D for the model (one-hot for classifiers) and turned back on
`predict`.

>>> est = SKLearnClassifier(model=build_model, fit_kwargs={"epochs": 5}).fit(X, y)
>>> est.predict(X)
"""

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:  # the classes still exist; constructing one says what to install
    sklearn = None

    class BaseEstimator:  # type: ignore[no-redef]
        pass

    class ClassifierMixin:  # type: ignore[no-redef]
        pass

    class RegressorMixin:  # type: ignore[no-redef]
        pass

    class TransformerMixin:  # type: ignore[no-redef]
        pass

from keramic.models.cloning import clone_model
from keramic.models.model import Model
from keramic.serialization.registry import keras_export


class _TargetColumns(TransformerMixin, BaseEstimator):
    """Targets as the model sees them: a 1-D `y` becomes one column, and predictions of a single
    column go back to 1-D."""

    def fit(self, y):
        self.ndim_ = np.ndim(y)
        return self

    def transform(self, y):
        y = np.asarray(y)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def inverse_transform(self, y):
        check_is_fitted(self)
        return np.squeeze(y, axis=1) if self.ndim_ == 1 and np.ndim(y) == 2 else y


class _KerasEstimator(BaseEstimator):
    """What the three wrappers share: parameters, cloning, fit and predict."""

    def __init__(self, model, warm_start: bool = False, model_kwargs=None, fit_kwargs=None):
        if sklearn is None:
            raise ImportError(
                f"{type(self).__name__} requires `scikit-learn` to be installed. Run `pip install scikit-learn` "
                "(or `pip install keramic[sklearn]`) to install it."
            )
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    def __sklearn_clone__(self):
        """As Keras: a model object is shared, not copied (`fit` clones it), and `fit_kwargs` are
        not carried over."""
        return type(self)(model=self.model, warm_start=self.warm_start, model_kwargs=self.model_kwargs)

    @property
    def epoch_(self) -> int:
        """The current training epoch."""
        return getattr(self, "history_", {}).get("epoch", 0)

    def set_fit_request(self, **kwargs):
        """Ask for metadata (`sample_weight=True`, ...) to be routed to `fit`; needs scikit-learn's
        metadata routing (`sklearn.set_config(enable_metadata_routing=True)`)."""
        if not sklearn.get_config().get("enable_metadata_routing", False):
            raise RuntimeError(
                "set_fit_request needs scikit-learn's metadata routing: call "
                "sklearn.set_config(enable_metadata_routing=True) first."
            )
        self._metadata_request = sklearn.utils.metadata_routing.MetadataRequest(owner=type(self).__name__)
        for param, alias in kwargs.items():
            self._metadata_request.fit.add_request(param=param, alias=alias)
        return self

    def _build_model(self, X, y):
        if isinstance(self.model, Model):
            model = clone_model(self.model)
            if self.model.compiled:  # Keras's clone keeps the compile settings
                model.compile_from_config(self.model.get_compile_config())
            return model
        return self.model(X=X, y=y, **(self.model_kwargs or {}))

    def fit(self, X, y, **kwargs):
        """Fit a fresh model on `X`, `y`; `kwargs` go to `model.fit` (over `fit_kwargs`)."""
        X, y = validate_data(self, X, y)
        y = self._encode_target(y, reset=True)
        model = self._build_model(X, y)
        if not model.compiled or not model.loss or not model.optimizer:
            raise RuntimeError("The model must be compiled, with a loss and an optimizer, before the wrapper fits it.")
        self.history_ = model.fit(X, y, **{**(self.fit_kwargs or {}), **kwargs})
        self.model_ = model
        return self

    def predict(self, X):
        """The model's predictions for `X`, in the form of the targets `fit` saw."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self._target_encoder.inverse_transform(self.model_.predict(X))

    def _encode_target(self, y, reset=False):
        _check_known_target(y)
        if reset:
            self._target_encoder = _TargetColumns().fit(y)
        return self._target_encoder.transform(y)


def _check_known_target(y) -> str:
    kind = type_of_target(y)
    if kind == "unknown":
        raise ValueError(f"Unknown label type for data: {y!r}")
    return kind


@keras_export("keras.wrappers")
class SKLearnClassifier(ClassifierMixin, _KerasEstimator):
    """A scikit-learn classifier: the model is fit on one-hot targets; `predict` returns labels
    (`classes_`), `decision_function` the model's raw outputs."""

    def decision_function(self, X):
        """The model's raw outputs for `X`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict(X)

    def _encode_target(self, y, reset=False):
        kind = _check_known_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Only binary and multiclass target types are supported. Target type: {kind}")
        if reset:
            self._target_encoder = make_pipeline(_TargetColumns(), OneHotEncoder(sparse_output=False)).fit(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) == 1:
                raise ValueError("Classifier can't train when only one class is present.")
        return self._target_encoder.transform(y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags


@keras_export("keras.wrappers")
class SKLearnRegressor(RegressorMixin, _KerasEstimator):
    """A scikit-learn regressor: `predict` returns the model's outputs (1-D for a 1-D `y`)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


@keras_export("keras.wrappers")
class SKLearnTransformer(TransformerMixin, _KerasEstimator):
    """A scikit-learn transformer: `transform(X)` is the fitted model's output (an embedding, say)."""

    def transform(self, X):
        """The fitted model's outputs for `X`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags
