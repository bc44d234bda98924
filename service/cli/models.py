"""The model store: ``publish`` a training run, ``evaluate`` a version (on a dataset split, or
on the real Severstal strips: ``evaluate-real``), list ``models``, move an ``alias``."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.architectures import CALIBRATION_METHOD_NAMES, FLOAT_PART_NAMES
from service.cli.options import Commands, add_command, add_store_option, print_json, size
from service.compression.config import DEVICES
from service.config import Settings
from service.data.catalog import SPLITS
from service.inference.spinning import SPIN_MODES


def register(commands: Commands, settings: Settings) -> None:
    for add in (
        add_publish,
        add_evaluate,
        add_evaluate_real,
        add_latency,
        add_quantize,
        add_models,
        add_alias,
    ):
        add(commands, settings)


def add_publish(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "publish", cmd_publish, "tune, evaluate, export and publish a training run"
    )
    sub.add_argument("--run", type=Path, required=True, help="run folder written by train")
    sub.add_argument("--model", default=settings.model_name, help="model name in the store")
    sub.add_argument("--alias", default=None, help="alias to point at the new version")
    sub.add_argument("--device", default="auto", choices=DEVICES, help="device")
    add_store_option(sub, settings)


def cmd_publish(args: argparse.Namespace) -> int:
    from service.store import ModelStore
    from service.training.publish import publish_run

    manifest = publish_run(
        args.run, ModelStore(args.store), args.model, args.alias, args.device, not args.quiet
    )
    print_json(
        {
            "name": manifest.name,
            "version": manifest.version,
            "metrics": manifest.metrics.model_dump(),
        }
    )
    return 0


def add_evaluate(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "evaluate", cmd_evaluate, "evaluate a published version with ONNX Runtime"
    )
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--ref", default=settings.model_alias, help="version number or alias")
    sub.add_argument("--dataset", default=None, help="dataset (default: the one it was trained on)")
    sub.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help="split (all: every image of a Severstal-format folder)",
    )
    sub.add_argument(
        "--no-gate", action="store_true", help="score a gated version with its gate open"
    )
    add_store_option(sub, settings)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from service.data.catalog import evaluation_split, open_dataset
    from service.evaluation.run import evaluate
    from service.inference.runtime import OnnxSegmenter
    from service.store import ONNX_FILE, ModelStore

    version = ModelStore(args.store).load(args.model, args.ref)
    dataset_spec = args.dataset or version.manifest.lineage.settings.get("dataset")
    if not dataset_spec:
        raise ValueError("this version does not record its dataset: pass --dataset")
    split = args.split or evaluation_split(dataset_spec)
    scores = evaluate(
        OnnxSegmenter(version.file(ONNX_FILE)),
        open_dataset(dataset_spec, split),
        version.manifest.input,
        version.manifest.postprocess,
        progress=not args.quiet,
        gated=not args.no_gate,
    )
    print_json(
        {
            "model": args.model,
            "version": version.manifest.version,
            "dataset": dataset_spec,
            "split": split,
            "gate": not args.no_gate,
            **scores,
        }
    )
    return 0


def add_evaluate_real(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands,
        "evaluate-real",
        cmd_evaluate_real,
        "a version on the 20 real Severstal strips, served as the API serves it: clean pairs "
        "flagged, defect pairs found, Dice against predicting nothing, pixels off steel",
    )
    sub.add_argument("--model", default=settings.model_name, help="model name in the store")
    sub.add_argument("--ref", default=settings.model_alias, help="version number or alias")
    sub.add_argument(
        "--samples",
        type=Path,
        default=settings.data_root / "severstal-samples",
        help="the real strips (default: DATA_ROOT/severstal-samples)",
    )
    sub.add_argument("--per-strip", action="store_true", help="also print every strip's outcome")
    add_store_option(sub, settings)


def cmd_evaluate_real(args: argparse.Namespace) -> int:
    from service.evaluation.real import load_real_strips
    from service.evaluation.served import evaluate_version_on_real_strips
    from service.store import ModelStore

    report = evaluate_version_on_real_strips(
        ModelStore(args.store), args.model, args.ref, load_real_strips(args.samples)
    )
    if not args.per_strip:
        for figures in report["results"].values():
            figures.pop("per_strip")
    print_json(report)
    return 0


def add_quantize(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands,
        "quantize",
        cmd_quantize,
        "int8: quantize a published version (ONNX Runtime static QDQ) into a new version",
    )
    sub.add_argument("--model", default=settings.model_name, help="model name in the store")
    sub.add_argument("--ref", required=True, help="the float version or alias to quantize")
    sub.add_argument(
        "--dataset",
        default=None,
        help="calibrate and check on this data set (default: the "
        "one the version was trained on); calibration reads its training split only",
    )
    sub.add_argument(
        "--calibration-images", type=int, default=200, help="training images to calibrate on"
    )
    sub.add_argument(
        "--method", default="minmax", choices=CALIBRATION_METHOD_NAMES, help="calibration"
    )
    sub.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one weight scale per output channel",
    )
    sub.add_argument(
        "--keep-float",
        nargs="*",
        default=list(FLOAT_PART_NAMES),
        choices=FLOAT_PART_NAMES,
        help="parts left in float (none: quantize everything)",
    )
    sub.add_argument(
        "--min-mask-dice",
        type=float,
        default=0.9,
        help="the least Dice per class between int8 and float masks on validation images",
    )
    sub.add_argument("--alias", default="candidate", help="alias to point at the new version")
    sub.add_argument("--seed", type=int, default=0, help="which calibration images")
    add_store_option(sub, settings)


def cmd_quantize(args: argparse.Namespace) -> int:
    from service.compression.quantize import QuantizeSettings, quantize_version
    from service.store import ModelStore

    settings = QuantizeSettings(
        calibration_images=args.calibration_images,
        method=args.method,
        per_channel=args.per_channel,
        keep_float=tuple(args.keep_float),
        min_mask_dice=args.min_mask_dice,
        dataset=args.dataset,
        seed=args.seed,
    )
    manifest, report = quantize_version(
        ModelStore(args.store),
        args.model,
        args.ref,
        settings,
        alias=args.alias,
        progress=not args.quiet,
    )
    print_json(
        {
            "name": manifest.name,
            "version": manifest.version,
            "parent_version": manifest.lineage.parent_version,
            "precision": manifest.precision,
            "excluded_nodes": report.excluded_nodes,
            "mask_dice_vs_parent": report.mask_dice,
            "latency_ms": report.latency_ms,
            "metrics": manifest.metrics.model_dump(),
        }
    )
    return 0


def add_latency(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands,
        "latency",
        cmd_latency,
        "ONNX Runtime CPU latency of versions side by side, calls interleaved in one run",
    )
    sub.add_argument("--model", default=settings.model_name, help="model name in the store")
    sub.add_argument(
        "--refs", nargs="+", required=True, help="versions or aliases; the first is the reference"
    )
    sub.add_argument("--size", type=size, default=(256, 1600), help="HEIGHTxWIDTH of the input")
    sub.add_argument("--batch", type=int, default=1, help="images per run")
    sub.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all)")
    sub.add_argument(
        "--spinning",
        nargs="+",
        default=["on", "during_runs"],
        choices=SPIN_MODES,
        help="spinning modes to time (on: ONNX Runtime's default; during_runs: the service's)",
    )
    sub.add_argument("--repeats", type=int, default=30, help="timed runs of each version")
    add_store_option(sub, settings)


def cmd_latency(args: argparse.Namespace) -> int:
    from service.compression.latency import measure_side_by_side
    from service.host import host_description
    from service.inference.runtime import OnnxSegmenter
    from service.store import ONNX_FILE, ModelStore

    store = ModelStore(args.store)
    versions = [store.load(args.model, ref) for ref in args.refs]
    labels = [f"v{version.manifest.version}" for version in versions]
    if len(set(labels)) < len(labels):
        raise ValueError(f"--refs name a version twice ({', '.join(labels)}): name each once")
    height, width = args.size
    spec = versions[0].manifest.input.model_copy(update={"height": height, "width": width})
    figures = {}
    for mode in args.spinning:
        sessions = {
            label: OnnxSegmenter(
                version.file(ONNX_FILE), intra_op_threads=args.threads, spinning=mode
            )
            for label, version in zip(labels, versions, strict=True)
        }
        timed = measure_side_by_side(sessions, spec, args.batch, args.repeats)
        reference = timed[labels[0]]["median_ms"]
        figures[mode] = {
            label: {**timed[label], "speedup": reference / timed[label]["median_ms"]}
            for label in labels
        }
    print_json(
        {
            "model": args.model,
            "input": [args.batch, spec.channels, height, width],
            "host": host_description(),
            "spinning": figures,
        }
    )
    return 0


def add_models(commands: Commands, settings: Settings) -> None:
    sub = add_command(commands, "models", cmd_models, "list models, versions, metrics and aliases")
    add_store_option(sub, settings)


def cmd_models(args: argparse.Namespace) -> int:
    from service.store import ModelStore

    store = ModelStore(args.store)
    print_json(
        {
            name: {
                "aliases": store.aliases(name),
                "versions": {
                    v: store.manifest(name, v).metrics.model_dump() for v in store.versions(name)
                },
            }
            for name in store.models()
        }
    )
    return 0


def add_alias(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "alias", cmd_alias, "point an alias at a version (promote or roll back)"
    )
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--alias", required=True, help="alias, e.g. production or candidate")
    sub.add_argument("--version", type=int, required=True, help="version number")
    add_store_option(sub, settings)


def cmd_alias(args: argparse.Namespace) -> int:
    from service.store import ModelStore

    ModelStore(args.store).set_alias(args.model, args.alias, args.version)
    print(f"{args.model}: {args.alias} -> v{args.version}")
    return 0
