"""Names of the decoder families and encoders, importable without torch so the CLI and the
API validate them from the same table that ``service.nets`` builds its registries over."""

FAMILY_NAMES: tuple[str, ...] = ("unet", "fpn")
ENCODER_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnext50_32x4d")
