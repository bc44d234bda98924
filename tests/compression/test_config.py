"""What a compression job takes from its source version when the request leaves it open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.compression.config import CompressionConfig
from service.store.manifest import Manifest

SHIPPED = Path(__file__).resolve().parents[2] / "model_store" / "strip-defects" / "1"


def _source(**settings: object) -> Manifest:
    data = json.loads((SHIPPED / "manifest.json").read_text())
    data["lineage"]["settings"].update(settings)
    return Manifest.model_validate(data)


def _job(**changes: object) -> CompressionConfig:
    return CompressionConfig(model="strip-defects", flops_reduction=0.8, **changes)


def test_the_task_loss_follows_the_source_unless_the_job_names_one() -> None:
    assert _job().resolved(_source()).dice_reduction == "batch"
    assert _job().resolved(_source(dice_reduction="pairs")).dice_reduction == "pairs"
    assert _job(dice_reduction="batch").resolved(
        _source(dice_reduction="pairs")
    ).dice_reduction == ("batch")


def test_crop_and_batch_come_from_the_source() -> None:
    resolved = _job().resolved(_source())
    assert resolved.crop == (256, 384) and resolved.batch_size == 8


def test_an_unknown_dice_reduction_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dice_reduction 'image'"):
        _job(dice_reduction="image")


def test_the_defect_share_follows_the_source_unless_the_job_names_one() -> None:
    assert _job().resolved(_source()).defect_share == 0.0
    assert _job().resolved(_source(defect_share=0.5)).defect_share == 0.5
    assert _job(defect_share=0.0).resolved(_source(defect_share=0.5)).defect_share == 0.0
    with pytest.raises(ValueError, match=r"defect_share must be in \[0, 1\)"):
        _job(defect_share=1.0)
