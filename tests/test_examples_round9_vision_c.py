"""Behaviours a ninth batch of keras-io vision examples leans on (ensemble_of_modified_unets' U-Nets
on application encoders built from an `input_tensor`; brain_tumor_segmentation's medicai models:
SwinUNETR's patch merging replacing its parent's norm, UNet keeping its whole encoder,
AttentionUNet passing its own options to `Model`, TransUNet's additive attention mask), each
reduced to a minimal case and checked against real Keras (torch backend) with the same weights."""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("include_top", [False, True])
@pytest.mark.parametrize(("size", "give_shape"), [((32, 32), False), ((96, 96), False), ((40, 48), False), ((32, 32), True)])
def test_mobilenet_v2_named_from_input_shape_not_input_tensor(keras, include_top, size, give_shape):
    """ensemble_of_modified_unets builds MobileNetV2 on an `input_tensor` alone: Keras sizes the
    name (and the ImageNet weights file) from `input_shape`, so a headless encoder is
    "mobilenetv2_0.35_None" and a 96-pixel tensor only picks the default size."""
    names = []
    for lib in (keras, keramic):
        kwargs = {"input_tensor": lib.layers.Input((*size, 3))}
        if give_shape:
            kwargs["input_shape"] = (*size, 3)
        model = lib.applications.MobileNetV2(include_top=include_top, weights=None, alpha=0.35, classes=3, **kwargs)
        names.append(model.name)
    assert names[1] == names[0]


def _reassigning_layer(lib):
    """A layer whose build calls its parent's (which marks it built) and then replaces a sublayer."""

    class Base(lib.layers.Layer):
        def build(self, input_shape):
            self.norm = lib.layers.Dense(3)
            self.norm.build(input_shape)
            self.built = True

        def call(self, x):
            return self.norm(x)

    class Post(Base):
        def build(self, input_shape):
            super().build(input_shape)
            self.norm = lib.layers.Dense(2)
            self.norm.build(input_shape)

    return Post()


def test_sublayer_replaced_in_a_subclass_build_stays_tracked(keras):
    """medicai's SwinPatchMergingV2 (brain_tumor_segmentation's SwinUNETR) replaces the norm its
    parent's build made and marked built: Keras keeps tracking the replaced layer until the build
    returns, so its weights still count (62,061,181 parameters) and `get_weights` lists them."""
    got = []
    for lib in (keras, keramic):
        layer = _reassigning_layer(lib)
        layer.build((None, 4))
        got.append(([tuple(w.shape) for w in layer.weights], layer.count_params()))
    assert got[1] == got[0]


def test_functional_model_ignores_options_no_layer_takes(keras):
    """medicai's AttentionUNet passes its `decoder_use_batchnorm` through UNet on to
    `keras.Model(inputs, outputs, **kwargs)`: Keras's functional models ignore options that no
    layer takes (a plain layer still refuses them)."""
    for lib in (keras, keramic):
        inputs = lib.Input((3,))
        model = lib.Model(inputs, lib.layers.Dense(2)(inputs), decoder_use_batchnorm=True, trainable=False)
        assert not model.trainable
        with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
            lib.layers.Dense(2, decoder_use_batchnorm=True)


def _model_keeping_its_backbone(lib):
    """A functional subclass that keeps its whole backbone as an attribute, one branch unused."""
    lib.utils.clear_session()  # automatic names (in the compared paths) count from zero in both

    class Segmenter(lib.Model):
        def __init__(self):
            inputs = lib.Input((3,))
            hidden = lib.layers.Dense(4, name="used")(inputs)
            backbone = lib.Model(inputs, [hidden, lib.layers.Dense(5, name="unused")(hidden)])
            super().__init__(inputs, lib.layers.Dense(2, name="head")(hidden))
            self.encoder = backbone

    return Segmenter()


def test_functional_subclass_counts_the_backbone_it_keeps(keras):
    """medicai's UNet on an Xception encoder keeps the encoder as `self.encoder`: Keras counts the
    graph's weights first, then the kept model's others (26,466,506 parameters, its optimizer
    tracks them all), while `layers` lists the graph's layers only."""
    got = []
    for lib in (keras, keramic):
        model = _model_keeping_its_backbone(lib)
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.zeros((2, 3)), np.zeros((2, 2)), verbose=0)
        got.append(
            (
                [w.path for w in model.weights],
                [layer.name for layer in model.layers[1:]],
                model.count_params(),
                [v.path for v in model.optimizer.variables],
            )
        )
    assert got[1] == got[0]


def test_multi_head_attention_casts_a_float_attention_mask_to_bool(keras):
    """medicai's TransUNet gives MultiHeadAttention an additive mask (0 where allowed, -1e9
    elsewhere): Keras casts `attention_mask` to bool, so every non-zero entry keeps its key (the
    Softmax layer alone reads a float mask as > 0.5; that is unchanged)."""
    rng = np.random.default_rng(3)
    query = rng.normal(size=(2, 3, 8)).astype("float32")
    value = rng.normal(size=(2, 5, 8)).astype("float32")
    additive = np.where(rng.random((2, 3, 5)) > 0.5, 0.0, -1e9).astype("float32")
    fractions = rng.random((2, 3, 5)).astype("float32")
    layers = []
    for lib in (keras, keramic):
        layer = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        layer.build(query.shape, value.shape, value.shape)
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    for mask in (additive, fractions):
        want, got = (np.asarray(layer(query, value, attention_mask=mask).detach()) for layer in layers)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
