"""Dtype policies: which dtype a layer computes in and which it stores variables in."""

from keramic import backend
from keramic.serialization.registry import keras_export


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


# Class names Keras 3 writes for policies; all read back as a plain DTypePolicy.
for _alias in ("FloatDTypePolicy",):
    keras_export("keras.dtype_policies", _alias)(DTypePolicy)


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
        if "config" in identifier and isinstance(identifier["config"], dict):
            return DTypePolicy(identifier["config"].get("name"))
        return DTypePolicy(identifier.get("name"))
    return DTypePolicy(backend.standardize_dtype(identifier) if not str(identifier).startswith("mixed_") else identifier)
