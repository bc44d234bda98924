"""Compression: ``compress`` one version here and now, or run a ``worker`` that takes up the
jobs queued in the database."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from service.cli.options import (
    Commands,
    add_command,
    add_database_option,
    add_migrate_option,
    add_store_option,
    print_json,
    size,
)
from service.compression import ALLOCATIONS, LR_SCHEDULES, METHOD_NAMES, SCHEDULES
from service.compression.config import DEVICES, CompressionConfig
from service.config import Settings, get_settings


def register(commands: Commands, settings: Settings) -> None:
    for add in (add_compress, add_worker):
        add(commands, settings)


def add_compress(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "compress", cmd_compress, "prune, fine-tune and publish a version (candidate)"
    )
    sub.add_argument("--model", default=settings.model_name, help="model name")
    sub.add_argument("--work-dir", type=Path, required=True, help="job folder (resumable)")
    add_compression_options(sub)
    add_store_option(sub, settings)


def add_compression_options(sub: argparse.ArgumentParser) -> None:
    """The job's settings: defaults from ``CompressionConfig``, choices from its tables."""
    defaults = CompressionConfig
    sub.add_argument("--ref", default=defaults.ref, help="source version number or alias")
    sub.add_argument(
        "--method", default=defaults.method, choices=METHOD_NAMES, help="pruning criterion"
    )
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--flops-reduction", type=float, help="fraction of the MACs to remove, (0, 0.95]"
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
    sub.add_argument("--crop", type=size, default=None, help="crop HxW (default: source's)")
    sub.add_argument("--lr", type=float, default=defaults.lr, help="fine-tuning peak lr")
    sub.add_argument("--job-id", default=None, help="job id recorded in the lineage")
    sub.add_argument(
        "--latency-repeats",
        type=int,
        default=defaults.latency_repeats,
        help="timed ONNX Runtime runs per model",
    )


def compression_config(args: argparse.Namespace) -> CompressionConfig:
    """The options of ``add_compression_options`` as the job's config."""
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


def cmd_compress(args: argparse.Namespace) -> int:
    from service.compression.pipeline import CompressionError, run_compression
    from service.store import ModelStore

    try:
        result = run_compression(
            compression_config(args),
            ModelStore(args.store),
            work_dir=args.work_dir,
            progress=None if args.quiet else _print_event,
        )
    except CompressionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_json(result.to_json())
    return 0


def _print_event(event: dict[str, object]) -> None:
    print(json.dumps(event), file=sys.stderr, flush=True)


def add_worker(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "worker", cmd_worker, "take up compression jobs from the database queue"
    )
    add_database_option(sub, settings)
    add_migrate_option(sub, settings)
    add_store_option(sub, settings)
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
    sub.add_argument(
        "--once",
        action="store_true",
        help="exit as soon as the queue is empty (non-zero if the schema is not at head)",
    )


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import signal

    from service.db import make_engine, make_session_factory
    from service.db.migrate import migrate_on_start
    from service.jobs.worker import Worker, WorkerOptions
    from service.store import ModelStore

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    migrate_on_start(args.database_url, always=args.migrate)
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
    if worker.schema_problem is not None:
        print(f"error: {worker.schema_problem}", file=sys.stderr)
        return 1
    return 0
