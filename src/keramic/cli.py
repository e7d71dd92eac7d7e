"""The `keramic` command: `keramic demo` runs the saving tutorial; `keramic version`."""

import argparse
import runpy
import sys
from pathlib import Path

import keramic

TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "saving_tutorial.py"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keramic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run examples/saving_tutorial.py (from a source checkout); other options go to it")
    commands.add_parser("version", help="print keramic's version")
    options, rest = parser.parse_known_args(argv)
    if rest and options.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if options.command == "version":
        print(keramic.__version__)
        return 0
    if not TUTORIAL.exists():
        parser.error(f"the tutorial script is not installed with the package; expected it at {TUTORIAL}")
    sys.argv = [str(TUTORIAL), *rest]
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
