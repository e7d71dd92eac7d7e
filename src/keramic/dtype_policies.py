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

    __hash__ = None

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
    if isinstance(policy, str) and not policy.startswith("mixed_"):
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
    return DTypePolicy(backend.standardize_dtype(identifier) if not str(identifier).startswith("mixed_") else identifier)
