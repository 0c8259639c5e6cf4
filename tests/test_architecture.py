"""The house: zuna_lab's modules import only downwards, in no cycle, and use no other module's
private names (issue L). Read from the source with ast, function-level imports included."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "zuna_lab"

#: Layers from the bottom up (a module may import its own layer and the ones below). The flow reads
#: as a line: a recording is read (io readers), goes through the pipeline, is written (io writers),
#: the model runs it (model, fast), the entry points join them (api), analyses build on them
#: (trust), studies on those (study), and the command line and the dashboards sit on top.
LAYERS = [
    ("base", ["zuna_lab.errors", "zuna_lab.config", "zuna_lab.synthetic"]),
    ("positions", ["zuna_lab.io.montage", "zuna_lab.io.quality"]),
    ("validation", ["zuna_lab.validation", "zuna_lab.logs"]),
    ("readers", ["zuna_lab.io.diagnosis", "zuna_lab.io.read", "zuna_lab.io"]),
    ("pipeline", ["zuna_lab.pipeline"]),
    ("writers", ["zuna_lab.io.write", "zuna_lab.io.splice", "zuna_lab.io.export"]),
    ("model", ["zuna_lab.model", "zuna_lab.testing"]),
    ("fast", ["zuna_lab.fast"]),
    ("api", ["zuna_lab.api"]),
    ("decoding", ["zuna_lab.decoding"]),
    ("trust", ["zuna_lab.trust"]),
    ("study", ["zuna_lab.study"]),
    ("cli", ["zuna_lab.cli"]),
    ("viz", ["zuna_lab.viz"]),
]



def modules() -> dict:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict) -> tuple[set, list]:
    """(zuna_lab modules that ``name`` imports, private names of other modules it uses)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets, private, aliases = set(), [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("zuna_lab"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in known:              # a module
                    targets.add(full)
                    aliases[alias.asname or alias.name] = full
                else:
                    targets.add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and source != name:
                        private.append(full)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("zuna_lab"):
                    targets.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
    for node in ast.walk(tree):       # module._private through an imported module
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != name):
            private.append(f"{aliases[node.value.id]}.{node.attr}")
    targets.discard(name)
    return targets, private


def layer_of(name: str) -> int:
    best, index = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    return index


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer(graph):
    assert [name for name in graph if name != "zuna_lab" and layer_of(name) is None] == []


def test_imports_only_go_down(graph):
    upward = {(name, target) for name, (targets, _) in graph.items() if name != "zuna_lab"
              for target in targets if target != "zuna_lab" and layer_of(target) > layer_of(name)}
    assert [(a, LAYERS[layer_of(a)][0], b, LAYERS[layer_of(b)][0]) for a, b in sorted(upward)] == []


def test_no_cycle(graph):
    edges = {name: {t for t in targets if t in graph and t != "zuna_lab" and not _reexport(name, t)}
             for name, (targets, _) in graph.items() if name != "zuna_lab"}
    state, cycle = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycle.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycle == []


def _reexport(name: str, target: str) -> bool:
    """A package's __init__ importing from its own modules (it sits on top of them)."""
    return target.startswith(name + ".")


def test_no_private_name_of_another_module(graph):
    assert {name: private for name, (_, private) in graph.items() if private} == {}


def _code_lines(source_lines, node) -> int:
    """Lines of code of a function: its docstring, comments and blank lines aside."""
    body = node.body
    docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str)
    start = body[0].end_lineno + 1 if docstring else body[0].lineno
    return sum(1 for line in source_lines[start - 1:node.end_lineno] if line.strip() and not line.strip().startswith("#"))


def test_short_files_and_functions():
    """No module over 600 lines, no function over 80 lines of code."""
    long_files, long_functions = [], []
    for name, path in modules().items():
        source = path.read_text()
        lines = source.splitlines()
        if len(lines) > 600:
            long_files.append((name, len(lines)))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(lines, node) > 80:
                long_functions.append((name, node.name, _code_lines(lines, node)))
    assert long_files == [] and long_functions == []
