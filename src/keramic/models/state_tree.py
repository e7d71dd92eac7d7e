"""A model's whole state as nested dicts keyed by variable path (Keras's `get_state_tree`).

Code written for Keras's stateless style (JAX-like training loops, checkpointing libraries) reads
and writes the trainable, non-trainable, optimizer and metric variables as one tree.
"""

from typing import Any

from keramic import backend

VALUE_FORMATS = ("backend_tensor", "numpy_array")


def _groups(model) -> dict[str, list]:
    optimizer = getattr(model, "optimizer", None)
    return {
        "trainable_variables": model.trainable_variables,
        "non_trainable_variables": model.non_trainable_variables,
        "optimizer_variables": list(optimizer.variables) if optimizer is not None else [],
        "metrics_variables": model.metrics_variables,
    }


def get_state_tree(model, value_format: str = "backend_tensor") -> dict[str, dict[str, Any]]:
    """{group: {path part: ... {name: value}}}, values as the variables themselves or as NumPy arrays."""
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"Invalid `value_format` argument. Expected one of {set(VALUE_FORMATS)}. Received: value_format={value_format}")
    tree: dict[str, dict[str, Any]] = {}
    for group, variables in _groups(model).items():
        nested: dict[str, Any] = {}
        for variable in variables:
            *parents, leaf = variable.path.split("/")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = variable.value if value_format == "backend_tensor" else backend.convert_to_numpy(variable)
        tree[group] = nested
    return tree


def set_state_tree(model, state_tree: dict[str, dict[str, Any]]) -> None:
    """Assign each value of `state_tree` to the variable at its path; variables it leaves out keep theirs."""
    groups = _groups(model)
    for group, nested in state_tree.items():
        if group not in groups:
            raise ValueError(f"Unknown variable name: {group}")
        for variable in groups[group]:
            node: Any = nested
            for part in variable.path.split("/"):
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                variable.assign(node)
