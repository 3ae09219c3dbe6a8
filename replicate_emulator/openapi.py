"""Model objects and their OpenAPI schema, built from the registry's pydantic input schemas.

Replicate publishes each model's inputs as `latest_version.openapi_schema`; deriving ours from the
same pydantic class the emulator validates with keeps the two from drifting.
"""

from __future__ import annotations

from typing import Any

from models_config.registry import ModelSpec, OutputShape

from .store import version_id

VERSION_CREATED_AT = "2025-01-01T00:00:00.000000Z"


def openapi_schema(spec: ModelSpec) -> dict[str, Any]:
    """A cog-style OpenAPI document with `Input` and `Output` under components.schemas."""
    input_schema = spec.input_schema.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(input_schema.pop("$defs", {}))
    input_schema["title"] = "Input"
    url = {"type": "string", "format": "uri"}
    output = url if spec.output_shape == OutputShape.SINGLE else {"type": "array", "items": url}
    components["Input"] = input_schema
    components["Output"] = {**output, "title": "Output"}
    return {
        "openapi": "3.0.2",
        "info": {"title": spec.title, "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": components},
    }


def version_object(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": version_id(spec.ref),
        "created_at": VERSION_CREATED_AT,
        "cog_version": "0.14.0",
        "openapi_schema": openapi_schema(spec),
    }


def model_object(spec: ModelSpec, run_count: int) -> dict[str, Any]:
    owner, name = spec.ref.split("/", 1)
    return {
        "url": f"https://replicate.com/{spec.ref}",
        "owner": owner,
        "name": name,
        "description": f"{spec.title} (Replicate emulator)",
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": run_count,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_object(spec),
    }
