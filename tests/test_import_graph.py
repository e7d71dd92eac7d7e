"""The import graph of `src/keramic`, read with `ast` (nothing imported): dependencies point one way.

Every `import` and `from ... import` counts, at module level or inside a function. Importing
`a.b.c` also runs the `__init__` of `a.b`, so that package counts as imported too (the root
`keramic` package aside: every module runs it, and it imports the public API on purpose).
"""

import ast
import pathlib

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "src"
ROOT = "keramic"
MAX_GROUP = 3


def _module_names():
    names = {}
    for path in (SOURCE / ROOT).rglob("*.py"):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        names[".".join(parts)] = (path, is_package)
    return names


def _imports(module, path, is_package, modules):
    """Modules of the project that `module` imports.

    `import a.b` imports `a.b`; `from a import b` imports the submodule `a.b` when there is one, else
    the package `a` itself (for a name defined there). The packages whose `__init__` runs on the way
    count too, except the importer's own ancestors (already running when it runs) and the root.
    """
    package = module if is_package else module.rpartition(".")[0]
    explicit = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            explicit.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            for alias in node.names:
                target = f"{origin}.{alias.name}"
                explicit.add(target if target in modules else origin)
    explicit &= set(modules)
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    implicit = set()
    for target in explicit:
        parts = target.split(".")
        implicit.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return (explicit | (implicit - ancestors)) - {module}


@pytest.fixture(scope="module")
def graph():
    modules = _module_names()
    return {name: _imports(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def _within(name, package):
    return name == package or name.startswith(package + ".")


def _violations(graph, importers, forbidden):
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        if any(_within(source, p) for p in importers)
        for target in targets
        if any(_within(target, p) for p in forbidden)
    )


def test_the_parser_sees_known_edges(graph):
    # Guards the test itself: edges that exist on purpose must be found, or every check below is vacuous.
    assert "keramic.serialization.registry" in graph["keramic.layers.base"]
    assert "keramic.saving.api" in graph["keramic.models.model"]  # a lazy import inside a method
    assert "keramic.saving" in graph["keramic.models.model"]  # the package __init__ it runs
    assert "keramic.saving.stores.atomic" in graph["keramic.saving.formats.keras_v3"]


def test_saving_imports_no_model_layer_training_or_export_module(graph):
    forbidden = ["keramic.models", "keramic.layers", "keramic.training", "keramic.export"]
    assert _violations(graph, ["keramic.saving"], forbidden) == []


def test_layers_and_optimizers_never_import_saving(graph):
    assert _violations(graph, ["keramic.layers", "keramic.optimizers"], ["keramic.saving"]) == []


def test_serialization_sits_below_saving_and_layers(graph):
    forbidden = ["keramic.saving", "keramic.layers", "keramic.models", "keramic.optimizers"]
    assert _violations(graph, ["keramic.serialization"], forbidden) == []


def _strongly_connected(graph):
    """Tarjan's algorithm, iterative: every strongly connected group of modules."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return groups


def test_scc_finder_finds_a_cycle():
    groups = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(map(len, groups)) == [1, 3]


def test_no_import_circle_of_more_than_three_modules(graph):
    large = [group for group in _strongly_connected(graph) if len(group) > MAX_GROUP]
    assert large == [], "\n".join(f"{len(g)} modules import each other: {', '.join(g)}" for g in large)
