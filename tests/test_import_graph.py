"""The library's structure: no import circle anywhere in `hwclf/` (function-level imports included: they
are how the old bench <-> cli circle hid), and no module much over 500 lines.

Run as a script (`python tests/test_import_graph.py`) it prints the graph's circles and longest modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

HWCLF = Path(__file__).resolve().parents[1] / "hwclf"
MAX_LINES = 550  # "no module over ~500 lines"


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `package` (a package is its __init__.py)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file. `from p import name` points at the
    submodule p.name when there is one, else at p; relative imports are resolved."""
    modules = module_names(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted: the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_hwclf():
    graph = import_graph(HWCLF)
    assert "hwclf.bench.main" in graph and "hwclf.io" in graph["hwclf.bench.main"]  # the graph sees the code
    assert cycles(graph) == []


def test_the_check_finds_a_circle_hidden_in_a_function(tmp_path):
    """The shape of the old bench <-> cli circle: one side imports the other only inside a function."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("def cmd():\n    from pkg.sub.bench import main\n")
    (pkg / "sub" / "bench.py").write_text("def main():\n    from ..cli import helper\n")
    (pkg / "io.py").write_text("import json\n")
    assert cycles(import_graph(pkg)) == [["pkg.cli", "pkg.sub.bench"]]
    (pkg / "sub" / "bench.py").write_text("def main():\n    from pkg import io\n")
    assert cycles(import_graph(pkg)) == []


def test_no_module_over_the_size_limit():
    lines = {name: len(path.read_text().splitlines()) for name, path in module_names(HWCLF).items()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


if __name__ == "__main__":
    g = import_graph(HWCLF)
    print("circles:", cycles(g) or "none")
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in module_names(HWCLF).items()), reverse=True)
    print("longest:", ", ".join(f"{n} {lines}" for lines, n in sizes[:5]))
    sys.exit(1 if cycles(g) else 0)
