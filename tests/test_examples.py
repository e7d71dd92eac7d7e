"""The tutorial script runs end to end on the shipped dataset (CI runs it through this test)."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "saving_tutorial.py"


def test_saving_tutorial_runs_and_learns(capsys):
    spec = importlib.util.spec_from_file_location("saving_tutorial", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, history, predictions = module.main(["--epochs", "3"])
    assert predictions.shape[1] == 10
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = capsys.readouterr().out
    assert "Total params" in out and "test accuracy" in out
