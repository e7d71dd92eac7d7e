"""Dtype policies: which dtype a layer computes in and which it stores variables in."""

import collections.abc
import re

from keramic import backend
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


@keras_export("keras.dtype_policies")
@keras_export("keras")
class DTypePolicy:
    """`"float32"`, `"float16"`, `"bfloat16"`, or mixed (`"mixed_float16"`: float16 compute, float32 variables)."""

    def __init__(self, name=None):
        name = name or backend.floatx()
        if name.startswith("mixed_"):
            self._compute = backend.standardize_dtype(name[len("mixed_"):])
            self._variable = "float32"
        else:
            self._compute = self._variable = backend.standardize_dtype(name)
        self._name = name
        self.compute_torch_dtype = backend.torch_dtype(self._compute)
        self.is_mixed = self._compute != self._variable

    @property
    def name(self):
        return self._name

    @property
    def compute_dtype(self):
        return self._compute

    @property
    def variable_dtype(self):
        return self._variable

    @property
    def quantization_mode(self):
        """None: a float policy quantizes nothing."""
        return None

    def get_config(self):
        return {"name": self._name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<DTypePolicy "{self._name}">'


@keras_export("keras.dtype_policies")
@keras_export("keras")
class FloatDTypePolicy(DTypePolicy):
    """Keras's name for a policy of float dtypes; behaves exactly as `DTypePolicy` (Keras keeps it for old configs)."""

    def __repr__(self):
        return f'<FloatDTypePolicy "{self.name}">'


QUANTIZATION_MODES = ("int8", "float8", "int4", "gptq", "awq")


@keras_export("keras.dtype_policies")
class QuantizedDTypePolicy(DTypePolicy):
    """A quantized layer's policy: `mode` ("int8", ...) applied to a float `source_name` policy.

    Its name is `"<mode>_from_<source_name>"` (e.g. `"int8_from_float32"`); compute and variable
    dtypes are the source policy's (the quantized variables carry their own dtypes).
    """

    def __init__(self, mode, source_name=None):
        source_name = source_name or dtype_policy().name
        super().__init__(source_name)
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"Invalid quantization mode. Expected one of {QUANTIZATION_MODES}. Received: mode={mode}")
        if mode == "int8" and self.compute_dtype == "float16":
            raise ValueError(f"Quantization mode='{mode}' doesn't work well with compute_dtype='float16'.")
        self._name = f"{mode}_from_{source_name}"
        self._source_name = source_name
        self._quantization_mode = mode

    @property
    def quantization_mode(self):
        return self._quantization_mode

    def get_config(self):
        return {"mode": self._quantization_mode, "source_name": self._source_name}

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<{type(self).__name__} "{self._name}">'


@keras_export("keras.dtype_policies")
class QuantizedFloat8DTypePolicy(QuantizedDTypePolicy):
    """A float8 policy; `amax_history_length` is how many steps of max|x| pick each scale."""

    default_amax_history_length = 1024

    def __init__(self, mode, source_name=None, amax_history_length=1024):
        super().__init__(mode, source_name)
        if not isinstance(amax_history_length, int):
            raise TypeError(f"`amax_history_length` must be an integer. Received: amax_history_length={amax_history_length}")
        self._amax_history_length = amax_history_length

    @property
    def amax_history_length(self):
        return self._amax_history_length

    def get_config(self):
        return {**super().get_config(), "amax_history_length": self._amax_history_length}


@keras_export("keras.dtype_policies")
class Int4DTypePolicy(QuantizedDTypePolicy):
    """An int4 policy whose mode names the block size: `"int4/128"` (groups of 128 inputs) or `"int4/-1"` (per channel)."""

    def __init__(self, mode, source_name=None):
        parts = mode.split("/")
        if len(parts) != 2 or parts[0] != "int4":
            raise ValueError(f"Invalid mode for Int4DTypePolicy. Expected format 'int4/<block_size>', but got '{mode}'.")
        try:
            block_size = int(parts[1])
        except ValueError:
            raise ValueError(
                "Invalid mode for Int4DTypePolicy. <block_size> must be an integer. "
                f"Expected format 'int4/<block_size>', but got '{mode}'."
            ) from None
        if block_size < -1 or block_size == 0:
            raise ValueError(
                "Invalid block_size in mode. Supported values are -1 (per-channel) or a positive integer "
                f"(sub-channel), but got {block_size} from '{mode}'."
            )
        super().__init__("int4", source_name)
        self._name = f"{mode}_from_{self._source_name}"
        self.mode = "int4"
        self.block_size = block_size

    def get_config(self):
        return {**super().get_config(), "mode": f"int4/{self.block_size}"}


class _CalibratedDTypePolicy(QuantizedDTypePolicy):
    """A GPTQ/AWQ policy whose mode carries the bits and group size: `"gptq/4/128"`.

    A saved model needs both to rebuild the layer's packed kernel and per-group scales.
    """

    _mode = ""
    _bits: tuple = ()
    _bits_hint = ""

    def __init__(self, mode, source_name=None):
        expected = f"'{self._mode}/<weight_bits>/<group_size>'"
        name = type(self).__name__
        parts = mode.split("/")
        if len(parts) != 3 or parts[0] != self._mode:
            raise ValueError(f"Invalid mode for {name}. Expected format {expected}, but got '{mode}'.")
        try:
            weight_bits, group_size = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(
                f"Invalid mode for {name}. <weight_bits> and <group_size> must be integers. "
                f"Expected format {expected}, but got '{mode}'."
            ) from None
        if weight_bits not in self._bits:
            raise ValueError(f"Invalid weight_bits in mode. {self._bits_hint}, but got {weight_bits} from '{mode}'.")
        if group_size < -1 or group_size == 0:
            raise ValueError(
                "Invalid group_size in mode. Supported values are -1 (per-channel) or a positive integer, "
                f"but got {group_size} from '{mode}'."
            )
        super().__init__(self._mode, source_name)
        self._name = f"{mode}_from_{self._source_name}"
        self.mode = self._mode
        self.weight_bits = weight_bits
        self.group_size = group_size

    def get_config(self):
        return {**super().get_config(), "mode": f"{self._mode}/{self.weight_bits}/{self.group_size}"}


@keras_export("keras.dtype_policies")
class GPTQDTypePolicy(_CalibratedDTypePolicy):
    """A GPTQ policy, `"gptq/<weight_bits>/<group_size>"` (bits 2, 3, 4 or 8; group -1: per channel)."""

    _mode, _bits, _bits_hint = "gptq", (2, 3, 4, 8), "Supported values are 2, 3, 4, and 8"


@keras_export("keras.dtype_policies")
class AWQDTypePolicy(_CalibratedDTypePolicy):
    """An AWQ policy, `"awq/4/<group_size>"` (AWQ stores 4-bit weights only)."""

    _mode, _bits, _bits_hint = "awq", (4,), "AWQ only supports 4-bit quantization"


def _quantized_policy(name):
    """`"int8_from_float32"`, `"int4/128_from_bfloat16"`, ... -> the quantized policy it names."""
    parts = name.split("_from_")
    if len(parts) != 2:
        raise ValueError(
            "Cannot convert `policy` into a valid pair (`mode`, `source_name`) to instantiate "
            f"`QuantizedDTypePolicy`. Received: policy={name}"
        )
    mode, source_name = parts
    if mode.startswith("int4/"):
        return Int4DTypePolicy(mode, source_name)
    if mode == "float8":
        return QuantizedFloat8DTypePolicy(mode, source_name)
    if mode in ("int8", "int4"):
        return QuantizedDTypePolicy(mode, source_name)
    if mode.startswith("gptq"):
        return GPTQDTypePolicy(mode, source_name)
    if mode.startswith("awq"):
        return AWQDTypePolicy(mode, source_name)
    raise ValueError(f"Unsupported quantized dtype policy {name!r}.")


@keras_export("keras.dtype_policies")
class DTypePolicyMap(DTypePolicy, collections.abc.MutableMapping):
    """Layer paths -> policies, for layers whose sublayers use different dtypes.

    A lookup tries the exact path first, then every key as a regular expression that must match
    the whole path (`"encoder/.*"`); a path two patterns match is an error; no match gives
    `default_policy` (the global policy when None).

    >>> policies = DTypePolicyMap(default_policy="float32")
    >>> policies["encoder/.*"] = DTypePolicy("bfloat16")
    >>> policies["encoder/dense"].name
    'bfloat16'
    """

    def __init__(self, default_policy=None, policy_map=None):
        if isinstance(default_policy, DTypePolicyMap):
            raise ValueError("`default_policy` cannot be a `DTypePolicyMap`.")
        if policy_map is not None and not isinstance(policy_map, dict):
            raise TypeError(f"`policy_map` must be a dict of path -> DTypePolicy; received {type(policy_map).__name__}.")
        self._default_policy_arg = default_policy
        self._policy_map = {}
        for path, policy in (policy_map or {}).items():
            self[path] = policy

    @property
    def default_policy(self):
        return get(self._default_policy_arg)

    @property
    def name(self):
        return "map_" + self.default_policy.name

    @property
    def compute_dtype(self):
        return self.default_policy.compute_dtype

    @property
    def variable_dtype(self):
        return self.default_policy.variable_dtype

    @property
    def is_mixed(self):
        return self.default_policy.is_mixed

    @property
    def compute_torch_dtype(self):
        return self.default_policy.compute_torch_dtype

    def __getitem__(self, path):
        if path in self._policy_map:
            return self._policy_map[path]
        matches = [pattern for pattern in self._policy_map if re.fullmatch(pattern, path)]
        if len(matches) > 1:
            raise ValueError(
                f"Path {path!r} matches multiple dtype policy patterns: {matches}. Make the patterns exclusive."
            )
        return self._policy_map[matches[0]] if matches else self.default_policy

    def __setitem__(self, path, policy):
        if path in self._policy_map:
            raise ValueError(
                f"{path} already exist in the DTypePolicyMap with value {self._policy_map[path]}. "
                "Please make sure to not use duplicated keys."
            )
        policy = get(policy)
        if isinstance(policy, DTypePolicyMap):
            raise ValueError(f"A DTypePolicyMap cannot hold another DTypePolicyMap (at {path!r}).")
        self._policy_map[path] = policy

    def __delitem__(self, path):
        del self._policy_map[path]

    def __iter__(self):
        return iter(self._policy_map)

    def __len__(self):
        return len(self._policy_map)

    def __contains__(self, path):
        return path in self._policy_map

    def get_config(self):
        default = self._default_policy_arg
        if isinstance(default, DTypePolicy):
            default = default.name
        return {"default_policy": default, "policy_map": {path: serialize(policy) for path, policy in self._policy_map.items()}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        policy_map = {path: deserialize(policy, custom_objects) for path, policy in (config.get("policy_map") or {}).items()}
        return cls(default_policy=config.get("default_policy"), policy_map=policy_map)

    def __eq__(self, other):
        return (
            isinstance(other, DTypePolicyMap)
            and other._default_policy_arg == self._default_policy_arg
            and other._policy_map == self._policy_map
        )

    __hash__ = None  # type: ignore[assignment]  # a mutable mapping is unhashable; mypy expects the base's method

    def __repr__(self):
        mapping = [(path, policy.name) for path, policy in self._policy_map.items()]
        return f"<DTypePolicyMap default_policy={self.default_policy.name}, mapping={mapping}>"


def serialize(policy):
    """The Keras envelope of a policy (`{"module", "class_name", "config", "registered_name"}`)."""
    return serialize_keras_object(policy)


def deserialize(config, custom_objects=None):
    """The policy an envelope (or a policy name) describes."""
    if isinstance(config, str):
        return get(config)
    policy = deserialize_keras_object(config, ("keras.dtype_policies", "keras"), custom_objects)
    if not isinstance(policy, DTypePolicy):
        raise ValueError(f"Expected a dtype policy config; received {config!r}.")
    return policy


_GLOBAL_POLICY = None


def set_dtype_policy(policy):
    """Set the policy layers built with `dtype=None` take (`keras.config.set_dtype_policy`).

    >>> keramic.mixed_precision.set_global_policy("mixed_bfloat16")
    """
    global _GLOBAL_POLICY
    if policy is None:
        _GLOBAL_POLICY = None
        return
    if isinstance(policy, str) and not policy.startswith(("mixed_", *QUANTIZATION_MODES)):
        backend.standardize_dtype(policy)  # raises for an unknown name
    _GLOBAL_POLICY = get(policy)
    if not isinstance(_GLOBAL_POLICY, DTypePolicy):
        raise ValueError(f"Expected a DTypePolicy or a policy name; received {policy!r}.")


def dtype_policy():
    """The global policy (`float32`, i.e. floatx, unless `set_dtype_policy` changed it)."""
    return _GLOBAL_POLICY if _GLOBAL_POLICY is not None else DTypePolicy(backend.floatx())


def get(identifier):
    """None (the global policy), a dtype name, a config envelope or a policy -> a DTypePolicy."""
    if identifier is None:
        return dtype_policy()
    if isinstance(identifier, DTypePolicy):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return deserialize(identifier)
        return DTypePolicy(identifier.get("name"))
    if isinstance(identifier, str) and identifier.startswith(QUANTIZATION_MODES):
        return _quantized_policy(identifier)
    return DTypePolicy(backend.standardize_dtype(identifier) if not str(identifier).startswith("mixed_") else identifier)
