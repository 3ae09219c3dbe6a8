"""Word-level highlighting for the admin's version diff (docs/architecture.md#comparing-versions).

A changed prompt template is one long line: showing it whole twice hides the three words that moved.
Both sides are split into words and runs of white space, compared with `difflib`, and the words only
one side has are wrapped in `<del>` / `<ins>`. Every piece of text is escaped before it is wrapped.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_TOKENS = re.compile(r"\s+|[^\s]+")


def as_text(value: Any) -> str:
    """A config value as shown in the diff: strings as they are, anything else as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def highlight(old: Any, new: Any) -> tuple[SafeString, SafeString]:
    """(old, new) as escaped HTML, the words that differ marked `<del>` on the old side, `<ins>` on the new."""
    old_words, new_words = _TOKENS.findall(as_text(old)), _TOKENS.findall(as_text(new))
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    old_html: list[str] = []
    new_html: list[str] = []
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        old_part, new_part = escape("".join(old_words[a1:a2])), escape("".join(new_words[b1:b2]))
        if op == "equal":
            old_html.append(old_part)
            new_html.append(new_part)
            continue
        if old_part:
            old_html.append(f"<del>{old_part}</del>")
        if new_part:
            new_html.append(f"<ins>{new_part}</ins>")
    return mark_safe("".join(old_html)), mark_safe("".join(new_html))  # every piece escaped above
