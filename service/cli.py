"""``python -m service <command>``: typed options with help, each forwarded to one function.

torch is imported only by the commands that train, export or prune, so the serving process
stays torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

from service.architectures import ENCODER_NAMES, FAMILY_NAMES
from service.benchmarks.serving_inputs import BODIES, STRIP_SOURCES
from service.compression import ALLOCATIONS, LR_SCHEDULES, METHOD_NAMES, SCHEDULES
from service.compression.config import DEVICES, CompressionConfig
from service.config import Role, get_settings
from service.data.catalog import SPLITS
from service.store import StoreError

Handler = Callable[[argparse.Namespace], int]


def _size(text: str) -> tuple[int, int]:
    """``256x512`` -> (256, 512)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from error
    return height, width


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=str))


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from service.data.synthetic import generate_synthetic

    out = generate_synthetic(args.out, args.n, args.seed, progress=not args.quiet)
    print(f"wrote {args.n} synthetic strips to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from service.training.train import TrainConfig, train

    result = train(
        TrainConfig(
            dataset=args.dataset,
            out_dir=args.out,
            family=args.arch,
            encoder=args.encoder,
            width_multiplier=args.width,
            in_channels=args.in_channels,
            epochs=args.epochs,
            batch_size=args.batch,
            crop=args.crop,
            lr=args.lr,
            device=args.device,
            seed=args.seed,
            resume=args.resume,
            progress=not args.quiet,
        )
    )
    _print_json(
        {
            "run_dir": result.run_dir,
            "best_epoch": result.best_epoch,
            "best_val_dice_nonempty": result.best_val_dice_nonempty,
            "seconds": round(result.seconds, 1),
        }
    )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from service.store import ModelStore
    from service.training.publish import publish_run

    manifest = publish_run(
        args.run, ModelStore(args.store), args.model, args.alias, args.device, not args.quiet
    )
    _print_json(
        {
            "name": manifest.name,
            "version": manifest.version,
            "metrics": manifest.metrics.model_dump(),
        }
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from service.data.catalog import evaluation_split, open_dataset
    from service.evaluation.run import evaluate
    from service.inference.runtime import OnnxSegmenter
    from service.store import ModelStore
    from service.training.publish import ONNX_FILE

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
    )
    _print_json(
        {
            "model": args.model,
            "version": version.manifest.version,
            "dataset": dataset_spec,
            "split": split,
            **scores,
        }
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from service.store import ModelStore

    store = ModelStore(args.store)
    listing = {
        name: {
            "aliases": store.aliases(name),
            "versions": {
                v: store.manifest(name, v).metrics.model_dump() for v in store.versions(name)
            },
        }
        for name in store.models()
    }
    _print_json(listing)
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    from service.store import ModelStore

    ModelStore(args.store).set_alias(args.model, args.alias, args.version)
    print(f"{args.model}: {args.alias} -> v{args.version}")
    return 0


def cmd_macs(args: argparse.Namespace) -> int:
    from service.nets.profile import architecture_table

    rows = architecture_table(height=args.height, width=args.width, width_multipliers=args.widths)
    print(f"{'family':6} {'encoder':16} {'width':>5} {'params (M)':>11} {'GMACs':>8}")
    for row in rows:
        print(
            f"{row['family']:6} {row['encoder']:16} {row['width_multiplier']:>5} "
            f"{row['params'] / 1e6:>11.2f} {row['gmacs']:>8.2f}"
        )
    return 0


def cmd_bench_codec(args: argparse.Namespace) -> int:
    from service.benchmarks.codec import bench_codec

    _print_json(bench_codec(repeats=args.repeats))
    return 0


def _compression_config(args: argparse.Namespace) -> CompressionConfig:
    return CompressionConfig(
        model=args.model,
        ref=args.ref,
        method=args.method,
        flops_reduction=None if args.pruning_ratio is not None else args.flops_reduction,
        pruning_ratio=args.pruning_ratio,
        steps=args.steps,
        finetune_epochs_per_step=args.finetune_epochs_per_step,
        finetune_epochs=args.finetune_epochs,
        schedule=args.schedule,
        lr_schedule=args.lr_schedule,
        allocation=args.allocation,
        max_layer_ratio=args.max_layer_ratio,
        round_to=args.round_to,
        max_dice_drop=args.max_dice_drop,
        dataset=args.dataset,
        device=args.device,
        distill=args.distill,
        seed=args.seed,
        batch_size=args.batch,
        crop=args.crop,
        lr=args.lr,
        job_id=args.job_id,
        latency_repeats=args.latency_repeats,
    )


def _print_event(event: dict[str, object]) -> None:
    print(json.dumps(event), file=sys.stderr, flush=True)


def cmd_compress(args: argparse.Namespace) -> int:
    from service.compression.pipeline import CompressionError, run_compression
    from service.store import ModelStore

    try:
        result = run_compression(
            _compression_config(args),
            ModelStore(args.store),
            work_dir=args.work_dir,
            progress=None if args.quiet else _print_event,
        )
    except CompressionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _print_json(result.to_json())
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    from service.benchmarks.serving import bench_serving

    settings = get_settings().model_copy(
        update={
            "model_store": args.store,
            "model_name": args.model,
            "model_alias": args.alias,
            "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms,
            "onnx_threads": args.threads,
        }
    )
    _print_json(
        bench_serving(
            settings,
            requests=args.requests,
            per_client=args.per_client,
            body_format=args.body,
            strip_source=args.strips,
        )
    )
    return 0


def cmd_bench_ab(args: argparse.Namespace) -> int:
    from service.benchmarks.ab import bench_ab

    settings = get_settings().model_copy(
        update={"model_store": args.store, "model_name": args.model, "model_alias": args.alias}
    )
    _print_json(
        bench_ab(
            settings,
            repo=Path.cwd(),
            refs=(args.a, args.b),
            rounds=args.rounds,
            clients=args.clients,
            per_client=args.per_client,
            sequential=args.requests,
            body_format=args.body,
            strip_source=args.strips,
        )
    )
    return 0


def cmd_bench_history(args: argparse.Namespace) -> int:
    from service.benchmarks.history import bench_history

    log = (lambda _line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    _print_json(
        bench_history(
            args.database_url,
            count=args.count,
            repeats=args.repeats,
            deep=args.deep,
            schema=args.schema,
            out=args.out,
            keep=args.keep,
            log=log,
        )
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.migrate import upgrade

    upgrade(args.database_url, args.revision)
    print(f"{make_url(args.database_url).render_as_string()}: migrated to {args.revision}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.api import create_app
    from service.api.auth import check_bind
    from service.api.request_log import log_requests_to

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_requests_to(sys.stderr)  # one JSON line per request, instead of uvicorn's access log
    settings = get_settings().model_copy(
        update={"model_store": args.store, "model_name": args.model, "model_alias": args.alias}
    )
    check_bind(args.host, settings.api_keys)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import signal

    from service.db import make_engine, make_session_factory
    from service.jobs.worker import Worker, WorkerOptions
    from service.store import ModelStore

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    engine = make_engine(args.database_url)
    worker = Worker(
        make_session_factory(engine),
        ModelStore(args.store),
        WorkerOptions(
            worker_id=args.worker_id,
            jobs_dir=args.jobs_dir,
            data_root=args.data_root,
            lease_s=args.lease,
            heartbeat_s=args.heartbeat,
            poll_interval_s=args.poll_interval,
            cancel_poll_s=settings.job_cancel_poll_s,
            latency_repeats=settings.job_latency_repeats,
        ),
    )
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: worker.stop())
    try:
        taken = worker.run(max_jobs=args.max_jobs, exit_when_idle=args.once)
    finally:
        engine.dispose()
    print(f"{args.worker_id}: took up {taken} job(s)", file=sys.stderr)
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    import getpass

    from service.api.auth import key_entry

    key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    print(key_entry(key.strip(), name=args.name, role=args.role).model_dump_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Steel strip inspection: data, training, model store and serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        return sub

    def compression_options(sub: argparse.ArgumentParser) -> None:
        defaults = CompressionConfig
        sub.add_argument("--ref", default=defaults.ref, help="source version number or alias")
        sub.add_argument(
            "--method", default=defaults.method, choices=METHOD_NAMES, help="pruning criterion"
        )
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--flops-reduction",
            type=float,
            help="fraction of the MACs to remove, (0, 0.95]",
        )
        target.add_argument(
            "--pruning-ratio", type=float, help="fraction of every layer's channels to remove"
        )
        sub.add_argument("--steps", type=int, default=defaults.steps, help="pruning steps")
        sub.add_argument(
            "--finetune-epochs-per-step",
            type=float,
            default=defaults.finetune_epochs_per_step,
            help="recovery epochs after each step (a fraction is allowed, 0 for none)",
        )
        sub.add_argument(
            "--finetune-epochs",
            type=int,
            default=defaults.finetune_epochs,
            help="epochs of the one final fine-tune (0: keep the last step within the drop)",
        )
        sub.add_argument(
            "--schedule", default=defaults.schedule, choices=SCHEDULES, help="step targets"
        )
        sub.add_argument(
            "--lr-schedule",
            default=defaults.lr_schedule,
            choices=LR_SCHEDULES,
            help="learning rate over the final fine-tune",
        )
        sub.add_argument(
            "--allocation",
            default=defaults.allocation,
            choices=ALLOCATIONS,
            help="global: one ranking across layers, capped; uniform: every layer alike",
        )
        sub.add_argument(
            "--max-layer-ratio",
            type=float,
            default=defaults.max_layer_ratio,
            help="the most of its channels any layer may lose (global allocation)",
        )
        sub.add_argument(
            "--round-to",
            type=int,
            default=None,
            help="pruned widths a multiple of this (default: 16 with AVX-512, else 8)",
        )
        sub.add_argument(
            "--max-dice-drop",
            type=float,
            default=defaults.max_dice_drop,
            help="allowed validation Dice drop in points (1.0 = 0.01 Dice)",
        )
        sub.add_argument("--dataset", default=None, help="dataset (default: the source's)")
        sub.add_argument("--device", default=defaults.device, choices=DEVICES, help="device")
        sub.add_argument(
            "--distill",
            action=argparse.BooleanOptionalAction,
            default=defaults.distill,
            help="distil from the source model while fine-tuning",
        )
        sub.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
        sub.add_argument("--batch", type=int, default=None, help="batch (default: the source's)")
        sub.add_argument("--crop", type=_size, default=None, help="crop HxW (default: source's)")
        sub.add_argument("--lr", type=float, default=defaults.lr, help="fine-tuning peak lr")
        sub.add_argument("--job-id", default=None, help="job id recorded in the lineage")
        sub.add_argument(
            "--latency-repeats",
            type=int,
            default=defaults.latency_repeats,
            help="timed ONNX Runtime runs per model",
        )

    def store_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--store",
            type=Path,
            default=settings.model_store,
            help="model store folder (env MODEL_STORE)",
        )

    sub = command(
        "make-synthetic", cmd_make_synthetic, "write a synthetic Severstal-format dataset"
    )
    sub.add_argument("--out", type=Path, required=True, help="output folder")
    sub.add_argument("--n", type=int, required=True, help="number of strips")
    sub.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")

    sub = command("train", cmd_train, "train a segmentation net into a run folder")
    sub.add_argument(
        "--dataset",
        required=True,
        help="neu, neu:PATH, magnetic-tile, magnetic-tile:PATH, severstal:PATH or a folder",
    )
    sub.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, run.json)")
    sub.add_argument("--arch", default="unet", choices=FAMILY_NAMES, help="decoder family")
    sub.add_argument("--encoder", default="resnet18", choices=ENCODER_NAMES, help="encoder")
    sub.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    sub.add_argument("--in-channels", type=int, default=1, choices=(1, 3), help="input channels")
    sub.add_argument("--epochs", type=int, default=10, help="epochs")
    sub.add_argument("--batch", type=int, default=8, help="batch size")
    sub.add_argument("--crop", type=_size, default=(256, 256), help="training crop HxW")
    sub.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    sub.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    sub.add_argument("--seed", type=int, default=0, help="random seed")
    sub.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")

    sub = command("publish", cmd_publish, "tune, evaluate, export and publish a training run")
    sub.add_argument("--run", type=Path, required=True, help="run folder written by train")
    sub.add_argument("--model", default=settings.model_name, help="model name in the store")
    sub.add_argument("--alias", default=None, help="alias to point at the new version")
    sub.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    store_option(sub)

    sub = command("evaluate", cmd_evaluate, "evaluate a published version with ONNX Runtime")
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--ref", default=settings.model_alias, help="version number or alias")
    sub.add_argument("--dataset", default=None, help="dataset (default: the one it was trained on)")
    sub.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help="split (all: every image of a Severstal-format folder)",
    )
    store_option(sub)

    sub = command("models", cmd_models, "list models, versions, metrics and aliases")
    store_option(sub)

    sub = command("alias", cmd_alias, "point an alias at a version (promote or roll back)")
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--alias", required=True, help="alias, e.g. production or candidate")
    sub.add_argument("--version", type=int, required=True, help="version number")
    store_option(sub)

    sub = command("macs", cmd_macs, "params and MACs of every architecture")
    sub.add_argument("--height", type=int, default=256, help="input height")
    sub.add_argument("--width", type=int, default=1600, help="input width")
    sub.add_argument("--widths", type=float, nargs="+", default=[1.0], help="width multipliers")

    sub = command("bench-codec", cmd_bench_codec, "time RLE encode/decode on 256x1600 masks")
    sub.add_argument("--repeats", type=int, default=200, help="timed repetitions")

    sub = command(
        "bench-serve", cmd_bench_serve, "raw ONNX Runtime session vs the API over loopback HTTP"
    )
    sub.add_argument("--model", default=settings.model_name, help="model name (env MODEL_NAME)")
    sub.add_argument("--alias", default=settings.model_alias, help="alias (env MODEL_ALIAS)")
    sub.add_argument("--requests", type=int, default=200, help="one client's timed requests")
    sub.add_argument("--per-client", type=int, default=48, help="requests per concurrent client")
    sub.add_argument(
        "--body", default="png", choices=BODIES, help="grey PNG, or the raw 8-bit buffer"
    )
    sub.add_argument(
        "--strips",
        default="real",
        choices=STRIP_SOURCES,
        help="the Severstal samples in ../shared/data, or the training generator's strips",
    )
    sub.add_argument(
        "--max-batch", type=int, default=settings.max_batch, help="batcher size (env MAX_BATCH)"
    )
    sub.add_argument(
        "--max-wait-ms", type=float, default=settings.max_wait_ms, help="env MAX_WAIT_MS"
    )
    sub.add_argument(
        "--threads",
        type=int,
        default=settings.onnx_threads,
        help="ONNX Runtime intra-op threads, 0 = one per core (env ONNX_THREADS)",
    )
    store_option(sub)

    sub = command(
        "bench-ab", cmd_bench_ab, "two commits of the service served and measured side by side"
    )
    sub.add_argument("a", help="git ref of A (the baseline), e.g. main or HEAD~1")
    sub.add_argument("b", help="git ref of B, e.g. HEAD")
    sub.add_argument("--model", default=settings.model_name, help="model name (env MODEL_NAME)")
    sub.add_argument("--alias", default=settings.model_alias, help="alias (env MODEL_ALIAS)")
    sub.add_argument("--rounds", type=int, default=8, help="rounds, the servers' order alternating")
    sub.add_argument("--clients", type=int, default=8, help="concurrent clients per block")
    sub.add_argument("--per-client", type=int, default=24, help="requests per concurrent client")
    sub.add_argument("--requests", type=int, default=40, help="one client's requests per block")
    sub.add_argument(
        "--body", default="raw", choices=BODIES, help="grey PNG, or the raw 8-bit buffer"
    )
    sub.add_argument("--strips", default="real", choices=STRIP_SOURCES, help="as for bench-serve")
    store_option(sub)

    sub = command(
        "bench-history", cmd_bench_history, "seed Postgres, time history pages and summaries"
    )
    sub.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="Postgres to seed (in its own schema)",
    )
    sub.add_argument("--count", type=int, default=1_000_000, help="inspections to seed")
    sub.add_argument("--repeats", type=int, default=30, help="timed repetitions per query")
    sub.add_argument("--deep", type=int, default=200, help="pages to follow for the deep page")
    sub.add_argument("--schema", default="bench_history", help="schema, created fresh")
    sub.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    sub.add_argument("--out", type=Path, default=Path("var/bench-history"), help="results folder")

    sub = command("compress", cmd_compress, "prune, fine-tune and publish a version (candidate)")
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--work-dir", type=Path, required=True, help="job folder (resumable)")
    compression_options(sub)
    store_option(sub)

    sub = command("migrate", cmd_migrate, "create or upgrade the results database (Alembic)")
    sub.add_argument(
        "--database-url", default=settings.database_url, help="SQLAlchemy URL (env DATABASE_URL)"
    )
    sub.add_argument("--revision", default="head", help="target revision")

    sub = command("serve", cmd_serve, "serve the inspection API (uvicorn, one process)")
    sub.add_argument("--host", default="127.0.0.1", help="address to bind")
    sub.add_argument("--port", type=int, default=8000, help="port to bind")
    sub.add_argument("--model", default=settings.model_name, help="model name (env MODEL_NAME)")
    sub.add_argument("--alias", default=settings.model_alias, help="alias served (env MODEL_ALIAS)")
    sub.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level",
    )
    store_option(sub)

    sub = command("worker", cmd_worker, "take up compression jobs from the database queue")
    sub.add_argument(
        "--database-url", default=settings.database_url, help="SQLAlchemy URL (env DATABASE_URL)"
    )
    store_option(sub)
    sub.add_argument(
        "--data-root", type=Path, default=settings.data_root, help="named datasets (env DATA_ROOT)"
    )
    sub.add_argument(
        "--jobs-dir", type=Path, default=settings.jobs_dir, help="job work folders (env JOBS_DIR)"
    )
    sub.add_argument(
        "--worker-id",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="name holding the leases (default: host-pid; unique per worker process)",
    )
    sub.add_argument(
        "--poll-interval",
        type=float,
        default=settings.job_poll_interval_s,
        help="seconds between looks at an empty queue (env JOB_POLL_INTERVAL_S)",
    )
    sub.add_argument(
        "--lease",
        type=float,
        default=settings.job_lease_s,
        help="seconds a job stays held without a heartbeat (env JOB_LEASE_S)",
    )
    sub.add_argument(
        "--heartbeat",
        type=float,
        default=settings.job_heartbeat_s,
        help="seconds between lease renewals (env JOB_HEARTBEAT_S)",
    )
    sub.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    sub.add_argument("--once", action="store_true", help="exit as soon as the queue is empty")

    sub = command(
        "hash-key", cmd_hash_key, "read an API key on stdin, print its API_KEYS entry (SHA-256)"
    )
    sub.add_argument("--name", required=True, help="who holds the key (shown in logs)")
    sub.add_argument("--role", required=True, choices=get_args(Role), help="what it may do")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
