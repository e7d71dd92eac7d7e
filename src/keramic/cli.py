"""The `keramic` command: `keramic demo` runs the saving tutorial; `keramic inspect FILE`; `keramic convert IN OUT`; `keramic version`."""

import argparse
import json
import runpy
import sys
from pathlib import Path

import keramic
from keramic.errors import KeramicError
from keramic.saving.convert import convert
from keramic.saving.inspect import format_report, inspect_file

TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "saving_tutorial.py"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keramic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run examples/saving_tutorial.py (from a source checkout); other options go to it")
    inspect_parser = commands.add_parser(
        "inspect",
        help="describe a saved file (.keras, .weights.h5, config JSON) without building the model",
        description="Print a saved file's format, versions, model class, layers with parameter counts, inputs "
        "and outputs, compile config, optimizer state and weight bytes. Only metadata is read: no tensor data, "
        "no model is built, nothing named in the file is imported.",
    )
    inspect_parser.add_argument("file", help="a .keras archive, a .weights.h5 file or a config JSON file")
    inspect_parser.add_argument("--json", action="store_true", help="print the report as JSON, for machines")
    convert_parser = commands.add_parser(
        "convert",
        help="convert between .keras, legacy .h5, .weights.h5 and .safetensors (by extension)",
        description="Convert a saved model or its weights into the format OUT's extension names (.keras, .h5 for "
        "the legacy whole model, .weights.h5, .safetensors), keeping the optimizer state where the target holds it, "
        "and print what was kept and what was dropped. A weights-only file becomes a whole model only with --config.",
    )
    convert_parser.add_argument("source", metavar="IN", help="the file to convert (its format is read from its bytes)")
    convert_parser.add_argument("target", metavar="OUT", help="the file to write (its format comes from its extension)")
    convert_parser.add_argument("--config", help="the architecture for a weights-only IN: model.to_json() output or a .keras config.json")
    convert_parser.add_argument(
        "--max-shard-size", type=float, help="GiB per shard: write OUT (.safetensors) as shards plus a .safetensors.index.json"
    )
    commands.add_parser("version", help="print keramic's version")
    options, rest = parser.parse_known_args(argv)
    if rest and options.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if options.command == "version":
        print(keramic.__version__)
        return 0
    if options.command == "inspect":
        return _inspect(options.file, options.json)
    if options.command == "convert":
        return _convert(options.source, options.target, options.config, options.max_shard_size)
    if not TUTORIAL.exists():
        parser.error(f"the tutorial script is not installed with the package; expected it at {TUTORIAL}")
    sys.argv = [str(TUTORIAL), *rest]
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    return 0


def _inspect(path, as_json):
    """Exit status 1 with a one-line reason on stderr for a missing, unreadable or foreign file."""
    try:
        report = inspect_file(path)
    except (KeramicError, OSError) as error:
        print(f"keramic inspect: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0


def _convert(source, target, config, max_shard_size):
    """Print the report; exit status 1 with a one-line reason on stderr when the conversion fails."""
    try:
        report = convert(source, target, config=config, max_shard_size=max_shard_size)
    except (KeramicError, OSError) as error:
        print(f"keramic convert: error: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
