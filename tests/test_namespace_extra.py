"""Names issue #12 owed: FeatureSpace, dtype policy maps and (de)serialization, initializer aliases
and STFT, `distribution.get_device_count`, `keras.legacy`; each checked against real Keras 3."""

import numpy as np
import pytest
import torch

import keramic
from keramic import dtype_policies
from keramic.utils import FeatureSpace


def _as_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ------------------------------------------------------------------------------------ FeatureSpace

def _columns():
    return {
        "a": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        "b": np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5]),
        "c": np.array([1, 2, 3, 1, 2, 9]),
        "d": np.array(["x", "y", "z", "x", "y", "w"]),
        "e": np.array(["p", "q", "p", "q", "r", "s"]),
        "f": np.array([3, 4, 5, 6, 7, 8]),
        "g": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        "h": np.array([7.0, 8.0, 9.0, 1.0, 2.0, 3.0]),
    }


def _feature_space(module, output_mode):
    fs = module.utils.FeatureSpace
    return fs(
        features={
            "a": "float_normalized",
            "b": fs.float_discretized(num_bins=3),
            "c": "integer_categorical",
            "d": "string_categorical",
            "e": fs.string_hashed(num_bins=4),
            "f": fs.integer_hashed(num_bins=4),
            "g": fs.float_rescaled(scale=2.0, offset=1.0),
            "h": "float",
        },
        crosses=[fs.cross(("c", "d"), crossing_dim=8)],
        output_mode=output_mode,
    )


def _adapted_keras_space(keras, output_mode):
    tf = pytest.importorskip("tensorflow", reason="Keras's FeatureSpace.adapt needs a tf.data.Dataset")
    space = _feature_space(keras, output_mode)
    space.adapt(tf.data.Dataset.from_tensor_slices(_columns()).batch(3))
    return space


@pytest.mark.parametrize("output_mode", ["concat", "dict"])
def test_feature_space_encodes_every_kind_as_keras(keras, output_mode):
    theirs = _adapted_keras_space(keras, output_mode)(_columns())
    space = _feature_space(keramic, output_mode)
    space.adapt(_columns())
    ours = space(_columns())
    if output_mode == "dict":
        assert list(ours) == list(theirs)
        for name in theirs:
            np.testing.assert_allclose(_as_numpy(ours[name]), _as_numpy(theirs[name]), rtol=1e-5, err_msg=name)
    else:
        np.testing.assert_allclose(_as_numpy(ours), _as_numpy(theirs), rtol=1e-5, atol=1e-6)


def test_feature_space_adapts_from_a_tf_dataset_and_encodes_one_row_as_keras(keras):
    tf = pytest.importorskip("tensorflow", reason="the batches come from tf.data here")
    keras_space = _adapted_keras_space(keras, "concat")
    space = _feature_space(keramic, "concat")
    space.adapt(tf.data.Dataset.from_tensor_slices(_columns()).batch(3))
    row = {name: values[1] for name, values in _columns().items()}
    np.testing.assert_allclose(_as_numpy(space(row)), _as_numpy(keras_space(row)), rtol=1e-5, atol=1e-6)


def test_feature_space_config_matches_keras_and_round_trips(keras):
    theirs = _adapted_keras_space(keras, "concat").get_config()
    space = _feature_space(keramic, "concat")
    space.adapt(_columns())
    ours = space.get_config()
    assert {k: v for k, v in ours.items() if k not in ("features", "crosses")} == {
        k: v for k, v in theirs.items() if k not in ("features", "crosses")
    }
    assert list(ours["features"]) == list(theirs["features"])
    for name, feature in theirs["features"].items():
        mine = ours["features"][name]
        assert mine["class_name"] == feature["class_name"] == "Feature"
        assert mine["config"]["dtype"] == feature["config"]["dtype"], name
        assert mine["config"]["output_mode"] == feature["config"]["output_mode"], name
        assert mine["config"]["preprocessor"]["class_name"] == feature["config"]["preprocessor"]["class_name"], name
    assert [c["config"]["crossing_dim"] for c in ours["crosses"]] == [c["config"]["crossing_dim"] for c in theirs["crosses"]]
    # Keras's own config (with the module paths it writes) builds a keramic FeatureSpace.
    rebuilt = FeatureSpace.from_config(theirs)
    assert sorted(rebuilt.features) == sorted(theirs["features"])
    assert rebuilt.crosses[0].feature_names == ("c", "d")


def test_feature_space_refuses_use_before_adapt_and_bad_arguments():
    space = FeatureSpace({"a": "float_normalized"})
    with pytest.raises(ValueError, match="adapt"):
        space({"a": np.array([1.0])})
    with pytest.raises(ValueError, match="output_mode"):
        FeatureSpace({"a": "float"}, output_mode="list")
    with pytest.raises(ValueError, match="unknown features"):
        FeatureSpace({"a": "float"}, crosses=[("a", "b")])
    with pytest.raises(ValueError, match="Invalid feature type"):
        FeatureSpace({"a": "complex"})


# ---------------------------------------------------------------------------------- dtype policies

def test_dtype_policy_serialize_matches_keras(keras):
    for name in ("float32", "mixed_float16", "bfloat16"):
        assert dtype_policies.serialize(keramic.DTypePolicy(name)) == keras.dtype_policies.serialize(keras.DTypePolicy(name))
    assert dtype_policies.serialize(keramic.FloatDTypePolicy("float16")) == keras.dtype_policies.serialize(
        keras.FloatDTypePolicy("float16")
    )
    envelope = keras.dtype_policies.serialize(keras.DTypePolicy("mixed_bfloat16"))
    policy = dtype_policies.deserialize(envelope)
    assert (policy.compute_dtype, policy.variable_dtype) == ("bfloat16", "float32")


def _policy_maps(module):
    policies = module.dtype_policies
    policy_map = policies.DTypePolicyMap(default_policy="mixed_float16")
    policy_map["encoder/layer_0/dense"] = policies.DTypePolicy("bfloat16")
    policy_map["encoder/.*"] = policies.DTypePolicy("float16")
    policy_map["decoder"] = policies.DTypePolicy("bfloat16")
    return policy_map


def test_dtype_policy_map_lookup_and_config_match_keras(keras):
    theirs, ours = _policy_maps(keras), _policy_maps(keramic)
    for path in ("encoder/layer_0/dense", "encoder/attention/query", "decoder", "decoder/attention", "other"):
        assert ours[path].name == theirs[path].name, path
    assert (ours.name, ours.compute_dtype, ours.variable_dtype) == (theirs.name, theirs.compute_dtype, theirs.variable_dtype)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)
    assert dtype_policies.serialize(ours) == keras.dtype_policies.serialize(theirs)
    rebuilt = dtype_policies.deserialize(keras.dtype_policies.serialize(theirs))
    assert isinstance(rebuilt, dtype_policies.DTypePolicyMap)
    assert rebuilt["encoder/x"].name == "float16" and rebuilt.default_policy.name == "mixed_float16"


def test_dtype_policy_map_errors_as_keras(keras):
    for module in (keras, keramic):
        policy_map = _policy_maps(module)
        policy_map["encoder/attention/.*"] = module.dtype_policies.DTypePolicy("bfloat16")
        with pytest.raises(ValueError, match="matches multiple"):
            policy_map["encoder/attention/query"]
        with pytest.raises(ValueError, match="already exist"):
            policy_map["decoder"] = module.dtype_policies.DTypePolicy("float32")
        with pytest.raises(ValueError, match="cannot be a `DTypePolicyMap`"):
            module.dtype_policies.DTypePolicyMap(default_policy=policy_map)
        del policy_map["decoder"]
        assert policy_map["decoder"].name == "mixed_float16"


# ------------------------------------------------------------------------------------ initializers

def test_initializer_class_aliases_are_keras_names(keras):
    assert keramic.initializers.IdentityInitializer is keramic.initializers.Identity
    assert keramic.initializers.OrthogonalInitializer is keramic.initializers.Orthogonal
    for alias in ("IdentityInitializer", "OrthogonalInitializer", "STFTInitializer", "stft"):
        assert type(keramic.initializers.get(alias)).__name__ == type(keras.initializers.get(alias)).__name__


@pytest.mark.parametrize(
    "side, window, scaling, periodic",
    [("real", "hann", "density", False), ("imag", "hamming", "spectrum", True), ("real", None, None, False),
     ("imag", [0.5, 1.0, 1.0, 0.5, 0.25, 0.1], "density", False)],
)
def test_stft_initializer_matches_keras(keras, side, window, scaling, periodic):
    shape = (6, 1, 5)
    theirs = keras.initializers.STFT(side, window, scaling, periodic)
    ours = keramic.initializers.STFT(side, window, scaling, periodic)
    np.testing.assert_allclose(_as_numpy(ours(shape)), _as_numpy(theirs(shape)), rtol=1e-5, atol=1e-6)
    assert ours.get_config() == theirs.get_config()
    assert keramic.initializers.serialize(ours)["config"] == keras.initializers.serialize(theirs)["config"]


def test_stft_initializer_refuses_bad_arguments():
    with pytest.raises(ValueError, match="side"):
        keramic.initializers.STFT(side="both")
    with pytest.raises(ValueError, match="Scaling"):
        keramic.initializers.STFT(scaling=True)
    with pytest.raises(ValueError, match="window"):
        keramic.initializers.STFT(window=[1.0, 2.0])((3, 1, 2))


# ----------------------------------------------------------------------- distribution and legacy

def test_get_device_count_counts_the_jobs_devices():
    # Keras's torch backend has no get_device_count (it raises AttributeError), so the reference
    # is torch itself: one process, one device of each type asked for.
    assert keramic.distribution.get_device_count("cpu") == 1
    assert keramic.distribution.get_device_count() == 1  # the default type (cuda when present) in a 1-process job
    with pytest.raises(Exception, match="unknown device type"):
        keramic.distribution.get_device_count("tpu9")


def test_legacy_saving_is_keras_2_serialization(keras):
    assert sorted(n for n in dir(keramic.legacy.saving) if n.endswith("keras_object")) == sorted(
        n for n in dir(keras.legacy.saving) if not n.startswith("_")
    )
    layer_config = keramic.legacy.saving.serialize_keras_object(keramic.layers.Dense(3, name="d"))
    assert set(layer_config) == set(keras.legacy.saving.serialize_keras_object(keras.layers.Dense(3, name="d")))
    assert layer_config["class_name"] == "Dense"


# -------------------------------------------------------------------------------------- scopes

def test_symbolic_scope_nests_as_keras(keras):
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as keras_in_scope

    from keramic.scopes import in_symbolic_scope

    for scope_class, in_scope in ((keras.SymbolicScope, keras_in_scope), (keramic.SymbolicScope, in_symbolic_scope)):
        seen = [in_scope()]
        with scope_class() as outer:
            seen.append(in_scope())
            with scope_class():
                seen.append(in_scope())
            seen.append(in_scope())
        seen.append(in_scope())
        assert isinstance(outer, scope_class)
        assert seen == [False, True, True, True, False], scope_class


# ------------------------------------------------------------------------------ KerasFileEditor

def _saved_by_keras(keras, tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1"), keras.layers.Dropout(0.1),
                              keras.layers.Dense(1, name="d2")])
    path = str(tmp_path / "model.keras")
    model.save(path)
    return model, path


def _nested_shapes(tree):
    return {k: _nested_shapes(v) if isinstance(v, dict) else (tuple(v.shape), str(v.dtype)) for k, v in tree.items()}


def test_file_editor_reads_a_keras_file_as_keras_does(keras, tmp_path):
    _, path = _saved_by_keras(keras, tmp_path)
    theirs = keras.saving.KerasFileEditor(path)
    ours = keramic.saving.KerasFileEditor(path)
    assert _nested_shapes(ours.weights_dict) == _nested_shapes(theirs.weights_dict)
    for layer in theirs.weights_dict["layers"]:
        for name, value in theirs.weights_dict["layers"][layer].items():
            np.testing.assert_array_equal(ours.weights_dict["layers"][layer][name], value)
    assert ours.config == theirs.config
    assert ours.metadata["keras_version"] == theirs.metadata["keras_version"]
    assert "layers/dense: 0: (3, 2) float32" in ours.summary()


def _edit(editor, module_np):
    editor.rename_object("layers/dense", "renamed")
    editor.delete_weight("layers/dense_1", "1")
    editor.add_weights("layers/dense_1", {"1": module_np.full((1,), 7.0, "float32")})
    editor.add_object("layers/extra", {"0": module_np.zeros((2, 2), "float32")})


def test_file_editor_edits_and_saves_weights_as_keras(keras, tmp_path):
    import h5py

    _, path = _saved_by_keras(keras, tmp_path)
    theirs, ours = keras.saving.KerasFileEditor(path), keramic.saving.KerasFileEditor(path)
    _edit(theirs, np)
    _edit(ours, np)
    assert _nested_shapes(ours.weights_dict) == _nested_shapes(theirs.weights_dict)
    theirs.save(str(tmp_path / "theirs.weights.h5"))
    ours.save(str(tmp_path / "ours.weights.h5"))

    def datasets(filename):
        found = {}
        with h5py.File(filename, "r") as handle:
            handle.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
        return found

    expected, written = datasets(tmp_path / "theirs.weights.h5"), datasets(tmp_path / "ours.weights.h5")
    assert sorted(written) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)
    # Keras loads the edited weights into a model of the matching structure.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    del ours.weights_dict["layers"]["extra"]
    ours.rename_object("layers/renamed", "dense")
    ours.save(str(tmp_path / "ours.weights.h5"))
    model.load_weights(str(tmp_path / "ours.weights.h5"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[1].bias), [7.0])
    mine = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(2), keramic.layers.Dense(1)])
    mine.load_weights(str(tmp_path / "ours.weights.h5"))
    np.testing.assert_array_equal(mine.layers[1].get_weights()[1], [7.0])


def test_file_editor_errors_name_the_path(keras, tmp_path):
    _, path = _saved_by_keras(keras, tmp_path)
    editor = keramic.saving.KerasFileEditor(path)
    with pytest.raises(ValueError, match="'layers/nope' not found"):
        editor.delete_weight("layers/nope", "0")
    with pytest.raises(ValueError, match="leaf name"):
        editor.rename_object("layers/dense", "layers/other")
    with pytest.raises(ValueError, match=".weights.h5"):
        editor.save(str(tmp_path / "out.keras"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(keramic.errors.KeramicError, match="notes.txt"):
        keramic.saving.KerasFileEditor(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(keramic.errors.KeramicError, match="broken.keras"):
        keramic.saving.KerasFileEditor(str(tmp_path / "broken.keras"))


def test_feature_space_int_outputs_and_one_row_dicts_as_keras(keras):
    tf = pytest.importorskip("tensorflow", reason="Keras's FeatureSpace.adapt needs a tf.data.Dataset")
    columns = {"b": _columns()["b"], "c": _columns()["c"], "d": _columns()["d"]}
    outputs = []
    for module in (keras, keramic):
        fs = module.utils.FeatureSpace
        space = fs(
            {"b": fs.float_discretized(num_bins=3, output_mode="int"),
             "c": fs.integer_categorical(max_tokens=3, output_mode="int"),
             "d": fs.string_categorical(num_oov_indices=2)},
            crosses=[fs.cross(("c", "d"), crossing_dim=5, output_mode="int")],
            output_mode="dict",
        )
        space.adapt(tf.data.Dataset.from_tensor_slices(columns).batch(4) if module is keras else columns)
        outputs.append((space(columns), space({name: values[2] for name, values in columns.items()})))
    (theirs, theirs_row), (ours, ours_row) = outputs
    for name in theirs:
        np.testing.assert_array_equal(_as_numpy(ours[name]), _as_numpy(theirs[name]), err_msg=name)
        np.testing.assert_array_equal(_as_numpy(ours_row[name]), _as_numpy(theirs_row[name]), err_msg=name)


def test_feature_space_fixed_bin_boundaries_skip_adapt():
    # Keras 3.15 cannot adapt a FeatureSpace holding fixed `bin_boundaries` (its Discretization
    # refuses adapt); keramic leaves such a feature as it is. Expected: numpy's digitize, one-hot.
    fs = FeatureSpace
    space = fs({"b": fs.float_discretized(num_bins=None, bin_boundaries=[1.0, 4.0]), "a": "float_normalized"}, output_mode="dict")
    columns = {"b": _columns()["b"], "a": _columns()["a"]}
    space.adapt(columns)
    expected = np.eye(3, dtype="float32")[np.digitize(columns["b"], [1.0, 4.0])]
    np.testing.assert_array_equal(_as_numpy(space(columns)["b"]), expected)


@pytest.mark.parametrize("output_mode", ["concat", "dict"])
def test_feature_space_orders_features_then_crosses_by_name_as_keras(keras, output_mode):
    tf = pytest.importorskip("tensorflow", reason="Keras's FeatureSpace.adapt needs a tf.data.Dataset")
    columns = {"z": np.array([1.0, 5.0]), "a": np.array(["x", "y"]), "c": np.array(["u", "v"])}
    results = []
    for module in (keras, keramic):
        fs = module.utils.FeatureSpace
        space = fs({"z": "float", "a": "string_categorical", "c": "string_categorical"},
                   crosses=[fs.cross(("c", "a"), 3), fs.cross(("a", "c"), 2)], output_mode=output_mode)
        space.adapt(tf.data.Dataset.from_tensor_slices(columns).batch(2) if module is keras else columns)
        results.append(space(columns))
    theirs, ours = results
    if output_mode == "dict":
        assert list(ours) == list(theirs)
        theirs, ours = np.concatenate([_as_numpy(v) for v in theirs.values()], -1), np.concatenate([_as_numpy(v) for v in ours.values()], -1)
    np.testing.assert_array_equal(_as_numpy(ours), _as_numpy(theirs))


def test_file_editor_never_reads_outside_the_file(tmp_path):
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype="float32").tobytes())
    path = tmp_path / "evil.weights.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", shape=(4,), dtype="float32", external=[(str(secret), 0, 16)])
    with pytest.raises(keramic.errors.FileFormatError, match="external"):
        keramic.saving.KerasFileEditor(str(path))
