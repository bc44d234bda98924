"""Kept strips (policy, retention) and GET /v1/inspections/{id}/overlay.png."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import REGISTRY

from service.images import ImageArchive
from service.images.archive import MAX_WAITING_STRIPS
from service.images.overlay import ALPHA, LEGEND_HEIGHT, NEUTRAL, class_colour

from .conftest import AppFactory
from .history import SeedDefect, seed
from .strips import BLOCK, RAW, encode, plain_strip, post_strip, strip_with_block

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", "var/test-artifacts"))
NOT_KEPT = "strip_inspection_strips_not_kept_total"


def _overlay(client: TestClient, inspection_id: str) -> tuple[np.ndarray, str]:
    response = client.get(f"/v1/inspections/{inspection_id}/overlay.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"overlay-{response.headers['X-Strip-Image']}.png").write_bytes(response.content)
    return np.asarray(Image.open(io.BytesIO(response.content))), response.headers["X-Strip-Image"]


def _blend(grey: int, class_id: int) -> list[int]:
    return [round((1 - ALPHA) * grey + ALPHA * c) for c in class_colour(class_id)]


def test_overlay_draws_the_kept_strip_and_its_masks(client: TestClient) -> None:
    body = encode(strip_with_block(), "PNG")
    posted = post_strip(client, body, "image/png", frame_id=uuid.uuid4().hex).json()
    pixels, kept = _overlay(client, posted["inspection_id"])
    assert kept == "kept"
    assert pixels.shape == (256 + LEGEND_HEIGHT, 1600, 3)
    assert pixels[BLOCK][0, 0].tolist() == _blend(255, 1)
    assert pixels[100, 800].tolist() == [100, 100, 100]
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    day = datetime.fromisoformat(posted["received_at"]).strftime("%Y-%m-%d")
    assert (settings.image_dir / day / f"{posted['inspection_id']}.png").read_bytes() == body


def test_without_the_strip_the_masks_go_on_neutral_grey(empty_db: TestClient) -> None:
    inspection_id = seed(empty_db, minutes=0, defects=(SeedDefect(2, 4, "1 4"),))
    pixels, kept = _overlay(empty_db, inspection_id)
    assert kept == "missing"
    assert pixels[3, 0].tolist() == _blend(NEUTRAL, 2)  # pixels 1..4: column 0, rows 0..3
    assert pixels[200, 800].tolist() == [NEUTRAL] * 3
    assert (pixels[4:24, 8:100] < 60).any()  # the dark note saying the strip was not kept


def test_overlay_of_an_unknown_inspection_is_404(client: TestClient) -> None:
    response = client.get(f"/v1/inspections/{uuid.uuid4()}/overlay.png")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "inspection_not_found"


@pytest.mark.parametrize(("policy", "kept"), [("none", set()), ("defects", {"block"})])
def test_keep_policy(
    running_app: AppFactory, sqlite_url: str, tmp_path: Path, policy: str, kept: set[str]
) -> None:
    with running_app(sqlite_url, keep_images=policy, image_dir=tmp_path / "images") as client:
        ids = {
            "plain": post_strip(client, plain_strip().tobytes(), RAW).json()["inspection_id"],
            "block": post_strip(client, strip_with_block().tobytes(), RAW).json()["inspection_id"],
        }
    files = {path.stem for path in (tmp_path / "images").glob("*/*")}
    assert files == {ids[name] for name in kept}


def test_retention_by_total_size_and_age(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    archive = ImageArchive(tmp_path, keep="all", max_age=timedelta(days=1), max_bytes=250)
    archive.open()
    ids = [uuid.uuid4() for _ in range(4)]
    for inspection_id in ids:
        archive.keep(
            inspection_id=inspection_id, received_at=now, data=bytes(100), content_type=RAW
        )
    assert [archive.find(inspection_id=i, received_at=now) is not None for i in ids] == [
        False,
        False,
        True,
        True,
    ]
    stale = archive.find(inspection_id=ids[2], received_at=now)
    assert stale is not None
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale.path, (two_days_ago, two_days_ago))
    archive.close()
    reopened = ImageArchive(tmp_path, keep="all", max_age=timedelta(days=1), max_bytes=250)
    reopened.open()
    assert reopened.find(inspection_id=ids[2], received_at=now) is None
    assert reopened.find(inspection_id=ids[3], received_at=now) is not None
    reopened.close()


def _roomy_archive(folder: Path) -> ImageArchive:
    return ImageArchive(folder, keep="all", max_age=timedelta(days=1), max_bytes=1 << 20)


def _offer(archive: ImageArchive, inspection_id: uuid.UUID, received_at: datetime) -> None:
    archive.offer(
        inspection_id=inspection_id,
        received_at=received_at,
        has_defect=True,
        data=inspection_id.bytes,
        content_type=RAW,
    )


def test_offered_strips_are_written_by_the_writer_and_found_at_once(tmp_path: Path) -> None:
    now, archive = datetime.now(UTC), _roomy_archive(tmp_path)
    archive.open()
    ids = [uuid.uuid4() for _ in range(20)]
    for inspection_id in ids:
        _offer(archive, inspection_id, now)
        kept = archive.find(inspection_id=inspection_id, received_at=now)
        assert kept is not None and kept.read() == inspection_id.bytes
    last = uuid.uuid4()
    _offer(archive, last, now)
    archive.close()  # writes what was handed over
    assert (tmp_path / now.strftime("%Y-%m-%d") / f"{last}.raw").read_bytes() == last.bytes


def test_find_waits_for_its_own_strip_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now, archive = datetime.now(UTC), _roomy_archive(tmp_path)
    archive.open()
    written, stalled = uuid.uuid4(), uuid.uuid4()
    _offer(archive, written, now)
    assert archive.find(inspection_id=written, received_at=now) is not None
    writing, disk_back, keep = threading.Event(), threading.Event(), archive.keep

    def stalled_keep(**strip: Any) -> None:
        writing.set()
        disk_back.wait()  # a disk that stalls on this write until the test says otherwise
        keep(**strip)

    monkeypatch.setattr(archive, "keep", stalled_keep)
    _offer(archive, stalled, now)
    assert writing.wait(30)
    found: list[object] = []
    finder = threading.Thread(
        target=lambda: found.append(archive.find(inspection_id=written, received_at=now))
    )
    try:
        finder.start()
        finder.join(timeout=30)  # only so that a find that waits for the disk fails, not hangs
        assert found and found[0] is not None, "find waited for another strip's write"
    finally:
        disk_back.set()
    kept = archive.find(inspection_id=stalled, received_at=now)  # waits for its own write
    assert kept is not None and kept.read() == stalled.bytes
    archive.close()


def test_a_writer_that_falls_behind_drops_strips_not_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now, archive = datetime.now(UTC), _roomy_archive(tmp_path)
    ids = [uuid.uuid4() for _ in range(MAX_WAITING_STRIPS + 1)]
    behind_before = REGISTRY.get_sample_value(NOT_KEPT, {"reason": "behind"}) or 0.0
    for inspection_id in ids:  # not open yet: nothing writes, as with a stalled disk
        _offer(archive, inspection_id, now)
    assert f"strip of inspection {ids[-1]} not kept" in caplog.text
    assert REGISTRY.get_sample_value(NOT_KEPT, {"reason": "behind"}) == behind_before + 1
    archive.open()
    found = [archive.find(inspection_id=i, received_at=now) is not None for i in ids]
    assert found == [True] * MAX_WAITING_STRIPS + [False]
    archive.close()


def test_an_overlay_never_waits_forever_on_a_stalled_disk(
    running_app: AppFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strip's write hangs: the overlay comes within the archive's wait, strip missing."""
    disk_back = threading.Event()
    with running_app(sqlite_url) as client:
        archive = client.app.state.services.images  # type: ignore[attr-defined]
        monkeypatch.setattr(archive, "find_wait_s", 0.2)
        keep = archive.keep

        def stalled_keep(**strip: Any) -> None:
            disk_back.wait()
            keep(**strip)

        monkeypatch.setattr(archive, "keep", stalled_keep)
        posted = post_strip(client, strip_with_block().tobytes(), RAW).json()
        answers: list[tuple[np.ndarray, str]] = []
        asking = threading.Thread(
            target=lambda: answers.append(_overlay(client, posted["inspection_id"])), daemon=True
        )
        try:
            started = time.monotonic()
            asking.start()
            asking.join(timeout=20)  # only so that an overlay that waits forever fails, not hangs
            assert answers, "the overlay waited for a stalled disk"
            assert time.monotonic() - started < 10
        finally:
            disk_back.set()
            asking.join(timeout=30)
        assert answers[0][1] == "missing"


def test_temporary_files_left_by_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    day = tmp_path / "2024-05-01"
    day.mkdir()
    orphan, fresh = day / f".{uuid.uuid4()}.raw.tmp", day / f".{uuid.uuid4()}.raw.tmp"
    orphan.write_bytes(b"half a strip")
    fresh.write_bytes(b"being written by another process")
    an_hour_ago = time.time() - 3600
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    archive = _roomy_archive(tmp_path)
    archive.open()
    archive.close()
    assert not orphan.exists() and fresh.exists()


def test_a_failed_write_leaves_no_temporary_file(
    running_app: AppFactory, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("service.images.archive.os.replace", disk_full)
    failed_before = REGISTRY.get_sample_value(NOT_KEPT, {"reason": "failed"}) or 0.0
    with running_app(sqlite_url, image_dir=tmp_path / "images") as client:
        posted = post_strip(client, strip_with_block().tobytes(), RAW)
        assert posted.status_code == 200
        assert _overlay(client, posted.json()["inspection_id"])[1] == "missing"
    assert REGISTRY.get_sample_value(NOT_KEPT, {"reason": "failed"}) == failed_before + 1
    assert [path.name for path in (tmp_path / "images").rglob("*") if path.is_file()] == []
