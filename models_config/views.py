"""Read-only helpers behind the admin's preview and diff pages (no writes: those are in `services`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .builders import StagingRequest
from .models import ModelConfigVersion
from .registry import get_spec
from .selectors import Change, diff_configs, get_version

# The sample job a preview is built for: fixed, so previews of two drafts are comparable.
SAMPLE_REQUEST = StagingRequest(
    image_url="https://example.com/sample-empty-room.jpg",
    room_type="living room",
    style="Scandinavian",
    instructions="",
)


@dataclass
class Preview:
    """The exact Replicate input a config would send for the sample job, or why it cannot."""

    replicate_input: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_json(self) -> str:
        return json.dumps(self.replicate_input, indent=2, ensure_ascii=False)


def preview_input(slug: str, draft: Any) -> Preview:
    """Validate `draft` as `slug`'s config and build the sample job's input from it.

    Both steps go through pydantic: a config error has the config field's `loc`, an input error
    (the builder produced something the real model would refuse) is reported as `input.…`.
    """
    spec = get_spec(slug)
    if not isinstance(draft, dict):
        return Preview(errors=[{"loc": [], "msg": "The configuration must be a JSON object.", "type": "type"}])
    try:
        config = spec.config_schema.model_validate(draft)
    except ValidationError as exc:
        return Preview(errors=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()])
    try:
        return Preview(replicate_input=spec.build_input(SAMPLE_REQUEST, config))
    except ValidationError as exc:
        return Preview(errors=[{"loc": ["input", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()])


def parse_draft(raw: str | None) -> Any:
    """The draft as posted by the config widget's hidden textarea; None when it is not JSON."""
    try:
        return json.loads(raw or "")
    except ValueError:
        return None


@dataclass
class Diff:
    old: ModelConfigVersion
    new: ModelConfigVersion
    changes: list[Change]


def version_diff(slug: str, old_number: int, new_number: int) -> Diff | None:
    """Changes from version `old_number` to `new_number`; None when either does not exist."""
    old, new = get_version(slug, old_number), get_version(slug, new_number)
    if old is None or new is None:
        return None
    return Diff(old=old, new=new, changes=diff_configs(old.config, new.config))
