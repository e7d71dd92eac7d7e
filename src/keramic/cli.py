"""The `keramic` command: `keramic demo` runs the saving tutorial; `keramic inspect FILE`; `keramic convert IN OUT`;
`keramic export MODEL DIR`; `keramic serve`; `keramic version`.

Every failure is one line on stderr that names the file, with exit status 1 (2 for a wrong
command line): no traceback. Output cut short by a closed pipe (`keramic inspect f.keras | head -1`)
ends quietly with status 141, as a Unix tool killed by SIGPIPE.
"""

import argparse
import json
import os
import runpy
import sys
from pathlib import Path

import keramic
import keramic.export  # noqa: F401  (registers the export artifact in the table of formats)
from keramic.errors import ExportError, KeramicError
from keramic.saving.api import load_model
from keramic.saving.convert import convert
from keramic.saving.formats import table
from keramic.saving.inspect import format_report, inspect_file

TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "saving_tutorial.py"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keramic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run examples/saving_tutorial.py (from a source checkout); other options go to it")
    inspectable = [row for row in table.formats() if row.inspect is not None]
    inspect_parser = commands.add_parser(
        "inspect",
        help="describe a saved file (" + ", ".join(row.name for row in inspectable) + ") without building the model",
        description="Print a saved file's format, versions, model class, layers with parameter counts, inputs "
        "and outputs, compile config, optimizer state and weight bytes. Only metadata is read: no tensor data, "
        "no model is built, nothing named in the file is imported.",
    )
    inspect_parser.add_argument("file", help="; ".join(row.description for row in inspectable))
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
    convert_parser.add_argument("--max-shard-size", type=float, help="GiB per shard: write OUT (.safetensors) as shards plus a .safetensors.index.json")
    export_parser = commands.add_parser(
        "export",
        help="write a serving artifact (ONNX graph + signatures + the model) from a saved model",
        description="Load MODEL (.keras, its directory form, legacy .h5) and write the serving artifact directory DIR "
        "that `keramic serve` and keramic.export.load_artifact read (or, with --format onnx, one .onnx file). "
        "Needs `pip install keramic[export]`.",
    )
    export_parser.add_argument("model", metavar="MODEL", help="the saved model to export")
    export_parser.add_argument("directory", metavar="DIR", help="the artifact directory (or .onnx file) to write")
    export_parser.add_argument("--format", choices=("tf_saved_model", "onnx"), default="tf_saved_model", help="as model.export")
    commands.add_parser("version", help="print keramic's version")
    _add_serve_parser(commands)
    options, rest = parser.parse_known_args(argv)
    if rest and options.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if options.command == "version":
        print(keramic.__version__)
        return 0
    if options.command == "inspect":
        return _reporting("inspect", options.file, lambda: _inspect_text(options.file, options.json))
    if options.command == "convert":
        return _reporting("convert", options.source, lambda: _convert(options.source, options.target, options.config, options.max_shard_size))
    if options.command == "export":
        return _reporting("export", options.model, lambda: _export(options.model, options.directory, options.format))
    if options.command == "serve":
        try:
            return _serve(options)
        except Exception as error:  # one line, never a traceback
            print(f"keramic serve: error: {_one_line(error, options.model_base_path)}", file=sys.stderr)
            return 1
    if not TUTORIAL.exists():
        parser.error(f"the tutorial script is not installed with the package; expected it at {TUTORIAL}")
    sys.argv = [str(TUTORIAL), *rest]
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    return 0


def _inspect_text(path, as_json):
    report = inspect_file(path)
    return json.dumps(report, indent=2) if as_json else format_report(report)


def _convert(source, target, config, max_shard_size):
    return str(convert(source, target, config=config, max_shard_size=max_shard_size))


def _export(model_path, directory, export_format):
    try:
        import onnx  # noqa: F401  (the export extra, needed before any work is done)
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ExportError(f"{error.name or 'onnx'} is not installed: `pip install keramic[export]` to export models.") from None
    load_model(model_path).export(directory, format=export_format)
    return f"Exported {model_path} to {directory} ({export_format})."


def _reporting(command, path, work):
    """Run `work` and print its text: status 0; any failure is one line on stderr naming `path`, status 1."""
    try:
        text = work()
    except Exception as error:  # the CLI's promise: one line, never a traceback
        print(f"keramic {command}: error: {_one_line(error, path)}", file=sys.stderr)
        return 1
    return _print(text)


def _one_line(error, path):
    message = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (KeramicError, OSError)):
        message = f"{type(error).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"


def _print(text):
    """Print to stdout; a reader that closed the pipe early ends the command quietly (status 141)."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Later flushes (at exit) must not fail again: point stdout at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    return 0


def _flag(text):
    """TF Serving's boolean flags: `--enable_batching`, `--enable_batching=true|false`."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_serve_parser(commands):
    serve = commands.add_parser(
        "serve",
        help="serve exported models over TensorFlow Serving's REST API",
        description="Serve DIR/<version>/ artifacts (keramic.export.export_model) with onnxruntime over TensorFlow "
        "Serving's REST API: the newest version is served, new version folders are picked up while running. "
        "Flag names are TF Serving's. Stops gracefully on SIGINT/SIGTERM.",
    )
    serve.add_argument("--model_name", required=True, help="the name clients use in /v1/models/NAME")
    serve.add_argument("--model_base_path", required=True, help="directory (or fsspec URL: s3://bucket/models) holding numbered version folders")
    serve.add_argument("--rest_api_port", type=int, default=8501, help="HTTP port (default 8501, as TF Serving)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    serve.add_argument("--enable_batching", type=_flag, nargs="?", const=True, default=False, help="merge concurrent requests")
    serve.add_argument("--max_batch_size", type=int, default=64, help="samples per batch at most (default 64)")
    serve.add_argument("--batch_timeout_micros", type=int, default=0, help="how long a batch that is not full waits for more")
    serve.add_argument("--max_enqueued_batches", type=int, default=100, help="queue limit in batches; beyond it requests get 503")
    serve.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.add_argument("--max_request_bytes", type=int, default=64 * 1024**2, help="larger bodies get 413 (default 64 MiB)")
    serve.add_argument("--rest_api_timeout_in_ms", type=int, default=30000, help="answer 504 after this long (0: no limit)")
    serve.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, help="onnxruntime threads per call (0: default)")
    serve.add_argument("--body_timeout_in_ms", type=int, default=30000, help="a request body must arrive within this (else 408)")
    serve.add_argument("--head_timeout_seconds", type=float, default=10, help="a request line and headers must arrive within this (else 408)")
    serve.add_argument("--max_head_bytes", type=int, default=64 * 1024, help="larger request heads get 431 (default 64 KiB)")
    serve.add_argument("--graceful_shutdown_seconds", type=float, default=5, help="on SIGTERM, in-flight requests get this long")


def _serve(options):
    """Run the server until SIGINT/SIGTERM; exit status 1 when the serving extra is missing."""
    try:
        from keramic.serving import serve
    except ImportError as error:
        print(f"keramic serve: error: {error.name} is not installed; `pip install keramic[serve]`", file=sys.stderr)
        return 1
    serve(
        options.model_name,
        options.model_base_path,
        options.rest_api_port,
        host=options.host,
        enable_batching=options.enable_batching,
        max_batch_size=options.max_batch_size,
        batch_timeout_micros=options.batch_timeout_micros,
        max_enqueued_batches=options.max_enqueued_batches,
        poll_seconds=options.file_system_poll_wait_seconds,
        max_request_bytes=options.max_request_bytes,
        rest_api_timeout_in_ms=options.rest_api_timeout_in_ms,
        intra_op_threads=options.tensorflow_intra_op_parallelism,
        body_timeout_in_ms=options.body_timeout_in_ms,
        head_timeout_seconds=options.head_timeout_seconds,
        max_head_bytes=options.max_head_bytes,
        graceful_shutdown_seconds=options.graceful_shutdown_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
