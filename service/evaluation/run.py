"""Evaluate any predictor (torch or ONNX Runtime) on a dataset split at full resolution."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from service.data.base import Sample, SegmentationDataset
from service.evaluation.metrics import DiceAccumulator
from service.evaluation.tuning import PostprocessTuner, min_area_candidates
from service.inference.outputs import Prediction, split_prediction
from service.inference.postprocess import probabilities_to_masks, sigmoid
from service.inference.preprocess import prepare_batch
from service.store.manifest import ClassPostprocess, InputSpec

Predictor = Callable[[np.ndarray], Prediction]
"""(N, C, H, W) float32 normalised batch -> its prediction."""


def predict_dataset(
    predictor: Predictor,
    dataset: SegmentationDataset,
    spec: InputSpec,
    batch_size: int = 4,
    progress: bool = True,
    description: str = "predict",
) -> Iterator[tuple[Sample, np.ndarray, np.ndarray | None]]:
    """Yield each sample with its (C, H, W) probabilities at the sample's own size and, from a
    gated model, its (C,) presence probabilities."""
    pending: list[Sample] = []
    for index in tqdm(range(len(dataset)), desc=description, disable=not progress, leave=False):
        sample = dataset[index]
        if pending and (len(pending) == batch_size or sample.image.shape != pending[0].image.shape):
            yield from _run_batch(predictor, pending, spec)
            pending = []
        pending.append(sample)
    if pending:
        yield from _run_batch(predictor, pending, spec)


def _run_batch(
    predictor: Predictor, samples: list[Sample], spec: InputSpec
) -> Iterator[tuple[Sample, np.ndarray, np.ndarray | None]]:
    height, width = samples[0].image.shape
    logits, presence = split_prediction(predictor(prepare_batch([s.image for s in samples], spec)))
    probabilities = sigmoid(logits[..., :height, :width])
    presences = [None] * len(samples) if presence is None else list(sigmoid(presence))
    yield from zip(samples, probabilities, presences, strict=True)


def tune_postprocess(
    predictor: Predictor,
    dataset: SegmentationDataset,
    spec: InputSpec,
    batch_size: int = 4,
    progress: bool = True,
) -> tuple[list[ClassPostprocess], list[float]]:
    """Per-class threshold, minimum area and (for a gated model) gate that maximise Dice on
    ``dataset``."""
    tuner = PostprocessTuner(num_classes=len(dataset.classes))
    largest: tuple[int, int] | None = None  # sizes vary in some sets (magnetic-tile)
    for sample, probabilities, presence in predict_dataset(
        predictor, dataset, spec, batch_size, progress, "tune"
    ):
        tuner.add(probabilities, sample.masks, presence)
        if largest is None or sample.image.size > np.prod(largest):
            largest = sample.image.shape
    if largest is None:
        raise ValueError("cannot tune post-processing on an empty dataset")
    return tuner.best(min_area_candidates(*largest))


def evaluate(
    predictor: Predictor,
    dataset: SegmentationDataset,
    spec: InputSpec,
    postprocess: Sequence[ClassPostprocess],
    batch_size: int = 4,
    progress: bool = True,
    gated: bool = True,
) -> dict[str, object]:
    """Competition Dice, per-class Dice, Dice over non-empty pairs and mIoU; ``gated=False``
    scores a gated model without its gate."""
    accumulator = DiceAccumulator([c.name for c in dataset.classes])
    for sample, probabilities, presence in predict_dataset(
        predictor, dataset, spec, batch_size, progress, "evaluate"
    ):
        masks = probabilities_to_masks(probabilities, postprocess, presence if gated else None)
        accumulator.add(masks, sample.masks)
    return accumulator.result()
