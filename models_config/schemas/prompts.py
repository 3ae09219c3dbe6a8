"""Prompt templates: plain placeholder substitution, and the limits a rendered prompt must keep
(docs/architecture.md#prompt-templates).

Imports no Django (and no pydantic): the Django side passes STAGING_MAX_PROMPT_CHARS in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PROMPT_PLACEHOLDERS = ("room_type", "style", "instructions")

# The longest text a job may carry (the jobs API refuses more): a template's worst-case prompt is
# measured with them, so a template that passes fits every job (docs/architecture.md#prompt-templates).
MAX_ROOM_TYPE_CHARS = 100
MAX_STYLE_CHARS = 100
MAX_INSTRUCTIONS_CHARS = 2000

# The validation context key under which the Django side passes STAGING_MAX_PROMPT_CHARS (this module
# reads no settings): with it, a template whose longest prompt is over the cap is refused.
MAX_PROMPT_CHARS_CONTEXT = "max_prompt_chars"

DEFAULT_PROMPT_TEMPLATE = (
    "Virtually stage this empty {room_type} with furniture and decor in a {style} style. "
    "{instructions} "
    "Keep the walls, windows, doors, floor, ceiling, lighting and camera position exactly unchanged; "
    "only add furniture and decor."
)

# One token of a template's syntax: an escaped brace, a `{…}` with no brace inside, or a lone brace.
_TOKEN = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")
_ESCAPES = {"{{": "{", "}}": "}"}
_SHOWN_PROBLEMS = 5  # a message lists this many problems at most
_SHOWN_TOKEN_CHARS = 40


class PromptError(ValueError):
    """A prompt that cannot be sent: a template that is not one, or a rendered prompt empty or too long."""


def template_problems(template: str) -> list[str]:
    """Each brace in `template` that is not `{room_type}`, `{style}`, `{instructions}`, `{{` or `}}`.

    Substitution is plain: no format specs (`{style:>9}`), conversions (`{style!r}`), attributes or
    indexes, since `str.format` would run those and could make a prompt of any size.
    """
    problems = []
    for match in _TOKEN.finditer(template):
        token = match.group()
        if token in _ESCAPES or token[1:-1] in PROMPT_PLACEHOLDERS:
            continue
        if len(token) == 1:
            problems.append(f"a lone '{token}' at character {match.start() + 1}")
        else:
            shown = token if len(token) <= _SHOWN_TOKEN_CHARS else token[: _SHOWN_TOKEN_CHARS - 2] + "…}"
            problems.append(shown)
    return problems


def describe_template_problems(problems: Sequence[str]) -> str:
    """One message for `template_problems`: what is allowed, and what was found instead."""
    found = ", ".join(problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        found += f" and {len(problems) - _SHOWN_PROBLEMS} more"
    allowed = ", ".join("{" + name + "}" for name in PROMPT_PLACEHOLDERS)
    return (
        f"Only the placeholders {allowed} may stand in braces, written exactly so (no format specs, conversions, "
        f"attributes or indexes); write {{{{ or }}}} for a literal brace. Found: {found}."
    )


def template_text(template: str) -> str:
    """The template's own text: placeholders left out, escaped braces as the braces they stand for."""
    return _TOKEN.sub(lambda match: _ESCAPES.get(match.group(), ""), template)


SENTENCE_END = ".!?…"
CLOSERS = "\"')]\u201d\u2019\u00bb"  # closing quotes and brackets after a sentence's end


def as_sentence(text: str) -> str:
    """Free text as one sentence of a prompt, so it reads as such between the template's sentences.

    Trimmed, first letter capitalised, and a period added unless it already ends with terminal
    punctuation (possibly inside closing quotes or brackets); empty stays empty.
    """
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    core = text.rstrip(CLOSERS)
    if not core or core[-1] not in SENTENCE_END:
        text += "."
    return text


def render_prompt(template: str, *, room_type: str, style: str, instructions: str = "") -> str:
    """Fill the template by plain substitution, instructions as a sentence; no double spaces left behind.

    A value is inserted as it is, never read as template syntax. Raises `PromptError` for a template
    `template_problems` refuses (a validated config never has one).
    """
    problems = template_problems(template)
    if problems:
        raise PromptError(describe_template_problems(problems))
    values = {"room_type": room_type, "style": style, "instructions": as_sentence(instructions)}

    def fill(match: re.Match[str]) -> str:
        token = match.group()
        return _ESCAPES.get(token) or values[token[1:-1]]

    return " ".join(_TOKEN.sub(fill, template).split())


def longest_prompt_chars(template: str) -> int:
    """The length of `template`'s prompt for a job whose text fields are as long as a job's may be."""
    return len(
        render_prompt(
            template,
            room_type="x" * MAX_ROOM_TYPE_CHARS,
            style="x" * MAX_STYLE_CHARS,
            instructions="x" * MAX_INSTRUCTIONS_CHARS,
        )
    )


def check_prompt(prompt: str, max_chars: int) -> str:
    """A rendered prompt as it may be sent: not blank, at most `max_chars` (STAGING_MAX_PROMPT_CHARS) long."""
    if not prompt.strip():
        raise PromptError("The prompt is empty: the template needs text of its own besides the placeholders.")
    if len(prompt) > max_chars:
        raise PromptError(
            f"The prompt is {len(prompt)} characters long, over the limit of {max_chars} "
            "(STAGING_MAX_PROMPT_CHARS): shorten the instructions or the prompt template."
        )
    return prompt
