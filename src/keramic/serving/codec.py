"""TF Serving's JSON request and response bodies <-> numpy arrays, and the error they answer with.

Rows (`instances`) and columns (`inputs`), base64 `{"b64": ...}` strings, TF's `NaN`/`Infinity`
tokens; every value is checked against the signature's dtype and shape before it reaches a graph.
"""

import base64
import binascii
import json
import logging
import math

import numpy as np
import orjson

log = logging.getLogger("keramic.serving")

TYPE_NAMES = {"f": "float", "i": "int", "u": "uint", "b": "bool", "O": "string"}


class RestError(Exception):
    """An error answered as `{"error": message}` with the HTTP status of TF's canonical `code`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ JSON <-> tensors
MAX_FALLBACK_DEPTH = 512  # nesting the standard-library parser (recursive, in C) is given; orjson stops at 1024 itself
MAX_TENSOR_RANK = 64  # numpy's own limit on dimensions
MAX_INTEGER_DIGITS = 20  # longer integer literals are read as doubles, as TF Serving's parser does
_CHUNK = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_BRACKET_STEPS: np.ndarray = np.zeros(256, np.int8)
_BRACKET_STEPS[list(b"[{")] = 1
_BRACKET_STEPS[list(b"]}")] = -1


def parse_json(body):
    """The request document; TF's messages for empty or invalid JSON (NaN/Infinity accepted).

    orjson reads almost every body. The rest (NaN/Infinity tokens, data after the first value,
    numbers beyond a double) go to the standard library, after a scan that refuses nesting deeper
    than MAX_FALLBACK_DEPTH without parsing, and with number hooks that refuse overflow."""
    if not body.strip():
        raise RestError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    if nesting_exceeds(body, MAX_FALLBACK_DEPTH):
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: arrays and objects nested deeper than {MAX_FALLBACK_DEPTH} levels")
    decoder = json.JSONDecoder(parse_float=_finite_float, parse_int=_json_integer)
    try:
        document, _ = decoder.raw_decode(text.lstrip())  # like TF: stop after the first value
    except json.JSONDecodeError as error:
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except RecursionError:  # not reached after the depth scan; kept so no parser recursion can end in a 500
        raise RestError("INVALID_ARGUMENT", "JSON Parse error: arrays and objects nested too deeply") from None
    return document


def nesting_exceeds(body, limit):
    """Whether JSON text nests arrays and objects deeper than `limit`, never recursing (a body of a
    million `[` included): brackets outside strings are counted in numpy passes over 1 MiB chunks.
    A quote is escaped when an odd run of backslashes precedes it; that holds inside strings, and
    text that breaks it outside strings is invalid JSON, where the parser stops anyway."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    data = np.frombuffer(body, np.uint8)
    depth, inside, backslashes = 0, 0, 0  # carried from chunk to chunk; backslashes: the trailing run
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        plain = np.flatnonzero(chunk != _BACKSLASH)
        quotes = np.flatnonzero(chunk == _QUOTE)
        if quotes.size:
            if plain.size < len(chunk) or backslashes:  # drop the quotes that backslashes escape
                index = np.searchsorted(plain, quotes)  # each quote's own place among the non-backslashes
                previous = np.where(index > 0, plain[np.maximum(index - 1, 0)], -1)
                quotes = quotes[(quotes - previous - 1 + np.where(previous < 0, backslashes, 0)) % 2 == 0]
            marks = np.zeros(len(chunk), np.uint8)
            marks[quotes] = 1
            in_string = np.bitwise_xor.accumulate(marks) ^ inside
            inside ^= len(quotes) & 1
            steps = np.where(in_string == 1, 0, _BRACKET_STEPS[chunk])
        else:
            steps = _BRACKET_STEPS[chunk] if not inside else np.zeros(1, np.int8)
        running = np.cumsum(steps, dtype=np.int32)
        if depth + int(running.max()) > limit:
            return True
        depth += int(running[-1])
        backslashes = len(chunk) - 1 - int(plain[-1]) if plain.size else backslashes + len(chunk)
    return False


def _finite_float(text):
    value = float(text)
    if value in (math.inf, -math.inf):
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: Number too big to be stored in double: {text[:64]}")
    return value


def _json_integer(text):
    return int(text) if len(text.lstrip("-")) <= MAX_INTEGER_DIGITS else _finite_float(text)


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def preview(value):
    """The start of a value as JSON, for error messages (any value a parser produced, however deep)."""
    if isinstance(value, float):
        return repr(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()[:256]
    except orjson.JSONEncodeError:  # nested past orjson's writer limit, or lone surrogates from a \ud800 escape
        return "(a value nested too deeply or not valid UTF-8)"


def _first_leaf(value, wanted):
    """The first leaf of a nested list for which `wanted(leaf)` holds (for error messages)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif wanted(item):
            return item
    return None


def to_array(value, dtype, shape, name):
    """A JSON value (nested lists, numbers, strings, `{"b64": ...}`) as an array of `dtype`
    checked against the signature's `shape` (None: any size)."""
    if dtype == np.dtype(object):
        array = _string_array(value, name)
    elif dtype.kind == "f" and _fast_float(value):
        # The common case, converted in one pass (booleans read as 0/1 here, where TF refuses them).
        try:
            with np.errstate(over="ignore"):
                array = np.asarray(value, dtype=dtype)
        except (ValueError, TypeError, OverflowError):
            array = _checked_array(value, dtype, name)
    else:
        array = _checked_array(value, dtype, name)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        _refuse_overflow(array, value, name)
    if array.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, array.shape)):
        expected = [-1 if d is None else d for d in shape]
        raise RestError("INVALID_ARGUMENT", f"Input '{name}' must have shape {expected} (-1: any size), got {list(array.shape)}")
    return array


def _refuse_overflow(array, value, name):
    """Infinities are welcome as the `Infinity` token, not as finite numbers too large for the dtype."""
    wide = np.asarray(value, dtype=np.float64)
    if (np.isinf(array) & np.isfinite(wide)).any():
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': a value is out of range for {array.dtype.name}")


def _fast_float(value):
    """A nested list whose first leaf is a number: worth trying numpy's direct float conversion."""
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_array(value, dtype, name):
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular ({_short(error)})") from None
    return _cast(array, value, dtype, name)


def _short(error):
    return str(error).split(". ")[0]


def _cast(array, value, dtype, name):
    kind, wanted = array.dtype.kind, dtype.kind
    accepted = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}.get(wanted, "")
    if kind not in accepted:
        if kind == "O":
            found = _first_leaf(value, lambda leaf: isinstance(leaf, dict))
            if found is not None:
                raise RestError(
                    "INVALID_ARGUMENT",
                    f"JSON Value: {preview(found)} Type: Object is not of expected type: {TYPE_NAMES[wanted]} (input '{name}')",
                )
            raise RestError("INVALID_ARGUMENT", f"Input '{name}': mixed or out-of-range values, or nested lists of unequal sizes")
        leaf = _first_leaf(value, lambda x: not isinstance(x, list) and np.asarray(x).dtype.kind not in accepted)
        if leaf is None:  # each value fits on its own, not together (uint64 beside negatives: numpy makes floats)
            raise RestError("INVALID_ARGUMENT", f"Input '{name}': a value does not fit {dtype.name}")
        type_name = {"U": "String", "b": "Bool", "f": "Double", "i": "Int64", "u": "Uint64"}.get(np.asarray(leaf).dtype.kind, "Value")
        raise RestError("INVALID_ARGUMENT", f"JSON Value: {preview(leaf)} Type: {type_name} is not of expected type: {TYPE_NAMES[wanted]} (input '{name}')")
    if wanted in "iu" and array.size:
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise RestError("INVALID_ARGUMENT", f"Input '{name}': a value does not fit {dtype.name}")
    with np.errstate(over="ignore"):
        return array.astype(dtype, copy=False)


def _string_array(value, name):
    """DT_STRING values: JSON strings, or `{"b64": ...}` binary (UTF-8 text only: onnxruntime's
    Python binding carries string tensors as text)."""

    def decode(item, depth=0):
        if isinstance(item, list):
            if depth >= MAX_TENSOR_RANK:
                raise RestError("INVALID_ARGUMENT", f"Input '{name}': lists nested deeper than {MAX_TENSOR_RANK} levels")
            return [decode(x, depth + 1) for x in item]
        if _is_b64(item):
            try:
                data = base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise RestError("INVALID_ARGUMENT", "Unable to base64 decode") from None
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise RestError("INVALID_ARGUMENT", f"Input '{name}': b64 data that is not UTF-8 text cannot be passed to onnxruntime") from None
        if isinstance(item, str):
            return item
        raise RestError("INVALID_ARGUMENT", f"JSON Value: {preview(item)} is not of expected type: string (input '{name}')")

    decoded = decode(value)
    try:
        array = np.array(decoded, dtype=object)
    except ValueError as error:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular ({_short(error)})") from None
    if _first_leaf(array.tolist() if array.ndim else [array.item()], lambda x: not isinstance(x, str)) is not None:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular")
    return array


def request_arrays(document, specs):
    """(format, arrays in graph input order) from a predict request's `instances` or `inputs`."""
    names = [name for name, _, _ in specs]
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise RestError(
            "INVALID_ARGUMENT",
            f"JSON Value: {preview(document)} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if not has_instances and not has_inputs:
        raise RestError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
    if has_instances:
        return "row", _row_arrays(document["instances"], specs, names)
    return "columnar", _columnar_arrays(document["inputs"], specs, names)


def _row_arrays(instances, specs, names):
    if not isinstance(instances, list) or not instances:
        raise RestError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
    objects = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if len(specs) == 1 and not any(objects):
        name, dtype, shape = specs[0]
        return [to_array(instances, dtype, shape, name)]
    if not all(objects):
        if len(specs) > 1 and not any(objects):
            raise RestError(
                "INVALID_ARGUMENT",
                "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map",
            )
        index = objects.index(not objects[0])
        expected, got = ("object", "list") if objects[0] else ("value/list", "object")
        raise RestError("INVALID_ARGUMENT", f"Expecting {expected} but got {got} at item {index} of input list")
    for index, item in enumerate(instances):
        if set(item) != set(names):
            raise RestError(
                "INVALID_ARGUMENT",
                f"Failed to process element: {index} of 'instances' list. JSON object: {preview(item)} keys must be equal to: {', '.join(sorted(names))}",
            )
    return [to_array([item[name] for item in instances], dtype, shape, name) for name, dtype, shape in specs]


def _columnar_arrays(inputs, specs, names):
    if isinstance(inputs, dict) and not _is_b64(inputs) and (len(specs) > 1 or names[0] in inputs):
        for name in names:
            if name not in inputs:
                raise RestError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
        return [to_array(inputs[name], dtype, shape, name) for name, dtype, shape in specs]
    if len(specs) > 1:
        raise RestError(
            "INVALID_ARGUMENT",
            "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map",
        )
    name, dtype, shape = specs[0]
    return [to_array(inputs, dtype, shape, name)]


def _output_value(name, array):
    """JSON-ready value: numpy arrays go to orjson as they are; strings become text or b64."""
    if array.dtype == np.dtype(object):
        as_b64 = name.endswith("_bytes")

        def convert(item):
            if isinstance(item, list):
                return [convert(x) for x in item]
            data = item if isinstance(item, bytes) else str(item).encode()
            return {"b64": base64.b64encode(data).decode()} if as_b64 else data.decode("utf-8", "replace")

        return convert(array.tolist())
    return array[()] if array.ndim == 0 else np.ascontiguousarray(array)  # orjson takes no 0-d arrays


def response_body(form, names, outputs):
    """TF Serving's `predictions` (row requests) or `outputs` (columnar requests) document."""
    if form == "row":
        for name, array in zip(names, outputs):
            if array.ndim == 0:
                raise RestError("INVALID_ARGUMENT", f"Tensor name: {name} has no shape information ")
        sizes = {array.shape[0] for array in outputs}
        if len(sizes) > 1:
            raise RestError("INVALID_ARGUMENT", f"Tensor name: {names[0]} has inconsistent batch size: {sorted(sizes)}")
        if len(outputs) == 1:
            document = {"predictions": _output_value(names[0], outputs[0])}
        else:
            values = [_output_value(name, array) for name, array in zip(names, outputs)]
            document = {"predictions": [{name: value[i] for name, value in zip(names, values)} for i in range(sizes.pop())]}
    elif len(outputs) == 1:
        document = {"outputs": _output_value(names[0], outputs[0])}
    else:
        document = {"outputs": {name: _output_value(name, array) for name, array in zip(names, outputs)}}
    if all(a.dtype.kind != "f" or np.isfinite(a).all() for a in outputs):
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    # orjson writes NaN as null; TF Serving writes the NaN / Infinity tokens.
    return json.dumps(document, default=lambda a: a.tolist(), allow_nan=True).encode()
