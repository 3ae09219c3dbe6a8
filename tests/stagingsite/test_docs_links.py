"""Every citation of the repository's docs points at a file and a heading that exist.

Code comments cite `docs/architecture.md#never-pay-twice` and the like instead of repeating a rule;
a renamed heading would leave them pointing nowhere without anyone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
SKIP = {".venv", ".git", "node_modules", "media", "staticfiles", "__pycache__"}
SOURCES = (".py", ".md", ".html", ".txt", ".toml")
# A docs file with an optional anchor, cited anywhere; inside docs/ also relative Markdown links.
CITATION = re.compile(r"docs/([a-z_-]+\.md)(?:#([\w-]+))?")
RELATIVE = re.compile(r"\]\(([a-z_-]+\.md)?(?:#([\w-]+))?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)  # no headings in code blocks
    return {slug(heading) for heading in HEADING.findall(text)}


def project_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        if path.suffix in SOURCES and path.is_file() and not SKIP.intersection(path.relative_to(ROOT).parts):
            if path == Path(__file__).resolve():
                continue  # its own examples
            files.append(path)
    return sorted(files)


def citations() -> list[tuple[str, str, str | None]]:
    """(citing file, cited docs file, anchor or None) for every citation in the project."""
    found = []
    for path in project_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        where = str(path.relative_to(ROOT))
        found += [(where, f"docs/{name}", anchor or None) for name, anchor in CITATION.findall(text)]
        if path.parent == ROOT / "docs":
            for name, anchor in RELATIVE.findall(text):
                target = f"docs/{name}" if name else where
                found.append((where, target, anchor or None))
    return found


def test_slugs_follow_github():
    assert slug("Never pay twice") == "never-pay-twice"
    assert slug("A job's path") == "a-jobs-path"
    assert slug("FLUX.1 Kontext [pro] and [max]") == "flux1-kontext-pro-and-max"
    assert anchors("# Top\n```\n# not a heading\n```\n## Two words\n") == {"top", "two-words"}


def test_the_docs_exist():
    for name in ("architecture.md", "replicate.md", "operations.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_every_citation_of_the_docs_resolves():
    assert citations(), "no citation found: the scan is broken"
    broken = []
    for where, target, anchor in citations():
        path = ROOT / target
        if not path.is_file():
            broken.append(f"{where}: {target} does not exist")
        elif anchor and anchor not in anchors(path.read_text(encoding="utf-8")):
            broken.append(f"{where}: {target} has no heading for #{anchor}")
    assert not broken, "\n".join(broken)
