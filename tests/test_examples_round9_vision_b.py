"""Behaviours a ninth batch of keras-io vision examples (nl_image_search's CLIP-style dual encoder:
a text encoder that indexes the one-entry dict a wrapped backbone returns, and a model that picks
its torch `train_step` in `__init__`) leans on, each reduced to a minimal case and checked against
real Keras (torch backend) with the same weights and seeds."""

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(9)


def _encoder_over_a_dict_backbone(lib):
    """nl_image_search: `bert(inputs)["pooled_output"]` inside a second Functional model, where the
    backbone returns a dict with a single entry."""
    tokens = lib.Input((3,), name="token_ids")
    backbone = lib.Model({"token_ids": tokens}, {"pooled_output": lib.layers.Dense(2, name="pool")(tokens)}, name="bert")
    inputs = backbone.input
    outputs = lib.layers.Dense(1, name="project")(backbone(inputs)["pooled_output"])
    return lib.Model(inputs, outputs, name="text_encoder")


def test_a_layer_reads_the_lone_entry_of_a_dict_returned_by_a_nested_model(keras):
    """The nested model's one output arrives as `{"pooled_output": t}`; the next layer must get `t`
    (keramic handed it the dict, and the projection failed on it)."""
    theirs = _encoder_over_a_dict_backbone(keras)
    ours = _encoder_over_a_dict_backbone(keramic)
    ours.set_weights(theirs.get_weights())
    batch = {"token_ids": RNG.normal(size=(4, 3)).astype("float32")}
    expected = theirs.predict(batch, verbose=0)
    np.testing.assert_allclose(ours.predict(batch, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(ours(batch)), expected, rtol=1e-6)


def _step_chosen_in_init(lib):
    """nl_image_search's DualEncoder: `self.train_step = self.train_step_torch` in `__init__`, a
    `compute_loss` with its own signature, and a loss tracker as the only metric."""

    class Chooser(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(1, kernel_initializer="ones")
            self.tracker = lib.metrics.Mean(name="loss")
            self.train_step = self.train_step_torch

        @property
        def metrics(self):
            return [self.tracker]

        def call(self, x):
            return self.dense(x)

        def compute_loss(self, predictions, targets):
            return lib.ops.mean(lib.ops.square(predictions - targets))

        def train_step_torch(self, data):
            x, y = data[0], data[1]
            self.zero_grad()
            loss = self.compute_loss(self(x), y) * 0.5
            loss.backward()
            weights = self.trainable_weights
            with torch.no_grad():
                self.optimizer.apply([v.value.grad for v in weights], weights)
            self.tracker.update_state(loss)
            return {"loss": self.tracker.result(), "tag": 7.0}

    return Chooser()


def test_fit_runs_a_train_step_the_model_assigns_to_itself(keras):
    """Keras's fit calls `self.train_step`, so an instance attribute set in `__init__` is the step
    that runs (keramic looked only at the class, and ran its own step with the odd `compute_loss`)."""
    x = np.arange(12, dtype="float32").reshape(6, 2) / 10
    y = np.ones((6, 1), "float32")
    results = []
    for lib in (keras, keramic):
        model = _step_chosen_in_init(lib)
        model.compile(optimizer=lib.optimizers.SGD(0.1))
        history = model.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False).history
        results.append((history, lib.ops.convert_to_numpy(model.dense.kernel)))
    (theirs, their_kernel), (ours, our_kernel) = results
    assert sorted(ours) == sorted(theirs) == ["loss", "tag"]
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-6)
    assert ours["tag"] == theirs["tag"]
    np.testing.assert_allclose(our_kernel, their_kernel, rtol=1e-6)
