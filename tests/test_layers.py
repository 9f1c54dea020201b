"""The package's structure stays as README's architecture section draws it (STYLE 14).

- Layers point one way: the import-linter contract in ``.importlinter`` (fronts → ingest →
  domain → store → leaves), read from the code's imports — those inside functions and
  under ``TYPE_CHECKING`` included — so the first arrow upward fails the build.
- No module outgrows one responsibility: none passes ``MAX_LINES``.
"""

from __future__ import annotations

from pathlib import Path

from importlinter.application.use_cases import lint_imports
from importlinter.configuration import configure

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 520


def test_layers_point_one_way(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    configure()
    kept = lint_imports(config_filename=str(ROOT / ".importlinter"), cache_dir=None,
                        no_logo=True)
    assert kept, capsys.readouterr().out


def test_no_module_is_over_the_size_of_one_responsibility() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for p in (ROOT / "bccd").rglob("*.py")
             if "migrations" not in p.parts}  # alembic revisions: generated, never edited
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_every_top_level_module_has_its_layer() -> None:
    """A module the contract does not name would be free of it: each must be placed."""
    import re

    listed = set(re.findall(r"bccd\.(\w+)", (ROOT / ".importlinter").read_text()))
    top = {p.stem if p.is_file() else p.name for p in (ROOT / "bccd").iterdir()
           if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert top - listed == set()


def test_imports_inside_functions_are_only_the_command_lines_lazy_loading() -> None:
    """An import inside a function hides an arrow (and, when it dodges a cycle, a wrong
    one). Only the command line imports lazily — so a command loads just what it runs."""
    import ast

    hidden = []
    for path in (ROOT / "bccd").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("bccd/cli/", "bccd/migrations/")):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bccd"):
                        hidden.append(f"{rel}:{node.lineno} {node.module}")
                    elif isinstance(node, ast.Import) and any(
                            a.name.startswith("bccd") for a in node.names):
                        hidden.append(f"{rel}:{node.lineno}")
    assert hidden == []
