"""The package's layers import downward only (README, "Layout")."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bottom to top. A module imports (at module level or inside a function)
# only from its own layer and the ones below it.
LAYERS = (
    ("runtime", ("keras_lopt", "keras_lopt.layers")),
    ("meta", ("keras_lopt.meta",)),
    ("evaluation", ("keras_lopt.evaluation",)),
    ("inspection", ("keras_lopt.plots", "keras_lopt.probes", "keras_lopt.toy_problems")),
    ("cli", ("keras_lopt.cli", "keras_lopt_cli")),
)


def _layer(module):
    """The index in `LAYERS` of `module`: its longest matching prefix."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def _modules():
    for directory, _, files in os.walk(os.path.join(REPO, "keras_lopt")):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                yield module.removesuffix(".__init__"), path
    yield "keras_lopt_cli", os.path.join(REPO, "keras_lopt_cli.py")


def _imports(path):
    """The keras_lopt modules `path` imports (`from a import b`: `a.b`)."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _upward(module, imports):
    """The imports of `module` from a higher layer, described."""
    source = _layer(module)
    found = []
    for imported in imports:
        if imported.split(".")[0] not in ("keras_lopt", "keras_lopt_cli"):
            continue
        target = _layer(imported)
        if target > source:
            found.append(f"{module} ({LAYERS[source][0]}) imports {imported} ({LAYERS[target][0]})")
    return found


def _upward_imports():
    found = []
    for module, path in _modules():
        if module != "keras_lopt.meta.__main__":  # `python -m keras_lopt.meta` runs the command line
            found += _upward(module, _imports(path))
    return found


def test_no_module_imports_from_a_higher_layer():
    assert _upward_imports() == []


@pytest.mark.parametrize(
    "module, layer",
    [
        ("keras_lopt.optimizer", "runtime"),
        ("keras_lopt.layers.mlp", "runtime"),
        ("keras_lopt.meta.estimators.pes", "meta"),
        ("keras_lopt.evaluation.harness", "evaluation"),
        ("keras_lopt.plots", "inspection"),
        ("keras_lopt.cli.benchmark", "cli"),
    ],
)
def test_modules_are_assigned_their_layer(module, layer):
    assert LAYERS[_layer(module)][0] == layer


def test_an_upward_import_is_found():
    assert _upward("keras_lopt.rule", ["numpy", "keras_lopt.meta.unroll.Unroll", "keras_lopt.features"]) == [
        "keras_lopt.rule (runtime) imports keras_lopt.meta.unroll.Unroll (meta)"
    ]
    assert _upward("keras_lopt.meta.trainer", ["keras_lopt.evaluation.specs"]) != []
    assert _upward("keras_lopt.evaluation.tasks", ["keras_lopt.meta.datasets"]) == []
