"""The house, as its next maintainer reads it: each command owns its `main(args)`, console output
is a leaf every command can use, and no module of nixld imports one that imports it back."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import nixld
import nixld.commands
from nixld import cli

PACKAGE = Path(nixld.__file__).parent


def nixld_modules() -> dict[str, Path]:
    modules = {"nixld": PACKAGE / "__init__.py", "nixld.commands": PACKAGE / "commands" / "__init__.py"}
    for package, directory in (("nixld", PACKAGE), ("nixld.commands", PACKAGE / "commands")):
        for info in pkgutil.iter_modules([str(directory)]):
            if not info.ispkg:
                modules[f"{package}.{info.name}"] = directory / f"{info.name}.py"
    return {name: path for name, path in modules.items() if path.exists()}  # not the compiled core


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The nixld modules `name` imports, anywhere in it (a lazy import is still an edge)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = {module for module in found if module in known and module != name}
    # Importing nixld.x runs nixld/__init__.py first: that is no edge of x's own.
    return found - {parent for parent in ("nixld", "nixld.commands") if name.startswith(parent + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = nixld_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return trail[trail.index(successor):] + [successor] if successor in trail else [node, successor]
            if successor not in state:
                cycle = visit(successor, trail + [successor])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_no_module_of_nixld_imports_one_that_imports_it_back():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_console_output_is_a_leaf_that_imports_only_the_errors():
    assert import_graph()["nixld.console"] <= {"nixld.errors"}


def test_no_library_module_imports_the_command_line():
    commands = {name for name in import_graph()
                if name.startswith("nixld.commands") or name in ("nixld.cli", "nixld.__main__")}
    for name, imported in import_graph().items():
        if name not in commands:
            assert not imported & commands, f"{name} imports {imported & commands}"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_command_module_imports_alone_and_has_its_own_main(command):
    module = f"nixld.commands.{cli.COMMANDS[command]}"
    code = f"import {module} as command, sys; sys.exit(0 if callable(command.main) else 1)"
    assert subprocess.run([sys.executable, "-c", code], cwd="/").returncode == 0


def test_every_command_module_is_dispatched():
    modules = {info.name for info in pkgutil.iter_modules(nixld.commands.__path__)}
    assert modules == set(cli.COMMANDS.values())


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_command_answers_help_with_its_own_usage(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert f"usage: nixld {command}" in capsys.readouterr().out


def test_run_imports_nothing_heavy():
    code = ("import sys, nixld.commands.run; "
            "heavy = {'argparse', 'json', 'subprocess', 'elftools', 'pathlib', 'platform', 'cffi'} & set(sys.modules); "
            "sys.exit(', '.join(sorted(heavy)) or None)")
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")



# The launch itself writes its decisions at NIX_LD_LOG's level, as nix-ld does (the API too),
# and flushes Python's buffers before the exec.
SPEAKS_FOR_ITSELF = {"nixld.loader": {"sys.stdout", "sys.stderr"}}


def test_only_the_commands_and_the_console_write_to_the_terminal():
    talkers = {}
    for name, path in nixld_modules().items():
        if name.startswith("nixld.commands") or name in ("nixld.cli", "nixld.console", "nixld.__main__"):
            continue
        tree = ast.parse(path.read_text())
        uses = {f"sys.{node.attr}" for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and node.attr in ("stdout", "stderr") and isinstance(node.value, ast.Name) and node.value.id == "sys"}
        uses |= {"print" for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id == "print"}
        if uses:
            talkers[name] = uses
    assert talkers == SPEAKS_FOR_ITSELF
