"""The compression benchmark on a real data set: a baseline, then every criterion and scratch
compressed to the same MACs with the same budget, seed and crops, scored on the test split.

Stages run in order and each is resumable: the baseline trains with a checkpoint per epoch, each
method's job resumes after its last completed step or fine-tune epoch, and everything heavy is
cached under ``BENCH_CACHE`` (default ``~/.cache/strip-inspection``), keyed by the recipe. The
figures of every finished stage are merged into ``benchmarks/results/<dataset>-compression.json``
at once, so a run cut off and resumed later loses nothing.

    python -m benchmarks.compression neu                 # every stage, resuming
    python -m benchmarks.compression magnetic-tile --methods fpgm random
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import read_results, update_method, update_results
from service.architectures import DEFAULT_DICE_REDUCTION
from service.compression import METHOD_NAMES, SCRATCH
from service.compression.config import CompressionConfig
from service.compression.latency import measure_side_by_side
from service.compression.pipeline import run_compression
from service.compression.state import STEPS_DIR
from service.compression.steps import SCRATCH_CRITERION
from service.data.catalog import open_dataset, parse_dataset_spec
from service.host import host_description, simd_round_to
from service.inference.preprocess import padded_size
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, count_params_and_macs
from service.store import ONNX_FILE, InputSpec, Manifest, ModelStore
from service.training.publish import load_version_model, publish_run
from service.training.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
STRIP = (256, 1600)
METHOD_ORDER = ("fpgm", "random", SCRATCH, "l1", "tp_fpgm")
IDENTITY_KEYS = ("params", "macs", "miou", "dice", "dice_nonempty", "best_epoch")
"""The baseline's figures that only its weights decide (its latency varies from run to run)."""


@dataclass(frozen=True)
class Baseline:
    """How the baseline is trained (U-Net / ResNet-18 at ``width``)."""

    width: float
    epochs: int
    batch_size: int = 16
    crop: tuple[int, int] = (160, 160)
    lr: float = 1e-3
    seed: int = 0
    family: str = "unet"
    encoder: str = "resnet18"
    head_stride: int = 1
    """U-Net: 2 or 4 classify at /2 or /4 (see service.nets.unet.build_unet)."""
    dice_reduction: str = DEFAULT_DICE_REDUCTION
    """``pairs`` where most images are defect-free (see service.training.losses)."""
    defect_share: float = 0.0
    """The least share of an epoch's samples from images with a defect (service.training.crops)."""
    presence_head: bool = False
    """The per-class presence head, whose gate keeps a class off an image it is absent from."""

    @property
    def slug(self) -> str:
        """The cache key; options at their defaults add nothing, so older caches stay valid."""
        stride = "" if self.head_stride == 1 else f"-hs{self.head_stride}"
        dice = "" if self.dice_reduction == DEFAULT_DICE_REDUCTION else f"-d{self.dice_reduction}"
        share = f"-ds{self.defect_share:g}" if self.defect_share else ""
        gate = "-gate" if self.presence_head else ""
        return (
            f"baseline-{self.family}-{self.encoder}-w{self.width:g}{stride}-e{self.epochs}"
            f"-b{self.batch_size}-c{self.crop[0]}x{self.crop[1]}-lr{self.lr:g}-s{self.seed}{dice}"
            f"{share}{gate}"
        )


@dataclass(frozen=True)
class Recipe:
    """One data set's benchmark: its baseline and the compression every method gets.

    ``name`` names the results file, the cache folder and the model; ``dataset`` is the
    catalog's spec of the data."""

    name: str
    dataset: str
    baseline: Baseline
    compression: dict[str, Any]
    latency_repeats: int = 30

    @property
    def model(self) -> str:
        return f"{self.name}-unet"

    def config(self, method: str, job_id: str) -> CompressionConfig:
        settings = {**self.compression, "method": method}
        return CompressionConfig(
            model=self.model,
            ref=1,
            dataset=self.dataset,
            device="auto",
            seed=self.baseline.seed,
            batch_size=self.baseline.batch_size,
            crop=self.baseline.crop,
            job_id=job_id,
            latency_repeats=3,
            **settings,
        )

    def compression_slug(self) -> str:
        digest = hashlib.sha1(json.dumps(self.compression, sort_keys=True).encode()).hexdigest()
        return f"compress-{digest[:10]}"


COMPRESSION = {
    "flops_reduction": 0.90,
    "steps": 8,
    "finetune_epochs_per_step": 0.25,
    "schedule": "linear",
    "lr_schedule": "onecycle",
    "allocation": "global",
    "max_layer_ratio": 0.9,
    "round_to": simd_round_to(),
    "distill": True,
    "lr": 1e-3,
    "max_dice_drop": 100.0,
}
"""Every method's settings. No Dice stop (``max_dice_drop`` 100): all are compared at the same
MACs. A 90% target, beyond the 80% the goal asks for: on NEU-Seg at an 82% target the stem's
group (the largest maps) stayed whole and the net ran 3.4x faster at 256x1600 on AVX-512; at
89% (every layer at its floor there, 89.7% fewer MACs) 5.0x, with mIoU 0.25 points under the
baseline (``--flops-reduction 0.82`` runs the other point). With widths in multiples of 8
(AVX2) the stem's group reaches 8 channels and the global ranking spends what that frees on the
deep layers, whose channels cost few MACs but many parameters: FPGM's plan at 89% keeps 11.2%
of the NEU baseline's parameters (the goal: under 10%), at 90% 9.5%. On AVX-512 a 90% target
ends at the floors, as 89% did.

``round_to`` is this host's SIMD block (16 with AVX-512, 8 with AVX2), read when the
recipe is built, so that a cache made on one kind of host is not reused on the other: on an
AVX-512 host a net pruned to multiples of 8 ran 18.7 ms at 256x1600 where the same MACs in
multiples of 16 ran 15.2."""

RECIPES = {
    "neu": Recipe(
        "neu",
        "neu",
        Baseline(width=0.5, epochs=24, crop=(128, 128), head_stride=4),
        {**COMPRESSION, "finetune_epochs": 24},
    ),
    "magnetic-tile": Recipe(
        "magnetic-tile",
        "magnetic-tile",
        Baseline(width=0.5, epochs=60, crop=(128, 128), head_stride=4, dice_reduction="pairs"),
        {**COMPRESSION, "flops_reduction": 0.89, "finetune_epochs": 25},
    ),
}
"""Width 0.5, not 1.0: an epoch of width 1.0 costs about three times as much on a CPU. Width 0.5
has twice the channels of the shipped net, so pruning has redundancy to find. Magnetic-tile
keeps an 89% target: there FPGM's net keeps 3.2% of the parameters on AVX-512, far under the
goal's 10%, so the reason NEU moved to 90% does not arise. NEU's final fine-tune is 24 epochs:
with 12, FPGM's non-empty Dice stayed near 0.788 whatever its source reached; with 24 it
reached 0.793 on two AVX-512 hosts, 0.76 and 0.02 points under their baselines. That makes
NEU's whole table (the baseline and five methods) a run of hours on two cores: on an AVX2 host
the baseline took 48 minutes and FPGM's stage 36, so every stage is resumable and cached
outside the work tree.
128x128 crops cost two thirds of 160x160 ones per epoch.
Both baselines classify at a quarter of the resolution (head stride 4, as FPN and DeepLab
heads do) and upsample their logits: the decoder's half- and full-resolution blocks cost a
quarter of a training step, and at 256x1600 they are a fixed cost that pruning cannot narrow
(blocks of 8 or 16 channels on a large map run at memory speed whatever their width), which
kept a pruned net from 4x its source's speed: 3.0x with head stride 2 on an AVX-512 host.
Magnetic-tile's baseline takes the Dice per (image, class) pair with a defect: 71% of its
training tiles are defect-free, and with the Dice over the batch it collapsed to predicting the
same for every tile (validation non-empty Dice 0.0 from the third epoch), with pairs it did not.
It is still a weak net (test mIoU 0.20, no blowhole or crack pixel right, a competition Dice at
the empty prediction's): its uneven-surface masks cover a tenth of most clean tiles, which only
the tuned minimum areas remove. Drawing half of each epoch's samples from the defect tiles
(``defect_share`` 0.5) with a presence head made it worse: validation non-empty Dice 0.04 at
epoch 50 of 100, the presence of breaks 0.99 on most clean tiles."""


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "strip-inspection"))


def run_benchmark(recipe: Recipe, methods: list[str], results: Path) -> dict[str, Any]:
    """Run (or resume) the baseline and ``methods`` in turn, writing figures after each."""
    _, root = parse_dataset_spec(recipe.dataset)
    if not root.is_dir():
        raise SystemExit(
            f"{recipe.dataset}: no data at {root}; the benchmark reads ../shared/data beside "
            "the repository"
        )
    work = cache_root() / recipe.name / recipe.baseline.slug
    store = ModelStore(work / "store")
    source = _baseline_stage(recipe, work, store, results)
    for method in methods:
        _method_stage(recipe, method, work / recipe.compression_slug(), store, source, results)
    return json.loads(results.read_text())


def _baseline_stage(recipe: Recipe, work: Path, store: ModelStore, results: Path) -> Manifest:
    baseline = recipe.baseline
    run_dir = work  # the training run's files, beside the store and the methods' work
    if not store.versions(recipe.model):
        started = time.perf_counter()
        trained = train(
            TrainConfig(
                dataset=recipe.dataset,
                out_dir=run_dir,
                family=baseline.family,
                encoder=baseline.encoder,
                width_multiplier=baseline.width,
                head_stride=baseline.head_stride,
                dice_reduction=baseline.dice_reduction,
                defect_share=baseline.defect_share,
                presence_head=baseline.presence_head,
                epochs=baseline.epochs,
                batch_size=baseline.batch_size,
                crop=baseline.crop,
                lr=baseline.lr,
                seed=baseline.seed,
                resume=(run_dir / "checkpoint.pt").exists(),
            )
        )
        print(f"baseline trained in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        publish_run(trained.run_dir, store, recipe.model, "production")
    manifest = store.manifest(recipe.model, 1)
    sizes = native_size(recipe.dataset)
    model, _ = load_version_model(store, recipe.model, 1)
    params, macs = count_params_and_macs(model, *sizes)
    session = OnnxSegmenter(store.load(recipe.model, 1).file(ONNX_FILE), spinning="on")
    latency = {
        size_name: measure_side_by_side(
            {"baseline": session}, spec, repeats=recipe.latency_repeats
        )["baseline"]["median_ms"]
        for size_name, spec in _latency_specs(manifest, sizes).items()
    }
    metrics = manifest.metrics.model_dump()
    run = json.loads((run_dir / "run.json").read_text())
    figures = {
        "arch": Architecture.from_dict(manifest.architecture.model_dump()).to_dict()
        | {"layer_shapes": None},
        "recipe": asdict(baseline),
        "params": params,
        "macs": macs,
        **_scores(metrics),
        "latency_ms": latency,
        "seconds": run["seconds"],
        "best_epoch": run["best_epoch"],
    }
    recorded = read_results(results)
    if _measured_recipe(recorded) != (baseline.slug, recipe.compression) or not _same_weights(
        recorded.get("baseline", {}), figures
    ):
        update_results(results, methods={})  # measured against another baseline
    update_results(
        results,
        dataset=recipe.name,
        commit=git_commit(),
        host=host_description(),
        baseline=figures,
        empty_prediction=empty_prediction_scores(recipe.dataset),
        native_size=list(sizes),
        compression=recipe.compression,
    )
    return manifest


def _same_weights(recorded: dict[str, Any], measured: dict[str, Any]) -> bool:
    """Whether the results file's baseline is the net just measured. The same recipe retrained
    on another kind of host (or another ONNX Runtime build) gives other weights, and the methods
    pruned from the earlier ones are then no longer comparable with it."""
    return all(recorded.get(key) == measured[key] for key in IDENTITY_KEYS)


def _measured_recipe(recorded: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The (baseline slug, compression settings) a results file's figures were made with."""
    recipe = recorded.get("baseline", {}).get("recipe")
    if recipe is None:
        return None
    baseline = Baseline(**{**recipe, "crop": tuple(recipe["crop"])})
    return baseline.slug, recorded.get("compression", {})


def _method_stage(
    recipe: Recipe,
    method: str,
    work: Path,
    store: ModelStore,
    source: Manifest,
    results: Path,
) -> None:
    work_dir = work / method
    config = recipe.config(method, _job_id(work_dir, method))
    if method == SCRATCH:
        _share_architecture_search(work / SCRATCH_CRITERION, work_dir)

    def report(event: dict[str, Any]) -> None:
        print(json.dumps({"method": method, **event}), file=sys.stderr, flush=True)

    started = time.perf_counter()
    result = run_compression(config, store, work_dir=work_dir, progress=report)
    print(f"{method} finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sizes = native_size(recipe.dataset)
    model, manifest = load_version_model(store, recipe.model, result.version)
    params, macs = count_params_and_macs(model, *sizes)
    sessions = {
        "source": OnnxSegmenter(store.load(recipe.model, 1).file(ONNX_FILE), spinning="on"),
        "result": OnnxSegmenter(
            store.load(recipe.model, result.version).file(ONNX_FILE), spinning="on"
        ),
    }
    latency: dict[str, dict[str, float]] = {"source": {}, "result": {}}
    for size_name, spec in _latency_specs(source, sizes).items():
        timed = measure_side_by_side(sessions, spec, repeats=recipe.latency_repeats)
        for role in latency:
            latency[role][size_name] = timed[role]["median_ms"]
    steps = [
        json.loads(path.read_text())
        for path in sorted((work_dir / STEPS_DIR).glob("*/metrics.json"))
    ]
    figures = {
        "version": result.version,
        "params": params,
        "macs": macs,
        **_scores(manifest.metrics.model_dump()),
        "latency_ms": latency["result"],
        "source_latency_ms": latency["source"],
        "speedup": {k: latency["source"][k] / latency["result"][k] for k in latency["result"]},
        "seconds": sum(step["seconds"] for step in steps),
        "settings": manifest.lineage.settings,
        "widths": _widths(manifest),
    }
    update_method(results, method, figures, commit=git_commit(), host=host_description())


def _job_id(work_dir: Path, method: str) -> str:
    """The method's job id, made once per work folder and kept in it: a resumed run is the
    same job, and one whose folder was removed is a new job. An id derived from the settings
    alone would make the pipeline hand back the version an earlier run of the same settings
    published (it never publishes one job twice), whatever code made it."""
    record = work_dir / "bench-job-id"
    if not record.is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(f"bench-{method}-{uuid.uuid4().hex[:12]}\n")
    return record.read_text().strip()


def _share_architecture_search(fpgm_dir: Path, scratch_dir: Path) -> None:
    """Scratch prunes exactly as the FPGM job does before it re-initialises: where the FPGM job
    already completed its pruning steps with the same settings and seed, they are copied
    instead of run twice (the final fine-tune is not copied)."""
    source_steps = fpgm_dir / STEPS_DIR
    target_steps = scratch_dir / STEPS_DIR
    if target_steps.exists() or not source_steps.is_dir():
        return
    target_steps.mkdir(parents=True)
    for folder in sorted(source_steps.iterdir()):
        record = json.loads((folder / "metrics.json").read_text())
        if record.get("kind") == "prune":
            shutil.copytree(folder, target_steps / folder.name)


def _widths(manifest: Manifest) -> dict[str, int]:
    shapes = manifest.architecture.model_dump().get("layer_shapes") or {}
    return {name: shape[1] for name, shape in shapes.items() if len(shape) == 3}


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "miou": metrics["miou"],
        "dice": metrics["dice"],
        "dice_nonempty": metrics["dice_nonempty"],
        "iou_per_class": metrics.get("iou_per_class"),
        "dice_per_class": metrics.get("dice_per_class"),
    }


def _latency_specs(manifest: Manifest, native: tuple[int, int]) -> dict[str, InputSpec]:
    spec = manifest.input
    return {
        "native": spec.model_copy(update={"height": native[0], "width": native[1]}),
        "256x1600": spec.model_copy(update={"height": STRIP[0], "width": STRIP[1]}),
    }


def native_size(dataset: str) -> tuple[int, int]:
    """The data set's image size, padded to the net's stride: the median over the test split
    where the sizes vary (magnetic-tile)."""
    test = open_dataset(dataset, "test")
    shapes = np.array([test[i].image.shape for i in range(len(test))])
    height, width = (int(v) for v in np.median(shapes, axis=0))
    return padded_size(height, width)


def empty_prediction_scores(dataset: str) -> dict[str, float]:
    """What predicting nothing scores on the test split: the competition Dice's floor."""
    test = open_dataset(dataset, "test")
    present = np.array([test[i].masks.any(axis=(1, 2)) for i in range(len(test))])
    return {"dice": float((~present).mean()), "miou": 0.0, "dice_nonempty": 0.0}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compression", description=__doc__)
    parser.add_argument("dataset", choices=sorted(RECIPES), help="the real data set")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHOD_ORDER),
        choices=METHOD_NAMES,
        help="methods to run after the baseline, in this order",
    )
    parser.add_argument(
        "--flops-reduction",
        type=float,
        default=None,
        help="another operating point than the recipe's; its figures go to "
        "<dataset>-compression-r<R>.json",
    )
    parser.add_argument("--results", type=Path, default=None, help="results JSON")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.dataset]
    suffix = ""
    if args.flops_reduction is not None:
        recipe = replace(
            recipe, compression={**recipe.compression, "flops_reduction": args.flops_reduction}
        )
        suffix = f"-r{args.flops_reduction:g}"
    results = args.results or RESULTS_DIR / f"{recipe.name}-compression{suffix}.json"
    summary = run_benchmark(recipe, args.methods, results)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
