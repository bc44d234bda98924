"""What an admin may ask a compression job for, and the checks against the store and DATA_ROOT
that turn a well-formed request into one a worker can run."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.architectures import CALIBRATION_METHOD_NAMES, FLOAT_PART_NAMES
from service.compression import ALLOCATIONS, LR_SCHEDULES, METHOD_NAMES, SCHEDULES
from service.compression.config import (
    MAX_FLOPS_REDUCTION,
    MAX_PRUNING_RATIO,
    MAX_ROUND_TO,
    CompressionConfig,
)
from service.data.catalog import open_dataset
from service.data.magnetic_tile import is_magnetic_tile_folder
from service.store import WEIGHTS_FILE, ModelStore, StoreError
from service.store.store import validate_name

Device = Literal["auto", "cpu", "cuda"]
DEFAULTS = CompressionConfig.__dataclass_fields__
NAMED_CHOICES: dict[str, tuple[str, ...]] = {
    "method": METHOD_NAMES,
    "schedule": SCHEDULES,
    "lr_schedule": LR_SCHEDULES,
    "allocation": ALLOCATIONS,
}
"""The request's fields that name one of a table's entries, and those tables."""


class JobRejected(ValueError):
    """A request that cannot run: ``code`` is stable, the message says why (422 in the API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class JobSource(BaseModel):
    """The version to compress: its number or an alias (resolved once, when the job is queued)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1)
    alias: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_reference(self) -> JobSource:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of the source's version or alias")
        return self


class JobTarget(BaseModel):
    """Exactly one of: the fraction of the source's MACs to remove, or of every layer's
    channels."""

    model_config = ConfigDict(extra="forbid")

    flops_reduction: float | None = Field(default=None, gt=0, le=MAX_FLOPS_REDUCTION)
    pruning_ratio: float | None = Field(default=None, gt=0, le=MAX_PRUNING_RATIO)

    @model_validator(mode="after")
    def _one_target(self) -> JobTarget:
        if (self.flops_reduction is None) == (self.pruning_ratio is None):
            raise ValueError("give exactly one target: flops_reduction or pruning_ratio")
        return self


class JobQuantize(BaseModel):
    """The optional last stage: int8 (ONNX Runtime static QDQ) of the published float version."""

    model_config = ConfigDict(extra="forbid")

    calibration_images: int = Field(default=200, ge=1, le=10_000)
    method: Literal[CALIBRATION_METHOD_NAMES] = "minmax"  # type: ignore[valid-type]
    per_channel: bool = True
    keep_float: list[Literal[FLOAT_PART_NAMES]] = Field(  # type: ignore[valid-type]
        default=list(FLOAT_PART_NAMES), description="parts left in float"
    )
    min_mask_dice: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="the least Dice per class between int8 and float masks on validation images",
    )


class JobRequest(BaseModel):
    """The body of POST /v1/admin/jobs, stored as the job's request."""

    model_config = ConfigDict(extra="forbid")

    source: JobSource
    method: str = Field(default="fpgm", json_schema_extra={"enum": list(METHOD_NAMES)})
    target: JobTarget
    steps: int = Field(default=DEFAULTS["steps"].default, ge=1, le=100)
    finetune_epochs_per_step: float = Field(
        default=DEFAULTS["finetune_epochs_per_step"].default,
        ge=0,
        le=1000,
        description="recovery after each pruning step, in epochs (fractions allowed)",
    )
    finetune_epochs: int = Field(
        default=DEFAULTS["finetune_epochs"].default,
        ge=0,
        le=1000,
        description="the one long fine-tune after the last step (0: none)",
    )
    schedule: str = Field(
        default=DEFAULTS["schedule"].default, json_schema_extra={"enum": list(SCHEDULES)}
    )
    lr_schedule: str = Field(
        default=DEFAULTS["lr_schedule"].default, json_schema_extra={"enum": list(LR_SCHEDULES)}
    )
    allocation: str = Field(
        default=DEFAULTS["allocation"].default, json_schema_extra={"enum": list(ALLOCATIONS)}
    )
    max_layer_ratio: float = Field(default=DEFAULTS["max_layer_ratio"].default, gt=0, lt=1)
    round_to: int | None = Field(
        default=None, ge=1, le=MAX_ROUND_TO, description="default: the worker's SIMD block"
    )
    max_dice_drop: float = Field(default=1.0, ge=0, le=100, description="absolute Dice points")
    dataset: str = Field(
        min_length=1, max_length=255, description="a dataset's folder name under DATA_ROOT"
    )
    device: Device = "auto"
    distill: bool = DEFAULTS["distill"].default
    seed: int = Field(default=0, ge=0, lt=2**31)
    quantize: JobQuantize | None = Field(
        default=None, description="quantize the result to int8 as the job's last stage"
    )

    @field_validator(*NAMED_CHOICES)
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = NAMED_CHOICES[info.field_name]
        if value not in choices:
            raise ValueError(
                f"unknown {info.field_name} {value!r}; choose one of {', '.join(choices)}"
            )
        return value


def dataset_spec(name: str, data_root: Path) -> str:
    """The catalog spec (``neu:PATH``, ``magnetic-tile:PATH`` or ``severstal:PATH``) of the
    dataset folder ``name`` under ``data_root``. Names only: absolute paths, ``..`` and
    anything that resolves (through links) outside ``data_root`` are refused, so a request can
    never point a worker elsewhere."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or ":" in name or "\\" in name:
        raise JobRejected(
            "invalid_dataset", f"dataset {name!r} must be a folder name under DATA_ROOT, not a path"
        )
    root = data_root.resolve()
    folder = (root / name).resolve()
    if root not in folder.parents:
        raise JobRejected("invalid_dataset", f"dataset {name!r} resolves outside DATA_ROOT")
    if not folder.is_dir():
        raise JobRejected("unknown_dataset", f"there is no dataset {name!r} under DATA_ROOT")
    if is_magnetic_tile_folder(folder):
        return f"magnetic-tile:{folder}"
    if (folder / "manifest.csv").is_file():
        return f"neu:{folder}"
    if (folder / "train.csv").is_file():
        return f"severstal:{folder}"
    raise JobRejected(
        "unknown_dataset",
        f"{name!r} under DATA_ROOT is neither NEU-Seg (manifest.csv), magnetic-tile "
        "(manifest.csv and MT_Free/) nor Severstal-format (train.csv and train_images/)",
    )


def compression_config(
    request: JobRequest,
    *,
    source_version: int,
    data_root: Path,
    job_id: str | None,
    latency_repeats: int,
) -> CompressionConfig:
    """The pipeline's settings for ``request``; raises JobRejected where they do not hold."""
    try:
        return CompressionConfig(
            model=request.source.model,
            ref=source_version,
            method=request.method,
            flops_reduction=request.target.flops_reduction,
            pruning_ratio=request.target.pruning_ratio,
            steps=request.steps,
            finetune_epochs_per_step=request.finetune_epochs_per_step,
            finetune_epochs=request.finetune_epochs,
            schedule=request.schedule,
            lr_schedule=request.lr_schedule,
            allocation=request.allocation,
            max_layer_ratio=request.max_layer_ratio,
            round_to=request.round_to,
            max_dice_drop=request.max_dice_drop,
            dataset=dataset_spec(request.dataset, data_root),
            device=request.device,
            distill=request.distill,
            seed=request.seed,
            job_id=job_id,
            latency_repeats=latency_repeats,
            quantize=None if request.quantize is None else request.quantize.model_dump(),
        )
    except JobRejected:
        raise
    except ValueError as error:
        raise JobRejected("invalid_job", str(error)) from error


def check_request(request: JobRequest, *, store: ModelStore, data_root: Path) -> int:
    """Refuse what a worker could not run; returns the source version the job will prune."""
    source = request.source
    version = _source_version(source, store)
    try:
        manifest = store.manifest(source.model, version)
    except StoreError as error:  # an alias left pointing at a removed version
        raise JobRejected("unknown_version", str(error)) from error
    if WEIGHTS_FILE not in manifest.files:
        raise JobRejected(
            "source_without_weights",
            f"{source.model} v{version} has no {WEIGHTS_FILE}: only a version published with "
            "its weights can be pruned",
        )
    config = compression_config(
        request, source_version=version, data_root=data_root, job_id=None, latency_repeats=1
    )
    _check_dataset(request.dataset, config.dataset or "", len(manifest.classes))
    return version


def _source_version(source: JobSource, store: ModelStore) -> int:
    try:
        validate_name(source.model)
    except ValueError as error:
        raise JobRejected("unknown_model", str(error)) from error
    versions = store.versions(source.model)
    if not versions:
        raise JobRejected("unknown_model", f"there is no model {source.model!r} in the store")
    if source.version is not None:
        if source.version not in versions:
            raise JobRejected(
                "unknown_version", f"model {source.model!r} has no version {source.version}"
            )
        return source.version
    aliases = store.aliases(source.model)
    if source.alias not in aliases:
        raise JobRejected("unknown_alias", f"model {source.model!r} has no alias {source.alias!r}")
    return aliases[source.alias]


def _check_dataset(name: str, spec: str, num_classes: int) -> None:
    """Both splits the job trains and validates on open, are not empty, and have the source's
    number of classes."""
    for split in ("train", "val"):
        try:
            data = open_dataset(spec, split)
        except (OSError, ValueError) as error:
            raise JobRejected(
                "unknown_dataset", f"dataset {name!r} cannot be read: {error}"
            ) from error
        if len(data.classes) != num_classes:
            raise JobRejected(
                "dataset_mismatch",
                f"dataset {name!r} has {len(data.classes)} classes, the source {num_classes}",
            )
        if not len(data):
            raise JobRejected("dataset_mismatch", f"dataset {name!r} has no {split} images")
