"""Dtypes, devices, tensors and variables: the small layer between Keras names and torch."""

import os
import random
import sys
import threading

import numpy as np
import torch

from keramic.errors import ShapeMismatchError

_FLOATX = "float32"

_TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
_DTYPE_NAMES = {value: key for key, value in _TORCH_DTYPES.items()}
# As Keras's torch backend: torch computes little in uint16 and uint32 (no promotion, no `add`), so
# tensors made, cast or converted to them are int32 and int64.
_TORCH_DTYPES.update(uint16=torch.int32, uint32=torch.int64)
# As Keras on torch: `"int"` and Python's `int` are int32, Python's `float` float32, `complex` complex64.
_ALIASES = {"float": "float32", "int": "int32", "double": "float64", "half": "float16"}
_PYTHON_TYPES = {bool: "bool", int: "int32", float: "float32", complex: "complex64"}


def floatx():
    """The default float dtype name (`"float32"`)."""
    return _FLOATX


def set_floatx(value):
    global _FLOATX
    _FLOATX = standardize_dtype(value)


def standardize_dtype(dtype):
    """Any dtype spelling (str, numpy, torch, DTypePolicy) -> a Keras dtype name."""
    if dtype is None:
        return floatx()
    if isinstance(dtype, torch.dtype):
        return _DTYPE_NAMES[dtype]
    if hasattr(dtype, "variable_dtype"):  # a DTypePolicy
        return dtype.variable_dtype
    if dtype is str or (isinstance(dtype, str) and dtype == "string"):
        return "string"  # torch has none; string inputs stay numpy arrays (see layers/preprocessing/strings.py)
    if isinstance(dtype, type) and dtype in _PYTHON_TYPES:
        return _PYTHON_TYPES[dtype]
    if hasattr(dtype, "as_numpy_dtype") and isinstance(getattr(dtype, "name", None), str):
        dtype = dtype.name  # a TensorFlow dtype: its name is Keras's ("float32", "string", ...)
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    name = _ALIASES.get(name, name)
    if name not in _TORCH_DTYPES:
        raise ValueError(f"Unsupported dtype: {dtype!r}")
    return name


def torch_dtype(dtype):
    name = standardize_dtype(dtype)
    if name == "string":
        raise ValueError("torch has no string dtype: string values stay numpy arrays of `str`.")
    return _TORCH_DTYPES[name]


def is_float_dtype(dtype):
    return standardize_dtype(dtype).startswith(("float", "bfloat"))


def _default_device():
    requested = os.environ.get("KERAMIC_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DEVICE = _default_device()


def get_device():
    """The device new variables and inputs are placed on (CUDA when available)."""
    return DEVICE


def convert_to_tensor(x, dtype=None):
    """numpy / lists / tensors -> a torch tensor on keramic's device (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        if dtype is not None:
            x = x.to(torch_dtype(dtype))
        return x if x.device == DEVICE else x.to(DEVICE)
    if isinstance(x, np.ndarray) or np.isscalar(x) or isinstance(x, (list, tuple)):
        array = np.asarray(x)
        if dtype is None and array.dtype == np.float64:
            dtype = floatx()
        elif dtype is None and array.dtype.name in ("uint16", "uint32"):
            dtype = array.dtype.name
        if array.dtype == object:
            raise TypeError(f"Cannot convert an object array to a tensor: {x!r}")
        # numpy has no bfloat16: Keras's ml_dtypes arrays cross as their raw 16-bit patterns.
        bfloat16 = array.dtype.name == "bfloat16"
        if bfloat16:
            array = array.view(np.int16)
        tensor = torch.from_numpy(np.ascontiguousarray(array) if array.ndim else array.copy())
        if bfloat16:
            tensor = tensor.view(torch.bfloat16)
        if dtype is not None:
            tensor = tensor.to(torch_dtype(dtype))
        return tensor.to(DEVICE)
    if is_foreign_array(x):
        array = np.array(x)  # a writable copy (TensorFlow lends read-only memory)
        return convert_to_tensor(array, dtype if dtype is not None else array.dtype)
    raise TypeError(f"Cannot convert {type(x).__name__} to a tensor.")


def is_foreign_array(x) -> bool:
    """An eager array of another library (a `tf.Tensor` read from a `tf.data` dataset, a JAX array,
    a DataFrame): Keras takes it through the NumPy array protocol, dtype kept."""
    return (
        hasattr(x, "__array__")
        and not isinstance(x, (np.ndarray, torch.Tensor, type))
        and not type(x).__module__.startswith("keramic")
    )


def softmax(x, dim: int):
    """torch's softmax as Keras's torch backend runs it: a float16 tensor on the CPU goes through
    float32 and back (the same values; its gradient then rounds as Keras's does)."""
    if x.dtype == torch.float16 and x.device.type == "cpu":
        return torch.softmax(x.float(), dim).to(torch.float16)
    return torch.softmax(x, dim)


def convert_to_numpy(x):
    """A numpy array of `x`; bfloat16 tensors give ml_dtypes' bfloat16 arrays as in Keras (float32
    when ml_dtypes is not installed)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            try:
                import ml_dtypes
            except ImportError:
                return x.float().numpy()
            return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return x.numpy()
    return np.asarray(x)


_stateless = threading.local()  # `.scope`: this thread's keras.StatelessScope (keramic.stateless_scope sets it)


def current_stateless_scope():
    """The active `keras.StatelessScope` of this thread, or None."""
    return getattr(_stateless, "scope", None)


def _probe_discards_assignments() -> bool:
    """True while a symbolic call's shape probe runs a layer's `call` (keramic.symbolic): as
    Keras's tracing, it changes no variable, so a `call` that assigns acts only on real calls."""
    symbolic = sys.modules.get("keramic.symbolic")
    return symbolic is not None and symbolic.probe_discards_assignments()


def _scope_names() -> list:
    """The `keras.name_scope`s and the layers being built or called around this point, outermost
    first (both modules load with keramic's layers; the backend imports neither)."""
    naming, layers_base = sys.modules.get("keramic.utils.naming"), sys.modules.get("keramic.layers.base")
    return [*(naming.scope_names() if naming else []), *(layers_base.building_scopes() if layers_base else [])]


def _variable_dtype_of(value):
    """As Keras's Variable: a numpy array keeps its dtype (float64 too, where op inputs take floatx)
    and Python integers become int32; None leaves the choice to `convert_to_tensor`."""
    if isinstance(value, np.ndarray):
        return None if value.dtype.name == "bfloat16" else standardize_dtype(value.dtype)
    if isinstance(value, (int, list, tuple)) and not isinstance(value, bool):
        leaves = np.asarray(value, dtype=object).ravel() if isinstance(value, (list, tuple)) else [value]
        if len(leaves) and all(type(leaf) is int for leaf in leaves):
            return "int32"
    return None


class Variable(torch.nn.Parameter):
    """A Keras variable that *is* a `torch.nn.Parameter`, so layers use it with no indirection.

    Keras attributes: `name`, `path`, `trainable`, `numpy()`, `assign()`, `value`.
    """

    # Keras's defaults, read by code written for its distribution strategies and regularizers.
    aggregation = "none"
    synchronization = "auto"
    regularizer = None
    overwrite_with_gradient = False

    def __new__(
        cls,
        initializer,
        shape=None,
        dtype=None,
        trainable=True,
        autocast=True,
        aggregation="none",
        synchronization="auto",
        name=None,
        path=None,
    ):
        # Keras's signature: `initializer` is a value, or an initializer (a name or a callable) with `shape`.
        initial_value = initializer
        if isinstance(initializer, str) or (callable(initializer) and not isinstance(initializer, torch.Tensor)):
            if shape is None:
                raise ValueError(
                    "When creating a Variable from an initializer, the `shape` argument should be specified. "
                    f"Received: initializer={initializer} and shape={shape}"
                )
            initializers = sys.modules["keramic.initializers"]  # loaded with keramic; it imports this module
            dtype = standardize_dtype(dtype) if dtype is not None else floatx()
            initial_value = initializers.get(initializer)(tuple(shape), dtype=dtype)
        if name is None:  # as Keras: unnamed variables are numbered session-wide (variable, variable_1, ...)
            naming = sys.modules.get("keramic.utils.naming")  # loaded with the layers; backend imports no utils
            name = naming.auto_name("variable") if naming is not None else "variable"
        if path is None:  # as Keras: the `name_scope`s and the layers being built or called around it
            path = "/".join([*_scope_names(), name])
        if dtype is None:
            dtype = _variable_dtype_of(initial_value)
        # Always a copy: the caller's tensor or numpy array must not alias the variable.
        data = convert_to_tensor(initial_value, dtype).detach().clone()
        variable = cls.from_fresh_tensor(data, name, trainable, path)
        if (aggregation, synchronization) != ("none", "auto"):
            variable.aggregation, variable.synchronization = aggregation, synchronization
        return variable

    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def from_fresh_tensor(cls, value, name="variable", trainable=True, path=None):
        """Wrap a tensor nobody else holds (an initializer's output) without copying it."""
        variable = torch.Tensor._make_subclass(cls, value.detach(), bool(trainable) and value.is_floating_point())
        variable._keras_name = name
        variable._keras_path = path or name
        variable._keras_trainable = bool(trainable)
        variable.constraint = None
        return variable

    @property
    def name(self):
        return self._keras_name

    @property
    def path(self):
        return self._keras_path

    @property
    def trainable(self):
        return self._keras_trainable

    @trainable.setter
    def trainable(self, value):
        self._keras_trainable = bool(value)
        if self.is_floating_point():
            self.requires_grad_(bool(value))

    @property
    def shape(self) -> tuple[int, ...]:
        """As Keras: a tuple of ints (`size()` still gives torch's `torch.Size`)."""
        return tuple(torch.Tensor.shape.__get__(self))

    @property
    def value(self):
        scope = current_stateless_scope()
        current = None if scope is None else scope.get_current_value(self)
        return self if current is None else current

    def numpy(self):
        """A copy of the value: later updates of the variable never show through it."""
        return convert_to_numpy(self).copy()

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy on the left (`array * variable`, `array < variable`...): as in Keras, NumPy computes
        on the variable's value and returns an ndarray (torch's own handling raises TypeError)."""
        if any(isinstance(item, Variable) for item in kwargs.get("out", ())):
            return NotImplemented  # NumPy cannot write into a variable: use `assign`
        inputs = tuple(item.numpy() if isinstance(item, Variable) else item for item in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __round__(self, ndigits=None):
        """As Keras: `round(variable, n)` is a tensor (torch tensors have no `round()` of their own)."""
        return torch.round(self, decimals=ndigits or 0)

    def __radd__(self, other):
        return _reflected(self, other, "__radd__", "add")

    def __rsub__(self, other):
        return _reflected(self, other, "__rsub__", "subtract")

    def __rmul__(self, other):
        return _reflected(self, other, "__rmul__", "multiply")

    def __rtruediv__(self, other):
        return _reflected(self, other, "__rtruediv__", "true_divide")

    def __rfloordiv__(self, other):
        return _reflected(self, other, "__rfloordiv__", "floor_divide")

    def __rmod__(self, other):
        return _reflected(self, other, "__rmod__", "mod")

    def __rpow__(self, other):
        return _reflected(self, other, "__rpow__", "power")

    def __rmatmul__(self, other):
        return _reflected(self, other, "__rmatmul__", "matmul")

    def assign(self, value):
        """Set the value in place; the shape must match exactly."""
        value = convert_to_tensor(value)
        if tuple(value.shape) != tuple(self.shape):
            raise ShapeMismatchError(
                f"Cannot assign a value of shape {tuple(value.shape)} to variable '{self.path}' "
                f"of shape {tuple(self.shape)}."
            )
        scope = current_stateless_scope()
        if scope is not None:  # keras.StatelessScope: record the value; the variable keeps its own
            scope.add_update((self, value.to(self.dtype)))
            return self
        if _probe_discards_assignments():
            return self
        with torch.no_grad():
            self.copy_(value)
        return self

    def assign_add(self, delta):
        if current_stateless_scope() is not None:
            return self.assign(self.value + convert_to_tensor(delta, standardize_dtype(self.dtype)))
        if _probe_discards_assignments():
            return self
        with torch.no_grad():
            self.add_(convert_to_tensor(delta, standardize_dtype(self.dtype)))
        return self

    def assign_sub(self, delta):
        if current_stateless_scope() is not None:
            return self.assign(self.value - convert_to_tensor(delta, standardize_dtype(self.dtype)))
        if _probe_discards_assignments():
            return self
        with torch.no_grad():
            self.sub_(convert_to_tensor(delta, standardize_dtype(self.dtype)))
        return self

    def __deepcopy__(self, memo):
        copy = Variable.from_fresh_tensor(self.detach().clone(), self.name, self.trainable, self.path)
        memo[id(self)] = copy
        return copy

    def __reduce_ex__(self, protocol):
        raise TypeError("keramic variables are not picklable; use keramic's saving API.")

    def __repr__(self):
        return (
            f"<Variable path={self.path}, shape={tuple(self.shape)}, "
            f"dtype={standardize_dtype(self.dtype)}, value={self.numpy()}>"
        )

    def __hash__(self):
        return id(self)


def _reflected(variable, other, method: str, op: str):
    """`other <op> variable`. Python asks a right operand that overrides a reflected operator first,
    so a tensor on the left gets its own operator, as if Variable had none (`tensor / variable`
    divides; torch's reflected form would multiply by a reciprocal). Numbers compute as Keras's ops
    do (`2.0 / variable` is a true division), and what torch does not take (a list, a bool, a NumPy
    scalar before `@`) goes through `keras.ops`, as in Keras (`2.0 @ variable` raises torch's
    RuntimeError, `[1, 2] + variable` is a tensor)."""
    if isinstance(other, torch.Tensor):
        return getattr(torch.Tensor, "__" + method[3:])(other, variable)
    if isinstance(other, (int, float)) and not isinstance(other, bool) and method != "__rtruediv__":
        result = getattr(torch.Tensor, method)(variable, other)
        if result is not NotImplemented:
            return result
    return getattr(sys.modules["keramic.ops"], op)(other, variable)


def set_random_seed(seed):
    """Seed Python, NumPy and torch so initialisation, dropout and shuffling repeat exactly.

    As Keras does, TensorFlow's global seed is set too when TensorFlow is loaded, so a
    `tf.data` pipeline's `shuffle` repeats as well.
    """
    keramic_random = sys.modules.get("keramic.random")  # as Keras: `seed=None` draws restart from `seed`
    if keramic_random is not None:
        keramic_random.reset_global_seed_generator()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "random"):
        tf.random.set_seed(seed)


# ---------------------------------------------------------------- keras.backend public functions
# Appended for `keras.backend` (and read by keramic.config): settings, dtype promotion, session.

_SETTINGS = {"epsilon": 1e-7, "image_data_format": "channels_last"}


def backend():
    """The name of the backend Keras code sees: always "torch"."""
    return "torch"


def epsilon():
    """The fuzz factor used where a division or log needs a floor (1e-7 by default)."""
    return _SETTINGS["epsilon"]


def set_epsilon(value):
    _SETTINGS["epsilon"] = float(value)


def image_data_format():
    """`"channels_last"` (default) or `"channels_first"`."""
    return _SETTINGS["image_data_format"]


def set_image_data_format(data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"image data format must be 'channels_last' or 'channels_first'; received {data_format!r}.")
    _SETTINGS["image_data_format"] = data_format


def is_int_dtype(dtype):
    return standardize_dtype(dtype).startswith(("int", "uint"))


def is_keras_tensor(x):
    """True for a symbolic `KerasTensor` (the Functional API's placeholders)."""
    return getattr(type(x), "_is_keras_tensor", False)


# Keras's dtype promotion: a JAX-style lattice where Python scalars are "weak" and adopt the
# other operand's kind and width (`int8 tensor + 1` stays int8, `float16 tensor + 1.0` float16).
_LATTICE = {
    "bool": ("int",),
    "int": ("uint8", "int8"),
    "uint8": ("uint16", "int16"),
    "uint16": ("uint32", "int32"),
    "uint32": ("uint64", "int64"),
    "uint64": ("float",),
    "int8": ("int16",),
    "int16": ("int32",),
    "int32": ("int64",),
    "int64": ("float",),
    "float": ("bfloat16", "float16", "complex"),
    "bfloat16": ("float32",),
    "float16": ("float32",),
    "float32": ("float64", "complex64"),
    "float64": ("complex128",),
    "complex": ("complex64",),
    "complex64": ("complex128",),
    "complex128": (),
}
_UPPER: dict[str, frozenset[str]] = {}


def _upper(dtype):
    if dtype not in _UPPER:
        result = {dtype}
        for parent in _LATTICE[dtype]:
            result |= _upper(parent)
        _UPPER[dtype] = frozenset(result)
    return _UPPER[dtype]


def _join(a, b):
    common = _upper(a) & _upper(b)
    for candidate in common:  # the least upper bound: the one whose own upper set holds all the others
        if _upper(candidate) >= common:
            return candidate
    raise TypeError(f"No common dtype for {a} and {b}.")


def _lattice_node(value):
    if isinstance(value, torch.Tensor):
        return _DTYPE_NAMES[value.dtype]
    if value is bool or isinstance(value, bool):
        return "bool"
    if value is int or isinstance(value, int):
        return "int"
    if value is float or isinstance(value, float):
        return "float"
    if value is complex or isinstance(value, complex):
        return "complex"
    if isinstance(value, torch.Tensor) or (hasattr(value, "dtype") and not isinstance(value, (str, np.dtype, type))):
        return standardize_dtype(value.dtype)
    if isinstance(value, (list, tuple)):  # as Keras: a nested list counts as the tensor it converts to
        name = np.asarray(value).dtype.name  # Python numbers: int32, floatx() and complex64, as Keras
        return {"int64": "int32", "float64": floatx(), "complex128": "complex64"}.get(name, standardize_dtype(name))
    return standardize_dtype(value)


_JOINS: dict[tuple[str, str], str] = {}


def promote_types(*dtypes):
    """The lattice join of dtypes, tensors or Python scalars, keeping 64-bit widths (as torch ops do)."""
    if not dtypes:
        return floatx()
    joined = _lattice_node(dtypes[0])
    for other in dtypes[1:]:
        node = _lattice_node(other)
        key = (joined, node)
        if key not in _JOINS:
            _JOINS[key] = _join(joined, node)
        joined = _JOINS[key]
    return {"int": "int32", "float": floatx(), "complex": "complex64"}.get(joined, joined)


_TO_32_BITS = {"int64": "int32", "uint64": "uint32", "float64": "float32", "complex128": "complex64"}


def result_type(*dtypes):
    """The dtype Keras's `result_type` gives: the lattice join, with 64-bit results narrowed to
    32 bits (Keras promotes as JAX does without x64).

    >>> result_type("int8", float)
    'float32'
    """
    joined = promote_types(*dtypes)
    return _TO_32_BITS.get(joined, joined)


_UIDS: dict[str, int] = {}


def get_uid(prefix=""):
    """1, 2, 3, ... per prefix, reset by `clear_session()`."""
    _UIDS[prefix] = _UIDS.get(prefix, 0) + 1
    return _UIDS[prefix]


def clear_session(free_memory=True):
    """Forget automatic layer names and uids, so a new model gets `dense`, not `dense_7`."""
    import gc
    import sys

    naming = sys.modules.get("keramic.utils.naming")  # loaded with the layers; nothing to reset before
    if naming is not None:
        naming.reset_names()
    keramic_random = sys.modules.get("keramic.random")  # Keras drops its global SeedGenerator too
    if keramic_random is not None:
        keramic_random.reset_global_seed_generator()
    _UIDS.clear()
    if free_memory:
        gc.collect()
