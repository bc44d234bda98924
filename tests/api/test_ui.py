"""The /ui page in a real headless browser (Debian's chromium driven by playwright): load,
filter, open a detail, submit a review, see the alarms, open a coil's map and click through to
a strip, screenshot. Every request stays on the service."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.store import ModelStore

from .servers import serving
from .strips import RAW, plain_strip, strip_with_block

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", "var/test-artifacts"))


def _playwright():  # type: ignore[no-untyped-def]
    missing = [] if shutil.which(CHROMIUM) else [CHROMIUM]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip)")
    if missing:
        message = f"the browser test needs {', '.join(missing)}: run make install"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


def test_filter_detail_and_review_in_a_browser(model_store: ModelStore, tmp_path: Path) -> None:
    sync_playwright = _playwright()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'ui.db'}",
        model_store=model_store.root,
        model_name="probe",
        warmup_runs=1,
        onnx_threads=1,
        spool_dir=tmp_path / "spool",
        image_dir=tmp_path / "images",
        alarm_rules=[{"name": "any-defect", "count": 1, "window_strips": 1}],
    )
    with serving(settings) as base:
        for position, body in enumerate((plain_strip(), strip_with_block())):
            params = {
                "camera_id": "cam-ui",
                "line_id": "L1",
                "frame_id": uuid.uuid4().hex,
                "coil_id": "C-ui",
                "position_m": str(4.0 * position),
            }
            posted = httpx.post(
                f"{base}/v1/inspect",
                params=params,
                content=body.tobytes(),
                headers={"content-type": RAW},
            )
            assert posted.status_code == 200, posted.text
        defective = posted.json()["inspection_id"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/ui")
            rows = page.locator("#inspections tbody tr")
            rows.nth(1).wait_for()
            assert rows.count() == 2
            page.locator("#trend polyline").first.wait_for(state="attached")

            page.select_option("[name=has_defect]", "true")
            page.click("#filters button[type=submit]")
            page.wait_for_function(
                "document.querySelectorAll('#inspections tbody tr').length === 1"
            )
            row = rows.first
            assert row.get_attribute("data-id") == defective
            row.locator("img[src^='blob:']").wait_for()

            row.click()
            page.locator("#detail-overlay[src^='blob:']").wait_for()
            page.select_option("[name=verdict-1]", "false_positive")
            page.select_option("[name=missed_class]", "3")
            page.fill("[name=missed_rle]", "5 3")
            page.click("#review button[type=submit]")
            page.get_by_text("review saved by anonymous").wait_for()

            page.locator("#alarms tbody tr").first.wait_for()
            assert "any-defect" in page.locator("#alarms tbody tr").first.inner_text()
            page.locator("#coils tbody tr[data-coil-id='C-ui']").click()
            page.locator("#coil-map[src^='blob:']").wait_for()
            assert page.locator("#coil-strips tbody tr").count() == 1  # the strip with a defect
            page.locator("#coil-strips tbody tr").first.click()
            page.wait_for_function(
                f"document.querySelector('#detail-id').textContent === '{defective}'"
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)
            browser.close()
        review = httpx.get(f"{base}/v1/inspections/{defective}/review").json()
    assert review["defects"] == [{"class_id": 1, "verdict": "false_positive"}]
    assert review["missed"] == [{"class_id": 3, "encoded_pixels": "5 3"}]
    assert not errors, errors
    assert all(url.startswith((base, "blob:")) for url in requested), requested
