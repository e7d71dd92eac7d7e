"""The long fuzz run: every loader property of tests/test_fuzz_loaders.py with many more examples,
each run drawing new random inputs. Not part of the suite (pytest collects only `test_*.py`, and
this folder holds none); run it before resolving a change to a loader:

    python tests/fuzz/run_fuzz.py                 # 2000 examples per loader
    python tests/fuzz/run_fuzz.py --examples 300  # a quicker pass
    python tests/fuzz/run_fuzz.py -- -k legacy_h5  # options after -- go to pytest

Failures are shrunk by hypothesis and printed with the input that caused them; hypothesis keeps
them in .hypothesis/ so the next run tries them first.
"""

import argparse
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per loader property (default 2000)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest options (after --)")
    options = parser.parse_args(argv)
    os.environ["KERAMIC_FUZZ_EXAMPLES"] = str(options.examples)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.main([str(TESTS / "test_fuzz_loaders.py"), "-p", "no:xdist", "-v", "-rf", "--hypothesis-show-statistics", *options.pytest_args])


if __name__ == "__main__":
    sys.exit(main())
