"""dfcore's layers import one way: files and parameters at the bottom, then data and models, then training,
scoring and explanation, then the study's model and the reports, then the stages and the commands on top."""

import ast

from conftest import ROOT

LAYERS = [
    {"__init__", "config", "params", "artifacts", "checkpoint", "runtime", "distributed"},
    {"datasets", "models"},
    {"trainers", "evaluation", "explain"},
    {"study", "reporting"},
    {"stages", "inference", "widget", "bench", "doctor", "__main__"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path):
    """Yields every dfcore module ``path`` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dfcore"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("dfcore"))


def test_every_module_imports_only_from_its_own_layer_or_below():
    wrong = []
    for path in sorted((ROOT / "dfcore").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for imported in _imports(path):
            if imported != "dfcore" and _layer(imported) > _layer(module):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong


def test_no_two_modules_import_each_other():
    graph = {}
    for path in (ROOT / "dfcore").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {m for m in _imports(path) if m != module}
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert not pairs, pairs
