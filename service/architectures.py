"""Names of the decoder families, encoders, U-Net head strides and loss reductions, importable
without torch so the CLI and the API validate them from the same tables that ``service.nets``
and ``service.training.losses`` build on."""

FAMILY_NAMES: tuple[str, ...] = ("unet", "fpn")
ENCODER_NAMES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext50_32x4d",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)
DICE_REDUCTIONS: tuple[str, ...] = ("batch", "pairs")
DEFAULT_DICE_REDUCTION = "batch"
PRETRAINED_SOURCES: tuple[str, ...] = ("imagenet",)
"""Where an encoder's starting weights can come from (service.nets.pretrained)."""
HEAD_STRIDES: tuple[int, ...] = (1, 2, 4)
"""Where a U-Net's head classifies: full resolution, or /2 or /4 with its logits upsampled."""
CALIBRATION_METHOD_NAMES: tuple[str, ...] = ("minmax", "entropy", "percentile")
"""How int8 quantization calibrates activation ranges (service.compression.quantize)."""
FLOAT_PART_NAMES: tuple[str, ...] = ("stem", "head", "presence")
"""The parts of a net that int8 quantization may keep float."""
