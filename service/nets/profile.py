"""Parameters and MACs of every family x encoder, for the README and for choosing a net."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

from service.nets import ENCODERS, FAMILIES, Architecture, build_model, count_params_and_macs


def architecture_table(
    height: int = 256,
    width: int = 1600,
    in_channels: int = 1,
    num_classes: int = 4,
    width_multipliers: Sequence[float] = (1.0,),
) -> list[dict[str, Any]]:
    """One row per family x encoder x width multiplier, MACs for one height x width image."""
    rows = []
    for family, encoder, multiplier in product(FAMILIES, ENCODERS, width_multipliers):
        model = build_model(Architecture(family, encoder, in_channels, num_classes, multiplier))
        params, macs = count_params_and_macs(model, height, width)
        rows.append(
            {
                "family": family,
                "encoder": encoder,
                "width_multiplier": multiplier,
                "params": params,
                "gmacs": round(macs / 1e9, 2),
            }
        )
    return rows
