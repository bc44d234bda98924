"""The inspection use cases, free of HTTP: a strip inspected and recorded once, the history
exported, the reviewed strips as a training set."""

from service.inspection.export import history, history_csv
from service.inspection.inspect import (
    Frame,
    FrameIdsMismatch,
    Inspected,
    ReceivedStrip,
    Recording,
    inspect_batch,
    inspect_strip,
)
from service.inspection.review_dataset import ReviewDataset, review_dataset

__all__ = [
    "Frame",
    "FrameIdsMismatch",
    "Inspected",
    "ReceivedStrip",
    "Recording",
    "ReviewDataset",
    "history",
    "history_csv",
    "inspect_batch",
    "inspect_strip",
    "review_dataset",
]
