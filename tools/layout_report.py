"""Report on the package's layout: import cycles, private names taken across stage modules, and
modules and functions over the size limits (issue 18's 'done when').

    python tools/layout_report.py            # the report; exit 1 when a rule is broken
    python tools/layout_report.py --sizes    # also every module over 600 lines / function over 100
    python tools/layout_report.py --tree     # the package as a tree: lines and first docstring line per module

Rules checked (the size limits are reported, not enforced: a closing note may justify one):
- no import cycle between vemkit modules (module-level and function-level imports alike);
- a module never imports an underscore name, or a private submodule, of another *public* stage
  module or package: shared code lives in the private base layer (``vemkit/_*.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "helpers" / "vemkit"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def owner(mod: str) -> str:
    """The stage a module belongs to: 'vemkit.predict' for vemkit.predict._runner."""
    parts = mod.split(".")
    return ".".join(parts[:2])


def is_private_base(mod: str) -> bool:
    parts = mod.split(".")
    return len(parts) >= 2 and parts[1].startswith("_")


def scan():
    modules, edges, crossings, sizes, long_functions = {}, {}, [], {}, []
    for path in sorted(ROOT.rglob("*.py")):
        mod = module_name(path)
        src = path.read_text()
        tree = ast.parse(src)
        modules[mod] = path
        sizes[mod] = len(src.splitlines())
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long_functions.append((n, f"{mod}.{node.name}"))
            if isinstance(node, ast.ImportFrom):
                target = resolve(mod, is_pkg, node)
                if not target.startswith("vemkit"):
                    continue
                names = [a.name for a in node.names]
                for name in names:
                    full = f"{target}.{name}"
                    dest = full if (ROOT.parent / Path(*full.split("."))).with_suffix(".py").exists() or \
                        (ROOT.parent / Path(*full.split(".")) / "__init__.py").exists() else target
                    edges.setdefault(mod, set()).add(dest)
                    if owner(dest) == owner(mod) or is_private_base(dest):
                        continue
                    private = (name.startswith("_") and not name.startswith("__")) or any(p.startswith("_") for p in dest.split(".")[2:])
                    if private and not is_private_base(target):
                        crossings.append(f"{mod} imports {name} from {target}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("vemkit"):
                        edges.setdefault(mod, set()).add(a.name)
    return modules, edges, crossings, sizes, long_functions


def cycles(edges, modules):
    """Strongly connected components with more than one module (Tarjan)."""
    graph = {m: {d for d in edges.get(m, ()) if d in modules and d != m} for m in modules}
    # a package's __init__ importing its own submodules is not a cycle worth reporting
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 and len({owner(c) for c in comp}) > 1:  # within one package is fine
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def tree() -> str:
    """The package as a list of modules (subpackages after the flat modules), one line each: its lines and the first line of its docstring."""
    rows = []
    for path in sorted(ROOT.rglob("*.py"), key=lambda p: (p.parent != ROOT, str(p.relative_to(ROOT)))):
        rel = path.relative_to(ROOT)
        src = path.read_text()
        doc = (ast.get_docstring(ast.parse(src)) or "").strip().splitlines()
        first = doc[0] if doc else ""
        rows.append(f"{str(rel):<28} {len(src.splitlines()):>4}  {first}")
    return "\n".join(rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--tree" in argv:
        print(tree())
        return 0
    modules, edges, crossings, sizes, long_functions = scan()
    found = cycles(edges, modules)
    print(f"{len(modules)} modules, {sum(sizes.values())} lines")
    print(f"import cycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    print(f"private names taken across stage modules: {len(crossings)}")
    for c in crossings:
        print("  " + c)
    big = sorted(((n, m) for m, n in sizes.items() if n > 600), reverse=True)
    print(f"modules over 600 lines: {len(big)}; functions over 100 lines: {len(long_functions)}")
    if "--sizes" in argv:
        for n, m in big:
            print(f"  {m} {n}")
        for n, f in sorted(long_functions, reverse=True):
            print(f"  {f} {n}")
    return 1 if found or crossings else 0


if __name__ == "__main__":
    raise SystemExit(main())
