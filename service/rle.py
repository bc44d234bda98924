"""Run-length codec for defect masks, in the Severstal / Kaggle convention.

Pixels are numbered 1..H*W top to bottom, then left to right (column-major), and a mask is
written as ascending "start length" pairs separated by single spaces; an empty mask is "".
"""

from __future__ import annotations

import functools
import re

import numpy as np

SEVERSTAL_SHAPE: tuple[int, int] = (256, 1600)

# Whitespace-separated optional-minus integers: negatives pass here so that they get the clearer
# "not positive" message below rather than a syntax one.
_SYNTAX = re.compile(r"\s*-?\d+(?:\s+-?\d+)*\s*", re.ASCII)
_INTEGER = re.compile(r"-?\d+", re.ASCII)


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (bool or integer, nonzero = defect) as an RLE string."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {mask.shape}")
    runs = _run_bounds(mask if mask.dtype == bool else mask != 0)
    if runs.size == 0:
        return ""
    runs[1::2] -= runs[::2]
    return _join_ints(runs)


_FEW_CHANGES_PER_PIXEL = 1 / 32
"""Up to this share of pixels where the mask changes down a column, ``_run_bounds_by_rows``
(faster on masks with few runs, such as the shipped model's on real strips); past it the sort
costs more than the transposed copy it saves."""


def _run_bounds(mask: np.ndarray) -> np.ndarray:
    """The 1-based column-major pixel numbers where runs start and where they end (one past),
    alternating, of a 2-D bool mask."""
    changes = np.flatnonzero(mask[1:] != mask[:-1])
    if changes.size <= mask.size * _FEW_CHANGES_PER_PIXEL:
        return _run_bounds_by_rows(mask, changes)
    return _run_bounds_by_columns(mask)


def _run_bounds_by_rows(mask: np.ndarray, changes: np.ndarray) -> np.ndarray:
    """From the row-major changes between each row and the one above (``changes``, flat indices
    into ``mask[1:]``) and those at the top of each column (against the bottom of the previous
    column, or background before the first): no transposed copy of the mask, one radix sort of
    the changes by column instead."""
    height, width = mask.shape
    rows, columns = np.divmod(changes, width)
    top = mask[0].copy()
    top[1:] ^= mask[-1, :-1]
    tops = np.flatnonzero(top)
    # Stable, so that a column's top change precedes those below it; on 16-bit keys numpy
    # sorts by radix.
    keys = np.concatenate((tops, columns)).astype(np.uint16 if width <= 1 << 16 else np.int64)
    order = np.argsort(keys, kind="stable")
    bounds = np.concatenate((tops * height + 1, columns * height + rows + 2))[order]
    if mask[-1, -1]:
        bounds = np.append(bounds, mask.size + 1)
    return bounds


def _run_bounds_by_columns(mask: np.ndarray) -> np.ndarray:
    """From a column-major copy padded with one background pixel at each end, so that changes
    between neighbours alternate run start / one past run end."""
    padded = np.zeros(mask.size + 2, dtype=bool)
    np.copyto(padded[1:-1].reshape(mask.shape[::-1]), mask.T)
    return np.flatnonzero(padded[1:] != padded[:-1]) + 1


_TABLE_LIMIT = 1 << 19
"""Numbers below this (every start and length of a mask up to 512k pixels, a 256x1600 strip's
409,600 included) are formatted by table lookup."""


@functools.cache
def _decimals() -> np.ndarray:
    """Each number below _TABLE_LIMIT as its decimal digits and a space, NUL-padded to 8 bytes
    and viewed as one uint64: 4 MB, built once in about 0.2 s (the API calls ``warm_up`` while
    it warms the model)."""
    text = " ".join(map(str, range(_TABLE_LIMIT))).encode("ascii")
    digits = np.array(text.split(), dtype="S7")  # at most 6 digits, then room for the space
    spaced = np.zeros((_TABLE_LIMIT, 8), dtype=np.uint8)
    spaced[:, :7] = digits.view(np.uint8).reshape(_TABLE_LIMIT, 7)
    lengths = np.char.str_len(digits)
    spaced[np.arange(_TABLE_LIMIT), lengths] = ord(" ")
    return spaced.view(np.uint64).ravel()


def warm_up() -> None:
    """Build the number table now (0.2 s) rather than during the first encode that needs it."""
    _decimals()


def _join_ints(values: np.ndarray) -> str:
    """Format positive integers as space-separated decimals.

    One 8-byte gather per number from the table, then the NUL padding squeezed out, no Python
    object per number: faster than gathering bare digits and adding the spaces after, and
    far faster than ``str`` of a list.
    """
    if int(values.max()) >= _TABLE_LIMIT:
        return repr(values.tolist())[1:-1].replace(",", "")
    text = _decimals()[values].view(np.uint8)
    return text[text != 0][:-1].tobytes().decode("ascii")


def parse(rle: str, n_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate an RLE string and return its 1-based run starts and lengths (int64).

    Checks everything that does not need the image shape; with ``n_pixels`` it also checks that
    no run goes past the last pixel. Lets CSV readers validate rows without allocating masks.
    """
    if not rle.strip():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    tokens = rle.split()
    if not _SYNTAX.fullmatch(rle):
        bad = next(t for t in tokens if not _INTEGER.fullmatch(t))
        raise ValueError(f"RLE token {bad!r} is not an integer")
    values = np.array(tokens, dtype=np.int64)
    if len(values) % 2:
        raise ValueError(
            f"RLE has an odd number of values ({len(values)}): expected start/length pairs"
        )
    starts, lengths = values[0::2], values[1::2]
    if (starts < 1).any():
        first = int(starts[starts < 1][0])
        raise ValueError(f"RLE start {first} is not positive (pixels are numbered from 1)")
    if (lengths < 1).any():
        raise ValueError(f"RLE length {int(lengths[lengths < 1][0])} is not positive")
    ends = starts + lengths  # one past the last pixel of each run
    bad_order = np.flatnonzero(starts[1:] < ends[:-1])
    if bad_order.size:
        i = int(bad_order[0])
        raise ValueError(
            f"RLE runs must be ascending and must not overlap: run {i + 2} starts at pixel "
            f"{int(starts[i + 1])} but run {i + 1} covers pixels up to {int(ends[i] - 1)}"
        )
    if n_pixels is not None and ends[-1] - 1 > n_pixels:
        raise ValueError(
            f"RLE run ends at pixel {int(ends[-1] - 1)}, past the last pixel {n_pixels}"
        )
    return starts, lengths


def decode(rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """Decode an RLE string into a uint8 0/1 mask of ``shape`` (height, width)."""
    height, width = shape
    if height < 1 or width < 1:
        raise ValueError(f"mask shape must be positive, got {shape}")
    n_pixels = height * width
    starts, lengths = parse(rle, n_pixels)
    # The column-major pixels are alternating stretches of 0 (gaps) and 1 (runs): one repeat
    # writes them, several times faster than a running sum over every pixel.
    run_starts = starts - 1
    run_ends = run_starts + lengths
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    counts[0:-1:2] = run_starts - np.concatenate(([0], run_ends[:-1]))
    counts[1::2] = lengths
    counts[-1] = n_pixels - (run_ends[-1] if len(run_ends) else 0)
    values = np.zeros(len(counts), dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape((height, width), order="F"))
