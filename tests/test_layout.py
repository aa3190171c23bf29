"""The package's shape, read from its source with `ast` (nothing imported):

- no import cycles among charlstm's modules. The graph that matters counts
  the imports a module runs when it is loaded (at module level, in `try` and
  `if` blocks too): a cycle there breaks a module's loading. An import inside
  a function runs when the function is called, after every module has
  loaded (it is how a command keeps NumPy and Numba out of --help); those
  are counted in a second, stricter test, so that the layers stay layers;
- the core (every module outside lab/, cli/ and tools/, and __main__, which
  is the command line's) never imports the lab, the command line or the
  tools, at module level or inside a function;
- no module is longer than MAX_LINES lines.

`from . import x` counts as an import of the module x when x is one, else of
the package; `from .x import name` as an import of x."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PACKAGE = os.path.join(ROOT, "charlstm")
MAX_LINES = 550
OUTER = ("charlstm.lab", "charlstm.cli", "charlstm.tools", "charlstm.__main__")


def module_name(path: str) -> str:
    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def modules() -> dict[str, str]:
    out = {}
    for folder, _, names in os.walk(PACKAGE):
        for n in names:
            if n.endswith(".py"):
                path = os.path.join(folder, n)
                out[module_name(path)] = path
    return out


MODULES = modules()


def _targets(node, name: str, is_package: bool) -> list[str]:
    """The charlstm modules an import statement imports."""
    if isinstance(node, ast.Import):
        found = [a.name for a in node.names if a.name.split(".")[0] == "charlstm"]
    elif node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
        found = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source
                 for a in node.names]
    elif node.module and node.module.split(".")[0] == "charlstm":
        found = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                 else node.module for a in node.names]
    else:
        found = []
    out = []
    for t in found:
        while t not in MODULES and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in MODULES and t != name:
            out.append(t)
    return out


def _loaded(tree):
    """The import statements run when the module loads: not those inside a
    function (or a class's methods)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def graph() -> tuple[dict[str, set], dict[str, set]]:
    """(imports at load, every import) of each module."""
    at_load, every = {}, {}
    for name, path in MODULES.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        pkg = path.endswith("__init__.py")
        at_load[name] = {t for n in _loaded(tree) for t in _targets(n, name, pkg)}
        every[name] = {t for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                       for t in _targets(n, name, pkg)}
    return at_load, every


def cycles(edges: dict[str, set]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def is_outer(name: str) -> bool:
    return any(name == o or name.startswith(o + ".") for o in OUTER)


def test_the_graph_sees_the_imports():
    at_load, every = graph()
    assert "charlstm.kernels" in at_load["charlstm.train"]
    assert "charlstm.lab.compare.results" in at_load["charlstm.lab.compare.run"]
    assert "charlstm.lab.tune.run" in every["charlstm.cli.tune"]          # inside the command
    assert "charlstm.lab.tune.run" not in at_load["charlstm.cli.tune"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    at_load, _ = graph()
    assert cycles(at_load) == []


def test_no_import_cycles_even_through_imports_inside_functions():
    _, every = graph()
    assert cycles(every) == []


def test_the_core_never_imports_the_lab_the_cli_or_the_tools():
    _, every = graph()
    bad = {m: sorted(t for t in ts if is_outer(t)) for m, ts in every.items() if not is_outer(m)}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_no_module_is_over_max_lines():
    long = {}
    for name, path in MODULES.items():
        with open(path, encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        if n > MAX_LINES:
            long[name] = n
    assert long == {}


def test_the_readme_stays_short():
    """The README is a start and a map (at most 250 lines); runs and history live in docs/."""
    readme = os.path.join(ROOT, "README.md")
    with open(readme, encoding="utf-8") as fh:
        assert len(fh.read().splitlines()) <= 250
