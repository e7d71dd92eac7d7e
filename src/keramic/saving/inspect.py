"""`keramic inspect`: what a saved file holds, told from its metadata alone.

The format comes from the table of formats (`saving.formats.table`), whose rows each describe
their own files; this module dispatches and renders the report as text. No tensor data is read, no
model is built and no name found in the file is imported or resolved, so inspecting a file from
anywhere is safe and costs milliseconds even for big models.

>>> report = inspect_file("model.keras")
>>> print(format_report(report))
"""

import json
import os

from keramic.errors import FileFormatError, typed_errors
from keramic.saving.formats import table
from keramic.saving.inspect_summary import describe


def inspect_file(path: str) -> dict:
    """A JSON-ready dict describing the saved file at `path` (format found from its bytes)."""
    path = os.fspath(path)
    with typed_errors(path):  # a damaged file is a keramic error naming it, whatever the format's reader hits
        row = table.detect(path)
        if row.inspect is None:
            raise FileFormatError(f"{path}: {row.description}: `keramic inspect` cannot describe this format.")
        report = row.inspect(path)
        report["file_bytes"] = _size(path)
    return report


def _size(path):
    """Bytes on disk; for a directory, of the files directly inside it."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file(follow_symlinks=False))


# ------------------------------------------------------------------ text
WEIGHTS_ONLY = {"weights_h5", "legacy_weights", "safetensors", "weights_json"}  # no architecture to describe


def _format_checkpoint(report):
    lines = [
        f"File:       {report['file']} ({_number(report['file_bytes'])} bytes in {len(report['files'])} data file(s) and the index)",
        f"Format:     {report['format_description']}",
        f"Saved by:   keramic {report['keramic_version'] or '(version not recorded)'}",
        f"Model:      {report['model_class'] or '(class not recorded)'} (keys are attribute paths; no config is stored)",
    ]
    if report["layers"]:
        lines.append("Layers:")
        width = max(len(row["attribute"]) for row in report["layers"]) + 2
        for row in report["layers"]:
            lines.append(f"  {row['attribute']:<{width}}{row['tensors']:>4} tensors{_number(row['params']):>14} params")
    lines.append(f"Params:     {report['total_params']:,} ({report['weights_bytes']:,} bytes of weights)")
    if report["weight_dtypes"]:
        lines.append("Dtypes:     " + ", ".join(f"{name} x{count}" for name, count in sorted(report["weight_dtypes"].items(), key=str)))
    optimizer = report["optimizer"]
    if optimizer["variables"]:
        state = f"{optimizer['variables']} variables, {optimizer['bytes']:,} bytes"
        lines.append(f"Optimizer:  {optimizer['class_name'] or '(class not recorded)'}; state: {state}")
    else:
        lines.append("Optimizer:  no state stored")
    lines.append(f"Metrics:    {report['metric_variables']} variables")
    if report["training_state"]:
        state = ", ".join(f"{name}={json.dumps(value) if value != '(RNG state)' else value}" for name, value in report["training_state"].items())
        lines.append(f"Training:   {state}")
    if report["metadata"]:
        lines.append(f"Metadata:   {json.dumps(report['metadata'], sort_keys=True)}")
    lines.append(f"Total:      {report['total_weight_bytes']:,} bytes of tensors")
    return "\n".join(lines)


def _number(value):
    return "n/a" if value is None else f"{value:,}"


def _shape(shape):
    if not isinstance(shape, list):
        return str(shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def format_report(report: dict) -> str:
    """The report as aligned text for people (`keramic inspect FILE`)."""
    if report["format"] == "keramic_checkpoint":
        return _format_checkpoint(report)
    lines = [f"File:       {report['file']} ({_number(report['file_bytes'])} bytes)", f"Format:     {report['format_description']}"]
    versions = [
        f"Keras {report['keras_version']}" if report["keras_version"] else None,
        f"keramic {report['keramic_version']}" if report["keramic_version"] else None,
    ]
    saved_by = ", ".join(item for item in versions if item) or "not recorded"
    if report["date_saved"]:
        saved_by += f", on {report['date_saved']}"
    lines.append(f"Saved by:   {saved_by}")
    model = report["model"] or {}
    if model.get("class_name"):
        module = f" from {model['module']}" if model.get("module") else ""
        registered = f", registered as {model['registered_name']!r}" if model.get("registered_name") not in (None, model["class_name"]) else ""
        lines.append(f"Model:      {model.get('name')!r} ({model['class_name']}{module}{registered})")
    elif model.get("name"):
        lines.append(f"Model:      {model['name']!r} (class not recorded in a weights file)")
    for title, items in (("Inputs", report["inputs"]), ("Outputs", report["outputs"])):
        if items:
            for index, item in enumerate(items):
                label = f"{item['key']}: " if item.get("key") else ""
                if title == "Inputs":
                    text = f"{label}{item['name'] or '(unnamed)'} shape={_shape(item['shape'])} dtype={item['dtype'] or 'n/a'}"
                else:
                    text = f"{label}{item['name']} ({item['class_name'] or '?'})"
                lines.append(f"{(title + ':') if index == 0 else '':<12}{text}")
        elif report["model"] is not None and report["format"] not in WEIGHTS_ONLY:
            lines.append(f"{title + ':':<12}not recorded (known only by running the model)")
    if report["layers"]:
        lines.append("Layers:")
        width = max(len(str(row["name"] or row["path"])) for row in report["layers"]) + 2
        class_width = max(len(str(row["class_name"] or "")) for row in report["layers"]) + 2
        for row in report["layers"]:
            name = str(row["name"] or row["path"])
            where = f"  [{row['path']}]" if row["class_name"] is None else ""
            lines.append(f"  {name:<{width}}{(row['class_name'] or ''):<{class_width}}{_number(row['params']):>12} params{where}")
    if report["total_params"] is None:
        lines.append("Params:     n/a (the file holds no weights)")
    else:
        lines.append(f"Params:     {report['total_params']:,} ({report['weights_bytes']:,} bytes of weights)")
    if report["weight_dtypes"]:
        lines.append("Dtypes:     " + ", ".join(f"{name} x{count}" for name, count in sorted(report["weight_dtypes"].items(), key=str)))
    compile_config = report["compile_config"]
    if compile_config:
        parts = [f"loss={json.dumps(describe(compile_config.get('loss')))}"]
        if compile_config.get("metrics"):
            parts.append(f"metrics={json.dumps(describe(compile_config['metrics']))}")
        if compile_config.get("loss_weights"):
            parts.append(f"loss_weights={json.dumps(compile_config['loss_weights'])}")
        lines.append("Compile:    " + ", ".join(parts))
    elif report["format"] not in WEIGHTS_ONLY:
        lines.append("Compile:    not compiled")
    optimizer = report["optimizer"]
    if optimizer:
        text = str(optimizer["class_name"] or "(class not recorded)")
        if optimizer.get("name"):
            text += f" {optimizer['name']!r}"
        learning_rate = optimizer.get("learning_rate")
        if learning_rate is not None:
            text += f", learning_rate={learning_rate:.7g}" if isinstance(learning_rate, float) else f", learning_rate={learning_rate}"
        if "state_in_file" in optimizer:
            state = f"{optimizer['variables']} variables, {_number(optimizer['bytes'])} bytes" if optimizer["state_in_file"] else "none"
            text += f"; state in file: {state}"
        lines.append(f"Optimizer:  {text}")
    if report["total_weight_bytes"] is not None:
        what = "weights and optimizer state" if optimizer and optimizer.get("state_in_file") else "weights"
        lines.append(f"Total:      {report['total_weight_bytes']:,} bytes of {what}")
    return "\n".join(lines)
