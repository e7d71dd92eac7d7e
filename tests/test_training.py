"""compile / fit / evaluate / predict / *_on_batch, determinism, and step parity with real Keras."""

import numpy as np
import pytest

import keramic
from keramic import layers


def small_data(n=64, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


def small_model(features=4, classes=3):
    inputs = keramic.Input((features,))
    h = layers.Dense(8, activation="relu")(inputs)
    return keramic.Model(inputs, layers.Dense(classes, activation="softmax")(h))


def test_fit_returns_history_and_reduces_loss():
    keramic.utils.set_random_seed(1)
    x, y = small_data()
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0, validation_split=0.25)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 5
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0
    assert model.predict(x, batch_size=7, verbose=0).shape == (64, 3)


def test_two_seeded_runs_are_bit_identical():
    def run():
        keramic.utils.set_random_seed(42)
        x, y = small_data()
        inputs = keramic.Input((4,))
        h = layers.Dropout(0.5)(layers.Dense(8, activation="relu")(inputs))
        model = keramic.Model(inputs, layers.Dense(3, activation="softmax")(h))
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=True)
        return model.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_train_on_batch_matches_manual_sgd_step():
    x, y = small_data(n=8)
    model = small_model()
    model.compile(optimizer=keramic.optimizers.SGD(0.1), loss="mse")
    target = np.eye(3, dtype="float32")[y]
    before = model.get_weights()
    loss = model.train_on_batch(x, target)
    import torch

    params = [torch.tensor(w, requires_grad=True) for w in before]
    h = torch.relu(torch.from_numpy(x) @ params[0] + params[1])
    out = torch.softmax(h @ params[2] + params[3], dim=-1)
    expected_loss = ((out - torch.from_numpy(target)) ** 2).mean()
    expected_loss.backward()
    assert loss == pytest.approx(float(expected_loss.detach()), rel=1e-6)
    for weight, param in zip(model.get_weights(), params):
        np.testing.assert_allclose(weight, (param - 0.1 * param.grad).detach().numpy(), atol=1e-6)


def test_multi_output_losses_weights_and_metrics_by_name():
    a = keramic.Input((4,), name="a")
    h = layers.Dense(6, activation="relu")(a)
    score = layers.Dense(1, name="score")(h)
    label = layers.Dense(3, activation="softmax", name="label")(h)
    model = keramic.Model(a, [score, label])
    model.compile(
        optimizer="adam",
        loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
        loss_weights={"score": 0.5, "label": 1.0},
        metrics={"label": ["accuracy"]},
    )
    x, y = small_data(n=16)
    logs = model.train_on_batch(x, {"score": x[:, :1], "label": y}, return_dict=True)
    assert set(logs) == {"loss", "score_loss", "label_loss", "label_accuracy"}
    assert logs["loss"] == pytest.approx(0.5 * logs["score_loss"] + logs["label_loss"], rel=1e-5)


def test_sample_and_class_weights_change_the_loss():
    x, y = small_data(n=16)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    plain = model.test_on_batch(x, y)
    zero_weights = np.zeros(16, dtype="float32")
    assert model.test_on_batch(x, y, sample_weight=zero_weights) == pytest.approx(0.0)
    weights = np.where(y == 0, 2.0, 1.0).astype("float32")
    assert model.test_on_batch(x, y, sample_weight=weights) != pytest.approx(plain)
    model.fit(x, y, class_weight={0: 2.0, 1: 1.0, 2: 1.0}, epochs=1, verbose=0)


def test_regularization_losses_enter_the_training_loss():
    x, y = small_data(n=8)
    inputs = keramic.Input((4,))
    outputs = layers.Dense(3, kernel_regularizer=keramic.regularizers.L2(10.0))(inputs)
    model = keramic.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    target = np.zeros((8, 3), dtype="float32")
    loss = model.test_on_batch(x, target)
    kernel = model.layers[1].kernel.numpy()
    prediction = model.predict(x, verbose=0)
    assert loss == pytest.approx(float(np.mean(prediction**2) + 10.0 * np.sum(kernel**2)), rel=1e-5)


def test_fit_accepts_a_generator_with_steps_per_epoch():
    x, y = small_data()

    def batches():
        while True:
            for start in range(0, 64, 16):
                yield x[start : start + 16], y[start : start + 16]

    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(batches(), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert int(model.optimizer.iterations.numpy()) == 8


def test_uncompiled_model_refuses_fit_with_clear_error():
    with pytest.raises(RuntimeError, match="compile"):
        small_model().fit(*small_data(), verbose=0)


# ---------------------------------------------------------------- parity with real Keras
OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "clipnorm": 0.1}),
    ("Adam", {"learning_rate": 0.01}),
    ("Adam", {"amsgrad": True, "clipvalue": 0.01}),
    ("AdamW", {"learning_rate": 0.01, "global_clipnorm": 0.5}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {"learning_rate": 0.01}),
    ("Nadam", {"learning_rate": 0.01}),
    ("SGD", {"learning_rate": "schedule", "momentum": 0.9}),
]


@pytest.mark.interop
@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_train_on_batch_matches_keras_for_one_and_three_steps(keras, name, kwargs):
    x, y = small_data(n=10, seed=3)

    def optimizer(module):
        args = dict(kwargs)
        if args.get("learning_rate") == "schedule":
            args["learning_rate"] = module.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
        return getattr(module.optimizers, name)(**args)

    k_in = keras.Input((4,))
    k_model = keras.Model(k_in, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(5, activation="tanh")(k_in)))
    ours = keramic.Model(*_tanh_model())
    ours.set_weights(k_model.get_weights())
    k_model.compile(optimizer=optimizer(keras), loss="sparse_categorical_crossentropy")
    ours.compile(optimizer=optimizer(keramic), loss="sparse_categorical_crossentropy")
    for steps in (1, 2):
        for _ in range(steps):
            k_loss = k_model.train_on_batch(x, y)
            our_loss = ours.train_on_batch(x, y)
        assert our_loss == pytest.approx(float(k_loss), abs=1e-6)
        for mine, theirs in zip(ours.get_weights(), k_model.get_weights()):
            np.testing.assert_allclose(mine, theirs, atol=1e-6)
        k_vars = [np.asarray(v.numpy()) for v in k_model.optimizer.variables]
        our_vars = [v.numpy() for v in ours.optimizer.variables]
        assert len(our_vars) == len(k_vars)
        for mine, theirs in zip(our_vars, k_vars):
            np.testing.assert_allclose(mine, theirs, atol=1e-6)


def _tanh_model():
    inputs = keramic.Input((4,))
    h = layers.Dense(5, activation="tanh")(inputs)
    return inputs, layers.Dense(3, activation="softmax")(h)
