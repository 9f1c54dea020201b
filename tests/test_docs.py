"""The documentation: README is the front door, docs/ the house (STYLE habit 16).

Fast checks over the text alone — no servers:

- README.md stays short enough to read in one sitting;
- its Quick start is the two commands, and it links every page under docs/;
- every relative link in README.md, docs/**/*.md and SECURITY.md reaches a file, and
  every ``#anchor`` a heading of that file;
- performance results are headed by the date they were measured;
- nothing in the docs or the shipped configuration speaks of how bccd was built
  ("fourth session", "this turn", "helper", team-only tool names …). "Session" alone is
  a product word (an SMTP, IMAP or Mail-page session) and stays allowed.

Every failure names the file, the line and the offending text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 300


def doc_files() -> list[Path]:
    """README.md, every Markdown page under docs/, and SECURITY.md when there is one."""
    files = [README, *sorted(DOCS.rglob("*.md"))]
    security = REPO / "SECURITY.md"
    if security.is_file():
        files.append(security)
    return files


def shipped_files() -> list[Path]:
    """What an operator reads: the docs plus the annotated configuration and unit."""
    extra = [REPO / "conf" / "bccd.toml", REPO / "conf" / "bccd.service"]
    return doc_files() + [p for p in extra if p.is_file()]


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ------------------------------------------------------------------ Markdown reading

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`\n]*`+")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(path):
        for m in LINK.finditer(CODE_SPAN.sub("``", line)):
            yield number, m.group(1)


# ------------------------------------------------------------------ the front door


def test_readme_is_readable_in_one_sitting() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md: {len(lines)} lines, more than {README_MAX_LINES}; move the depth to docs/"
    )


def test_readme_quick_start_is_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M)
    assert m, "README.md: no '## Quick start' section"
    block = re.search(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
    assert block, "README.md: the Quick start has no ```sh block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"], (
        f"README.md: the Quick start block runs {commands}, not exactly `make run` and `make test`"
    )


def test_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / target.split("#")[0]).resolve()
        for _, target in links(README)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    }
    missing = [rel(p) for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md links none of: {', '.join(missing)}"


# ------------------------------------------------------------------ links


def test_every_docs_link_resolves() -> None:
    problems: list[str] = []
    for path in doc_files():
        for number, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: …
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{rel(path)}:{number}: link '{target}'"
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            if REPO not in dest.parents and dest != REPO:
                problems.append(f"{where}: points outside the repository")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading '#{anchor}' in {rel(dest)}")
    assert not problems, "broken links:\n" + "\n".join(problems)


# ------------------------------------------------------------------ by date


def test_performance_results_are_headed_by_their_date() -> None:
    page = DOCS / "performance.md"
    text = page.read_text(encoding="utf-8")
    m = re.search(r"^## Results by date\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "docs/performance.md: no '## Results by date' section"
    headings = re.findall(r"^### (.*)$", m.group(1), re.M)
    assert headings, "docs/performance.md: 'Results by date' has no dated ### headings"
    undated = [h for h in headings if not re.search(r"\b\d{4}-\d{2}-\d{2}\b", h)]
    assert not undated, f"docs/performance.md: result headings without a date: {undated}"


# ------------------------------------------------------------------ the product, not its making

# Each pattern names a way of speaking about how bccd was developed. "Session" on its
# own is a product word (SMTP/IMAP/Mail-page sessions), so only the development uses are
# listed: ordinals and "this/last/next session", "session 5", "these two sessions" …
ORDINALS = (r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th)"
            r"|last|this|previous|next|earlier|later|one")
DEVELOPMENT_PHRASES: list[tuple[str, re.Pattern[str]]] = [
    ("a numbered or relative session", re.compile(rf"\b(?:{ORDINALS})\s+sessions?\b", re.I)),
    ("a numbered session", re.compile(r"\bsessions?\s+\d+\b", re.I)),
    ("these sessions", re.compile(r"\bthese\s+(?:\w+\s+)?sessions\b", re.I)),
    ("the end of the session", re.compile(
        r"\b(?:at|by|until)\s+the\s+(?:end|start)\s+of\s+(?:the|this|that)\s+session\b", re.I)),
    ("a work session", re.compile(r"\b(?:development|work|coding|review)\s+sessions?\b", re.I)),
    ("this turn", re.compile(r"\b(?:this|that|the\s+previous|the\s+next|last)\s+turn\b", re.I)),
    ("helper", re.compile(r"\bhelpers?\b", re.I)),
    ("subagent", re.compile(r"\bsub-?agents?\b", re.I)),
    ("agent", re.compile(r"(?<!user )(?<!user-)\bagents?\b", re.I)),
    ("farm-bench", re.compile(r"\bfarm-bench\b", re.I)),
    ("farm-studio", re.compile(r"\bfarm-studio\b", re.I)),
    ("duplicates --change", re.compile(r"\bduplicates\s+--change\b", re.I)),
    ("issues show/resolved/blocked", re.compile(r"\bissues\s+(?:show|resolved|blocked)\b", re.I)),
    ("a team tool invoked", re.compile(r"`(?:duplicates|issues|search)(?:\s+--?\w[^`]*)?`", re.I)),
]


def test_docs_do_not_speak_of_how_bccd_was_built() -> None:
    found: list[str] = []
    for path in shipped_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in DEVELOPMENT_PHRASES:
                for m in pattern.finditer(line):
                    found.append(f"{rel(path)}:{number}: '{m.group(0)}' ({what})")
    assert not found, (
        "docs speak of how bccd was built, not of the product:\n" + "\n".join(found)
    )


def test_the_development_phrases_are_told_from_product_words() -> None:
    """The patterns above catch the development phrases and leave product text alone."""
    def flagged(text: str) -> bool:
        return any(p.search(text) for _, p in DEVELOPMENT_PHRASES)

    for text in ("measured in the fifth session", "the 4th session's runs", "session 5",
                 "at the end of the session", "in these two sessions", "this turn",
                 "the review helper", "a subagent", "the agent ran it", "farm-bench run",
                 "`issues show 26`", "`duplicates --change x`"):
        assert flagged(text), f"not caught: {text!r}"
    for text in ("an SMTP session", "the session stays usable", "Mail-page sessions end",
                 "20 concurrent sessions", "an idle session's next MAIL", "a read-only session",
                 "the User-Agent header", "the user agent", "search the Mail page",
                 "issues a new token", "duplicates are stored once"):
        assert not flagged(text), f"product text flagged: {text!r}"
