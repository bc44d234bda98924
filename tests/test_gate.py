"""The classification gate: a class whose presence score is under its gate gets no mask; the
gate is tuned with the pixel threshold and minimum area; manifests without one still load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from service.data.base import DefectClass, Sample
from service.evaluation.run import evaluate
from service.evaluation.tuning import PostprocessTuner, min_area_candidates
from service.inference.postprocess import gate_closed, probabilities_to_masks
from service.store.manifest import ClassPostprocess, InputSpec, Manifest
from tests.tiny_models import MODELS


def _rule(gate: float | None, class_id: int = 1) -> ClassPostprocess:
    return ClassPostprocess(class_id=class_id, threshold=0.5, min_area=0, gate=gate)


def test_a_class_under_its_gate_is_dropped_and_one_over_it_kept() -> None:
    probabilities = np.full((2, 8, 8), 0.9, dtype=np.float32)
    rules = [_rule(0.5, 1), _rule(0.5, 2)]
    masks = probabilities_to_masks(probabilities, rules, np.array([0.49, 0.51], np.float32))
    assert not masks[0].any()
    assert masks[1].all()


def test_no_gate_or_no_presence_score_never_drops() -> None:
    assert not gate_closed(_rule(None), 0.0)
    assert not gate_closed(_rule(0.9), None)
    assert gate_closed(_rule(0.9), 0.89)
    assert not gate_closed(_rule(0.9), 0.9)
    probabilities = np.full((1, 4, 4), 0.9, dtype=np.float32)
    assert probabilities_to_masks(probabilities, [_rule(0.9)]).all()


def test_gate_must_be_a_probability() -> None:
    with pytest.raises(ValidationError):
        _rule(1.0)
    with pytest.raises(ValidationError):
        _rule(-0.1)


def test_tuner_picks_a_gate_that_silences_false_alarms_on_clean_images() -> None:
    """Defective images: faint defects (pixels at 0.62-0.7) and a confident presence score.
    Clean images: a stain the pixels call a defect (0.8), but a low presence score. No pixel
    threshold and minimum area can tell them apart; the gate can."""
    rng = np.random.default_rng(0)
    tuner = PostprocessTuner(num_classes=1)
    for index in range(12):
        truth = np.zeros((1, 32, 32), np.uint8)
        probabilities = rng.uniform(0, 0.3, truth.shape)
        if index % 2:
            truth[0, 8:20, 8:20] = 1
            probabilities[truth == 1] = rng.uniform(0.62, 0.7, int(truth.sum()))
            presence = rng.uniform(0.7, 0.95, 1)
        else:
            probabilities[0, 2:14, 18:30] = 0.8
            presence = rng.uniform(0.05, 0.3, 1)
        tuner.add(probabilities.astype(np.float32), truth, presence)
    (rule,), (score,) = tuner.best(min_area_candidates(32, 32))
    assert rule.gate is not None and 0.3 <= rule.gate <= 0.7
    assert score == pytest.approx(1.0, abs=0.02)


def test_tuner_without_presence_scores_sets_no_gate() -> None:
    tuner = PostprocessTuner(num_classes=1)
    truth = np.zeros((1, 16, 16), np.uint8)
    truth[0, :4, :4] = 1
    tuner.add(truth.astype(np.float32), truth)
    (rule,), _ = tuner.best(min_area_candidates(16, 16))
    assert rule.gate is None


def test_tuner_refuses_presence_for_some_images_only() -> None:
    tuner = PostprocessTuner(num_classes=1)
    truth = np.zeros((1, 16, 16), np.uint8)
    tuner.add(truth.astype(np.float32), truth, np.array([0.5]))
    with pytest.raises(ValueError, match="every image or with none"):
        tuner.add(truth.astype(np.float32), truth)


def test_a_manifest_written_before_the_gate_loads_without_one() -> None:
    """The shipped first version's manifest has no ``gate`` and no ``presence_head`` key."""
    shipped = MODELS.parents[2] / "model_store" / "strip-defects" / "1" / "manifest.json"
    data = json.loads(shipped.read_text())
    assert all("gate" not in rule for rule in data["postprocess"])
    manifest = Manifest.model_validate(data)
    assert all(rule.gate is None for rule in manifest.postprocess)
    assert manifest.architecture.presence_head is False


class _TwoStrips:
    """One strip whose class 1 is real, one clean strip where the pixels fire anyway."""

    classes = (DefectClass(1, "pits"),)

    def __init__(self) -> None:
        self.image_ids = ["defect", "clean"]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Sample:
        masks = np.zeros((1, 32, 32), np.uint8)
        if index == 0:
            masks[0, 4:12, 4:12] = 1
        return Sample(self.image_ids[index], np.full((32, 32), index, np.uint8), masks)


def _fires_on_both(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits over the defect's square on every strip; presence high only on the first."""
    logits = np.full((batch.shape[0], 1, 32, 32), -9.0, np.float32)
    logits[:, :, 4:12, 4:12] = 9.0
    clean = batch[:, 0, 0, 0] > batch[:, 0, 0, 0].min()
    presence = np.where(clean, -9.0, 9.0).astype(np.float32)[:, None]
    return logits, presence


def test_evaluation_scores_a_gated_model_with_and_without_its_gate() -> None:
    spec = InputSpec(height=32, width=32, channels=1)
    rules = [_rule(0.5)]
    gated = evaluate(_fires_on_both, _TwoStrips(), spec, rules, batch_size=2, progress=False)
    open_gate = evaluate(
        _fires_on_both, _TwoStrips(), spec, rules, batch_size=2, progress=False, gated=False
    )
    assert gated["dice"] == pytest.approx(1.0)
    assert open_gate["dice"] == pytest.approx(0.5)
