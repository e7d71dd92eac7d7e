"""`keras.random`, `keras.config`, `keras.tree`, `keras.backend`, top-level names and lower-case aliases."""

import numpy as np
import pytest
import torch

import keramic


def test_random_functions_give_keras_shapes_dtypes_and_repeat_under_a_seed():
    random = keramic.random
    for fn, kwargs in [(random.normal, {}), (random.uniform, {"minval": -1.0, "maxval": 2.0}),
                       (random.truncated_normal, {"stddev": 2.0}), (random.gamma, {"alpha": 2.0}),
                       (random.beta, {"alpha": 2.0, "beta": 3.0}), (random.binomial, {"counts": 5, "probabilities": 0.3})]:
        first = fn((200, 3), seed=7, **kwargs)
        assert tuple(first.shape) == (200, 3) and first.dtype == torch.float32, fn.__name__
        assert torch.equal(first, fn((200, 3), seed=7, **kwargs)), fn.__name__
        assert not torch.equal(first, fn((200, 3), seed=8, **kwargs)), fn.__name__
    uniform = random.uniform((4000,), minval=-1.0, maxval=2.0, seed=1)
    assert float(uniform.min()) >= -1.0 and float(uniform.max()) < 2.0 and abs(float(uniform.mean()) - 0.5) < 0.05
    normal = random.normal((4000,), mean=3.0, stddev=2.0, seed=1)
    assert abs(float(normal.mean()) - 3.0) < 0.1 and abs(float(normal.std()) - 2.0) < 0.1
    assert float(random.truncated_normal((4000,), seed=2).abs().max()) <= 2.0
    ints = random.randint((1000,), 2, 5, seed=3)
    assert ints.dtype == torch.int32 and set(ints.tolist()) == {2, 3, 4}
    assert abs(float(random.beta((4000,), 2.0, 3.0, seed=1).mean()) - 0.4) < 0.03
    assert abs(float(random.binomial((4000,), 10, 0.3, seed=1).mean()) - 3.0) < 0.15
    samples = random.categorical(torch.log(torch.tensor([[0.1, 0.9]])), 2000, seed=4)
    assert samples.shape == (1, 2000) and abs(float(samples.float().mean()) - 0.9) < 0.04
    shuffled = random.shuffle(torch.arange(10), seed=5)
    assert sorted(shuffled.tolist()) == list(range(10))
    kept = random.dropout(torch.ones(4000), 0.25, seed=6)
    assert set(torch.unique(kept).tolist()) <= {0.0, float(np.float32(1.0 / 0.75))} and abs(float((kept == 0).float().mean()) - 0.25) < 0.03


def test_a_seed_generator_advances_reproducibly_and_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    first, second = keramic.random.SeedGenerator(42), keramic.random.SeedGenerator(42)
    a1, a2 = keramic.random.normal((3,), seed=first), keramic.random.normal((3,), seed=first)
    assert not torch.equal(a1, a2)
    assert torch.equal(a1, keramic.random.normal((3,), seed=second))
    keramic.random.gamma((3,), 2.0, seed=first)
    assert torch.equal(before, torch.random.get_rng_state())
    assert keramic.random.SeedGenerator(3).get_config()["seed"] == 3


@pytest.mark.interop
def test_config_getters_and_setters_match_keras_defaults(keras):
    config = keramic.config
    for name in ("floatx", "epsilon", "image_data_format", "is_interactive_logging_enabled", "max_epochs",
                 "max_steps_per_epoch", "backend"):
        assert getattr(config, name)() == getattr(keras.config, name)(), name
    assert str(config.dtype_policy().name) == str(keras.config.dtype_policy().name)
    missing = [n for n in dir(keras.config) if not n.startswith("_") and not hasattr(config, n)]
    assert missing == []
    try:
        config.set_epsilon(1e-5)
        config.set_image_data_format("channels_first")
        config.disable_interactive_logging()
        config.set_max_epochs(2)
        assert (keramic.backend.epsilon(), keramic.backend.image_data_format()) == (1e-5, "channels_first")
        assert not config.is_interactive_logging_enabled() and config.max_epochs() == 2
        with pytest.raises(ValueError, match="channels_last"):
            config.set_image_data_format("nhwc")
    finally:
        config.set_epsilon(1e-7)
        config.set_image_data_format("channels_last")
        config.enable_interactive_logging()
        config.set_max_epochs(None)


@pytest.mark.interop
def test_tree_functions_match_keras_tree(keras):
    # Nested dict keys already in sorted order: Keras 3.15 sorts a top-level dict's keys but (through
    # optree) keeps insertion order in nested ones; keramic sorts at every level.
    structure = {"b": [1, (2, 3)], "a": None, "c": {"x": [5], "y": 4}}
    tree = keramic.tree
    assert tree.flatten(structure) == keras.tree.flatten(structure)
    assert tree.flatten_with_path(structure) == keras.tree.flatten_with_path(structure)
    assert tree.map_structure(lambda v: None if v is None else v * 2, structure) == keras.tree.map_structure(
        lambda v: None if v is None else v * 2, structure)
    assert tree.pack_sequence_as(structure, range(6)) == keras.tree.pack_sequence_as(structure, list(range(6)))
    assert tree.lists_to_tuples(structure) == keras.tree.lists_to_tuples(structure)
    assert [tree.is_nested(v) for v in ("ab", [1], {}, 3)] == [keras.tree.is_nested(v) for v in ("ab", [1], {}, 3)]
    assert tree.map_structure(lambda a, b: a + b, [1, (2,)], [10, (20,)]) == [11, (22,)]
    assert tree.map_structure_up_to([0, 0], lambda v: len(v), [[1, 2], (3,)]) == [2, 1]
    assert tree.map_shape_structure(lambda s: len(s), [(None, 3), {"a": (1,)}]) == [2, {"a": 1}]
    assert tree.traverse(lambda v: tree.MAP_TO_NONE if v == 2 else None, [1, [2, 3]]) == [1, [None, 3]]
    with pytest.raises(ValueError):
        tree.assert_same_structure([1, [2]], [1, 2])
    with pytest.raises(ValueError):
        tree.pack_sequence_as([0, 0], [1])
    tree.assert_same_paths({"a": 1}, {"a": 2})


@pytest.mark.interop
def test_backend_functions_match_keras_backend(keras):
    backend = keramic.backend
    missing = [n for n in dir(keras.backend) if not n.startswith("_") and not hasattr(backend, n)]
    assert missing == []
    assert backend.backend() == keras.backend.backend() == "torch"
    assert backend.is_int_dtype("uint8") and not backend.is_int_dtype("float16")
    assert backend.is_float_dtype("bfloat16")
    assert backend.is_keras_tensor(keramic.Input((2,))) and not backend.is_keras_tensor(torch.ones(2))
    assert [backend.get_uid("t"), backend.get_uid("t")] == [1, 2]
    keramic.layers.Dense(2)
    backend.clear_session()
    assert backend.get_uid("t") == 1
    assert keramic.layers.Dense(2).name == "dense"
    assert keramic.utils.clear_session is backend.clear_session


def test_top_level_names_and_version():
    for name in ("Loss", "Metric", "Optimizer", "KerasTensor", "Operation", "InputSpec", "Initializer", "Regularizer",
                 "Function", "name_scope", "device", "version", "config", "random", "tree", "preprocessing", "Variable"):
        assert hasattr(keramic, name), name
    assert keramic.version().startswith("3.")
    assert isinstance(keramic.Input((2,)), keramic.KerasTensor)
    assert keramic.layers.InputSpec is keramic.InputSpec
    with keramic.name_scope("outer"):
        with keramic.name_scope("inner"):
            assert keramic.name_scope.current_path() == "outer/inner"
    with keramic.device("cpu"):
        assert torch.zeros(1).device.type == "cpu"


def test_function_runs_a_graph_without_a_model():
    x = keramic.Input((3,))
    fn = keramic.Function(x, keramic.ops.sum(x * 2.0, axis=-1))
    np.testing.assert_allclose(fn(torch.ones(2, 3)).numpy(), [6.0, 6.0])


@pytest.mark.interop
def test_lower_case_aliases_build_the_keras_classes(keras):
    for module, names in {
        "regularizers": ["l1", "l2", "l1_l2", "orthogonal_regularizer"],
        "constraints": ["max_norm", "min_max_norm", "non_neg", "unit_norm"],
        "initializers": ["constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity",
                         "lecun_normal", "lecun_uniform", "ones", "orthogonal", "random_normal", "random_uniform",
                         "truncated_normal", "variance_scaling", "zeros"],
    }.items():
        for name in names:
            ours, theirs = getattr(getattr(keramic, module), name)(), getattr(getattr(keras, module), name)()
            assert type(ours).__name__ == type(theirs).__name__, f"{module}.{name}"
    assert keramic.regularizers.l2(0.01).get_config() == keras.regularizers.l2(0.01).get_config()


def test_input_spec_checks_rank_and_axes_with_clear_errors():
    from keramic.layers.input_spec import assert_input_compatibility

    spec = keramic.InputSpec(min_ndim=2, axes={-1: 4})
    assert_input_compatibility(spec, torch.ones(2, 4), "dense")
    with pytest.raises(ValueError, match=r"layer 'dense'.*min_ndim=2.*ndim=1"):
        assert_input_compatibility(spec, torch.ones(4), "dense")
    with pytest.raises(ValueError, match=r"axis -1 to have size 4.*\(2, 3\)"):
        assert_input_compatibility(spec, torch.ones(2, 3), "dense")
    assert keramic.InputSpec.from_config(spec.get_config()).axes == {-1: 4}
    assert keramic.InputSpec(shape=(None, 3)).ndim == 2
