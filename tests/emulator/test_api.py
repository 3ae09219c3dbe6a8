"""The emulator's Replicate API surface, driven through the official `replicate` client over real HTTP."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
import replicate
from PIL import Image
from replicate.exceptions import ReplicateError

from models_config.builders import StagingRequest
from models_config.registry import REGISTRY, OutputShape
from replicate_emulator import Emulator
from tests.fixtures.photos import image_bytes

EXPECTED_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def _input(slug: str, image_url: str) -> dict:
    spec = REGISTRY[slug]
    return spec.build_input(StagingRequest(image_url=image_url), spec.default_config())


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_every_model_runs_and_returns_images_in_its_shape_and_format(
    slug, emulator, replicate_client, uploaded_image_url
):
    spec = REGISTRY[slug]
    model_input = _input(slug, uploaded_image_url)
    created = replicate_client.models.predictions.create(
        model=spec.ref,
        input=model_input,
        webhook="http://127.0.0.1:9/hook?attempt=a1",
        webhook_events_filter=["start", "completed"],
    )
    assert created.status == "starting"
    assert created.model == spec.ref
    assert created.input == model_input
    assert created.urls["get"].endswith(f"/v1/predictions/{created.id}")
    assert created.created_at.endswith("Z")

    created.wait()
    assert created.status == "succeeded", created.error
    assert created.metrics["predict_time"] > 0
    assert created.started_at.endswith("Z") and created.completed_at.endswith("Z")
    urls = spec.outputs_as_list(created.output)
    if spec.output_shape == OutputShape.SINGLE:
        assert isinstance(created.output, str)
    else:
        assert isinstance(created.output, list)
    assert len(urls) == 1
    fmt = spec.input_schema.model_validate(model_input).model_dump().get("output_format") or "jpg"
    image = Image.open(io.BytesIO(httpx.get(urls[0]).content))
    assert image.format == EXPECTED_FORMAT[str(fmt)]
    assert image.size == (640, 480)

    fetched = replicate_client.predictions.get(created.id)
    assert fetched.output == created.output
    assert created.id in [p.id for p in replicate_client.predictions.list().results]


def test_seedream_auto_returns_max_images_jpegs(replicate_client, uploaded_image_url):
    model_input = _input("seedream-4", uploaded_image_url) | {"sequential_image_generation": "auto", "max_images": 3}
    prediction = replicate_client.models.predictions.create(model="bytedance/seedream-4", input=model_input)
    prediction.wait()
    assert prediction.status == "succeeded"
    assert len(prediction.output) == 3
    bodies = [httpx.get(url).content for url in prediction.output]
    assert len(set(bodies)) == 3
    assert all(Image.open(io.BytesIO(body)).format == "JPEG" for body in bodies)


@pytest.mark.parametrize("max_images", [1, 4])
def test_seedream_auto_returns_the_configs_output_count(replicate_client, uploaded_image_url, max_images):
    spec = REGISTRY["seedream-4"]
    config = spec.resolve_config({"sequential_image_generation": "auto", "max_images": max_images})
    model_input = spec.build_input(StagingRequest(image_url=uploaded_image_url), config)
    prediction = replicate_client.models.predictions.create(model=spec.ref, input=model_input)
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert len(prediction.output) == spec.output_count(config) == max_images


def test_output_format_and_aspect_ratio_are_honoured(replicate_client):
    data_uri = "data:image/jpeg;base64," + base64.b64encode(image_bytes(size=(800, 400))).decode()
    model_input = _input("flux-kontext-pro", data_uri) | {"output_format": "jpg", "aspect_ratio": "1:1"}
    prediction = replicate_client.models.predictions.create(
        model="black-forest-labs/flux-kontext-pro", input=model_input
    )
    prediction.wait()
    image = Image.open(io.BytesIO(httpx.get(prediction.output).content))
    assert (image.format, image.size) == ("JPEG", (400, 400))


def test_large_input_is_resized_to_at_most_1024(replicate_client):
    data_uri = "data:image/jpeg;base64," + base64.b64encode(image_bytes(size=(2048, 1536))).decode()
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", data_uri)
    )
    prediction.wait()
    assert Image.open(io.BytesIO(httpx.get(prediction.output[0]).content)).size == (1024, 768)


def test_unreachable_input_fails_with_clear_error(replicate_client, emulator):
    bad_url = f"{emulator.base_url}/v1/files/doesnotexist/download"
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", bad_url)
    )
    prediction.wait()
    assert prediction.status == "failed"
    assert "Failed to fetch input image" in prediction.error
    assert prediction.output is None


def test_undecodable_input_fails(replicate_client):
    data_uri = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", data_uri)
    )
    prediction.wait()
    assert prediction.status == "failed"
    assert "Could not decode input image" in prediction.error


def test_http_input_is_fetched(replicate_client, emulator, webhook_receiver):
    # An http URL that is not the emulator's own: the webhook receiver answers 501 for GET.
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", webhook_receiver.url + "img.jpg")
    )
    prediction.wait()
    assert prediction.status == "failed"
    assert "HTTP 501" in prediction.error


def test_cancel(emulator, replicate_client, uploaded_image_url):
    emulator.set_faults(latency=5)
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", uploaded_image_url)
    )
    canceled = replicate_client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled"
    assert canceled.completed_at is not None
    prediction.reload()
    assert prediction.status == "canceled"
    assert prediction.output is None


def test_list_is_newest_first_and_paginates(emulator, replicate_client):
    data_uri = "data:image/jpeg;base64," + base64.b64encode(image_bytes(size=(32, 32))).decode()
    ids = [
        replicate_client.models.predictions.create(
            model="qwen/qwen-image-edit", input=_input("qwen-image-edit", data_uri)
        ).id
        for _ in range(103)
    ]
    first = replicate_client.predictions.list()
    assert [p.id for p in first.results] == ids[::-1][:100]
    assert first.next and first.previous is None
    second = replicate_client.predictions.list(first.next)
    assert [p.id for p in second.results] == ids[::-1][100:]
    assert second.next is None
    back = replicate_client.predictions.list(second.previous)
    assert [p.id for p in back.results] == ids[::-1][:100]


def test_files_api(replicate_client, emulator):
    content = image_bytes()
    file = replicate_client.files.create(io.BytesIO(content), filename="room.jpg", metadata={"job": 7})
    assert (file.name, file.size, file.content_type, file.metadata) == (
        "room.jpg",
        len(content),
        "image/jpeg",
        {"job": 7},
    )
    assert file.checksums["sha256"]
    assert file.expires_at.endswith("Z")
    assert replicate_client.files.get(file.id).id == file.id
    assert httpx.get(file.urls["get"]).content == content  # no auth needed for the download
    replicate_client.files.delete(file.id)
    assert httpx.get(file.urls["get"]).status_code == 404


def test_model_object_and_create_by_version(replicate_client):
    model = replicate_client.models.get("black-forest-labs/flux-kontext-pro")
    schema = model.latest_version.openapi_schema["components"]["schemas"]
    assert set(schema["Input"]["properties"]) >= {"prompt", "input_image", "output_format", "safety_tolerance"}
    assert schema["Output"]["type"] == "string"
    data_uri = "data:image/jpeg;base64," + base64.b64encode(image_bytes(size=(64, 64))).decode()
    prediction = replicate_client.predictions.create(
        version=model.latest_version.id, input=_input("flux-kontext-pro", data_uri)
    )
    assert prediction.model == "black-forest-labs/flux-kontext-pro"
    assert prediction.version == model.latest_version.id


def test_webhook_secret(emulator, replicate_client):
    secret = replicate_client.webhooks.default.secret()
    assert secret.key == emulator.webhook_secret and secret.key.startswith("whsec_")


def test_configured_webhook_secret_is_used():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    with Emulator(webhook_secret=secret) as emu:
        client = replicate.Client(api_token=emu.api_token, base_url=emu.base_url)
        assert client.webhooks.default.secret().key == secret
    with pytest.raises(ValueError):
        Emulator(webhook_secret="not-a-secret")


def test_bad_token_is_401(emulator):
    client = replicate.Client(api_token="wrong", base_url=emulator.base_url)
    with pytest.raises(ReplicateError) as info:
        client.models.predictions.create(model="qwen/qwen-image-edit", input={"prompt": "x", "image": "y"})
    assert info.value.status == 401
    response = httpx.get(
        f"{emulator.base_url}/v1/predictions", headers={"Authorization": f"Token {emulator.api_token}"}
    )
    assert response.status_code == 200
    assert httpx.get(f"{emulator.base_url}/v1/predictions").json()["status"] == 401


def test_unknown_model_is_404(replicate_client):
    with pytest.raises(ReplicateError) as info:
        replicate_client.models.predictions.create(model="nobody/nothing", input={"prompt": "x"})
    assert info.value.status == 404
    assert info.value.title


def test_unknown_prediction_is_404(replicate_client):
    with pytest.raises(ReplicateError) as info:
        replicate_client.predictions.get("nope")
    assert info.value.status == 404


def _post(emulator, path, body):
    return httpx.post(
        f"{emulator.base_url}{path}", json=body, headers={"Authorization": f"Bearer {emulator.api_token}"}
    )


def test_422_lists_invalid_fields(emulator):
    body = {
        "input": {
            "prompt": "stage it",
            "input_image": "https://x/y.jpg",
            "output_format": "webp",
            "safety_tolerance": 9,
            "num_inference_steps": 30,
        }
    }
    response = _post(emulator, "/v1/models/black-forest-labs/flux-kontext-pro/predictions", body)
    assert response.status_code == 422
    data = response.json()
    assert data["title"] == "Input validation failed" and data["status"] == 422
    fields = {f["field"]: f for f in data["invalid_fields"]}
    assert set(fields) == {"input.output_format", "input.safety_tolerance", "input.num_inference_steps"}
    assert fields["input.num_inference_steps"]["type"] == "extra_forbidden"
    assert all(f["description"] for f in fields.values())
    assert "input.safety_tolerance" in data["detail"]
    assert emulator.counters()["creates_total"] == 0


def test_422_for_list_items_and_missing_input(emulator):
    body = {"input": {"prompt": "p", "image": ["ok", ""]}}
    response = _post(emulator, "/v1/models/qwen/qwen-image-edit-plus/predictions", body)
    assert [f["field"] for f in response.json()["invalid_fields"]] == ["input.image.1"]
    assert _post(emulator, "/v1/models/qwen/qwen-image-edit/predictions", {}).status_code == 422


def test_422_through_the_client(replicate_client):
    with pytest.raises(ReplicateError) as info:
        replicate_client.models.predictions.create(
            model="bytedance/seedream-4", input={"prompt": "p", "max_images": 99}
        )
    assert info.value.status == 422


def test_prefer_wait_holds_until_done(emulator, uploaded_image_url):
    response = httpx.post(
        f"{emulator.base_url}/v1/models/qwen/qwen-image-edit/predictions",
        json={"input": _input("qwen-image-edit", uploaded_image_url)},
        headers={"Authorization": f"Bearer {emulator.api_token}", "Prefer": "wait=5"},
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


def test_get_prediction_and_wait_helpers(emulator, replicate_client, uploaded_image_url):
    prediction = replicate_client.models.predictions.create(
        model="qwen/qwen-image-edit", input=_input("qwen-image-edit", uploaded_image_url)
    )
    assert emulator.get_prediction(prediction.id)["id"] == prediction.id
    assert emulator.wait_for_prediction(prediction.id)["status"] == "succeeded"
    assert emulator.get_prediction("missing") is None
