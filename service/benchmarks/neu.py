"""The real-data baseline: the shipped recipe trained on NEU-Seg train, scored on its test split."""

from __future__ import annotations

import json
import time
from pathlib import Path

from service.data.neu import default_neu_root
from service.store import ModelStore
from service.training.publish import publish_run
from service.training.train import TrainConfig, train

BENCH_MODEL = "neu-unet"


def bench_neu(out: Path, epochs: int, width: float, device: str = "auto") -> dict[str, object]:
    root = default_neu_root()
    if not root.is_dir():
        raise FileNotFoundError(f"NEU-Seg is expected at {root} (../shared/data/neu-seg)")
    started = time.perf_counter()
    result = train(
        TrainConfig(
            dataset=f"neu:{root}",
            out_dir=out / "run",
            width_multiplier=width,
            epochs=epochs,
            batch_size=16,
            crop=(192, 192),
            device=device,
            resume=(out / "run" / "checkpoint.pt").exists(),
        )
    )
    manifest = publish_run(
        result.run_dir, ModelStore(out / "store"), BENCH_MODEL, "production", device
    )
    metrics = manifest.metrics.model_dump()
    summary = {
        "recipe": f"unet/resnet18 width {width}, {epochs} epochs, batch 16, crop 192x192",
        "test_dice": metrics["dice"],
        "test_dice_per_class": metrics["dice_per_class"],
        "test_dice_nonempty": metrics["dice_nonempty"],
        "test_miou": metrics["miou"],
        "test_iou_per_class": metrics["iou_per_class"],
        "params": metrics["params"],
        "macs": metrics["macs"],
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "latency": metrics["latency"],
        "version_folder": str(out / "store" / BENCH_MODEL / str(manifest.version)),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
