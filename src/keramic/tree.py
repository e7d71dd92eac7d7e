"""`keras.tree`: nested structures (lists, tuples, dicts, None leaves) as Keras handles them.

Dicts are visited in sorted key order; `None` is a leaf; strings are leaves.

>>> keramic.tree.flatten({"b": 1, "a": [2, 3]})
[2, 3, 1]
"""

import warnings

MAP_TO_NONE = object()  # returned by a traverse function: replace the subtree by None


def is_nested(structure) -> bool:
    return isinstance(structure, (list, tuple, dict))


def _children(structure):
    if isinstance(structure, dict):
        return [structure[key] for key in sorted(structure)]
    return list(structure)


def _rebuild(structure, children):
    if isinstance(structure, dict):
        keys = sorted(structure)
        rebuilt = dict(zip(keys, children))
        return type(structure)((key, rebuilt[key]) for key in structure)
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*children)
    return type(structure)(children)


def flatten(structure) -> list:
    """The leaves, depth first."""
    if not is_nested(structure):
        return [structure]
    return [leaf for child in _children(structure) for leaf in flatten(child)]


def flatten_with_path(structure) -> list:
    """`(path, leaf)` pairs; a path is the tuple of keys/indices leading to the leaf."""
    if not is_nested(structure):
        return [((), structure)]
    keys = sorted(structure) if isinstance(structure, dict) else range(len(structure))
    return [((key,) + path, leaf) for key in keys for path, leaf in flatten_with_path(structure[key])]


def map_structure(func, *structures, none_is_leaf=True):
    """`func` applied leaf-wise across structures of the same shape."""
    for other in structures[1:]:
        _check_same(structures[0], other)
    first = structures[0]
    if not is_nested(first):
        return func(*structures)
    children = zip(*[_children(s) for s in structures])
    return _rebuild(first, [map_structure(func, *group) for group in children])


def map_structure_up_to(shallow_structure, func, *structures):
    """Like `map_structure`, but stop at the leaves of `shallow_structure`."""
    if not is_nested(shallow_structure):
        return func(*structures)
    children = zip(*[_children(s) for s in structures])
    return _rebuild(shallow_structure, [map_structure_up_to(shallow, func, *group)
                                        for shallow, group in zip(_children(shallow_structure), children)])


def assert_same_structure(a, b, check_types=None):
    """Raise ValueError when the structures differ in nesting, node type or length (Keras 3.15: a
    list never matches a tuple, nor a tuple a namedtuple; any two dicts match by keys)."""
    if check_types is not None:
        advice = (
            "no longer has any effect, please remove."
            if check_types
            else "no longer has any effect. For a looser check, use `keras.tree.assert_same_paths()`, which "
            "considers `list`, `tuple`, `namedtuple` and `deque` as matching"
        )
        warnings.warn(f"The `check_types` argument is deprecated and {advice}", DeprecationWarning, stacklevel=2)
    _check_same(a, b)


def _node_type(structure):
    return dict if isinstance(structure, dict) else type(structure)


def _check_same(a, b):
    if is_nested(a) != is_nested(b):
        raise ValueError(f"The two structures don't have the same nested structure: {a!r} vs {b!r}.")
    if not is_nested(a):
        return
    if _node_type(a) is not _node_type(b):
        raise ValueError(f"Node type mismatch; expected {_node_type(a)}, but got {_node_type(b)}.")
    if isinstance(a, dict) and sorted(a) != sorted(b):
        raise ValueError(f"Node keys mismatch; missing key(s): {set(a) - set(b)}; extra key(s): {set(b) - set(a)}.")
    if len(a) != len(b):
        raise ValueError(f"Node arity mismatch; expected {len(a)}, but got {len(b)}.")
    for x, y in zip(_children(a), _children(b)):
        _check_same(x, y)


def assert_same_paths(a, b):
    """Raise ValueError when the two structures' leaf paths differ."""
    paths_a = {path for path, _ in flatten_with_path(a)}
    paths_b = {path for path, _ in flatten_with_path(b)}
    if paths_a != paths_b:
        raise ValueError(f"The structures have different paths: {sorted(paths_a ^ paths_b)}.")


def pack_sequence_as(structure, flat_sequence):
    """Nest `flat_sequence` like `structure`."""
    leaves = list(flat_sequence)
    expected = len(flatten(structure))
    if expected != len(leaves):
        raise ValueError(f"pack_sequence_as: the structure has {expected} leaves but {len(leaves)} values were given.")
    iterator = iter(leaves)
    return map_structure(lambda _: next(iterator), structure)


def lists_to_tuples(structure):
    """Every list in the structure becomes a tuple."""
    if isinstance(structure, (list, tuple)):
        return tuple(lists_to_tuples(item) for item in structure)
    if isinstance(structure, dict):
        return {key: lists_to_tuples(value) for key, value in structure.items()}
    return structure


def map_shape_structure(func, structure):
    """Map `func` over shapes (tuples/lists of ints or None) inside `structure`."""
    if isinstance(structure, (list, tuple)) and all(isinstance(d, int) or d is None for d in structure):
        return func(structure)
    if isinstance(structure, dict):
        return {key: map_shape_structure(func, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_shape_structure(func, item) for item in structure)
    raise ValueError(f"map_shape_structure expects shapes in the structure; found {structure!r}.")


def traverse(func, structure, top_down=True):
    """Visit every node; a non-None result of `func` replaces the subtree (MAP_TO_NONE: None)."""
    if top_down:
        result = func(structure)
        if result is MAP_TO_NONE:
            return None
        if result is not None:
            return result
        if not is_nested(structure):
            return structure
        return _rebuild(structure, [traverse(func, child, True) for child in _children(structure)])
    rebuilt = structure if not is_nested(structure) else _rebuild(
        structure, [traverse(func, child, False) for child in _children(structure)])
    result = func(rebuilt)
    if result is MAP_TO_NONE:
        return None
    return rebuilt if result is None else result
