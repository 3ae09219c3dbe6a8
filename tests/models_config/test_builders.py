"""Input builders send exactly what each real model takes, with the image in the right shape."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from pydantic import ValidationError, create_model

from models_config.builders import StagingRequest
from models_config.registry import REGISTRY, ImageShape, OutputShape, UnknownModelError, get_spec
from models_config.schemas import SeedreamInput, StagingConfig

REQUEST = StagingRequest(
    image_url="https://example.com/empty.jpg",
    room_type="bedroom",
    style="Japandi",
    instructions="Add a reading chair by the window.",
    seed=1234,
)

IMAGE_FIELD = {
    "qwen-image-edit": ("image", str),
    "qwen-image-edit-plus": ("image", list),
    "flux-kontext-pro": ("input_image", str),
    "flux-kontext-max": ("input_image", str),
    "seedream-4": ("image_input", list),
}


def test_every_registered_model_has_a_known_image_field():
    assert set(REGISTRY) == set(IMAGE_FIELD)
    assert {"qwen-image-edit", "flux-kontext-pro", "seedream-4"} <= set(REGISTRY)


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_the_spec_names_the_image_field_and_its_shape(slug):
    spec = get_spec(slug)
    field, shape = IMAGE_FIELD[slug]
    assert spec.image_field == field
    assert spec.image_shape is (ImageShape.LIST if shape is list else ImageShape.URL)
    assert spec.place_image("https://x/a.jpg") == {field: ["https://x/a.jpg"] if shape is list else "https://x/a.jpg"}
    assert spec.image_urls(spec.build_input(REQUEST, spec.default_config())) == [REQUEST.image_url]
    assert spec.image_urls({"prompt": "text only"}) == []


def test_a_registry_line_naming_a_field_the_input_lacks_is_refused():
    with pytest.raises(ValueError, match="has no field 'photo'"):
        dataclasses.replace(get_spec("qwen-image-edit"), image_field="photo")


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_built_input_has_only_fields_the_model_takes(slug):
    spec = get_spec(slug)
    payload = spec.build_input(REQUEST, spec.default_config())
    assert set(payload) <= set(spec.input_schema.model_fields)
    assert "prompt_template" not in payload
    field, shape = IMAGE_FIELD[slug]
    assert isinstance(payload[field], shape)
    assert REQUEST.image_url in (payload[field] if shape is list else [payload[field]])
    assert "bedroom" in payload["prompt"] and "Japandi" in payload["prompt"]
    assert "style. Add a reading chair by the window. Keep the walls" in payload["prompt"]
    assert "{" not in payload["prompt"]


class LabelSettings(StagingConfig):
    """A staging-only setting of the kind the disclosure label will add."""

    label_text: str = "Virtually staged"


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_a_staging_only_field_of_a_config_subclass_never_reaches_the_input(slug):
    spec = get_spec(slug)
    labelled = create_model(f"Labelled{spec.config_schema.__name__}", __base__=(LabelSettings, spec.config_schema))
    assert labelled.staging_only_keys() == {"prompt_template", "label_text"}
    labelled_spec = dataclasses.replace(spec, config_schema=labelled)
    config = labelled_spec.resolve_config({"label_text": "AI-furnished"})
    assert config.label_text == "AI-furnished"
    payload = labelled_spec.build_input(REQUEST, config)
    assert "label_text" not in payload and "prompt_template" not in payload
    assert payload == spec.build_input(REQUEST, spec.default_config())


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_default_configs_produce_one_image_at_the_registry_price(slug):
    spec = get_spec(slug)
    config = spec.default_config()
    assert spec.output_count(config) == config.output_count() == 1
    assert spec.estimate_cost(config) == spec.price_per_image
    assert spec.actual_cost(0) == Decimal("0")
    assert spec.actual_cost(2) == 2 * spec.price_per_image


def test_seedream_auto_produces_up_to_max_images_and_is_priced_for_all_of_them():
    spec = get_spec("seedream-4")
    auto = spec.resolve_config({"sequential_image_generation": "auto", "max_images": 4})
    assert spec.output_count(auto) == 4
    assert spec.estimate_cost(auto) == Decimal("0.12")
    assert spec.output_count(spec.resolve_config({"sequential_image_generation": "auto"})) == 1
    built = SeedreamInput.model_validate(spec.build_input(REQUEST, auto))
    assert spec.output_count(built) == 4  # the emulator asks the same question of the input it receives
    assert get_spec("flux-kontext-max").estimate_cost(get_spec("flux-kontext-max").default_config()) == Decimal("0.08")


def test_request_seed_is_used_where_the_model_has_a_seed():
    for slug in ("qwen-image-edit", "flux-kontext-pro"):
        spec = get_spec(slug)
        assert spec.build_input(REQUEST, spec.default_config())["seed"] == 1234
    seedream = get_spec("seedream-4")
    assert "seed" not in seedream.build_input(REQUEST, seedream.default_config())


def test_config_seed_wins_over_request_seed():
    spec = get_spec("flux-kontext-pro")
    config = spec.resolve_config({"seed": 7})
    assert spec.build_input(REQUEST, config)["seed"] == 7


def test_no_seed_is_sent_when_neither_gives_one():
    spec = get_spec("qwen-image-edit")
    request = StagingRequest(image_url="https://example.com/a.png")
    assert "seed" not in spec.build_input(request, spec.default_config())


def test_seedream_sends_size_fields_only_when_they_apply():
    spec = get_spec("seedream-4")
    default = spec.build_input(REQUEST, spec.default_config())
    assert {"width", "height", "max_images"}.isdisjoint(default)
    custom = spec.build_input(REQUEST, spec.resolve_config({"size": "custom", "width": 3072}))
    assert (custom["width"], custom["height"]) == (3072, 2048)
    auto = spec.build_input(REQUEST, spec.resolve_config({"sequential_image_generation": "auto", "max_images": 3}))
    assert auto["max_images"] == 3


def test_precedence_request_override_then_stored_then_defaults():
    spec = get_spec("qwen-image-edit")
    config = spec.resolve_config({"output_quality": 80, "go_fast": False}, {"output_quality": 60})
    assert config.output_quality == 60  # override wins
    assert config.go_fast is False  # stored wins over the default
    assert config.output_format == "webp"  # default fills the rest


def test_invalid_override_is_rejected():
    spec = get_spec("flux-kontext-pro")
    with pytest.raises(ValidationError):
        spec.resolve_config({}, {"safety_tolerance": 5})


def test_empty_instructions_leave_no_gap_in_the_prompt():
    spec = get_spec("flux-kontext-pro")
    request = StagingRequest(image_url="https://example.com/a.png", room_type="kitchen", style="rustic")
    prompt = spec.build_input(request, spec.default_config())["prompt"]
    assert "  " not in prompt and prompt.startswith("Virtually stage this empty kitchen")
    assert "rustic style. Keep the walls" in prompt


def test_outputs_as_list_matches_the_shape():
    assert get_spec("flux-kontext-pro").output_shape is OutputShape.SINGLE
    assert get_spec("flux-kontext-pro").outputs_as_list("https://x/1.png") == ["https://x/1.png"]
    assert get_spec("seedream-4").outputs_as_list(["https://x/1.jpg", "https://x/2.jpg"]) == [
        "https://x/1.jpg",
        "https://x/2.jpg",
    ]
    assert get_spec("seedream-4").outputs_as_list(None) == []


def test_unknown_slug_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="flux-kontext-pro"):
        get_spec("dall-e")
