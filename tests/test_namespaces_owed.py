"""Names tests/test_namespace_coverage.py owed: StatelessScope, RematScope, keras.wrappers,
keras.distillation and bounding_boxes.affine_transform, each checked against real Keras 3."""

import numpy as np
import pytest
import torch

import keramic


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _twin_dense(keras, units=3, inputs=4, **kwargs):
    """The same Dense layer (same weights) in Keras and keramic."""
    theirs = keras.layers.Dense(units, **kwargs)
    theirs.build((None, inputs))
    ours = keramic.layers.Dense(units, **kwargs)
    ours.build((None, inputs))
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    return theirs, ours


# ---------------------------------------------------------------------------------- StatelessScope

def test_stateless_scope_reads_the_mapping_and_records_assignments_as_keras(keras):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4)).astype("float32")
    mapped_kernel = rng.normal(size=(4, 3)).astype("float32")
    new_kernel = rng.normal(size=(4, 3)).astype("float32")
    results = {}
    for module, layer in zip((keras, keramic), _twin_dense(keras)):
        kernel_before = np.array(layer.kernel.numpy())
        with module.StatelessScope([(layer.kernel, mapped_kernel)]) as scope:
            y = layer(x)
            seen_inside = _np(layer.kernel.value)
            layer.kernel.assign(new_kernel)
            layer.bias.assign_add(np.ones(3, "float32"))
            y_after_assign = layer(x)
        results[module] = dict(
            y=_np(y),
            seen_inside=seen_inside,
            y_after_assign=_np(y_after_assign),
            kernel=_np(scope.get_current_value(layer.kernel)),
            bias=_np(scope.get_current_value(layer.bias)),
        )
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel_before)  # the variable itself is untouched
        assert scope.get_current_value(keramic.Variable(np.zeros(2)) if module is keramic else module.Variable(np.zeros(2))) is None
    for key, value in results[keras].items():
        np.testing.assert_allclose(results[keramic][key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_stateless_scope_keeps_batch_norm_statistics_in_the_scope_as_keras(keras):
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32") * 2 + 1
    found = {}
    for module in (keras, keramic):
        bn = module.layers.BatchNormalization(momentum=0.9)
        bn.build((None, 3))
        with module.StatelessScope(collect_losses=True) as scope:
            y = bn(x, training=True)
        found[module] = (_np(y), _np(scope.get_current_value(bn.moving_mean)), _np(scope.get_current_value(bn.moving_variance)))
        np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(3))
        np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(3))
    for ours, theirs in zip(found[keramic], found[keras]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_stateless_scope_keeps_metric_updates_in_the_scope_as_keras(keras):
    found = {}
    for module in (keras, keramic):
        mean = module.metrics.Mean()
        mean.update_state(np.array([1.0, 2.0]))
        accuracy = module.metrics.SparseCategoricalAccuracy()
        variable = module.Variable(np.array([1.0, 2.0], "float32"))
        with module.StatelessScope([(variable, np.array([5.0, 6.0], "float32"))]) as scope:
            mean.update_state(np.array([4.0, 10.0]))
            accuracy.update_state(np.array([0, 1, 2]), np.eye(3)[[0, 2, 2]])
            variable.assign_sub(np.array([1.0, 1.0], "float32"))
            inside = [float(_np(mean.result())), float(_np(accuracy.result())), _np(variable * 2)]
        outside = [float(_np(mean.result())), float(_np(accuracy.result())), variable.numpy()]
        recorded = [_np(scope.get_current_value(v)) for v in mean.variables]
        found[module] = (inside, outside, recorded)
    for ours, theirs in zip(found[keramic], found[keras]):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_stateless_scope_collects_losses_as_keras(keras):
    x = np.random.default_rng(2).normal(size=(2, 4)).astype("float32")
    losses = {}
    for module, layer in zip((keras, keramic), _twin_dense(keras, activity_regularizer="l2")):
        with module.StatelessScope(collect_losses=True) as scope:
            layer(x)
        with module.StatelessScope() as quiet:
            layer(x)
        assert quiet.losses == []
        losses[module] = [float(_np(loss)) for loss in scope.losses]
    assert len(losses[keramic]) == len(losses[keras]) == 1
    np.testing.assert_allclose(losses[keramic], losses[keras], rtol=1e-6)


def test_stateless_scope_rejects_what_keras_rejects(keras):
    for module in (keras, keramic):
        variable = module.Variable(np.zeros((2, 2), "float32"))
        with pytest.raises(ValueError):
            module.StatelessScope([(np.zeros(2), np.zeros(2))])
        with pytest.raises(ValueError):
            module.StatelessScope([(variable, np.zeros(3))])


def test_stateless_scope_gradients_reach_the_mapped_values():
    layer = keramic.layers.Dense(2)
    layer.build((None, 3))
    value = torch.ones(3, 2, requires_grad=True)
    with keramic.StatelessScope([(layer.kernel, value)]):
        layer(torch.ones(1, 3)).sum().backward()
    np.testing.assert_array_equal(value.grad.numpy(), np.ones((3, 2)))
    assert layer.kernel.grad is None
    assert "__torch_function__" not in vars(keramic.Variable)  # no interception once every scope is left


# ------------------------------------------------------------------------------------- RematScope

def _record_checkpoints(monkeypatch):
    """Patch torch's checkpoint (which Keras's torch backend and keramic both call) to log what runs under it."""
    original = torch.utils.checkpoint.checkpoint
    log = []

    def recording(fn, *args, **kwargs):
        owner = getattr(fn, "__self__", None)
        log.append(owner.name if owner is not None else "activation")
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", recording)
    return log


def _remat_scenario(module):
    """Layers made under each mode (and a nested scope), called once in order; returns the outputs."""
    layers = []
    with module.RematScope(mode="full"):
        layers.append(module.layers.Dense(5, activation="relu", name="full_a"))
        with module.RematScope(mode=None):
            layers.append(module.layers.Dense(5, name="off_b"))
    with module.RematScope(mode="activations"):
        layers += [module.layers.Dense(5, activation="tanh", name="act_c"), module.layers.Dropout(0.0, name="act_drop")]
    with module.RematScope(mode="larger_than", output_size_threshold=12):
        layers += [module.layers.Dense(7, name="big_d"), module.layers.Dense(6, name="exact_e"), module.layers.Dense(3, name="small_f")]
    with module.RematScope(mode="list_of_layers", layer_names=["listed_g"]):
        layers += [module.layers.Dense(4, name="listed_g"), module.layers.Dense(4, name="unlisted_h")]
    layers.append(module.layers.Dense(2, name="outside_i"))
    return layers


def test_remat_scope_checkpoints_the_layers_keras_does(keras, monkeypatch):
    log = _record_checkpoints(monkeypatch)
    x = np.random.default_rng(3).normal(size=(2, 4)).astype("float32")
    chosen = {}
    for module in (keras, keramic):
        log.clear()
        h = x
        for layer in _remat_scenario(module):
            h = layer(h)
        chosen[module] = list(log)
    assert chosen[keramic] == chosen[keras]
    assert "full_a" in chosen[keras] and "listed_g" in chosen[keras]  # the scenario exercises the rules


def test_remat_scope_on_models_checkpoints_what_keras_does(keras, monkeypatch):
    # A model made in a scope is checkpointed as a whole, its layers by their own modes; the
    # shape inference that "larger_than" needs must not checkpoint anything itself.
    log = _record_checkpoints(monkeypatch)
    x = np.ones((2, 4), "float32")
    chosen = {}
    for module in (keras, keramic):
        log.clear()
        with module.RematScope(mode="full"):
            module.Sequential([module.layers.Dense(3, name="s1"), module.layers.Dense(2, name="s2")], name="seq_full")(x)
        with module.RematScope(mode="larger_than", output_size_threshold=5):
            big = module.Sequential([module.Input((4,)), module.layers.Dense(3, name="t1"), module.layers.Dense(2, name="t2")], name="seq_big")
        big(x)
        inputs = module.Input((4,))
        with module.RematScope(mode="list_of_layers", layer_names=["u1", "graph"]):
            graph = module.Model(inputs, module.layers.Dense(2, name="u1")(module.layers.Dense(3, name="u0")(inputs)), name="graph")
        graph(x)
        chosen[module] = list(log)
    assert chosen[keramic] == chosen[keras]


def test_remat_scope_gives_the_same_outputs_and_gradients_as_a_plain_run():
    x = torch.randn(3, 4)
    with keramic.RematScope(mode="full"):
        remat_model = keramic.Sequential([keramic.layers.Dense(8, activation="relu"), keramic.layers.Dense(2)])
    plain_model = keramic.Sequential([keramic.layers.Dense(8, activation="relu"), keramic.layers.Dense(2)])
    remat_model.build((None, 4))
    plain_model.build((None, 4))
    plain_model.set_weights(remat_model.get_weights())
    outputs = []
    for model in (remat_model, plain_model):
        y = model(x)
        grads = torch.autograd.grad(y.square().sum(), model.trainable_weights)
        outputs.append([_np(y)] + [_np(g) for g in grads])
    for ours, plain in zip(*outputs):
        np.testing.assert_allclose(ours, plain, rtol=1e-6, atol=1e-7)


def test_remat_scope_rejects_unknown_modes_as_keras(keras):
    for module in (keras, keramic):
        with pytest.raises(ValueError):
            module.RematScope(mode="sometimes")


# ---------------------------------------------------------------------------------- keras.wrappers

def _builder(module):
    """A model function for the wrappers: fixed weights, so Keras and keramic train alike."""

    def build(X, y, hidden=4, activation=None, loss="mse"):
        inputs = module.Input((X.shape[1],))
        h = module.layers.Dense(hidden, activation="tanh", name="hidden")(inputs)
        outputs = module.layers.Dense(y.shape[1], activation=activation, name="out")(h)
        model = module.Model(inputs, outputs)
        rng = np.random.default_rng(7)
        model.set_weights([rng.normal(size=np.shape(w)).astype("float32") * 0.5 for w in model.get_weights()])
        model.compile(loss=loss, optimizer=module.optimizers.SGD(0.1))
        return model

    return build


def _wrapper_data():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 3)).astype("float32")
    return X, (X @ np.array([1.0, -2.0, 0.5]) > 0).astype("int64") + (X[:, 0] > 1), X @ np.array([0.5, 1.0, -1.0])


def test_sklearn_wrappers_fit_and_predict_the_numbers_keras_does(keras):
    pytest.importorskip("sklearn", reason="keras.wrappers needs scikit-learn (requirements-dev.txt)")
    X, labels, targets = _wrapper_data()
    fit_kwargs = {"epochs": 3, "batch_size": 4, "shuffle": False, "verbose": 0}
    found = {}
    for module in (keras, keramic):
        build = _builder(module)
        classifier = module.wrappers.SKLearnClassifier(
            model=build, model_kwargs={"activation": "softmax", "loss": "categorical_crossentropy"}, fit_kwargs=fit_kwargs
        ).fit(X, labels)
        regressor = module.wrappers.SKLearnRegressor(model=build, fit_kwargs=fit_kwargs).fit(X, targets)
        transformer = module.wrappers.SKLearnTransformer(model=build, fit_kwargs=fit_kwargs)
        found[module] = dict(
            classes=classifier.classes_,
            labels=classifier.predict(X),
            scores=classifier.decision_function(X),
            regression=regressor.predict(X),
            r2=regressor.score(X, targets),
            embedding=transformer.fit_transform(X, targets),
            n_features=regressor.n_features_in_,
        )
    assert found[keramic]["regression"].shape == found[keras]["regression"].shape == (12,)
    assert np.isfinite(found[keras]["regression"]).all() and len(set(found[keras]["labels"])) > 1
    for key, value in found[keras].items():
        np.testing.assert_allclose(found[keramic][key], value, rtol=1e-4, atol=1e-5, err_msg=key)


def test_sklearn_wrappers_clone_params_tags_and_errors_as_keras(keras):
    sklearn = pytest.importorskip("sklearn", reason="keras.wrappers needs scikit-learn (requirements-dev.txt)")
    X, labels, targets = _wrapper_data()
    for name in ("SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"):
        ours, theirs = (getattr(m.wrappers, name)(model=len, model_kwargs={"a": 1}, fit_kwargs={"epochs": 2}) for m in (keramic, keras))
        assert ours.get_params() == theirs.get_params()
        assert sklearn.base.clone(ours).get_params() == sklearn.base.clone(theirs).get_params()  # Keras drops fit_kwargs
        assert sklearn.utils.get_tags(ours) == sklearn.utils.get_tags(theirs)
        assert repr(ours).replace("keramic", "keras") == repr(theirs)
    for module in (keras, keramic):
        build = _builder(module)
        with pytest.raises(sklearn.exceptions.NotFittedError):
            module.wrappers.SKLearnRegressor(model=build).predict(X)
        with pytest.raises(ValueError, match="Only binary and multiclass"):
            module.wrappers.SKLearnClassifier(model=build).fit(X, targets)
        with pytest.raises(ValueError, match="only one class"):
            module.wrappers.SKLearnClassifier(model=build).fit(X, np.zeros(12, "int64"))
        # A compiled model object is cloned, with its compile settings, at each fit.
        model = build(X, targets[:, None])
        regressor = module.wrappers.SKLearnRegressor(model=model, fit_kwargs={"epochs": 1, "verbose": 0}).fit(X, targets)
        assert regressor.model_ is not model and regressor.model_.compiled
        with pytest.raises(ValueError, match="features"):
            regressor.predict(X[:, :2])
        with pytest.raises(RuntimeError, match="compiled"):
            module.wrappers.SKLearnRegressor(model=lambda X, y: module.Sequential([module.layers.Dense(1)])).fit(X, targets)


# ------------------------------------------------------------------------------ keras.distillation

def _teacher_and_student(module):
    """Tiny graph models with fixed weights; both have an 8-wide layer to distil features from."""
    rng = np.random.default_rng(11)

    def graph(prefix, widths):
        inputs = module.Input((4,))
        h = inputs
        for i, width in enumerate(widths):
            h = module.layers.Dense(width, activation="relu", name=f"{prefix}_{i}")(h)
        model = module.Model(inputs, module.layers.Dense(3, name=f"{prefix}_logits")(h), name=prefix)
        model.set_weights([rng.normal(size=np.shape(w)).astype("float32") * 0.6 for w in model.get_weights()])
        return model

    return graph("teacher", [16, 8]), graph("student", [8])


def _distiller(module, losses, student_loss_weight=0.3, weights=None):
    teacher, student = _teacher_and_student(module)
    distiller = module.distillation.Distiller(
        teacher, student, losses, distillation_loss_weights=weights, student_loss_weight=student_loss_weight
    )
    distiller.compile(optimizer=module.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return distiller


def test_distiller_trains_the_student_with_keras_numbers(keras):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.integers(0, 3, size=(8,))
    found = {}
    for module in (keras, keramic):
        losses = [
            module.distillation.LogitsDistillation(temperature=2.0),
            module.distillation.LogitsDistillation(temperature=3.0, loss=module.losses.KLDivergence()),
            module.distillation.FeatureDistillation(loss="mse", teacher_layer_name="teacher_1", student_layer_name="student_0"),
        ]
        distiller = _distiller(module, losses, weights=[1.0, 0.5, 2.0])
        first = _np(distiller.compute_loss(x=x, y=y, y_pred=distiller(x)))
        history = distiller.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0).history
        found[module] = (first, history, [np.asarray(w) for w in distiller.student.get_weights()], distiller.teacher.trainable)
    first, history, weights, teacher_trainable = found[keras]
    np.testing.assert_allclose(found[keramic][0], first, rtol=1e-5)
    assert sorted(found[keramic][1]) == sorted(history)
    for key in history:
        np.testing.assert_allclose(found[keramic][1][key], history[key], rtol=1e-4, err_msg=key)
    for ours, theirs in zip(found[keramic][2], weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert found[keramic][3] is teacher_trainable is False


def test_distillation_losses_give_keras_numbers_and_errors(keras):
    rng = np.random.default_rng(13)
    teacher = [rng.normal(size=(5, 3)).astype("float32") for _ in range(2)]
    student = [rng.normal(size=(5, 3)).astype("float32") for _ in range(2)]
    cases = [
        ("LogitsDistillation", {}),
        ("LogitsDistillation", {"temperature": 4, "loss": ["kl_divergence", None]}),
        ("LogitsDistillation", {"temperature": 1.5, "loss": ["categorical_crossentropy", "mse"]}),
        ("FeatureDistillation", {"loss": ["mae", "cosine_similarity"]}),
    ]
    for name, kwargs in cases:
        values = []
        for module in (keras, keramic):
            loss = getattr(module.distillation, name)(**kwargs)
            nested = isinstance(kwargs.get("loss"), list)
            t, s = (teacher, student) if nested else (teacher[0], student[0])
            values.append(float(_np(loss.compute_loss(torch.as_tensor(np.array(t)) if not nested else [torch.as_tensor(a) for a in t],
                                                      torch.as_tensor(np.array(s)) if not nested else [torch.as_tensor(a) for a in s]))))
        np.testing.assert_allclose(values[1], values[0], rtol=1e-5, err_msg=f"{name} {kwargs}")
    for module in (keras, keramic):
        with pytest.raises(ValueError):
            module.distillation.LogitsDistillation(temperature=0)
        with pytest.raises(ValueError):
            module.distillation.FeatureDistillation(loss=[None, None])
        teacher_model, student_model = _teacher_and_student(module)
        with pytest.raises(ValueError, match="In teacher model"):
            module.distillation.Distiller(teacher_model, student_model, module.distillation.FeatureDistillation(teacher_layer_name="nope"))
        with pytest.raises(ValueError, match="student_loss_weight"):
            module.distillation.Distiller(teacher_model, student_model, module.distillation.LogitsDistillation(), student_loss_weight=2)


# ------------------------------------------------------------------ bounding_boxes.affine_transform

def test_affine_transform_moves_boxes_as_keras(keras):
    rng = np.random.default_rng(14)
    corner = rng.uniform(0, 40, size=(3, 5, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, 30, size=(3, 5, 2))], -1).astype("float32")

    def per_image(*values, dtype="float32"):
        return np.array(values, dtype)

    cases = [
        dict(angle=per_image(30, -10, 0), translate_x=per_image(0.1, 0, -0.2), translate_y=per_image(-0.05, 0.2, 0),
             scale=per_image(1.2, 0.8, 1), shear_x=per_image(5, 0, -12), shear_y=per_image(0, -8, 3), height=64, width=80),
        dict(angle=per_image(90, 45, -170, dtype="float64"), translate_x=per_image(0, 0.3, 0), translate_y=per_image(0, 0, 0.1),
             scale=per_image(1, 1.5, 0.5), shear_x=per_image(0, 0, 0), shear_y=per_image(0, 0, 0), height=50, width=50,
             center_x=per_image(0.2, 0.7, 0.5), center_y=0.3),
    ]
    for case in cases:
        theirs = _np(keras.utils.bounding_boxes.affine_transform(boxes, **case))
        ours = _np(keramic.utils.bounding_boxes.affine_transform(boxes, **case))
        assert ours.dtype == theirs.dtype == case["angle"].dtype
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    one_image = {key: (value[:1] if isinstance(value, np.ndarray) else value) for key, value in cases[0].items()}
    np.testing.assert_allclose(  # keramic also takes one image's (N, 4) boxes
        _np(keramic.utils.bounding_boxes.affine_transform(boxes[0], **one_image)),
        _np(keras.utils.bounding_boxes.affine_transform(boxes[:1], **one_image))[0], rtol=1e-5, atol=1e-4)
    for module in (keras, keramic):
        with pytest.raises(NotImplementedError):
            module.utils.bounding_boxes.affine_transform(boxes, **cases[0], bounding_box_format="yxyx")


def test_distiller_files_go_both_ways_with_keras(keras, tmp_path):
    x = np.random.default_rng(15).normal(size=(3, 4)).astype("float32")
    for writer, reader in ((keras, keramic), (keramic, keras)):
        teacher, student = _teacher_and_student(writer)
        losses = [writer.distillation.LogitsDistillation(2.0), writer.distillation.FeatureDistillation("mae", "teacher_1", "student_0")]
        distiller = writer.distillation.Distiller(teacher, student, losses, student_loss_weight=0.25)
        distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        expected = _np(distiller(x))
        path = str(tmp_path / f"from_{writer.__name__}.keras")
        distiller.save(path)
        with pytest.warns(UserWarning, match="compile"):  # as Keras: a custom compile() is not re-run on load
            loaded = reader.saving.load_model(path)
        assert type(loaded).__name__ == "Distiller" and loaded.student_loss_weight == 0.25
        assert loaded.distillation_losses[1].teacher_layer_name == "teacher_1"
        np.testing.assert_allclose(_np(loaded(x)), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_np(loaded.teacher(x)), _np(distiller.teacher(x)), rtol=1e-6, atol=1e-6)


def test_sklearn_wrappers_say_what_to_install_without_scikit_learn(monkeypatch):
    # As Keras (`... requires `scikit-learn` to be installed`): the classes exist, constructing one says what to install.
    pytest.importorskip("sklearn", reason="the classes load through scikit-learn's base classes")
    from keramic.wrappers import scikit_learn

    monkeypatch.setattr(scikit_learn, "sklearn", None)
    with pytest.raises(ImportError, match="requires `scikit-learn`"):
        keramic.wrappers.SKLearnRegressor(model=len)
