"""The saving tutorial, end to end, on keramic.

It follows the Keras / R "Saving and serializing models" tutorial:

1. Build the tutorial's MLP with the Functional API, compile it with RMSprop and sparse
   categorical cross-entropy, fit, predict.
2. Whole-model saving: `model.save("...keras")`, `load_model`, identical predictions, and training
   that continues exactly where it stopped (the optimizer state is in the file).
3. Architecture only: `get_config` / `from_config`, `to_json` / `model_from_json`.
4. Weights only: `get_weights` / `set_weights`, moving weights to a fresh model,
   `save_weights("...weights.h5")` / `load_weights`, and the strict check on a wrong model.
5. Subclassed models: weights and optimizer state in a checkpoint, restored into a fresh instance
   that was never called (the values wait for their variables).
6. Export (the role of TensorFlow's SavedModel): a directory with an ONNX serving graph that runs
   without keramic, and that reloads as the full model.
7. The same steps with the R interface's verbs (`keramic.r_api`).

Every check is an assertion and prints what it checked. Files go to a temporary directory.
The data is the UCI 8x8 handwritten digits shipped inside keramic (no network needed); pass
`--mnist` to download and use real MNIST (28x28) as the tutorial does.

Run: python examples/saving_tutorial.py [--mnist]
"""

import argparse
import json
import os
import tempfile

import numpy as np

import keramic as keras
from keramic import layers, r_api
from keramic.errors import WeightsMismatchError


def load_data(use_mnist):
    """Flattened float32 images in [0, 1] and integer labels."""
    if use_mnist:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        scale = 255.0
    else:
        (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
        scale = 16.0
    flat = int(np.prod(x_train.shape[1:]))
    x_train = x_train.reshape(len(x_train), flat).astype("float32") / scale
    x_test = x_test.reshape(len(x_test), flat).astype("float32") / scale
    return (x_train, y_train), (x_test, y_test)


def get_model(input_dim):
    """The tutorial's 3-layer MLP, Functional API."""
    inputs = keras.Input(shape=(input_dim,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="3_layer_mlp")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", action="store_true", help="download and use real MNIST")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(1337)

    (x_train, y_train), (x_test, y_test) = load_data(args.mnist)
    model = get_model(x_train.shape[1])
    model.summary()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop())
    history = model.fit(x_train, y_train, batch_size=64, epochs=args.epochs)
    predictions = model.predict(x_test)
    accuracy = float(np.mean(predictions.argmax(axis=1) == y_test))
    print(f"loss after {args.epochs} epoch(s): {history.history['loss'][-1]:.4f}")
    print(f"test accuracy: {accuracy:.3f} on {len(x_test)} images")

    with tempfile.TemporaryDirectory(prefix="keramic-tutorial-") as workdir:
        whole_model_saving(model, x_train, y_train, x_test, predictions, workdir)
        architecture_only(model, x_test)
        weights_only(model, x_test, workdir)
        subclassed_models(x_train, y_train, x_test, workdir)
        export_section(model, x_train, y_train, x_test, workdir)
        r_verbs(model, x_test, workdir)
    return model, history, predictions


def checked(message):
    print(f"  checked: {message}")


def same_arrays(first, second):
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def train_on_identically(model, loaded, x_train, y_train, seed):
    """One more epoch of each model, with the same shuffling, ends in the same weights.

    Both first evaluate the same: as in Keras, a loaded model's first `evaluate` or `fit` builds its
    loss and metrics from one batch, which takes a draw from the random generator, so it is done
    before the seed is set."""
    assert np.allclose(loaded.evaluate(x_train, y_train, verbose=0), model.evaluate(x_train, y_train, verbose=0))
    for each in (model, loaded):
        keras.utils.set_random_seed(seed)
        each.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    return same_arrays(loaded.get_weights(), model.get_weights())


def whole_model_saving(model, x_train, y_train, x_test, predictions, workdir):
    """One `.keras` file holds the architecture, the weights, the compile config and the optimizer state."""
    print("\n== Whole-model saving ==")
    path = os.path.join(workdir, "path_to_my_model.keras")
    model.save(path)
    print(f"  saved {path} ({os.path.getsize(path):,} bytes)")

    # Recreate exactly the same model, without the code that built it.
    new_model = keras.models.load_model(path)
    assert np.array_equal(new_model.predict(x_test, verbose=0), predictions)
    checked("the loaded model's predictions are identical to the original's")

    old_state = [v.numpy() for v in model.optimizer.variables]
    assert same_arrays([v.numpy() for v in new_model.optimizer.variables], old_state)
    iterations = int(new_model.optimizer.iterations.numpy())
    checked(f"the optimizer state came back ({len(old_state)} variables, {iterations} steps taken)")

    # The state is kept, so training can resume where it left off.
    assert train_on_identically(model, new_model, x_train, y_train, seed=2024)
    checked("one more epoch of training gives identical weights in the original and the loaded model")

    # The legacy single-file HDF5 format (what tf.keras 2 wrote) holds the same, optimizer included.
    h5_path = os.path.join(workdir, "path_to_my_model.h5")
    model.save(h5_path)
    from_h5 = keras.models.load_model(h5_path)
    assert np.array_equal(from_h5.predict(x_test, verbose=0), model.predict(x_test, verbose=0))
    assert same_arrays([v.numpy() for v in from_h5.optimizer.variables], [v.numpy() for v in model.optimizer.variables])
    checked("the legacy .h5 file restores predictions and the optimizer state too")


def architecture_only(model, x_test):
    """The config describes the layers and their connections: a new model gets new weights."""
    print("\n== Architecture-only saving ==")
    config = model.get_config()
    reinitialized_model = keras.Model.from_config(config)
    assert reinitialized_model.get_config() == config
    assert not np.array_equal(reinitialized_model.predict(x_test, verbose=0), model.predict(x_test, verbose=0))
    checked("from_config(get_config()) rebuilds the same architecture, with freshly initialized weights")

    json_config = model.to_json()
    reinitialized_model = keras.models.model_from_json(json_config)
    assert json.loads(reinitialized_model.to_json()) == json.loads(json_config)
    checked(f"model_from_json(to_json()) gives back the same JSON ({len(json_config):,} characters, compile config included)")


def weights_only(model, x_test, workdir):
    """Weights as numpy arrays in memory, or as a `.weights.h5` file, for a model built in code."""
    print("\n== Weights-only saving ==")
    expected = model.predict(x_test, verbose=0)
    weights = model.get_weights()
    model.set_weights(weights)
    print(f"  get_weights(): {len(weights)} arrays, shapes {[w.shape for w in weights]}")

    # Transfer the weights to a fresh model with the same architecture.
    new_model = keras.Model.from_config(model.get_config())
    new_model.set_weights(weights)
    assert np.array_equal(new_model.predict(x_test, verbose=0), expected)
    checked("a fresh model given these weights with set_weights() predicts identically")

    # The same through files: architecture as JSON, weights (and optimizer state) as HDF5.
    path = os.path.join(workdir, "path_to_my_weights.weights.h5")
    model.save_weights(path)
    new_model = keras.models.model_from_json(model.to_json())
    new_model.load_weights(path)
    assert np.array_equal(new_model.predict(x_test, verbose=0), expected)
    assert same_arrays([v.numpy() for v in new_model.optimizer.variables], [v.numpy() for v in model.optimizer.variables])
    checked(f"to_json() + save_weights() -> model_from_json() + load_weights() restores predictions and optimizer state ({os.path.getsize(path):,} bytes)")

    # Loading is strict: weights for another architecture raise instead of half-loading.
    inputs = keras.Input(shape=(x_test.shape[1],), name="digits")
    outputs = layers.Dense(10, activation="softmax")(layers.Dense(32, activation="relu")(inputs))
    other = keras.Model(inputs, outputs)
    before = other.get_weights()
    try:
        other.load_weights(path)
    except WeightsMismatchError as error:
        assert same_arrays(other.get_weights(), before)
        checked(f"loading into a different architecture raises {type(error).__name__} and assigns nothing")
    else:
        raise AssertionError("weights of another architecture were loaded without an error")


class CustomModel(keras.Model):
    """The tutorial's subclassed MLP: layers made in __init__, the forward pass in call()."""

    def __init__(self, hidden_units, **kwargs):
        super().__init__(**kwargs)
        self.dense_layers = [layers.Dense(units, activation="relu") for units in hidden_units]
        self.classifier = layers.Dense(10, activation="softmax")

    def call(self, inputs):
        x = inputs
        for layer in self.dense_layers:
            x = layer(x)
        return self.classifier(x)


def subclassed_models(x_train, y_train, x_test, workdir):
    """Subclassed models: save the weights as a checkpoint, rebuild the model from code, restore."""
    print("\n== Saving subclassed models ==")
    keras.utils.set_random_seed(99)
    model = CustomModel((64, 64))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop())
    model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    predictions = model.predict(x_test, verbose=0)
    path = os.path.join(workdir, "path_to_my_weights")
    model.save_weights(path, format="checkpoint")

    # Recreate the model from code: it has never been called, so it has no variables yet.
    new_model = CustomModel((64, 64))
    new_model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop())
    status = new_model.load_weights(path)
    new_model.build((None, x_train.shape[1]))
    new_model.optimizer.build(new_model.trainable_variables)
    status.assert_consumed()
    assert np.array_equal(new_model.predict(x_test, verbose=0), predictions)
    checked("a never-called instance takes every value the moment its variables are created; predictions equal")

    # The optimizer state came back too, so training continues exactly as the original would.
    first_batch_loss = model.train_on_batch(x_train[:64], y_train[:64])
    new_first_batch_loss = new_model.train_on_batch(x_train[:64], y_train[:64])
    assert first_batch_loss == new_first_batch_loss and same_arrays(new_model.get_weights(), model.get_weights())
    checked("the next training step gives the same loss and weights in both models")


def export_section(model, x_train, y_train, x_test, workdir):
    """An exported directory serves predictions with onnxruntime alone and reloads as a model."""
    print("\n== Export (SavedModel's role: an ONNX serving artifact) ==")
    from keramic import export

    expected = model.predict(x_test, verbose=0)
    path = os.path.join(workdir, "exported_model")
    model.export(path)
    print(f"  exported {path}: {sorted(os.listdir(path))}")
    served = export.predict_artifact(x_test, path)
    served = served if isinstance(served, np.ndarray) else next(iter(served.values()))
    assert np.allclose(served, expected, atol=1e-5)
    checked("serving.onnx run by onnxruntime gives model.predict's outputs (within 1e-5)")

    restored = keras.models.load_model(path)
    assert np.array_equal(restored.predict(x_test, verbose=0), expected)
    assert train_on_identically(model, restored, x_train, y_train, seed=7)
    checked("load_model(directory) returns the compiled model, and training continues identically")


def r_verbs(model, x_test, workdir):
    """The R interface's function names: each is a thin call into the Python API used above."""
    print("\n== The same with the R interface's verbs (keramic.r_api) ==")
    expected = model.predict(x_test, verbose=0)
    path = os.path.join(workdir, "r_model.keras")
    r_api.save_model_tf(model, path)
    assert np.array_equal(r_api.load_model_tf(path).predict(x_test, verbose=0), expected)
    checked("save_model_tf() / load_model_tf() (a .keras archive in keramic)")

    path = os.path.join(workdir, "r_model.h5")
    r_api.save_model_hdf5(model, path)
    assert np.array_equal(r_api.load_model_hdf5(path).predict(x_test, verbose=0), expected)
    checked("save_model_hdf5() / load_model_hdf5() (the legacy single-file HDF5 format)")

    fresh = r_api.from_config(r_api.get_config(model))
    r_api.set_weights(fresh, r_api.get_weights(model))
    assert np.array_equal(fresh.predict(x_test, verbose=0), expected)
    checked("get_config() / from_config() + get_weights() / set_weights()")

    path = os.path.join(workdir, "r_weights.weights.h5")
    r_api.save_model_weights_hdf5(model, path)
    restored = r_api.load_model_weights_hdf5(r_api.model_from_json(r_api.model_to_json(model)), path)
    assert np.array_equal(restored.predict(x_test, verbose=0), expected)
    checked("model_to_json() / model_from_json() + save_model_weights_hdf5() / load_model_weights_hdf5()")


if __name__ == "__main__":
    main()
