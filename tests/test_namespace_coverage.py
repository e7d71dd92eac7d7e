"""Every public name of Keras 3's namespaces exists in keramic, or is listed here with a reason.

The walk starts at `keras` and follows each public submodule (`keras.ops`, `keras.layers`,
`keras.utils.bounding_boxes`, ...). A missing name must be either in OTHER_BACKENDS (it only
makes sense on JAX / TensorFlow / Flax) or in NOT_YET (owed, with why it is not done). Both lists
are checked for staleness: a listed name that keramic gained, or Keras dropped, fails the test.
"""

import types

import keramic

# Names that belong to another backend's machinery; keramic runs on PyTorch only.
OTHER_BACKENDS = {
    "keras.layers.FlaxLayer": "wraps a Flax module (JAX only)",
    "keras.layers.JaxLayer": "wraps a JAX function (JAX only)",
    "keras.layers.TFSMLayer": "loads a TensorFlow SavedModel (TensorFlow only)",
    "keras.callbacks.OrbaxCheckpoint": "checkpoints through Orbax, a JAX library",
}

# Owed: public Keras names keramic does not have yet, each with the reason.
NOT_YET = {
    "keras.export.ExportArchive": "TF SavedModel export archive, skipped by decision: keramic exports ONNX",
}


def _public_names(module):
    return [name for name in dir(module) if not name.startswith("_") and name != "src"]


def _keras_namespace_gaps(keras):
    """Dotted Keras names with no keramic counterpart (a missing submodule counts once)."""
    gaps, seen = [], set()

    def walk(theirs, ours, path):
        if id(theirs) in seen:
            return
        seen.add(id(theirs))
        for name in _public_names(theirs):
            value = getattr(theirs, name)
            dotted = f"{path}.{name}"
            is_namespace = isinstance(value, types.ModuleType)
            if is_namespace and (not value.__name__.startswith("keras") or value.__name__.startswith("keras.src")):
                continue  # a re-exported third-party module or Keras's implementation package
            if not hasattr(ours, name):
                gaps.append(dotted)
            elif is_namespace:
                walk(value, getattr(ours, name), dotted)

    walk(keras, keramic, "keras")
    return gaps


def _keras_has(keras, dotted):
    obj = keras
    for part in dotted.split(".")[1:]:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def test_every_public_keras_name_exists_in_keramic_or_is_listed(keras):
    gaps = set(_keras_namespace_gaps(keras))
    unexplained = sorted(gaps - set(OTHER_BACKENDS) - set(NOT_YET))
    assert not unexplained, f"Keras names missing in keramic and not listed: {unexplained}"


def test_listed_names_are_still_missing_and_still_in_keras(keras):
    gaps = set(_keras_namespace_gaps(keras))
    for listing in (OTHER_BACKENDS, NOT_YET):
        for dotted, reason in listing.items():
            assert reason.strip(), dotted
            assert _keras_has(keras, dotted), f"{dotted} is no longer in Keras: drop it from the list"
            assert dotted in gaps, f"keramic now has {dotted}: drop it from the list"


def test_the_walk_reaches_nested_namespaces(keras):
    # The walk must look inside submodules, not only at the top level: a name removed from a
    # nested keramic namespace shows up as a gap.
    namespace = types.SimpleNamespace(**{name: getattr(keramic.utils, name) for name in _public_names(keramic.utils)})
    del namespace.pad_sequences
    original = keramic.utils
    keramic.utils = namespace
    try:
        gaps = _keras_namespace_gaps(keras)
    finally:
        keramic.utils = original
    assert "keras.utils.pad_sequences" in gaps
