"""The `train` command: BCE+Dice, flips and brightness/contrast, AMP on CUDA, a checkpoint each
epoch, resume, and the best epoch's weights kept as safetensors.

The best epoch is chosen by validation Dice over non-empty pairs (at threshold 0.5): the
competition Dice rewards a net that predicts nothing (every empty pair scores 1), so selecting on
it can keep an epoch that finds no defect at all.

A run folder holds ``run.json`` (config, architecture, classes, input, history),
``checkpoint.pt`` (last epoch, loaded back with ``weights_only=True``: tensors and plain
values only, no arbitrary pickles) and ``best.safetensors``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from service.architectures import DEFAULT_DICE_REDUCTION
from service.data.catalog import open_dataset
from service.evaluation.run import evaluate
from service.inference.outputs import split_prediction
from service.nets import Architecture, build_model
from service.nets.pretrained import imagenet_normalisation, load_pretrained_encoder
from service.store.manifest import ClassPostprocess, InputSpec
from service.training.crops import TrainingCrops
from service.training.losses import SegmentationLoss
from service.training.predict import resolve_device, torch_predictor

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_WEIGHTS_FILE = "best.safetensors"
WARMUP_FRACTION = 0.05
ONE_CYCLE_RISE = 0.3
ONE_CYCLE_START = 1 / 25

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, images, masks) -> loss. A function of the model, not of its logits, so that
knowledge distillation can run its teacher on the same images."""


@dataclass
class TrainConfig:
    dataset: str
    out_dir: Path
    family: str = "unet"
    encoder: str = "resnet18"
    width_multiplier: float = 1.0
    in_channels: int = 1
    presence_head: bool = False
    head_stride: int = 1
    """U-Net: 1 (the head at full resolution), 2 or 4 (see service.nets.unet.build_unet)."""
    dice_reduction: str = DEFAULT_DICE_REDUCTION
    """How the Dice term is averaged: ``batch`` or ``pairs`` (see service.training.losses)."""
    defect_share: float = 0.0
    """The least share of each epoch's samples drawn from images with a defect (see
    service.training.crops); 0: one sample per image."""
    epochs: int = 10
    batch_size: int = 8
    crop: tuple[int, int] = (256, 256)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    seed: int = 0
    init_weights: Path | None = None
    """Start from these weights (a safetensors file of the same architecture, e.g. a published
    version's) instead of a random initialisation: a shipped net adapted to new data."""
    pretrained: str | None = None
    """``imagenet``: the encoder starts from the ImageNet weights its registry package ships
    (service.nets.pretrained), with ImageNet's normalisation folded into the stem."""
    decoder_width: float | None = None
    """The decoder's width multiplier, where it differs from ``width_multiplier``."""
    encoder_lr_factor: float = 1.0
    """The encoder's learning rate as a share of ``lr``: below 1 a pretrained encoder moves
    less than the freshly initialised decoder."""
    resume: bool = False
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["init_weights"] = None if self.init_weights is None else str(self.init_weights)
        data["crop"] = list(self.crop)
        return data


@dataclass
class Optimisation:
    """AdamW, its learning-rate schedule (warm-up + cosine, or one-cycle) and the AMP grad
    scaler (enabled on CUDA only)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        lr: float,
        weight_decay: float,
        total_steps: int,
        device: torch.device,
        schedule: str = "cosine",
        encoder_lr_factor: float = 1.0,
    ) -> Optimisation:
        if schedule not in LR_FACTORS:
            raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {list(LR_FACTORS)}")
        optimizer = torch.optim.AdamW(
            _parameter_groups(model, lr, encoder_lr_factor), lr=lr, weight_decay=weight_decay
        )
        return cls(
            optimizer,
            torch.optim.lr_scheduler.LambdaLR(optimizer, LR_FACTORS[schedule](total_steps)),
            torch.amp.GradScaler(device.type, enabled=device.type == "cuda"),
        )


def _parameter_groups(model: nn.Module, lr: float, encoder_lr_factor: float) -> list[dict]:
    """One group at ``lr``, or, with a factor other than 1, the encoder's at ``lr * factor``
    and the rest at ``lr``."""
    encoder = getattr(model, "encoder", None)
    if encoder_lr_factor == 1.0 or encoder is None:
        return [{"params": list(model.parameters()), "lr": lr}]
    encoder_params = {id(p) for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_params]
    return [
        {"params": list(encoder.parameters()), "lr": lr * encoder_lr_factor},
        {"params": rest, "lr": lr},
    ]


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_dice_nonempty: float = 0.0
    seconds: float = 0.0
    pretrained: dict[str, Any] | None = None


def train(config: TrainConfig) -> TrainResult:
    started = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    train_set = open_dataset(config.dataset, "train")
    val_set = open_dataset(config.dataset, "val")
    spec = InputSpec(
        height=train_set[0].image.shape[0],
        width=train_set[0].image.shape[1],
        channels=config.in_channels,
        **({} if config.pretrained is None else {"normalisation": imagenet_normalisation()}),
    )
    arch = Architecture(
        family=config.family,
        encoder=config.encoder,
        in_channels=config.in_channels,
        num_classes=len(train_set.classes),
        width_multiplier=config.width_multiplier,
        presence_head=config.presence_head,
        head_stride=config.head_stride,
        decoder_width=config.decoder_width,
    )
    model = build_model(arch)
    result = TrainResult(run_dir=config.out_dir)
    if config.pretrained is not None:
        loaded = load_pretrained_encoder(
            model.encoder, arch.encoder, spec.normalisation, config.pretrained
        )
        result.pretrained = loaded.to_dict()
        if config.progress:
            tqdm.write(
                f"{loaded.encoder}: {loaded.tensors_loaded} of {loaded.tensors_in_file} tensors "
                f"loaded from {loaded.package} {loaded.package_version} "
                f"({len(loaded.classifier_tensors_unused)} of the ImageNet classifier unused)"
            )
    if config.init_weights is not None:
        load_initial_weights(model, config.init_weights)
    model.to(device)
    crops = TrainingCrops(
        train_set,
        config.crop,
        config.in_channels,
        spec.normalisation,
        config.seed,
        defect_share=config.defect_share,
    )
    steps_per_epoch = math.ceil(len(crops) / config.batch_size)
    optimisation = Optimisation.for_model(
        model,
        config.lr,
        config.weight_decay,
        steps_per_epoch * config.epochs,
        device,
        encoder_lr_factor=config.encoder_lr_factor,
    )
    start_epoch = _prepare_run_dir(config, model, optimisation, result)
    seconds_before = result.seconds
    threshold_half = [
        ClassPostprocess(class_id=c.id, threshold=0.5, min_area=0) for c in train_set.classes
    ]
    objective = task_objective(SegmentationLoss(dice_reduction=config.dice_reduction))
    for epoch in range(start_epoch, config.epochs + 1):
        train_loss = train_one_epoch(
            model,
            epoch_loader(crops, config.batch_size, config.seed, epoch),
            objective,
            optimisation,
            device,
            description=f"epoch {epoch}/{config.epochs}",
            progress=config.progress,
        )
        metrics = evaluate(
            torch_predictor(model, device), val_set, spec, threshold_half, progress=config.progress
        )
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_dice": metrics["dice"],
            "val_dice_nonempty": metrics["dice_nonempty"],
            "lr": optimisation.scheduler.get_last_lr()[0],
        }
        result.history.append(record)
        selection_score = float(metrics["dice_nonempty"] or 0.0)
        if result.best_epoch == 0 or selection_score > result.best_val_dice_nonempty:
            result.best_epoch, result.best_val_dice_nonempty = epoch, selection_score
            save_file(cpu_state(model), str(config.out_dir / BEST_WEIGHTS_FILE))
        result.seconds = seconds_before + time.perf_counter() - started
        _save_checkpoint(config, model, optimisation, result, epoch)
        _write_run_file(config, arch, train_set.classes, spec, result)
        if config.progress:
            tqdm.write(json.dumps(record))
    return result


def load_initial_weights(model: nn.Module, path: Path) -> None:
    """``path``'s weights into ``model``; a file of another architecture is refused by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"initial weights {path} do not exist")
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:  # torch names the missing, unexpected and resized tensors
        raise ValueError(f"{path} does not fit this architecture: {error}") from error


def task_objective(loss_fn: SegmentationLoss) -> Objective:
    """The plain objective: the loss of the model's outputs against the masks."""

    def objective(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits, presence = split_prediction(model(images))
        return loss_fn(logits, presence, masks)

    return objective


def epoch_loader(crops: TrainingCrops, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """Shuffled batches of the epoch's crops; (seed, epoch) fix both, so a resumed run matches."""
    crops.set_epoch(epoch)
    return DataLoader(
        crops,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(crops) > batch_size,
        generator=torch.Generator().manual_seed(seed * 1000 + epoch),
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    objective: Objective,
    optimisation: Optimisation,
    device: torch.device,
    *,
    description: str,
    progress: bool,
    before_batch: Callable[[], None] | None = None,
    max_batches: int | None = None,
) -> float:
    """One pass over ``loader`` (AMP on CUDA), or its first ``max_batches``; the mean loss.

    ``before_batch`` runs before every batch: a caller that must stop promptly (a cancelled
    job) raises from it.
    """
    model.train()
    losses = []
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    bar = tqdm(loader, desc=description, disable=not progress, leave=False, total=total)
    for images, masks in bar:
        if len(losses) == total:
            break
        if before_batch is not None:
            before_batch()
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = objective(model, images, masks)
        optimisation.optimizer.zero_grad(set_to_none=True)
        optimisation.scaler.scale(loss).backward()
        optimisation.scaler.step(optimisation.optimizer)
        optimisation.scaler.update()
        optimisation.scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return float(np.mean(losses))


def warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over the first 5% of steps, then cosine to zero."""
    warmup = max(1, int(total_steps * WARMUP_FRACTION))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def one_cycle(total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor of Smith's one-cycle: a cosine rise from 1/25 of the peak over the first
    30% of steps, then a cosine fall to zero."""
    rise = max(1, int(total_steps * ONE_CYCLE_RISE))

    def factor(step: int) -> float:
        if step < rise:
            return (
                ONE_CYCLE_START + (1 - ONE_CYCLE_START) * (1 - math.cos(math.pi * step / rise)) / 2
            )
        progress = (step - rise) / max(1, total_steps - rise)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


LR_FACTORS: dict[str, Callable[[int], Callable[[int], float]]] = {
    "cosine": warmup_cosine,
    "onecycle": one_cycle,
}


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _prepare_run_dir(
    config: TrainConfig, model: nn.Module, optimisation: Optimisation, result: TrainResult
) -> int:
    """Create the run folder, or reload its last checkpoint; returns the first epoch to run."""
    checkpoint_path = config.out_dir / CHECKPOINT_FILE
    if checkpoint_path.exists() and not config.resume:
        raise FileExistsError(
            f"{config.out_dir} already holds a training run: pass --resume to continue it "
            "or choose another --out"
        )
    config.out_dir.mkdir(parents=True, exist_ok=True)
    if not checkpoint_path.exists():
        return 1
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["scheduler"])
    optimisation.scaler.load_state_dict(state["scaler"])
    result.history = state["history"]
    result.best_epoch = state["best_epoch"]
    result.best_val_dice_nonempty = state["best_val_dice_nonempty"]
    result.seconds = state["seconds"]
    return state["epoch"] + 1


def _save_checkpoint(
    config: TrainConfig,
    model: nn.Module,
    optimisation: Optimisation,
    result: TrainResult,
    epoch: int,
) -> None:
    state = {
        "model": cpu_state(model),
        "optimizer": optimisation.optimizer.state_dict(),
        "scheduler": optimisation.scheduler.state_dict(),
        "scaler": optimisation.scaler.state_dict(),
        "epoch": epoch,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_dice_nonempty": result.best_val_dice_nonempty,
        "seconds": result.seconds,
    }
    tmp = config.out_dir / f".{CHECKPOINT_FILE}.tmp"
    torch.save(state, tmp)
    tmp.replace(config.out_dir / CHECKPOINT_FILE)


def _write_run_file(config, arch, classes, spec, result) -> None:
    payload = {
        "config": config.to_json(),
        "architecture": arch.to_dict(),
        "classes": [{"id": c.id, "name": c.name} for c in classes],
        "input": spec.model_dump(),
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_dice_nonempty": result.best_val_dice_nonempty,
        "seconds": result.seconds,
        "pretrained": result.pretrained,
    }
    tmp = config.out_dir / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(config.out_dir / RUN_FILE)
