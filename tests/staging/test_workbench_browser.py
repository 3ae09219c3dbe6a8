"""The workbench in a real Chromium (Playwright) with a real qcluster and the emulator: drop three photos,
see the cost, confirm, watch the listing stage to the end without reloading, download clean and labelled.

Screenshots are saved under tests/artifacts/ (git-ignored) to look at.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from models_config import services as config_services
from staging import listings
from staging.models import Listing
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.photos import image_bytes
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]
MODEL = "flux-kontext-pro"

# Drops the photos on the drop zone as a person dragging files from their desktop would.
DROP = """([zone, photos]) => {
    const transfer = new DataTransfer();
    for (const [name, data] of photos) {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
    }
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
}"""


def test_stage_a_listing_from_the_admin(admin_page, live_server, qcluster, screenshot) -> None:
    page = admin_page
    ARTIFACTS.mkdir(exist_ok=True)
    config_services.ensure_config_rows()
    qcluster.start()

    page.goto(f"{live_server.url}/admin/staging/stagingjob/")
    page.click(".object-tools a.addlink")  # the job list's "Add" is the workbench
    page.wait_for_selector("#workbench[data-ready]")  # its script listens for drops (the page may show first)

    colors = [(210, 180, 140), (150, 170, 200), (190, 200, 160)]
    photos = [
        [f"room{i}.jpg", base64.b64encode(image_bytes(size=(320, 240), color=c)).decode()] for i, c in enumerate(colors)
    ]
    page.evaluate(DROP, [page.query_selector("#dropzone"), photos])
    page.wait_for_selector("#photo-list tr:nth-child(3)")
    for index, room in enumerate(["living room", "bedroom", "kitchen"]):
        page.fill(f"#room-type-{index}", room)
    page.fill("#id_name", "12 Elm St")
    page.select_option("#id_model", MODEL)
    page.fill("#id_style", "scandinavian")
    expected = f"${listings.estimate_cost(MODEL, 3):.2f}"
    page.locator("#estimate strong", has_text=expected).wait_for()
    assert page.locator("#confirm").is_enabled()
    assert Listing.objects.count() == 0  # nothing before the cost is confirmed
    inputs_x = {round(page.locator(f"#id_{name}").bounding_box()["x"]) for name in ("name", "model", "instructions")}
    assert len(inputs_x) == 1  # the admin's aligned rows: every input starts in one column
    screenshot("workbench-upload")

    page.click("#confirm")
    page.wait_for_selector("table.staging-live")
    listing = Listing.objects.get()
    jobs = list(listing.jobs.order_by("pk"))
    assert [job.room_type for job in jobs] == ["living room", "bedroom", "kitchen"]
    page.evaluate("window.__stillTheSamePage = true")
    assert wait_until(lambda: page.locator('td.status[data-status="succeeded"]').count() == 3, timeout=90, step=0.5), (
        qcluster.logs()
    )
    assert page.evaluate("window.__stillTheSamePage === true")  # updated live, never reloaded
    page.locator("td.outputs a.labelled").first.wait_for()
    screenshot("workbench-listing")

    clean_href = page.locator("td.outputs a.clean").first.get_attribute("href")
    labelled_href = page.locator("td.outputs a.labelled").first.get_attribute("href")
    clean = page.request.get(f"{live_server.url}{clean_href}")
    labelled = page.request.get(f"{live_server.url}{labelled_href}")
    assert clean.ok and labelled.ok
    stored = jobs[0].attempts.get(state="succeeded").images.get()
    assert clean.body() == stored.file.open("rb").read()
    assert labelled.body() != clean.body()
    labelled_image = Image.open(io.BytesIO(labelled.body()))
    assert labelled_image.size == (stored.width, stored.height)
    labelled_image.save(ARTIFACTS / "workbench-labelled-output.png")

    page.goto(f"{live_server.url}/admin/staging/stagingjob/")  # the changelists, as staff see them afterwards
    assert page.locator("#result_list tbody tr").count() == 3
    assert page.locator(".object-tools a.addlink").is_visible()  # "Add" stays: it is the workbench
    screenshot("jobs-changelist")
    page.goto(f"{live_server.url}/admin/staging/listing/")
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot("listings-changelist")
    page.goto(f"{live_server.url}/admin/staging/stagingjob/{jobs[0].pk}/change/")
    page.locator("#ba-slider").wait_for()
    assert page.locator(".submit-row").count() == 0  # a job is read-only: no save buttons
    screenshot("job-page")
