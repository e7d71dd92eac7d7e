"""The tutorial script runs end to end on the shipped dataset (CI runs it through this test)."""

import importlib.util
import os
import re
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "saving_tutorial.py"
SECTIONS = ("Whole-model saving", "Architecture-only saving", "Weights-only saving", "The same with the R interface's verbs")


def test_saving_tutorial_runs_learns_and_checks_every_section(capsys):
    spec = importlib.util.spec_from_file_location("saving_tutorial", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, history, predictions = module.main(["--epochs", "3"])
    assert predictions.shape[1] == 10
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = capsys.readouterr().out
    assert "Total params" in out and "test accuracy" in out

    positions = [out.index(f"\n== {title}") for title in SECTIONS]
    assert positions == sorted(positions)
    checks = re.findall(r"^  checked: (.*)$", out, flags=re.MULTILINE)
    assert len(checks) == 17
    assert any("identical to the original" in check for check in checks)
    assert any("optimizer state came back (8 variables, 69 steps taken)" in check for check in checks)
    assert any("raises WeightsMismatchError" in check for check in checks)

    saved = re.search(r"^  saved (\S+) ", out, flags=re.MULTILINE).group(1)
    assert saved.endswith("path_to_my_model.keras") and not os.path.exists(os.path.dirname(saved))
