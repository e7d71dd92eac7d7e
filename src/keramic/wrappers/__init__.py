"""`keras.wrappers`: scikit-learn estimators around keramic models.

scikit-learn is optional and slow to import, so the classes load on first use
(`keramic.wrappers.SKLearnClassifier`), not with keramic.
"""

_NAMES = ("SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer")


def __getattr__(name: str):
    if name in _NAMES:
        from keramic.wrappers import scikit_learn

        return getattr(scikit_learn, name)
    raise AttributeError(f"module 'keramic.wrappers' has no attribute {name!r}")


def __dir__():
    return sorted((*globals(), *_NAMES))
