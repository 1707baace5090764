"""The package's layers, read from its own imports: no arrow points up, nobody reaches past a front.

The import graph is built from the source with ``ast`` (nothing is imported), so a new module or a
new import is checked the moment it exists. The layers are those of ``shared/ARCHITECTURE.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lgs_gpu

PACKAGE_DIR = Path(lgs_gpu.__file__).parent

# Bottom to top, by path under lgs_gpu/ (a folder is the layer of everything in it; the longest
# prefix wins): a module may import from its own layer or any layer below it.
LAYERS = (
    ("base", ("core/",)),
    ("backends", ("smoothing/backends/",)),
    ("op", ("smoothing/", "__init__.py")),  # lgs_gpu/__init__ re-exports the LGS front
    ("models/data", ("models.py", "data.py")),
    ("methods", ("defenses/", "attacks/", "certify/")),
    ("integrations", ("integrations/",)),
    ("app", ("app/", "evaluate.py", "__main__.py")),
)
# Base modules every layer may use, private names included: the input contract, atomic writes,
# the defense base class, optional packages, and the guarded torch internals.
SHARED_BASE = ("lgs_gpu.core.validate", "lgs_gpu.core.files", "lgs_gpu.core.transform", "lgs_gpu.core.extras", "lgs_gpu.core.torch_internals")
# Subpackages whose __init__ is their one public front.
FRONTED = ("lgs_gpu.smoothing", "lgs_gpu.defenses", "lgs_gpu.attacks", "lgs_gpu.certify", "lgs_gpu.integrations")
# The modules of the op layer that use the paths: the routing that picks and runs one, the PyTorch operators, the
# sweep and the compiled programs' warmup. The front (lgs, lgs_map, lgs_stages) reaches them only through the
# routing, and the rest of the package reaches LGS through lgs_gpu.smoothing (the operators only to register them).
LGS_OP = ("lgs_gpu.smoothing.routing", "lgs_gpu.smoothing.operators", "lgs_gpu.smoothing.sweep",
          "lgs_gpu.smoothing.programs")  # fmt: skip
# The only reaches past a front, each with its reason.
ALLOWED_REACHES = {
    ("lgs_gpu.evaluate", "lgs_gpu.app.evaluate"): "the public import path of the evaluation",
    ("lgs_gpu.__main__", "lgs_gpu.app.cli"): "python -m lgs_gpu is the CLI",
}


def module_name(path: Path) -> str:
    parts = ["lgs_gpu", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, tuple[str, ...]]]:
    """``(imported module, names taken from it)`` for every import of ``lgs_gpu`` code in one file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names if alias.name.split(".")[0] == "lgs_gpu"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lgs_gpu":
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            found += [(sub, ()) for sub in submodules]
            rest = tuple(n for n in names if f"{target}.{n}" not in modules)
            if rest or not submodules:
                found.append((target, rest))
    return found


def path_of(name: str) -> str:
    """``lgs_gpu.smoothing.front`` -> ``smoothing/front.py``; a package -> its ``__init__.py``."""
    parts = name.split(".")[1:]
    if (PACKAGE_DIR.joinpath(*parts)).is_dir():
        return "/".join([*parts, "__init__.py"])
    return "/".join(parts) + ".py"


def layer_of(name: str) -> int:
    path = path_of(name)
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if path == prefix or (prefix.endswith("/") and path.startswith(prefix))]  # fmt: skip
    if not matches:
        raise KeyError(name)
    return max(matches)[1]


def unit_of(name: str) -> str:
    """The top-level module or subpackage ``name`` belongs to (``lgs_gpu.defenses.jpeg`` -> ``lgs_gpu.defenses``)."""
    return ".".join(name.split(".")[:2])


def violations(edges: list[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    """Every broken rule among ``(importer, imported, names)`` edges, in words."""
    found = []
    for source, target, names in edges:
        if (source, target) in ALLOWED_REACHES:
            continue
        source_layer, target_layer = layer_of(source), layer_of(target)
        if target_layer > source_layer:
            found.append(f"{source} ({LAYERS[source_layer][0]}) imports {target} ({LAYERS[target_layer][0]}): upward")
        if target.startswith("lgs_gpu.smoothing.backends") and not source.startswith("lgs_gpu.smoothing.backends") and source not in LGS_OP:
            found.append(f"{source} imports the LGS path {target}: use the front (lgs_gpu.smoothing)")
        if target.startswith("lgs_gpu.smoothing.backends.reference") and source.startswith("lgs_gpu.smoothing.backends.") and (
            not source.startswith("lgs_gpu.smoothing.backends.reference")
        ):
            found.append(f"{source} imports the reference: the oracle must stay independent")
        if source.startswith("lgs_gpu.smoothing.backends.reference") and target not in ("lgs_gpu.core.windows", "lgs_gpu.core.validate"):
            found.append(f"the reference imports {target}: it may use only windows and validate")
        for front in FRONTED:
            if target.startswith(front + ".") and not source.startswith(front + ".") and source != front:
                found.append(f"{source} reaches past the front of {front} into {target}")
        if target == "lgs_gpu.app.cli":
            found.append(f"{source} imports the CLI")
        if unit_of(source) != unit_of(target) and target not in SHARED_BASE:
            private = [n for n in names if n.startswith("_")]
            private_module = any(part.startswith("_") for part in target.split(".")[2:] if part != "__main__")
            if private or private_module:
                found.append(f"{source} takes private {private or target} from {target}")
    return found


def package_edges() -> list[tuple[str, str, tuple[str, ...]]]:
    modules = all_modules()
    return [
        (name, target, names)
        for name, path in modules.items()
        for target, names in imports_of(name, path, modules)
        if target != name
    ]


def test_every_module_has_a_layer():
    unplaced = []
    for name in all_modules():
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"modules outside every layer (add them to LAYERS): {unplaced}"


def test_no_arrow_points_up_and_no_module_reaches_past_a_front():
    problems = violations(package_edges())
    assert not problems, "\n".join(problems)


def test_top_level_units_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for source, target, _ in package_edges():
        if unit_of(source) != unit_of(target) and target != "lgs_gpu":
            graph.setdefault(unit_of(source), set()).add(unit_of(target))
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, child]))
            if child not in state:
                visit(child, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_graph_sees_the_imports_it_must():
    """The parser finds known edges: relative, nested in functions, and submodules named in a from-import."""
    edges = {(source, target) for source, target, _ in package_edges()}
    assert ("lgs_gpu.smoothing.routing", "lgs_gpu.smoothing.backends.torch_path") in edges  # from .backends import ...
    assert ("lgs_gpu.smoothing.front", "lgs_gpu.smoothing.operators") in edges  # imported inside a function
    assert ("lgs_gpu.smoothing.backends.reference", "lgs_gpu.core.windows") in edges
    assert ("lgs_gpu.app.evaluate", "lgs_gpu.attacks") in edges  # from .. import attacks, data, defenses
    assert ("lgs_gpu.smoothing.routing", "lgs_gpu.smoothing.backends.triton_path.kernels") in edges  # imported inside a function


@pytest.mark.parametrize("edge, rule", [
    (("lgs_gpu.core.windows", "lgs_gpu.smoothing.front", ()), "upward"),
    (("lgs_gpu.defenses.compose", "lgs_gpu.smoothing.backends.torch_path", ()), "use the front"),
    (("lgs_gpu.smoothing.backends.torch_path", "lgs_gpu.smoothing.backends.reference", ("safe_sqrt",)), "oracle must stay independent"),
    (("lgs_gpu.smoothing.backends.reference", "lgs_gpu.smoothing.backends.torch_path", ()), "only windows and validate"),
    (("lgs_gpu.app.evaluate", "lgs_gpu.attacks.lavan", ()), "reaches past the front"),
    (("lgs_gpu.app.evaluate", "lgs_gpu.defenses._common", ()), "reaches past the front"),
    (("lgs_gpu.app.demo", "lgs_gpu.smoothing.front", ("_prepare",)), "private"),
    (("lgs_gpu.app.evaluate", "lgs_gpu.app.cli", ()), "imports the CLI"),
    (("lgs_gpu.defenses.compose", "lgs_gpu.smoothing.routing", ()), "reaches past the front"),
    (("lgs_gpu.core.transform", "lgs_gpu.models", ()), "upward"),
])  # fmt: skip
def test_each_rule_catches_its_violation(edge, rule):
    problems = violations([edge])
    assert any(rule in problem for problem in problems), problems
