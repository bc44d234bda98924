from __future__ import annotations

import numpy as np
import pytest

from service.data.base import DefectClass, Sample
from service.evaluation.metrics import DiceAccumulator
from service.evaluation.run import tune_postprocess
from service.evaluation.tuning import PostprocessTuner, min_area_candidates
from service.inference.postprocess import probabilities_to_masks, sigmoid
from service.inference.preprocess import normalise, padded_size, prepare_batch
from service.store.manifest import ClassPostprocess, InputSpec, Normalisation


def test_competition_dice_counts_empty_pairs_as_one() -> None:
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2] = 1  # class 0: 8 pixels; class 1 empty
    predicted = np.zeros_like(truth)
    predicted[0, :1] = 1  # 4 of the 8 pixels
    accumulator = DiceAccumulator(["a", "b"])
    accumulator.add(predicted, truth)
    result = accumulator.result()
    assert result["dice_per_class"] == {"a": pytest.approx(2 * 4 / 12), "b": 1.0}
    assert result["dice"] == pytest.approx((2 * 4 / 12 + 1) / 2)
    assert result["dice_nonempty"] == pytest.approx(2 * 4 / 12)
    assert result["iou_per_class"]["a"] == pytest.approx(4 / 8)
    assert result["pairs_nonempty"] == 1


def test_false_positive_on_empty_truth_scores_zero() -> None:
    accumulator = DiceAccumulator(["a"])
    accumulator.add(np.ones((1, 1, 3, 3)), np.zeros((1, 1, 3, 3)))
    assert accumulator.result()["dice"] == 0.0


def test_miou_with_background_counts_uncovered_pixels_as_one_more_class() -> None:
    """Two classes on a 1x10 image: class a predicted on 0-3 (true 0-1), class b predicted on
    8 (true 8-9). Background: predicted 4-7 and 9, true 2-7."""
    predicted = np.zeros((2, 1, 10), dtype=bool)
    truth = np.zeros((2, 1, 10), dtype=bool)
    predicted[0, 0, 0:4], truth[0, 0, 0:2] = True, True
    predicted[1, 0, 8], truth[1, 0, 8:10] = True, True
    accumulator = DiceAccumulator(["a", "b"])
    accumulator.add(predicted, truth)
    result = accumulator.result()
    iou_a, iou_b, iou_background = 2 / 4, 1 / 2, 4 / 7
    assert result["miou"] == pytest.approx((iou_a + iou_b) / 2)
    assert result["iou_background"] == pytest.approx(iou_background)
    assert result["miou_with_background"] == pytest.approx((iou_a + iou_b + iou_background) / 3)


def test_accumulator_rejects_shape_mismatch_and_empty() -> None:
    accumulator = DiceAccumulator(["a"])
    with pytest.raises(ValueError, match="no images"):
        accumulator.result()
    with pytest.raises(ValueError, match="shape"):
        accumulator.add(np.zeros((1, 2, 2)), np.zeros((1, 3, 3)))


def test_postprocess_threshold_and_min_area() -> None:
    probabilities = np.zeros((2, 10, 10), np.float32)
    probabilities[0, :5, :5] = 0.9  # 25 px
    probabilities[1, :2, :2] = 0.9  # 4 px, below its minimum area
    rules = [
        ClassPostprocess(class_id=1, threshold=0.5, min_area=20),
        ClassPostprocess(class_id=2, threshold=0.5, min_area=5),
    ]
    masks = probabilities_to_masks(probabilities, rules)
    assert masks[0].sum() == 25
    assert masks[1].sum() == 0
    with pytest.raises(ValueError):
        probabilities_to_masks(probabilities[:1], rules)


def test_sigmoid_is_stable_for_extremes() -> None:
    values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.allclose(values, [0.0, 0.5, 1.0])
    assert np.isfinite(values).all()


def test_tuner_finds_the_separating_threshold_and_drops_noise() -> None:
    rng = np.random.default_rng(0)
    tuner = PostprocessTuner(num_classes=1)
    for index in range(12):
        truth = np.zeros((1, 32, 32), np.uint8)
        if index % 2:
            truth[0, 8:20, 8:20] = 1
        # defect pixels score 0.62-0.7; background up to 0.6, with isolated noisy pixels
        probabilities = np.where(
            truth, rng.uniform(0.62, 0.7, truth.shape), rng.uniform(0, 0.4, truth.shape)
        )
        probabilities[0, 0, :3] = 0.9
        tuner.add(probabilities.astype(np.float32), truth)
    (rule,), (score,) = tuner.best(min_area_candidates(32, 32))
    assert 0.4 <= rule.threshold < 0.62
    assert 3 < rule.min_area <= 144
    assert score == pytest.approx(1.0, abs=0.02)


class _TwoSizes:
    """A 64x64 image with a 600-pixel defect, then a clean 32x32 one; each image's bright
    pixels are where the predictor below flags the class."""

    def __init__(self) -> None:
        self.classes = (DefectClass(id=1, name="defect"),)
        self.image_ids = ["large", "small"]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Sample:
        side, area = ((64, 600), (32, 300))[index]
        flagged = np.zeros(side * side, np.uint8)
        flagged[:area] = 1
        flagged = flagged.reshape(side, side)
        masks = (flagged if index == 0 else np.zeros_like(flagged))[None]
        return Sample(image_id=self.image_ids[index], image=flagged * 255, masks=masks)


def test_tuned_minimum_areas_follow_the_largest_image_of_the_split() -> None:
    def bright_pixels(batch: np.ndarray) -> np.ndarray:
        return np.where(batch[:, :1] > 0, 10.0, -10.0).astype(np.float32)

    spec = InputSpec(height=64, width=64, channels=1)
    (rule,), (score,) = tune_postprocess(bright_pixels, _TwoSizes(), spec, progress=False)
    # The last image alone (32x32) would cap the areas at 128: the clean image's 300 false
    # pixels could not be dropped. The largest (64x64) allows 512, between the two.
    assert rule.min_area == 512 and score == pytest.approx(1.0)


def test_min_area_candidates_scale_with_image() -> None:
    assert min_area_candidates(256, 1600)[:3] == (0, 16, 32)
    assert max(min_area_candidates(256, 1600)) == 32768 <= 256 * 1600 // 8
    assert min_area_candidates(8, 8) == (0,)


@pytest.mark.parametrize("channels", [1, 3])
def test_prepare_batch_matches_normalise_exactly(channels: int) -> None:
    """Unpadded uint8 strips are normalised in place: bit for bit what ``normalise`` gives,
    which training and evaluation use, for every grey level."""
    normalisation = Normalisation(mean=0.43, std=0.21)
    spec = InputSpec(height=64, width=96, channels=channels, normalisation=normalisation)
    images = [np.random.default_rng(seed).integers(0, 256, (64, 96), np.uint8) for seed in (0, 1)]
    images[0].reshape(-1)[:256] = np.arange(256)
    batch = prepare_batch(images, spec)
    for index, image in enumerate(images):
        expected = normalise(image, normalisation)
        for channel in range(channels):
            assert np.array_equal(batch[index, channel], expected)
    grey = images[0].astype(np.float32)
    in_float32 = (grey / np.float32(255.0) - np.float32(0.43)) / np.float32(0.21)
    assert np.array_equal(normalise(images[0], normalisation), in_float32)


def test_prepare_batch_pads_to_stride_and_normalises() -> None:
    spec = InputSpec(height=200, width=200, channels=3)
    image = np.full((200, 200), 255, np.uint8)
    batch = prepare_batch([image, image], spec)
    assert batch.shape == (2, 3, 224, 224)
    assert batch.dtype == np.float32
    assert np.allclose(batch[:, :, :200, :200], (1.0 - 0.5) / 0.25)
    assert padded_size(256, 1600) == (256, 1600)
    with pytest.raises(ValueError, match="differ"):
        prepare_batch([image, image[:100]], spec)
