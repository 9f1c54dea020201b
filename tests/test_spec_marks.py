"""``@pytest.mark.spec("5.6")`` names the SPEC.md section a test holds bccd to, so that
``grep -rn 'spec("5.6")' tests`` finds every test of that rule.

Every mark in the test sources names exactly one section, as a string literal, and that
section exists in SPEC.md: a chapter (``"3"``), a subsection (``"4.2"``) or a numbered
item of a chapter (``"5.6"`` is item 6 of §5). One section per mark keeps the grep exact;
a test of several rules carries several marks. Read from the sources (not the collected
tests), so a module that is skipped or not selected is checked too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO.parent / "shared" / "SPEC.md"

CHAPTER = re.compile(r"^## (\d+)\. ")
SUBSECTION = re.compile(r"^### (\d+\.\d+) ")
ITEM = re.compile(r"^(\d+)\. ")


def spec_sections(text: str) -> set[str]:
    """The section numbers of SPEC.md: chapters, subsections and numbered items."""
    sections: set[str] = set()
    chapter: str | None = None
    for line in text.splitlines():
        if m := CHAPTER.match(line):
            chapter = m.group(1)
            sections.add(chapter)
        elif m := SUBSECTION.match(line):
            sections.add(m.group(1))
        elif line.startswith("#"):
            chapter = None
        elif chapter and (m := ITEM.match(line)):
            sections.add(f"{chapter}.{m.group(1)}")
    return sections


def _is_spec_mark(node: ast.Call) -> bool:
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "spec"
            and isinstance(f.value, ast.Attribute) and f.value.attr == "mark")


def spec_marks() -> list[tuple[str, int, ast.Call]]:
    """(file, line, call) of every ``pytest.mark.spec(...)`` in the test sources."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found += [(str(path.relative_to(REPO)), node.lineno, node) for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and _is_spec_mark(node)]
    return found


def test_spec_sections_are_read_from_spec_md() -> None:
    assert SPEC.is_file(), f"SPEC.md is read from {SPEC}"
    sections = spec_sections(SPEC.read_text(encoding="utf-8"))
    assert {"1", "3", "4", "4.1", "4.4", "5", "5.1", "5.6", "5.14", "13"} <= sections
    assert not {"3.1", "4.5", "5.15", "6.1"} & sections


def test_every_spec_mark_names_one_section_of_spec_md() -> None:
    sections = spec_sections(SPEC.read_text(encoding="utf-8"))
    marks = spec_marks()
    assert marks, "no test carries a spec mark"
    bad = []
    for where, line, call in marks:
        args = call.args
        if call.keywords or len(args) != 1 or not isinstance(args[0], ast.Constant) \
                or not isinstance(args[0].value, str):
            bad.append(f"{where}:{line}: spec(...) takes one section as a string literal")
        elif args[0].value not in sections:
            bad.append(f"{where}:{line}: spec({args[0].value!r}) is no section of SPEC.md")
    assert not bad, "\n".join(bad)
