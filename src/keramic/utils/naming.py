"""Keras-compatible automatic names: snake_case of the class plus a per-process counter."""

import collections
import contextlib
import functools
import re
import threading

_name_counts: collections.defaultdict[str, int] = collections.defaultdict(int)
_scopes = threading.local()


def scope_names() -> list:
    """This thread's stack of `keras.name_scope` names (outermost first); weight paths start with it."""
    names = getattr(_scopes, "names", None)
    if names is None:
        names = _scopes.names = []
    return names


@functools.lru_cache(maxsize=4096)
def to_snake_case(name):
    """`BatchNormalization` -> `batch_normalization`, `RMSprop` -> `rm_sprop`, `PReLU` -> `p_re_lu`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def uniquify(base):
    """First use of `base` returns it unchanged, later ones `base_1`, `base_2`, ..."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def auto_name(class_name):
    return uniquify(to_snake_case(class_name))


def reset_names():
    """Forget all counters (as `keras.backend.clear_session()` does)."""
    _name_counts.clear()


@contextlib.contextmanager
def counts_kept(base):
    """Names drawn from `base` inside the block are given back after it (work Keras does without
    drawing any, such as re-calling layers to cut a graph)."""
    count = _name_counts[base]
    try:
        yield
    finally:
        _name_counts[base] = count
