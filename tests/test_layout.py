"""The package's layout: imports point one way (leaves -> core -> recognition -> model -> service
-> desktop -> cli), with no cycles, lazy imports included; the core stays pure; command handlers
live only in the CLI layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "daemon" / "facewarden"
LAYERS = ["leaf", "core", "recognition", "model", "service", "desktop", "cli"]
PURE_FORBIDDEN = {"cv2", "tensorflow", "keras", "ai_edge_litert", "pystray", "jeepney", "pydantic", "apscheduler",
                  "PIL", "Xlib"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    if module == "facewarden.__main__":  # `python -m facewarden`: the CLI's entry point
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "leaf"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, under `if TYPE_CHECKING`) for every import in the file, lazy ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            typing_only |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, id(node) in typing_only))
            # `from . import x` imports the submodule x
            found += [(f"{target}.{alias.name}", id(node) in typing_only) for alias in node.names
                      if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").exists()
                      or (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).is_dir()]
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_the_layout_is_what_the_checker_reads():
    # Guards the checks below against reading nothing (a moved package, a parse that finds no edge).
    g = graph()
    assert {layer(m) for m in MODULES} == set(LAYERS)
    assert "facewarden.core.observation" in g["facewarden.core.presence"]
    assert "facewarden.service.daemon" in {t for t in g["facewarden.cli.daemon_commands"]} | {
        t for t, _ in imports(MODULES["facewarden.cli.daemon_commands"])}


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module):
    rank = LAYERS.index(layer(module))
    for target, typing_only in imports(MODULES[module]):
        if target in MODULES and not typing_only and layer(target) != "leaf":
            assert LAYERS.index(layer(target)) <= rank, f"{module} imports {target}, a later layer"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "core"))
def test_the_core_is_pure(module):
    for target, typing_only in imports(MODULES[module]):
        if not typing_only:
            assert target.split(".")[0] not in PURE_FORBIDDEN, f"{module} imports {target}"
            if target in MODULES:
                assert layer(target) in ("core", "leaf") and target != "facewarden.config", f"{module} imports {target}"


def test_command_handlers_live_in_the_cli_layer():
    for module, path in MODULES.items():
        if layer(module) == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert not node.name.startswith("cli_"), f"{module}.{node.name} is a command handler"
                assert [a.arg for a in node.args.args] != ["args"], f"{module}.{node.name} takes argparse args"
