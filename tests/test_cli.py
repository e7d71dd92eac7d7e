"""The `keramic` console command."""

import json
from pathlib import Path

import pytest

from keramic import cli

FIXTURES = Path(__file__).parent / "fixtures" / "keras3"


def test_version_prints_the_package_version(capsys):
    assert cli.main(["version"]) == 0
    import keramic

    assert capsys.readouterr().out.strip() == keramic.__version__


def test_demo_runs_the_tutorial_with_the_options_it_is_given(monkeypatch):
    """The wiring only: the tutorial itself runs end to end in tests/test_examples.py."""
    runs = []
    monkeypatch.setattr(cli.runpy, "run_path", lambda path, run_name: runs.append((path, run_name, list(cli.sys.argv))))
    monkeypatch.setattr(cli.sys, "argv", list(cli.sys.argv))
    assert cli.main(["demo", "--epochs", "1"]) == 0
    assert runs == [(str(cli.TUTORIAL), "__main__", [str(cli.TUTORIAL), "--epochs", "1"])]
    assert cli.TUTORIAL.name == "saving_tutorial.py" and cli.TUTORIAL.exists()


def test_inspect_prints_a_report(capsys):
    assert cli.main(["inspect", str(FIXTURES / "seed_mlp" / "model.keras")]) == 0
    out = capsys.readouterr().out
    expected_lines = ("Keras 3 whole-model archive", "Keras 3.15.1", "'seed_mlp' (Functional", "dense_1", "50,240 params", "RMSprop")
    for expected in (*expected_lines, "state in file: 8 variables"):
        assert expected in out


def test_inspect_json_is_the_report(capsys):
    from keramic.saving.inspect import inspect_file

    path = str(FIXTURES / "seed_mlp" / "model.weights.h5")
    assert cli.main(["inspect", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == inspect_file(path)


def test_inspect_errors_exit_1_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert cli.main(["inspect", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"keramic inspect: error: {bad}")
    assert cli.main(["inspect", str(tmp_path / "missing.keras")]) == 1
    assert "missing.keras" in capsys.readouterr().err


def test_inspect_rejects_unknown_options():
    with pytest.raises(SystemExit) as raised:
        cli.main(["inspect", "x.keras", "--verbose"])
    assert raised.value.code == 2


# ------------------------------------------------------------------ python -m, export, pipes, one-line errors
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import keramic  # noqa: E402

_ENV = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}


def _run(*args, **options):
    return subprocess.run([sys.executable, "-m", "keramic", *args], capture_output=True, env=_ENV, timeout=300, **options)


def _tiny_model_file(tmp_path):
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(2)])
    path = tmp_path / "tiny.keras"
    model.save(path)
    return model, path


def test_python_dash_m_runs_the_cli():
    done = _run("version")
    assert done.returncode == 0 and done.stdout.decode().strip() == keramic.__version__


def test_export_writes_an_artifact_that_predicts_like_the_model(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="keramic export needs the export extra (onnx, onnxruntime)")
    import numpy as np

    from keramic.export import predict_artifact

    model, path = _tiny_model_file(tmp_path)
    assert cli.main(["export", str(path), str(tmp_path / "exported" / "1")]) == 0
    assert "Exported" in capsys.readouterr().out
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(predict_artifact(x, tmp_path / "exported" / "1"), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_export_without_the_extra_names_the_pip_install(tmp_path, capsys, monkeypatch):
    _, path = _tiny_model_file(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert cli.main(["export", str(path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install keramic[export]" in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_model_export_without_the_extra_names_the_pip_install(tmp_path, monkeypatch):
    model, _ = _tiny_model_file(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(keramic.errors.ExportError, match=r"pip install keramic\[export\]"):
        model.export(tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "content"),
    [
        (["inspect", "{file}"], b"PK\x03\x04 damaged"),
        (["inspect", "{file}"], None),  # missing
        (["convert", "{file}", "{out}"], b"\x89HDF\r\n\x1a\n" + b"\x00" * 40),
        (["export", "{file}", "{out}"], b'{"class_name": "Dense", "config": {"units": 2}}'),
        (["export", "{file}", "{out}"], b"not a model at all"),
    ],
)
def test_every_error_is_one_line_naming_the_file(tmp_path, capsys, args, content):
    path = tmp_path / "broken.keras"
    if content is not None:
        path.write_bytes(content)
    argv = [arg.format(file=path, out=tmp_path / "out.weights.h5") for arg in args]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and str(path) in captured.err and "Traceback" not in captured.err, captured.err


def test_inspect_into_a_closed_pipe_ends_quietly():
    """`keramic inspect f.keras | head -1`: the reader leaves after one line; no traceback, status 141."""
    path = FIXTURES / "seed_mlp" / "model.keras"
    process = subprocess.Popen([sys.executable, "-m", "keramic", "inspect", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ENV)
    process.stdout.close()  # the reader is gone before anything is written
    assert process.wait(timeout=300) == 141
    assert process.stderr.read() == b""
    process.stderr.close()


def test_serve_passes_the_hardening_limits_through(monkeypatch):
    import keramic.serving

    seen = {}
    monkeypatch.setattr(keramic.serving, "serve", lambda *args, **kwargs: seen.update(kwargs, args=args))
    flags = ["--body_timeout_in_ms", "1500", "--head_timeout_seconds", "2.5", "--max_head_bytes", "4096", "--graceful_shutdown_seconds", "1"]
    assert cli.main(["serve", "--model_name", "m", "--model_base_path", "/nowhere", *flags]) == 0
    assert seen["args"] == ("m", "/nowhere", 8501)
    assert (seen["body_timeout_in_ms"], seen["head_timeout_seconds"], seen["max_head_bytes"], seen["graceful_shutdown_seconds"]) == (1500, 2.5, 4096, 1)
