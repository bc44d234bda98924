"""Data sources: Severstal and NEU-Seg readers, synthetic strips, the train/validation split."""

from service.data.base import DefectClass, Sample, SegmentationDataset, split_image_ids
from service.data.neu import NEU_CLASSES, NeuSegDataset, default_neu_root
from service.data.severstal import (
    SEVERSTAL_CLASSES,
    SeverstalDataset,
    read_train_csv,
    write_train_csv,
)
from service.data.synthetic import generate_synthetic, render_strip

__all__ = [
    "NEU_CLASSES",
    "SEVERSTAL_CLASSES",
    "DefectClass",
    "NeuSegDataset",
    "Sample",
    "SegmentationDataset",
    "SeverstalDataset",
    "default_neu_root",
    "generate_synthetic",
    "read_train_csv",
    "render_strip",
    "split_image_ids",
    "write_train_csv",
]
