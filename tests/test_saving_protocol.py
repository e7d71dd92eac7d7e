"""The saving protocol: objects own their state. A layer overriding `save_own_variables` /
`load_own_variables`, and one with assets, round trip through `.keras` here and both ways with
real Keras 3 (the same classes written against each library's API)."""

import os
from pathlib import Path

import numpy as np
import pytest

import keramic
from keramic.saving import tree
from keramic.serialization import saveable

PACKAGE = "saving_protocol_test"
WORDS = ["alpha", "beta", "gamma"]


def define_classes(lib):
    """The same two custom layers, written against `lib` (keramic or real Keras)."""

    class Scaled(lib.layers.Layer):
        """A kernel (variable) and an offset (plain numpy array), stored under its own keys."""

        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", name="kernel")
            self.offset = np.zeros((self.units,), dtype="float32")

        def call(self, x):
            return lib.ops.matmul(x, self.kernel) + lib.ops.convert_to_tensor(self.offset)

        def save_own_variables(self, store):
            store["kernel"] = self.kernel
            store["offset"] = self.offset

        def load_own_variables(self, store):
            self.kernel.assign(store["kernel"])
            self.offset = np.array(store["offset"])

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    class Vocabulary(lib.layers.Layer):
        """State that lives only in an asset file: its config does not carry the words."""

        def __init__(self, words=None, **kwargs):
            super().__init__(**kwargs)
            self.words = list(words or [])

        def call(self, x):
            return x * float(len(self.words))

        def save_assets(self, dir_path):
            Path(dir_path, "vocab.txt").write_text("\n".join(self.words), encoding="utf-8")

        def load_assets(self, dir_path):
            self.words = Path(dir_path, "vocab.txt").read_text(encoding="utf-8").split("\n")

        def get_config(self):
            return super().get_config()

    register = lib.saving.register_keras_serializable(package=PACKAGE)
    return register(Scaled), register(Vocabulary)


def build_model(lib, classes, seed=0):
    scaled_cls, vocabulary_cls = classes
    lib.utils.set_random_seed(seed)
    inputs = lib.Input(shape=(4,))
    scaled = scaled_cls(3, name="scaled")
    hidden = vocabulary_cls(WORDS, name="vocabulary")(scaled(inputs))
    outputs = lib.layers.Dense(2, name="head")(hidden)
    model = lib.Model(inputs, outputs)
    scaled.offset = np.array([0.5, -1.0, 2.0], dtype="float32")
    return model


@pytest.fixture(scope="module")
def ours():
    return define_classes(keramic)


def sample():
    return np.random.default_rng(1).normal(size=(5, 4)).astype("float32")


def check_same_state(loaded, original, x):
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), np.asarray(original.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.get_layer("scaled").offset, original.get_layer("scaled").offset)
    assert loaded.get_layer("vocabulary").words == WORDS


def test_a_walk_calls_only_the_hooks_a_class_overrides(ours):
    model = build_model(keramic, ours)
    scaled, vocabulary, head = (model.get_layer(n) for n in ("scaled", "vocabulary", "head"))
    assert saveable.overrides(scaled, "save_own_variables") and saveable.overrides(vocabulary, "save_assets")
    assert not saveable.overrides(head, "save_own_variables") and not saveable.overrides(scaled, "save_assets")
    groups = {group.path: group.variables for group in tree.variable_groups(model)}
    assert list(groups["layers/scaled"]) == ["kernel", "offset"]  # the override chose the keys
    assert [tuple(v.shape) for v in groups["layers/dense"]] == [(3, 2), (2,)]  # the bulk path: variables as they are
    assert [path for path, _ in tree.asset_owners(model, "save_assets")] == ["layers/vocabulary"]


def test_custom_state_and_assets_round_trip_through_keras_file(ours, tmp_path):
    model = build_model(keramic, ours)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keramic.saving.load_model(path)
    check_same_state(loaded, model, sample())


def test_custom_state_and_assets_round_trip_through_the_directory_form(ours, tmp_path):
    model = build_model(keramic, ours)
    model.save(tmp_path / "model_dir", zipped=False)
    assert (tmp_path / "model_dir" / "assets" / "layers" / "vocabulary" / "vocab.txt").read_text() == "\n".join(WORDS)
    check_same_state(keramic.saving.load_model(tmp_path / "model_dir"), model, sample())


def test_custom_state_round_trips_through_weights_files(ours, tmp_path):
    model = build_model(keramic, ours)
    for name in ("model.weights.h5", "model.safetensors"):
        target = build_model(keramic, ours, seed=7)
        target.get_layer("vocabulary").words = WORDS
        model.save_weights(tmp_path / name)
        target.load_weights(tmp_path / name)
        check_same_state(target, model, sample())


def test_default_layers_keep_the_index_and_overrides_fall_back_to_hdf5(ours, tmp_path):
    import json
    import zipfile

    plain = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    custom = build_model(keramic, ours)
    custom.save(tmp_path / "custom.keras")
    for name, indexed in (("plain.keras", True), ("custom.keras", False)):
        with zipfile.ZipFile(tmp_path / name) as archive:
            metadata = json.loads(archive.read("metadata.json"))
        assert ("keramic_weights_index" in metadata) is indexed


def test_asset_entries_that_escape_their_directory_are_refused(ours, tmp_path):
    import zipfile

    model = build_model(keramic, ours)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("assets/../evil.txt", "x")
    with pytest.raises(keramic.errors.FileFormatError, match="evil.txt"):
        keramic.saving.load_model(path)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.interop
def test_keras_reads_our_file_and_we_read_keras_file(ours, keras, tmp_path):
    theirs = define_classes(keras)
    x = sample()

    ours_model = build_model(keramic, ours)
    ours_path = tmp_path / "ours.keras"
    ours_model.save(ours_path)
    in_keras = keras.saving.load_model(ours_path)
    check_same_state(in_keras, ours_model, x)

    keras_model = build_model(keras, theirs, seed=3)
    keras_path = tmp_path / "theirs.keras"
    keras_model.save(keras_path)
    in_ours = keramic.saving.load_model(keras_path)
    check_same_state(in_ours, keras_model, x)

    # Weights files too: Keras writes the override's keys, we read them, and back.
    keras_model.save_weights(tmp_path / "theirs.weights.h5")
    target = build_model(keramic, ours, seed=11)
    target.load_weights(tmp_path / "theirs.weights.h5")
    check_same_state(target, keras_model, x)
    ours_model.save_weights(tmp_path / "ours.weights.h5")
    keras_target = build_model(keras, theirs, seed=12)
    keras_target.load_weights(tmp_path / "ours.weights.h5")
    check_same_state(keras_target, ours_model, x)
    assert os.path.getsize(ours_path) > 0


def test_torch_view_of_sub_layers_does_not_change_keras_paths(ours):
    """Layers in a list get `_modules` keys from their names for torch; the walk keeps Keras's paths."""

    class Blocks(keramic.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [keramic.layers.Dense(2, name="aaa"), keramic.layers.Dense(2, name="abc")]

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = Blocks()
    model(np.zeros((1, 2), "float32"))
    before = [group.path for group in tree.variable_groups(model)]
    dict(model.named_modules())  # torch's view registers the list's layers under their names
    assert [group.path for group in tree.variable_groups(model)] == before
    assert before == ["", "blocks/dense", "blocks/dense_1"]  # as Keras names them


def test_custom_state_round_trips_through_checkpoints(ours, tmp_path):
    """Checkpoints store what `save_own_variables` stores (`<path>/<key>`) and hand it back through
    `load_own_variables`, into a built model at once."""
    from keramic.saving.formats.checkpoint import load_checkpoint, read_index, save_checkpoint

    model = build_model(keramic, ours)
    save_checkpoint(model, tmp_path / "ckpt")
    keys = set(read_index(str(tmp_path / "ckpt"))["tensors"])
    assert keys == {"layers/1/kernel", "layers/1/offset", "layers/3/kernel", "layers/3/bias"}  # the store's keys
    target = build_model(keramic, ours, seed=7)
    target.get_layer("vocabulary").words = WORDS
    load_checkpoint(target, tmp_path / "ckpt").assert_consumed()
    check_same_state(target, model, sample())


def test_custom_state_waits_in_a_checkpoint_until_its_layer_is_built(ours, tmp_path):
    """Deferred restoration: a subclassed model loaded before it is built; the layer saving its own
    state (whose `build` also runs a parent class's `build`) gets its whole store once, after build."""
    from keramic.saving.formats.checkpoint import load_checkpoint, save_checkpoint

    scaled_cls, _ = ours
    calls = []

    class Wider(scaled_cls):
        def build(self, input_shape):
            super().build(input_shape)
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

        def call(self, x):
            return super().call(x) + self.bias

        def save_own_variables(self, store):
            super().save_own_variables(store)
            store["bias"] = self.bias

        def load_own_variables(self, store):
            calls.append(sorted(store.keys()))
            super().load_own_variables(store)
            self.bias.assign(store["bias"])

    class Net(keramic.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.body = Wider(3)
            self.head = keramic.layers.Dense(2)

        def call(self, x):
            return self.head(self.body(x))

    x = sample()
    keramic.utils.set_random_seed(0)
    model = Net()
    model(x)
    model.body.offset = np.array([0.5, -1.0, 2.0], dtype="float32")
    model.body.bias.assign(np.array([1.0, 2.0, 3.0], dtype="float32"))
    save_checkpoint(model, tmp_path / "ckpt")
    keramic.utils.set_random_seed(5)
    fresh = Net()
    status = load_checkpoint(fresh, tmp_path / "ckpt")
    assert calls == []
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(fresh(x)), keramic.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)
    assert calls == [["bias", "kernel", "offset"]]
    np.testing.assert_array_equal(fresh.body.offset, model.body.offset)
    status.assert_consumed()
