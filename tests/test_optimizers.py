"""Optimizers: update rules, variable layout and configs, checked against real Keras 3 (torch backend)."""

import re
import warnings

import numpy as np
import pytest
import torch

from keramic import optimizers
from keramic.backend import Variable
from keramic.utils.naming import reset_names

SHAPES = [("d1", "kernel", (4, 3)), ("d1", "bias", (3,)), ("out", "kernel", (3, 2)), ("out", "bias", (2,))]
STEPS = 3
ATOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _values():
    rng = np.random.RandomState(0)
    return [rng.normal(size=shape).astype("float32") for _, _, shape in SHAPES]


# Per-variable gradient scales: the tiny last one makes epsilon's placement visible.
GRAD_SCALES = [1.0, 0.5, 2.0, 1e-4]


def _grads(steps):
    rng = np.random.RandomState(1)
    return [
        [(scale * rng.normal(size=shape)).astype("float32") for (_, _, shape), scale in zip(SHAPES, GRAD_SCALES)]
        for _ in range(steps)
    ]


def _keras_variables(keras):
    variables = []
    for (scope, name, _), value in zip(SHAPES, _values()):
        with keras.name_scope(scope):
            variables.append(keras.Variable(value, name=name))
    return variables


def _keramic_variables():
    return [Variable(value, name=name, path=f"{scope}/{name}") for (scope, name, _), value in zip(SHAPES, _values())]


def _base_name(name):
    # Nadam's unnamed product variable takes a per-process counter suffix in both libraries.
    return re.sub(r"^variable(_\d+)?$", "variable", name)


def _compare(keras_opt, keras_vars, opt, variables, context):
    for k, v in zip(keras_vars, variables):
        np.testing.assert_allclose(v.numpy(), k.numpy(), rtol=0, atol=ATOL, err_msg=f"{context}: {k.path}")
    keras_slots, slots = keras_opt.variables, opt.variables
    assert [_base_name(s.name) for s in slots] == [_base_name(s.name) for s in keras_slots], context
    for i, (k, s) in enumerate(zip(keras_slots, slots)):
        assert str(s.dtype).replace("torch.", "") == k.dtype, f"{context}: variable {i} {k.name}"
        np.testing.assert_allclose(s.numpy(), k.numpy(), rtol=0, atol=ATOL, err_msg=f"{context}: variable {i} {k.name}")


def _run_parity(keras, class_name, kwargs, steps=STEPS, drop=None, prepare=None):
    """Apply the same gradients in both libraries; compare every variable after every step."""
    keras_kwargs = kwargs(keras.optimizers) if callable(kwargs) else kwargs
    our_kwargs = kwargs(optimizers) if callable(kwargs) else kwargs
    keras_opt = getattr(keras.optimizers, class_name)(**keras_kwargs)
    opt = getattr(optimizers, class_name)(**our_kwargs)
    keras_vars, variables = _keras_variables(keras), _keramic_variables()
    if prepare is not None:
        prepare(keras_opt, keras_vars)
        prepare(opt, variables)
    keras_opt.build(keras_vars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, grads in enumerate(_grads(steps)):
            keras_grads = [torch.tensor(g) for g in grads]
            our_grads = [torch.tensor(g) for g in grads]
            if drop is not None:
                keras_grads[drop] = our_grads[drop] = None
            keras_opt.apply(keras_grads, keras_vars)
            opt.apply(our_grads, variables)
            _compare(keras_opt, keras_vars, opt, variables, f"{class_name}{keras_kwargs} step {step + 1}")
    return keras_opt, keras_vars, opt, variables


PARITY_CASES = {
    "sgd": ("SGD", {}),
    "sgd_momentum": ("SGD", {"momentum": 0.9}),
    "sgd_nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "sgd_weight_decay": ("SGD", {"learning_rate": 0.1, "weight_decay": 0.1}),
    "rmsprop": ("RMSprop", {}),
    "rmsprop_momentum": ("RMSprop", {"momentum": 0.5}),
    "rmsprop_centered": ("RMSprop", {"centered": True}),
    "rmsprop_centered_momentum": ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    "adam": ("Adam", {}),
    "adam_amsgrad": ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    "adam_weight_decay": ("Adam", {"learning_rate": 0.01, "weight_decay": 0.1}),
    "adam_clipnorm": ("Adam", {"learning_rate": 0.01, "clipnorm": 0.5}),
    "adam_clipvalue": ("Adam", {"learning_rate": 0.01, "clipvalue": 0.05}),
    "adam_global_clipnorm": ("Adam", {"learning_rate": 0.01, "global_clipnorm": 0.5}),
    "adam_loss_scale": ("Adam", {"learning_rate": 0.01, "loss_scale_factor": 4.0}),
    "adam_schedule": (
        "Adam",
        lambda m: {"learning_rate": m.schedules.ExponentialDecay(0.1, 2, 0.5, staircase=True)},
    ),
    "sgd_momentum_cosine_warmup": (
        "SGD",
        lambda m: {
            "momentum": 0.9,
            "nesterov": True,
            "learning_rate": m.schedules.CosineDecay(0.01, 5, warmup_target=0.1, warmup_steps=2),
        },
    ),
    "adamw": ("AdamW", {"learning_rate": 0.01}),
    "adamw_strong_decay": ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    "adagrad": ("Adagrad", {"learning_rate": 0.1}),
    "adagrad_zero_accumulator": ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.0}),
    "adadelta": ("Adadelta", {"learning_rate": 1.0}),
    "adamax": ("Adamax", {"learning_rate": 0.01}),
    "nadam": ("Nadam", {"learning_rate": 0.01}),
    "nadam_clipnorm": ("Nadam", {"learning_rate": 0.01, "clipnorm": 1.0}),
    "adafactor": ("Adafactor", {"learning_rate": 0.01}),
    "adafactor_absolute_step": (
        "Adafactor",
        {"learning_rate": 0.5, "relative_step": False, "clip_threshold": 0.5, "beta_2_decay": -0.5, "weight_decay": 0.1},
    ),
    "adafactor_schedule": ("Adafactor", lambda m: {"learning_rate": m.schedules.ExponentialDecay(0.1, 1, 0.5)}),
    "ftrl": ("Ftrl", {"learning_rate": 0.1}),
    "ftrl_regularized": (
        "Ftrl",
        {
            "learning_rate": 0.1,
            "learning_rate_power": -0.7,
            "initial_accumulator_value": 0.5,
            "l1_regularization_strength": 0.01,
            "l2_regularization_strength": 0.02,
            "l2_shrinkage_regularization_strength": 0.03,
            "beta": 0.1,
        },
    ),
    "lamb": ("Lamb", {"learning_rate": 0.01}),
    "lamb_weight_decay": ("Lamb", {"learning_rate": 0.01, "weight_decay": 0.1, "clipnorm": 1.0}),
    "lion": ("Lion", {"learning_rate": 0.01}),
    "lion_betas": ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.1}),
    "muon": ("Muon", {"learning_rate": 0.01}),
    "muon_options": (
        "Muon",
        {
            "learning_rate": 0.01,
            "nesterov": False,
            "exclude_layers": ["out"],
            "adam_lr_ratio": 0.5,
            "rms_rate": None,
            "weight_decay": 0.1,
            "adam_weight_decay": None,
            "ns_steps": 3,
        },
    ),
    "schedule_free_adamw": ("ScheduleFreeAdamW", {"learning_rate": 0.01}),
    "schedule_free_adamw_warmup": ("ScheduleFreeAdamW", {"learning_rate": 0.01, "warmup_steps": 2, "weight_decay": 0.1}),
    "multi_optimizer": (
        "MultiOptimizer",
        lambda m: {"optimizer_map": m.OptimizerMap(m.SGD(0.1, momentum=0.5), {"d1/.*": m.Adam(0.01), "out/bias": m.Lion(0.01)})},
    ),
    "multi_optimizer_callable_loss_scale": (
        "MultiOptimizer",
        lambda m: {
            "optimizer_map": _by_scope(m.Lamb(0.01, use_ema=True), m.Muon(0.01, gradient_accumulation_steps=2)),
            "loss_scale_factor": 4.0,
        },
    ),
}


def _by_scope(first, second):
    """A callable optimizer map: `d1/...` to the first optimizer, the rest to the second."""
    return lambda variable: first if variable.path.startswith("d1/") else second


@pytest.mark.interop
@pytest.mark.parametrize("class_name", sorted({name for name, _ in PARITY_CASES.values()}))
def test_update_parity_with_keras(keras, class_name):
    # One test per class (the Keras fixture's session reset is the slow part); messages name the case.
    for name, kwargs in PARITY_CASES.values():
        if name == class_name:
            _run_parity(keras, class_name, kwargs)


@pytest.mark.interop
@pytest.mark.parametrize(
    "class_name", ["Adam", "RMSprop", "Nadam", "Adafactor", "Ftrl", "Lamb", "Lion", "Muon", "ScheduleFreeAdamW"]
)
def test_gradient_accumulation_parity(keras, class_name):
    kwargs = {"learning_rate": 0.01, "gradient_accumulation_steps": 2}
    keras_opt, _, opt, _ = _run_parity(keras, class_name, kwargs, steps=5)
    assert int(opt.iterations) == int(keras_opt.iterations) == 2
    assert int(opt._iterations) == 5


@pytest.mark.interop
def test_ema_with_accumulation_and_amsgrad_parity(keras):
    # The spec's observed layout: averages, accumulators, interleaved slots, velocity_hat block.
    kwargs = {"learning_rate": 0.01, "amsgrad": True, "use_ema": True, "gradient_accumulation_steps": 2}
    keras_opt, keras_vars, opt, variables = _run_parity(keras, "Adam", kwargs, steps=4)
    names = [v.name for v in opt.variables]
    assert names[:4] == ["iteration", "learning_rate", "d1_kernel_average", "d1_bias_average"]
    assert names[6] == "d1_kernel_gradient_accumulator"
    assert names[10:12] == ["d1_kernel_momentum", "d1_kernel_velocity"]
    assert names[-4:] == [f"{s}_{n}_velocity_hat" for s, n, _ in SHAPES]
    keras_opt.finalize_variable_values(keras_vars)
    opt.finalize_variable_values(variables)
    _compare(keras_opt, keras_vars, opt, variables, "after finalize")


@pytest.mark.interop
def test_ema_overwrite_frequency_parity(keras):
    kwargs = {"learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2}
    _run_parity(keras, "SGD", kwargs)


@pytest.mark.interop
def test_ema_parity_for_every_new_optimizer(keras):
    # EMA slots come first, accumulators next, then each optimizer's own; finalize swaps averages in.
    for class_name in ["Adafactor", "Ftrl", "Lamb", "Lion", "Muon", "ScheduleFreeAdamW"]:
        kwargs = {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.5, "gradient_accumulation_steps": 2}
        keras_opt, keras_vars, opt, variables = _run_parity(keras, class_name, kwargs, steps=4)
        assert [v.name for v in opt.variables][2:4] == ["d1_kernel_average", "d1_bias_average"]
        keras_opt.finalize_variable_values(keras_vars)
        opt.finalize_variable_values(variables)
        _compare(keras_opt, keras_vars, opt, variables, f"{class_name} after finalize")
    kwargs = {"learning_rate": 0.01, "use_ema": True, "ema_overwrite_frequency": 2}
    _run_parity(keras, "Lion", kwargs, steps=4)
    # Overwrites counted in updates, not calls; decay and clipping on the accumulated gradient.
    kwargs = {
        "learning_rate": 0.01,
        "use_ema": True,
        "ema_momentum": 0.5,
        "ema_overwrite_frequency": 2,
        "gradient_accumulation_steps": 2,
        "weight_decay": 0.1,
        "clipnorm": 0.5,
    }
    _run_parity(keras, "Lamb", kwargs, steps=6)
    _run_parity(keras, "Adam", kwargs, steps=6)
    schedule = {"learning_rate": lambda m: m.schedules.ExponentialDecay(0.1, 1, 0.5), "gradient_accumulation_steps": 3}
    _run_parity(keras, "SGD", lambda m: {**schedule, "learning_rate": schedule["learning_rate"](m)}, steps=6)


@pytest.mark.interop
def test_missing_gradient_parity(keras):
    _run_parity(keras, "Adam", {"learning_rate": 0.01, "weight_decay": 0.1}, drop=1)


@pytest.mark.interop
def test_exclude_from_weight_decay_parity(keras):
    def prepare(opt, variables):
        opt.exclude_from_weight_decay(var_list=[variables[2]], var_names=["bias"])

    _run_parity(keras, "AdamW", {"learning_rate": 0.1, "weight_decay": 0.5}, prepare=prepare)


CONFIG_CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "clipnorm": 1.0}),
    ("RMSprop", {}),
    ("RMSprop", {"rho": 0.8, "momentum": 0.5, "centered": True, "use_ema": True, "ema_overwrite_frequency": 3}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "global_clipnorm": 2.0, "gradient_accumulation_steps": 4, "loss_scale_factor": 8.0}),
    ("AdamW", {}),
    ("Adagrad", {}),
    ("Adadelta", {}),
    ("Adamax", {"clipvalue": 0.5}),
    ("Nadam", {"weight_decay": 0.01}),
    ("Adafactor", {}),
    ("Adafactor", {"beta_2_decay": -0.5, "epsilon_1": 1e-20, "epsilon_2": 1e-2, "clip_threshold": 2.0, "relative_step": False}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate_power": -0.7, "l1_regularization_strength": 0.1, "l2_shrinkage_regularization_strength": 0.2, "beta": 0.5}),
    ("Lamb", {}),
    ("Lamb", {"beta_1": 0.8, "epsilon": 1e-6, "use_ema": True}),
    ("Lion", {}),
    ("Lion", {"beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.1}),
    ("Muon", {}),
    ("Muon", {"exclude_layers": ["dense"], "nesterov": False, "rms_rate": None, "ns_steps": 3, "adam_lr_ratio": 0.5}),
    ("ScheduleFreeAdamW", {}),
    ("ScheduleFreeAdamW", {"warmup_steps": 10, "gradient_accumulation_steps": 2}),
]


@pytest.mark.interop
@pytest.mark.parametrize("class_name, kwargs", CONFIG_CASES)
def test_config_matches_keras(keras, class_name, kwargs):
    expected = getattr(keras.optimizers, class_name)(name="opt", **kwargs).get_config()
    opt = getattr(optimizers, class_name)(name="opt", **kwargs)
    config = opt.get_config()
    assert list(config) == list(expected)
    assert config == expected
    again = type(opt).from_config(config).get_config()
    assert again == config


@pytest.mark.interop
def test_schedule_config_and_keras_envelope_round_trip(keras):
    keras_opt = keras.optimizers.SGD(
        learning_rate=keras.optimizers.schedules.PiecewiseConstantDecay([2, 5], [0.1, 0.05, 0.01]), momentum=0.5
    )
    envelope = keras.optimizers.serialize(keras_opt)
    assert envelope["module"].startswith("keras.src.backend.torch")
    opt = optimizers.deserialize(envelope)
    assert isinstance(opt, optimizers.SGD)
    assert isinstance(opt.learning_rate, torch.Tensor)
    assert opt.get_config() == keras_opt.get_config()
    portable = optimizers.serialize(opt)
    assert portable["module"] == "keras.optimizers" and portable["registered_name"] is None
    assert keras.optimizers.deserialize(portable).get_config() == keras_opt.get_config()
    assert [v.name for v in opt.variables] == ["iteration"]


def test_get_resolves_names_configs_and_instances():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    assert isinstance(optimizers.get("RMSprop"), optimizers.RMSprop)
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSprop)
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW)
    for name in ("sgd", "adagrad", "adadelta", "adamax", "nadam"):
        assert type(optimizers.get(name)).__name__.lower() == name
    opt = optimizers.Adam()
    assert optimizers.get(opt) is opt
    assert optimizers.get(None) is None
    config = {"module": "keras.optimizers", "class_name": "Adam", "config": {"learning_rate": 0.01}}
    config["registered_name"] = None
    assert optimizers.get(config).get_config()["learning_rate"] == pytest.approx(0.01, abs=1e-9)
    with pytest.raises(ValueError):
        optimizers.get("no_such_optimizer")


def test_default_names_are_snake_case_and_unique():
    reset_names()
    assert [optimizers.Adam().name, optimizers.Adam().name] == ["adam", "adam_1"]
    assert optimizers.RMSprop().name == "rm_sprop"
    assert optimizers.AdamW().name == "adam_w"
    assert optimizers.SGD().name == "sgd"
    assert optimizers.SGD(name="mine").iterations.path == "mine/iteration"


def test_constructor_validation():
    with pytest.raises(ValueError, match="not recognized.*foo"):
        optimizers.Adam(foo=1)
    with pytest.warns(UserWarning, match="decay"):
        optimizers.Adam(decay=0.1)
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        optimizers.Adam(gradient_accumulation_steps=1)
    with pytest.raises(ValueError, match="ema_momentum"):
        optimizers.Adam(use_ema=True, ema_momentum=1.5)
    # Keras's positional order: SGD(learning_rate, momentum, nesterov, weight_decay, ...).
    opt = optimizers.SGD(0.1, 0.9, True, 0.01)
    assert (opt.momentum, opt.nesterov, opt.weight_decay) == (0.9, True, 0.01)
    assert optimizers.AdamW(0.1, 0.2).weight_decay == 0.2


def test_variables_layout_and_dtypes():
    variables = _keramic_variables()
    opt = optimizers.RMSprop(momentum=0.5, centered=True)
    assert [v.name for v in opt.variables] == ["iteration", "learning_rate"]
    opt.build(variables)
    names = [v.name for v in opt.variables]
    assert names[2:6] == [f"{s}_{n}_velocity" for s, n, _ in SHAPES]
    assert names[6:10] == [f"{s}_{n}_momentum" for s, n, _ in SHAPES]
    assert names[10:] == [f"{s}_{n}_average_gradient" for s, n, _ in SHAPES]
    assert opt.variables[0].dtype == torch.int32 and opt.variables[1].dtype == torch.float32
    assert all(not v.requires_grad for v in opt.variables)
    assert opt.variables[2].path == f"{opt.name}/d1_kernel_velocity"
    accumulators = optimizers.Adagrad(initial_accumulator_value=0.25)
    accumulators.build(variables)
    assert np.all(accumulators.variables[2].numpy() == 0.25)


def test_learning_rate_property_and_setter_reach_the_update():
    variables = [Variable(np.zeros(3, "float32"), name="w")]
    grad = [torch.ones(3)]
    opt = optimizers.SGD(learning_rate=0.5)
    assert float(opt.learning_rate) == 0.5
    opt.apply(grad, variables)
    opt.learning_rate = 0.25
    opt.apply(grad, variables)
    opt.learning_rate.assign(0.125)  # a direct write, as a weights loader does
    opt.apply(grad, variables)
    np.testing.assert_allclose(variables[0].numpy(), -0.875)
    assert int(opt.iterations) == 3

    scheduled = optimizers.SGD(learning_rate=optimizers.schedules.ExponentialDecay(1.0, 1, 0.5))
    assert float(scheduled.learning_rate) == 1.0
    scheduled.apply(grad, variables)
    assert float(scheduled.learning_rate) == 0.5
    with pytest.raises(TypeError):
        scheduled.learning_rate = 0.1


def test_restored_state_continues_like_the_original():
    """Loading state by index (iteration, lr, slots, Nadam's product) must steer the next step."""
    grads = [[torch.tensor(g) for g in step] for step in _grads(3)]
    original, variables = optimizers.Nadam(learning_rate=0.01), _keramic_variables()
    for g in grads[:2]:
        original.apply(g, variables)
    store = {}
    original.save_own_variables(store)
    snapshot = [v.numpy().copy() for v in variables]

    restored = optimizers.Nadam(learning_rate=0.5)
    copies = [Variable(value, name=v.name, path=v.path) for v, value in zip(variables, snapshot)]
    restored.build(copies)
    restored.load_own_variables(store)
    original.apply(grads[2], variables)
    restored.apply(grads[2], copies)
    for a, b in zip(variables, copies):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(original.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    unbuilt = optimizers.Nadam()
    with pytest.warns(UserWarning, match="Skipping variable loading"):
        unbuilt.load_own_variables(store)


def test_constraint_applied_after_update():
    variable = Variable(np.array([0.5, 2.0], "float32"), name="w")
    variable.constraint = lambda v: torch.clamp(v, min=0.0)
    optimizers.SGD(learning_rate=1.0).apply([torch.tensor([1.0, 1.0])], [variable])
    np.testing.assert_array_equal(variable.numpy(), [0.0, 1.0])


def test_apply_checks_variables():
    variables = _keramic_variables()
    opt = optimizers.Adam()
    with pytest.raises(ValueError, match="built"):
        opt.apply([torch.ones(s) for _, _, s in SHAPES])
    opt.build(variables)
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([torch.ones(2)], [Variable(np.zeros(2, "float32"), name="stranger")])
    with pytest.raises(ValueError, match="exclude_from_weight_decay"):
        opt.exclude_from_weight_decay(var_names=["bias"])
    assert opt.apply_gradients(zip([torch.ones(s) for _, _, s in SHAPES], variables)) is opt.iterations
    assert opt.scale_loss(3.0) == 3.0
    assert optimizers.Adam(loss_scale_factor=4.0).scale_loss(3.0) == 12.0


def test_optimizer_map_lookup_and_multi_optimizer_rules():
    adam, sgd, lion = optimizers.Adam(), optimizers.SGD(), optimizers.Lion()
    mapping = optimizers.OptimizerMap(default_optimizer=sgd)
    mapping["encoder/dense/kernel"] = adam
    mapping["encoder/.*"] = lion
    assert mapping["encoder/dense/kernel"] is adam  # an exact key wins over a pattern
    assert mapping["encoder/attention/query"] is lion
    assert mapping["decoder/dense/kernel"] is sgd
    mapping["enc.*"] = optimizers.Adam()
    with pytest.raises(ValueError, match="Multiple optimizers"):
        mapping["encoder/attention/query"]
    with pytest.raises(ValueError, match="already exists"):
        mapping["encoder/.*"] = adam
    with pytest.raises(ValueError, match="MultiOptimizer"):
        mapping["x"] = optimizers.MultiOptimizer(optimizers.OptimizerMap(sgd))
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        mapping["y"] = optimizers.LossScaleOptimizer(optimizers.SGD())
    with pytest.raises(TypeError, match="default_optimizer"):
        optimizers.OptimizerMap("sgd")
    multi = optimizers.MultiOptimizer(optimizers.OptimizerMap(sgd, {"d1/.*": adam}), loss_scale_factor=2.0)
    assert multi.optimizers == [adam, sgd] and adam.loss_scale_factor == sgd.loss_scale_factor == 2.0
    with pytest.raises(AttributeError, match="sub-optimizers"):
        multi.learning_rate
    variables = _keramic_variables()
    multi.apply([torch.ones(s) for _, _, s in SHAPES], variables)
    assert [int(multi.iterations), int(adam.iterations), int(sgd.iterations)] == [1, 1, 1]
    with pytest.raises(ValueError, match="one-to-one"):
        multi.apply([torch.ones(2)], variables[:1])
    config = multi.get_config()
    assert list(config) == ["optimizer_map", "loss_scale_factor", "name"]
    again = optimizers.deserialize(optimizers.serialize(multi))
    assert isinstance(again.optimizers[0], optimizers.Adam) and again.loss_scale_factor == 2.0


def test_legacy_optimizers_say_they_are_gone_as_in_keras_3():
    for name in ("Adagrad", "Adam", "Ftrl", "Optimizer", "RMSprop", "SGD"):
        with pytest.raises(ImportError, match="not supported in Keras 3"):
            getattr(optimizers.legacy, name)()
    assert isinstance(optimizers.get("adam"), optimizers.Adam)  # the stubs never shadow the real names
