"""What an admin asks a compression job for; building it only checks the values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from service.architectures import DEFAULT_DICE_REDUCTION, DICE_REDUCTIONS
from service.compression import ALLOCATIONS, LR_SCHEDULES, METHOD_NAMES, SCHEDULES
from service.host import simd_round_to
from service.inference.preprocess import STRIDE
from service.store import Manifest

MAX_FLOPS_REDUCTION = 0.95
MAX_PRUNING_RATIO = 0.9
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_CROP = (256, 256)
DEFAULT_BATCH_SIZE = 8
MAX_ROUND_TO = 64


@dataclass(frozen=True)
class CompressionConfig:
    """A compression job's settings.

    Target: exactly one of ``flops_reduction`` (the fraction of the source's MACs to remove,
    in (0, 0.95]; step k aims at k/steps of it) or ``pruning_ratio`` (the fraction of every
    layer's channels to remove, in (0, 0.9]; step k removes k/steps of it).

    Schedule: ``steps`` pruning steps, each followed by ``finetune_epochs_per_step`` epochs of
    recovery (a fraction of an epoch is allowed, 0 for none), then one final fine-tune of
    ``finetune_epochs`` with a large learning rate (``lr_schedule``: one-cycle, or warm-up +
    cosine) and, with ``distill``, distillation from the source. ``schedule`` says how the step
    targets approach the final one: ``linear`` (equal parts) or ``agp`` (Zhu & Gupta's cubic:
    large steps first, small ones last).

    Allocation (see ``allocation``): ``global`` ranks channels across layers with
    ``max_layer_ratio`` as the most any layer may lose; ``uniform`` prunes every layer alike.
    ``round_to`` makes every pruned width a multiple of it; None picks the host's SIMD block.
    ``scratch`` prunes to FPGM's architecture, then re-initialises it before the fine-tune.

    ``max_dice_drop`` is in absolute Dice points: 1.0 point = 0.01 Dice. Without a final
    fine-tune, a step whose validation Dice (the competition Dice, with the source's
    post-processing) lies more than that below the source's ends the job, and the last step
    within it is published. With one, the steps run to the target and the fine-tuned net must
    be within the drop to be published.

    ``dataset``, ``crop``, ``batch_size``, ``dice_reduction`` (of the task loss, see
    service.training.losses) and ``defect_share`` (see service.training.crops) left as None
    come from the source version's lineage settings (what it was trained or fine-tuned with),
    else from the defaults above.

    ``quantize``: the optional last stage, the fields of
    ``service.compression.quantize.QuantizeSettings`` (calibration_images, method,
    per_channel, keep_float, min_mask_dice): the published float version is quantized to int8
    into the next version, which then holds the alias ``candidate``.
    """

    model: str
    ref: int | str = "production"
    method: str = "fpgm"
    flops_reduction: float | None = None
    pruning_ratio: float | None = None
    steps: int = 8
    finetune_epochs_per_step: float = 0.25
    finetune_epochs: int = 16
    schedule: str = "linear"
    lr_schedule: str = "onecycle"
    allocation: str = "global"
    max_layer_ratio: float = 0.9
    round_to: int | None = None
    max_dice_drop: float = 1.0
    dataset: str | None = None
    device: str = "auto"
    distill: bool = True
    distill_weight: float = 1.0
    seed: int = 0
    batch_size: int | None = None
    crop: tuple[int, int] | None = None
    dice_reduction: str | None = None
    defect_share: float | None = None
    lr: float = 1e-3
    job_id: str | None = None
    latency_repeats: int = 20
    quantize: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def settings(self) -> dict[str, Any]:
        """Plain JSON values, as lineage and the work folder record them."""
        data = asdict(self)
        data["crop"] = None if self.crop is None else list(self.crop)
        if self.quantize is None:  # as jobs recorded before the stage existed
            del data["quantize"]
        return data

    def resolved(self, source: Manifest) -> CompressionConfig:
        """Dataset, crop and batch size filled in from the source version where not given, and
        ``round_to`` from this host's SIMD width."""
        recorded = source.lineage.settings
        dataset = self.dataset or recorded.get("dataset")
        if not dataset:
            raise ValueError(
                f"{source.name} v{source.version} does not record its dataset: give one"
            )
        crop = self.crop or recorded.get("crop") or DEFAULT_CROP
        batch_size = self.batch_size or recorded.get("batch_size") or DEFAULT_BATCH_SIZE
        reduction = self.dice_reduction or recorded.get("dice_reduction") or DEFAULT_DICE_REDUCTION
        defect_share = self.defect_share
        if defect_share is None:
            defect_share = float(recorded.get("defect_share") or 0.0)
        return replace(
            self,
            dataset=dataset,
            crop=tuple(crop),
            batch_size=int(batch_size),
            dice_reduction=reduction,
            defect_share=defect_share,
            round_to=self.round_to or simd_round_to(),
        )


def _problems(config: CompressionConfig) -> list[str]:
    problems = []
    if config.method not in METHOD_NAMES:
        problems.append(
            f"unknown pruning method {config.method!r}; choose one of {', '.join(METHOD_NAMES)}"
        )
    targets = (config.flops_reduction, config.pruning_ratio)
    if sum(target is not None for target in targets) != 1:
        problems.append("give exactly one target: flops_reduction or pruning_ratio")
    if config.flops_reduction is not None and not 0 < config.flops_reduction <= MAX_FLOPS_REDUCTION:
        problems.append(
            f"flops_reduction must be in (0, {MAX_FLOPS_REDUCTION}], got {config.flops_reduction}"
        )
    if config.pruning_ratio is not None and not 0 < config.pruning_ratio <= MAX_PRUNING_RATIO:
        problems.append(
            f"pruning_ratio must be in (0, {MAX_PRUNING_RATIO}], got {config.pruning_ratio}"
        )
    if config.steps < 1:
        problems.append(f"steps must be at least 1, got {config.steps}")
    if config.finetune_epochs_per_step < 0 or config.finetune_epochs < 0:
        problems.append("finetune_epochs_per_step and finetune_epochs must not be negative")
    for name, value, choices in (
        ("schedule", config.schedule, SCHEDULES),
        ("lr_schedule", config.lr_schedule, LR_SCHEDULES),
        ("allocation", config.allocation, ALLOCATIONS),
        ("dice_reduction", config.dice_reduction or DEFAULT_DICE_REDUCTION, DICE_REDUCTIONS),
    ):
        if value not in choices:
            problems.append(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    if not 0 < config.max_layer_ratio < 1:
        problems.append(f"max_layer_ratio must be in (0, 1), got {config.max_layer_ratio}")
    if config.round_to is not None and not 1 <= config.round_to <= MAX_ROUND_TO:
        problems.append(f"round_to must be in [1, {MAX_ROUND_TO}], got {config.round_to}")
    if config.max_dice_drop < 0:
        problems.append("max_dice_drop (Dice points) must not be negative")
    if config.device not in DEVICES:
        problems.append(f"unknown device {config.device!r}; choose one of {', '.join(DEVICES)}")
    if config.batch_size is not None and config.batch_size < 1:
        problems.append("batch_size must be at least 1")
    if config.crop is not None and any(side <= 0 or side % STRIDE for side in config.crop):
        problems.append(f"crop {config.crop} must be positive multiples of {STRIDE}")
    if config.defect_share is not None and not 0 <= config.defect_share < 1:
        problems.append(f"defect_share must be in [0, 1), got {config.defect_share}")
    if config.lr <= 0 or config.distill_weight < 0 or config.latency_repeats < 1:
        problems.append("lr must be positive, distill_weight >= 0, latency_repeats >= 1")
    return problems
