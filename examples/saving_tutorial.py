"""The saving tutorial, end to end, on keramic.

Part 1 (this issue): build the tutorial's MLP with the Functional API, compile it with RMSprop and
sparse categorical cross-entropy, fit one epoch, predict. Later sections (whole-model saving,
architecture-only, weights-only, subclassed models, export) are added as they land.

The data is the UCI 8x8 handwritten digits shipped inside keramic (no network needed); pass
`--mnist` to download and use real MNIST (28x28) as the tutorial does.

Run: python examples/saving_tutorial.py [--mnist]
"""

import argparse

import numpy as np

import keramic as keras
from keramic import layers


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
    return model, history, predictions


if __name__ == "__main__":
    main()
