"""Config input from files: a model loader returns a model or raises a keramic error naming the
source (file or JSON string), the layer and the argument; deep nesting is refused up front."""

import json
import math
import zipfile

import h5py
import pytest

import keramic
from keramic.errors import ConfigArgumentError, ConfigError, KeramicError, NotAModelError


def _sequential():
    return keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(4, name="hidden"), keramic.layers.Dense(2, name="head")])


def _rewrite_member(path, name, data):
    """Rewrite one member of a zip archive (the others copied as they are)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, content in members:
            archive.writestr(info, data if info.filename == name else content)


def _keras_file_with_config(tmp_path, config):
    path = tmp_path / "model.keras"
    _sequential().save(path)
    _rewrite_member(path, "config.json", json.dumps(config).encode())
    return path


def _h5_file_with_config(tmp_path, config):
    path = tmp_path / "model.h5"
    _sequential().save(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = json.dumps(config)
    return path


# ------------------------------------------------------------------ not a model
def _non_model_configs(keras):
    """Top-level configs of other kinds, each written by real Keras."""
    return {
        "Dense": keras.saving.serialize_keras_object(keras.layers.Dense(3)),
        "EarlyStopping": {"module": "keras.callbacks", "class_name": "EarlyStopping", "config": {}, "registered_name": None},
        "Adam": keras.saving.serialize_keras_object(keras.optimizers.Adam()),
        "MeanSquaredError": keras.saving.serialize_keras_object(keras.losses.MeanSquaredError()),
        "function": keras.saving.serialize_keras_object(keras.activations.relu),
    }


@pytest.mark.interop
def test_model_from_json_refuses_what_is_not_a_model(keras):
    """Real Keras 3.15's `model_from_json` returns a Dense layer, an optimizer, a loss or a function
    for such JSON (only the callback fails, with a TypeError). keramic refuses all of them: a caller
    of `model_from_json` goes on to `predict`, `fit` or `save`, and a layer or a loss would fail there,
    far from the cause; a demanding user wants the JSON named as not a model, at once."""
    for class_name, config in _non_model_configs(keras).items():
        with pytest.raises(NotAModelError, match=f"JSON string.*{class_name}"):
            keramic.models.model_from_json(json.dumps(config))


@pytest.mark.interop
def test_load_model_refuses_files_whose_top_level_is_not_a_model(keras, tmp_path):
    for class_name, config in _non_model_configs(keras).items():
        keras_file = _keras_file_with_config(tmp_path, config)
        with pytest.raises(NotAModelError, match=class_name) as caught:
            keramic.models.load_model(keras_file)
        assert str(keras_file) in str(caught.value)
        h5_file = _h5_file_with_config(tmp_path, config)
        with pytest.raises(ConfigError) as caught:
            keramic.models.load_model(h5_file)
        assert str(h5_file) in str(caught.value) and ("not a model" in str(caught.value) or class_name in str(caught.value))


def test_from_config_refuses_the_config_of_another_class():
    dense = keramic.saving.serialize_keras_object(keramic.layers.Dense(3))
    with pytest.raises(NotAModelError, match="Sequential.*Dense"):
        keramic.Sequential.from_config(dense)
    with pytest.raises(NotAModelError, match="'layers' list"):
        keramic.Sequential.from_config(dense["config"])
    with pytest.raises(NotAModelError, match="Functional model config"):
        keramic.models.Functional.from_config({"layers": [], "input_layers": []})  # no output_layers


def test_model_from_json_still_builds_models():
    model = _sequential()
    rebuilt = keramic.models.model_from_json(model.to_json())
    assert isinstance(rebuilt, keramic.Sequential) and [layer.name for layer in rebuilt.layers] == ["hidden", "head"]


# ------------------------------------------------------------------ invalid layer arguments
BAD_ARGUMENTS = [
    ("units", math.nan),
    ("units", "4"),
    ("units", -2),
    ("units", 0),
    ("units", True),
    ("units", {"class_name": "Dense", "config": {"units": 2}}),
    ("bogus_keyword", 3),
    ("activation", 7),
    ("kernel_initializer", {"class_name": "Dense", "config": {"units": 2}}),
]


def _damaged_config(argument, value):
    config = json.loads(_sequential().to_json(), parse_constant=float)
    config["config"]["layers"][1]["config"][argument] = value
    return config


def _assert_names_layer_and_argument(error, argument, source):
    message = str(error.value)
    assert source in message and "'hidden'" in message and argument in message, message


@pytest.mark.parametrize(("argument", "value"), BAD_ARGUMENTS)
def test_bad_arguments_from_every_entry_point(tmp_path, argument, value):
    config = _damaged_config(argument, value)
    with pytest.raises(ConfigArgumentError) as caught:
        keramic.models.model_from_json(json.dumps(config))
    _assert_names_layer_and_argument(caught, argument, "JSON string")
    with pytest.raises(ConfigArgumentError) as caught:
        keramic.Sequential.from_config(config["config"])
    _assert_names_layer_and_argument(caught, argument, "")
    path = _keras_file_with_config(tmp_path, config)
    with pytest.raises(ConfigArgumentError) as caught:
        keramic.models.load_model(path)
    _assert_names_layer_and_argument(caught, argument, str(path))


@pytest.mark.parametrize(("argument", "value"), [("units", math.nan), ("units", "4"), ("bogus_keyword", 3)])
def test_bad_arguments_in_legacy_h5(tmp_path, argument, value):
    path = _h5_file_with_config(tmp_path, _damaged_config(argument, value))
    with pytest.raises(ConfigError) as caught:
        keramic.models.load_model(path)
    assert str(path) in str(caught.value) and argument in str(caught.value) and "hidden" in str(caught.value)


def test_bad_argument_in_a_functional_layer_call_names_the_layer():
    inputs = keramic.Input((3,))
    outputs = keramic.layers.Dense(2, name="head")(keramic.layers.Dense(4, name="hidden")(inputs))
    config = json.loads(keramic.Model(inputs, outputs).to_json())
    hidden = next(entry for entry in config["config"]["layers"] if entry["name"] == "hidden")
    hidden["config"]["kernel_initializer"] = {"class_name": "Dense", "config": {"units": 2}}
    with pytest.raises(ConfigArgumentError, match="JSON string.*'hidden'.*kernel_initializer"):
        keramic.models.model_from_json(json.dumps(config))


# ------------------------------------------------------------------ depth
def _deep(levels):
    return "[" * levels + "]" * levels


def test_a_config_nested_100000_levels_is_a_typed_error(tmp_path):
    text = '{"class_name": "Sequential", "config": {"name": "s", "layers": ' + _deep(10**5) + "}}"
    with pytest.raises(KeramicError, match="JSON string"):
        keramic.models.model_from_json(text)
    deep = {}
    for _ in range(10**5):
        deep = {"class_name": "Dense", "config": {"units": 2, "kernel_initializer": deep}}
    with pytest.raises(ConfigError, match="nests more than"):
        keramic.saving.deserialize_keras_object(deep)
    with pytest.raises(ConfigError, match="nests more than"):
        keramic.Sequential.from_config({"name": "s", "layers": [deep]})
    with pytest.raises(ConfigError, match="nests more than"):
        keramic.Model.from_config({"layers": [deep], "input_layers": [], "output_layers": []})
    path = tmp_path / "model.keras"
    _sequential().save(path)
    _rewrite_member(path, "config.json", text.encode())
    with pytest.raises(KeramicError) as caught:
        keramic.models.load_model(path)
    assert str(path) in str(caught.value)


def test_deserialization_depth_limit_is_its_own():
    """About 105 levels deep: within the JSON reader's cap (256), refused by deserialization (100)."""
    nested = 2
    for _ in range(50):
        nested = {"class_name": "Dense", "config": {"units": 2, "kernel_initializer": nested}}
    text = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [nested]}})
    with pytest.raises(ConfigError, match="JSON string.*nests more than 100 levels"):
        keramic.models.model_from_json(text)


# ------------------------------------------------------------------ raw exceptions stay inside
@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Sequential"},
        {"class_name": "Sequential", "config": {"layers": [{"class_name": 3}]}},
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": "units"}]}},
        {"class_name": "Functional", "config": {"layers": [{"class_name": "InputLayer"}], "input_layers": [], "output_layers": 7}},
        {"class_name": "Functional", "config": {"layers": "x", "input_layers": [], "output_layers": []}},
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {"units": 2}, "registered_name": ["x"]}]}},
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "__numpy__", "config": {"value": [1], "dtype": "nope"}}]}},
        {"class_name": "function", "config": {"a": 1}},
    ],
)
def test_malformed_configs_raise_keramic_errors(config):
    with pytest.raises(KeramicError):
        keramic.models.model_from_json(json.dumps(config))


def test_invalid_json_and_text_are_typed_errors():
    for text in ["{", '{"a": 1, "a": 2}', "\ud800", b"\xff\xfe{}"]:
        with pytest.raises(KeramicError, match="JSON string"):
            keramic.models.model_from_json(text)
