"""Adapt a model's pydantic config schema for django-jsonform, and map pydantic errors onto its inputs.

`model_json_schema()` output renders badly or breaks django-jsonform 2.23 (each case seen in the admin):
`anyOf[X, null]` becomes an "Option 1 / Option 2" select, `additionalProperties: false` makes its
server validator raise on stale keys, scalar `description` is not shown, and `$ref`s are only partly
followed. `adapted_schema` rewrites those constructs and is the one schema both the admin form and
the config API's `/schema` endpoint serve, so what the API documents is what the admin renders.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from django_jsonform.constants import JOIN_SYMBOL

from .registry import get_spec

_SCALAR_TYPES = {"string", "integer", "number", "boolean"}
_SCHEMA_MAPS = {"properties", "patternProperties"}  # name -> subschema
_SCHEMA_KEYWORDS = {"items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems", "not"}


def adapted_schema(slug: str) -> dict[str, Any]:
    """The django-jsonform schema of `slug`'s config; a fresh dict every call.

    django-jsonform's validator writes into the schema it validates against (`required: True` on
    properties), so handing out a shared dict would leak state between requests.
    """
    return copy.deepcopy(_adapted_schema(slug))


@cache
def _adapted_schema(slug: str) -> dict[str, Any]:
    spec = get_spec(slug)
    raw = spec.config_schema.model_json_schema()
    adapted = _adapt(raw, raw.get("$defs", {}))
    adapted["title"] = spec.title  # the class name means nothing to staff
    return adapted


def _adapt(node: Any, defs: Mapping[str, Any]) -> Any:
    """Recursively rewrite one schema node (dicts and lists; other values are kept as they are)."""
    if isinstance(node, list):
        return [_adapt(item, defs) for item in node]
    if not isinstance(node, dict):
        return node  # e.g. `additionalProperties: true`

    node = dict(node)
    if "$ref" in node:  # inline, letting the referring node's title/default/description win
        target = _resolve_ref(node.pop("$ref"), defs)
        node = {**target, **node}
    for keyword in ("anyOf", "oneOf"):
        options = node.get(keyword)
        if isinstance(options, list):
            non_null = [option for option in options if option.get("type") != "null"]
            if len(non_null) == 1 and len(non_null) < len(options):  # Optional[X] -> X
                del node[keyword]
                inner = _resolve_ref(non_null[0]["$ref"], defs) if "$ref" in non_null[0] else non_null[0]
                node = {**inner, **node}
    if isinstance(node.get("type"), list):  # ["integer", "null"] makes the browser post strings
        non_null_types = [t for t in node["type"] if t != "null"]
        node["type"] = non_null_types[0] if len(non_null_types) == 1 else non_null_types

    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("type") == "object" and "properties" not in node:
        node["properties"] = {}
    if node.get("type") in _SCALAR_TYPES and "description" in node:
        node.setdefault("help_text", node.pop("description"))
    if node.get("default") is None:
        node.pop("default", None)  # a null default would pre-fill "null" in text inputs

    adapted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$defs":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            adapted[key] = {name: _adapt(sub, defs) for name, sub in value.items()}
        elif key in _SCHEMA_KEYWORDS:
            adapted[key] = _adapt(value, defs)
        else:  # plain values: enum lists, defaults, titles, widget hints
            adapted[key] = value
    return adapted


def _resolve_ref(ref: str, defs: Mapping[str, Any]) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise ValueError(f"Cannot inline the JSON schema reference {ref!r}.")
    return _adapt(defs[ref[len(prefix) :]], defs)


def error_key(loc: Iterable[Any]) -> str:
    """django-jsonform's ErrorMap key for a pydantic `loc` (path joined with JOIN_SYMBOL)."""
    return JOIN_SYMBOL.join(str(part) for part in loc)


def map_errors(
    errors: Iterable[Mapping[str, Any]], schema: Mapping[str, Any]
) -> tuple[dict[str, list[str]], list[str]]:
    """Split pydantic-style errors into (ErrorMap for the inputs, messages for the whole form).

    An error lands under an input when its `loc` starts with a property the form renders; errors
    with an empty `loc` (model validators) or about keys the form has no input for (a stale key in
    a stored config) go to the form's non-field errors, where somebody can still read them.
    """
    properties = schema.get("properties", {})
    error_map: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors:
        loc = list(error.get("loc") or [])
        message = str(error.get("msg", "Invalid value."))
        if loc and str(loc[0]) in properties:
            error_map.setdefault(error_key(loc), []).append(message)
        elif loc:
            general.append(f"{'.'.join(map(str, loc))}: {message}")
        else:
            general.append(message)
    return error_map, general
