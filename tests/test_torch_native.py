"""Every keramic model is a complete torch.nn.Module (issue #10): parameters, state_dict, devices,
dtypes, plain torch.optim loops, DDP, torch.compile and `compile(jit_compile=True)`."""

import functools
import os

import numpy as np
import pytest
import torch

import keramic
from keramic import layers

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI is CPU-only)")


class Encoder(keramic.Model):
    """A subclassed model holding a layer by attribute and two in a list."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(6, activation="relu", name="enc_dense")
        self.blocks = [layers.Dense(5, name="block_a"), layers.BatchNormalization(name="block_norm")]

    def call(self, inputs, training=False):
        x = self.dense(inputs)
        for block in self.blocks:
            x = block(x, training=training) if isinstance(block, layers.BatchNormalization) else block(x)
        return x


class Wrapper(keramic.Model):
    """A subclassed model nesting another model (the `encoder.dense.bias` case)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = Encoder(name="encoder")
        self.head = layers.Dense(3, name="head")

    def call(self, inputs, training=False):
        return self.head(self.encoder(inputs, training=training))


def functional():
    inputs = keramic.Input((4,), name="x")
    h = layers.Dense(6, activation="relu", name="dense_1")(inputs)
    h = layers.BatchNormalization(name="norm")(h)
    return keramic.Model(inputs, layers.Dense(3, name="dense_2")(h), name="functional_model")


def sequential():
    return keramic.Sequential([keramic.Input((4,)), layers.Dense(6, activation="tanh", name="dense_1"), layers.Dense(3, name="dense_2")])


def nested():
    """A Functional model calling a Sequential one."""
    inner = keramic.Sequential([keramic.Input((4,)), layers.Dense(6, name="inner_dense")], name="inner")
    inputs = keramic.Input((4,))
    outputs = layers.Add(name="add")([layers.Dense(3, name="shared")(inner(inputs)), layers.Dense(3, name="side")(inputs)])
    return keramic.Model(inputs, outputs)


def subclassed():
    model = Wrapper(name="wrapper")
    model(np.zeros((2, 4), "float32"))
    return model


def single_layer():
    layer = layers.Dense(3, name="alone")
    layer.build((None, 4))
    return layer


KINDS = {"functional": functional, "sequential": sequential, "nested": nested, "subclassed": subclassed, "layer": single_layer}
EXPECTED_NAMES = {
    "functional": ["dense_1.kernel", "dense_1.bias", "norm.gamma", "norm.beta", "norm.moving_mean", "norm.moving_variance", "dense_2.kernel", "dense_2.bias"],
    "sequential": ["dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"],
    "subclassed": [
        "encoder.dense.kernel",
        "encoder.dense.bias",
        "encoder.block_a.kernel",
        "encoder.block_a.bias",
        "encoder.block_norm.gamma",
        "encoder.block_norm.beta",
        "encoder.block_norm.moving_mean",
        "encoder.block_norm.moving_variance",
        "head.kernel",
        "head.bias",
    ],
    "layer": ["kernel", "bias"],
}
X = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
Y = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")


def _run(model, x):
    """Inference output as numpy for models and single layers alike."""
    with torch.no_grad():
        return keramic.backend.convert_to_numpy(model(x, training=False) if isinstance(model, keramic.Model) else model(x))


@pytest.mark.parametrize("kind", KINDS)
def test_each_variable_once_with_readable_names(kind):
    model = KINDS[kind]()
    weights = model.weights
    parameters = list(model.parameters())
    state = model.state_dict()
    assert len(parameters) == len(weights) == len(state) == len(dict(model.named_parameters()))
    assert {id(p) for p in parameters} == {id(w) for w in weights}
    assert len({p.data_ptr() for p in state.values()}) == len(state)
    assert all(not key.startswith("_") and "._" not in key for key in state)
    if kind in EXPECTED_NAMES:
        assert list(state) == EXPECTED_NAMES[kind]
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == parameter.trainable, name
    assert list(model.buffers()) == []
    # Keras paths (what files store) are untouched by the torch-side names.
    assert all("." not in w.path for w in weights)


def test_nested_names_follow_layer_names():
    keys = list(nested().state_dict())
    assert keys == ["inner.inner_dense.kernel", "inner.inner_dense.bias", "shared.kernel", "shared.bias", "side.kernel", "side.bias"]


def test_non_trainable_layers_do_not_require_grad():
    model = functional()
    model.get_layer("dense_1").trainable = False
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    assert grads["dense_1.kernel"] is False and grads["dense_2.kernel"] is True
    assert grads["norm.moving_mean"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_round_trip(kind):
    source, target = KINDS[kind](), KINDS[kind]()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.randn_like(parameter))
    assert not np.allclose(_run(source, X), _run(target, X))
    result = target.load_state_dict(source.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    np.testing.assert_array_equal(_run(source, X), _run(target, X))
    partial = dict(source.state_dict())
    first = next(iter(partial))
    del partial[first]
    with pytest.raises(RuntimeError, match="Missing key"):
        target.load_state_dict(partial, strict=True)
    assert target.load_state_dict(partial, strict=False).missing_keys == [first]


@pytest.mark.parametrize("kind", ["functional", "sequential", "nested"])
def test_names_stable_across_keras_save_and_load(kind, tmp_path):
    model = KINDS[kind]()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keramic.saving.load_model(path)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_to_float64_casts_every_variable_and_predicts_float64(kind):
    model = KINDS[kind]()
    expected = _run(model, X)
    ids = [id(w) for w in model.weights]
    assert model.to(torch.float64) is model
    assert [id(w) for w in model.weights] == ids  # the same variables, cast in place
    assert all(w.dtype == torch.float64 for w in model.weights if w.is_floating_point())
    output = model.predict(X, verbose=0) if isinstance(model, keramic.Model) else _run(model, X)
    assert output.dtype == np.float64
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    model.float()
    assert _run(model, X).dtype == np.float32


def test_half_and_slots_follow_the_variables():
    model = sequential()
    model.double()
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y.astype("float64"), epochs=1, batch_size=4, verbose=0)
    slots = [v for v in model.optimizer.variables if v.ndim > 0]
    assert slots and all(v.dtype == torch.float64 for v in slots)
    model.half()
    assert {w.dtype for w in model.weights} == {torch.float16}
    assert model.layers[0].compute_dtype == "float16"


@pytest.mark.parametrize("kind", KINDS)
def test_plain_torch_optim_loop_lowers_the_loss(kind):
    keramic.utils.set_random_seed(0)
    model = KINDS[kind]()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    losses = []
    model.train()
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_module_methods():
    model = subclassed()
    assert model.eval() is model and not model.training
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    names = [name for name, _ in model.named_modules()]
    assert names[:3] == ["", "encoder", "encoder.dense"] and "encoder.block_a" in names and "head" in names
    assert [name for name, _ in model.named_children()] == ["encoder", "head"]
    model(torch.from_numpy(X)).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_(True)
    visited = []
    model.apply(lambda module: visited.append(module.name))
    assert visited[-1] == "wrapper" and "block_norm" in visited


def test_forward_is_call():
    model = functional()
    np.testing.assert_array_equal(model.forward(torch.from_numpy(X)).detach().numpy(), _run(model, X))


DDP_STEP = """
import os, sys
import numpy as np
import torch
import torch.distributed as dist
import keramic
from keramic import layers

inputs = keramic.Input((4,), name="x")
h = layers.BatchNormalization(name="norm")(layers.Dense(6, activation="relu", name="dense_1")(inputs))
model = keramic.Model(inputs, layers.Dense(3, name="dense_2")(h))
x, y = np.random.default_rng(0).normal(size=(2, 8, 4)).astype("float32")[0], np.zeros((8, 3), "float32")
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
ddp = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
before = [p.detach().clone() for p in model.parameters()]
torch.nn.functional.mse_loss(ddp(torch.from_numpy(x)), torch.from_numpy(y)).backward()
optimizer.step()
changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
print("changed", sum(changed), "of", len(model.trainable_weights), flush=True)
os._exit(0)  # gloo's threads can block interpreter teardown; the result is printed
"""


def test_ddp_single_process_gloo_trains_a_step(tmp_path):
    """In a process of its own: a gloo process group's teardown in a pytest worker once hung
    (~ProcessGroupGloo joining its threads while the test returned), which stalls the whole suite."""
    import subprocess
    import sys

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", DDP_STEP, str(tmp_path / "rendezvous")], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "changed 6 of 6" in result.stdout, result.stdout  # every trainable weight (2 Dense, BN's gamma and beta)


@pytest.fixture
def cheap_compile(monkeypatch):
    """torch.compile with the `eager` backend: dynamo traces and guards as usual, without the
    minute-long C++ compile of inductor on a CPU runner."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("kind", KINDS)
def test_torch_compile_of_every_model_kind(kind, cheap_compile):
    model = KINDS[kind]()
    model.eval()
    compiled = torch.compile(model)
    x = torch.from_numpy(X)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x).numpy(), _run(model, X), rtol=1e-6, atol=1e-6)


def test_jit_compile_fit_matches_eager_without_recompiles(cheap_compile):
    from torch._dynamo.utils import counters

    x = np.random.default_rng(2).normal(size=(64, 4)).astype("float32")
    y = np.random.default_rng(3).integers(0, 3, size=64)
    results = []
    for jit in (False, True):
        keramic.utils.set_random_seed(0)
        model = functional()
        model.compile("adam", keramic.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"], jit_compile=jit)
        counters.clear()
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        graphs_after_fit = counters["stats"]["unique_graphs"]
        evaluation = model.evaluate(x, y, batch_size=8, verbose=0)
        predictions = model.predict(x, batch_size=8, verbose=0)
        model.predict(x, batch_size=8, verbose=0)
        results.append((history.history, evaluation, predictions, model.get_weights(), counters["stats"]["unique_graphs"], graphs_after_fit))
    eager, jitted = results
    assert eager[4] == 0
    # One graph for the training forward (16 batches of one size), then test and predict graphs.
    assert jitted[5] == 1 and jitted[4] == 3
    np.testing.assert_allclose(jitted[0]["loss"], eager[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(jitted[1], eager[1], rtol=1e-5)
    np.testing.assert_allclose(jitted[2], eager[2], rtol=1e-5, atol=1e-6)
    for a, b in zip(jitted[3], eager[3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_compiled_random_layers_draw_as_eager(cheap_compile):
    """Seeded noise layers and keras.random draws give the same numbers compiled as eager (the
    seeding runs outside dynamo's trace, as in Keras's torch backend)."""

    class Gamma(layers.Layer):
        def call(self, x):
            return x + keramic.random.gamma(tuple(x.shape), alpha=2.0, seed=4)

    def build():
        inputs = keramic.Input((4,))
        h = layers.Dropout(0.5, seed=2)(inputs)
        return keramic.Model(inputs, Gamma()(layers.GaussianNoise(0.1, seed=5)(h)))

    eager, compiled = build(), torch.compile(build())
    x = torch.ones(2, 4)
    for _ in range(3):
        expected = eager(x, training=True)
        assert torch.equal(compiled(x, training=True), expected)


def test_import_leaves_torch_compiler_unloaded():
    """Importing keramic does not load torch._dynamo (and sympy): about 1.4 s of every import."""
    import subprocess
    import sys

    code = "import sys, keramic; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_jit_compile_is_kept_in_the_compile_config():
    model = sequential()
    model.compile("sgd", "mse", jit_compile=True)
    assert model.get_compile_config()["jit_compile"] is True


def test_batches_are_cut_where_the_data_is_then_sent_to_the_model_device():
    from keramic.training import data

    target = torch.device("meta")  # stands in for an accelerator: moving is visible, no GPU needed
    batches = data.make_batches(X, Y, None, batch_size=3, shuffle=True, device=target)
    assert batches.x.device.type == "cpu" and np.shares_memory(batches.x.numpy(), X)  # no up-front copy
    sizes = []
    for x, y, _ in batches:
        assert x.device == target and y.device == target
        sizes.append(x.shape[0])
    assert sizes == [3, 3, 2]
    on_device = data.make_batches(torch.from_numpy(X), None, None, batch_size=4, device=torch.device("cpu"))
    assert all(x.device.type == "cpu" for x, _, _ in on_device)


@pytest.mark.interop
def test_uint8_images_predict_and_fit_as_keras(keras):
    images = np.random.default_rng(4).integers(0, 256, size=(6, 5, 5, 2), dtype=np.uint8)
    labels = np.random.default_rng(5).integers(0, 3, size=6)

    def build(lib):
        return lib.Sequential(
            [
                lib.Input((5, 5, 2)),
                lib.layers.Rescaling(1 / 255.0),
                lib.layers.Conv2D(3, 3, name="conv"),
                lib.layers.Flatten(),
                lib.layers.Dense(3, name="head"),
            ]
        )

    reference, model = build(keras), build(keramic)
    model.set_weights(reference.get_weights())
    np.testing.assert_allclose(model.predict(images, verbose=0), reference.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    # Without a Rescaling layer, the uint8 values reach the convolution as float32, as in Keras.
    plain_reference = keras.Sequential([keras.layers.Conv2D(2, 3, name="conv")])
    plain = keramic.Sequential([layers.Conv2D(2, 3, name="conv")])
    plain_reference.build((None, 5, 5, 2))
    plain.build((None, 5, 5, 2))
    plain.set_weights(plain_reference.get_weights())
    np.testing.assert_allclose(plain.predict(images, verbose=0), plain_reference.predict(images, verbose=0), rtol=1e-5, atol=1e-4)
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.1), loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(images, labels, batch_size=3, epochs=1, shuffle=False, verbose=0)
    for mine, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_integer_ids_reach_embedding_unchanged():
    seen = []

    class Spy(layers.Layer):
        def call(self, x):
            seen.append(x.dtype)
            return x

    inputs = keramic.Input((3,), dtype="int32")
    ids = Spy()(inputs)
    model = keramic.Model(inputs, layers.Embedding(10, 2)(ids))
    model.predict(np.array([[1, 2, 3]], dtype=np.int64), verbose=0)
    assert seen[-1] == torch.int32


@CUDA
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_move_predict_and_fit(kind):
    model = KINDS[kind]()
    expected = _run(model, X)
    model.to("cuda")
    assert all(w.device.type == "cuda" for w in model.weights)
    np.testing.assert_allclose(_run(model, X), expected, rtol=1e-4, atol=1e-5)
    if isinstance(model, keramic.Model):
        model.compile("adam", "mse")
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
        assert all(v.device.type == "cuda" for v in model.optimizer.variables if v.ndim > 0)
        assert model.predict(X, verbose=0).shape == (8, 3)


@CUDA
def test_cuda_default_device_and_jit_compile():
    model = sequential()
    assert model.weights[0].device.type == keramic.backend.get_device().type
    model.to("cuda")
    model.compile("adam", "mse", jit_compile=True)
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    assert model.predict(X, verbose=0).shape == (8, 3)


def test_default_device_comes_from_keramic_device_or_cuda(monkeypatch):
    from keramic import backend

    monkeypatch.setenv("KERAMIC_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backend._default_device() == torch.device("cpu")
    monkeypatch.delenv("KERAMIC_DEVICE")
    assert backend._default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend._default_device() == torch.device("cpu")
    assert functional()._device == backend.get_device()
