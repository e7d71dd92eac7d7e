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


def test_demo_runs_the_tutorial(capsys):
    assert cli.main(["demo", "--epochs", "1"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_inspect_prints_a_report(capsys):
    assert cli.main(["inspect", str(FIXTURES / "seed_mlp" / "model.keras")]) == 0
    out = capsys.readouterr().out
    for expected in ("Keras 3 whole-model archive", "Keras 3.15.1", "'seed_mlp' (Functional", "dense_1", "50,240 params", "RMSprop", "state in file: 8 variables"):
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
