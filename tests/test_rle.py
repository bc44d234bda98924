import csv
from pathlib import Path

import numpy as np
import pytest

from service import rle
from service.rle import decode, encode

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal-samples"


def _real_rows() -> list[str]:
    if not SAMPLES.is_dir():
        pytest.skip(f"real Severstal rows not found: {SAMPLES} is missing")
    rows = []
    for name in ("gt_subset_train.csv", "rle_reference_rows_noimage.csv"):
        with (SAMPLES / name).open(newline="") as handle:
            rows += [row["EncodedPixels"] for row in csv.DictReader(handle)]
    return rows


@pytest.mark.needs_shared
def test_real_rows_round_trip() -> None:
    rows = _real_rows()
    assert len(rows) == 7
    for encoded in rows:
        mask = decode(encoded)
        assert mask.shape == (256, 1600)
        assert mask.sum() > 0
        assert encode(mask) == encoded


def test_column_major_order() -> None:
    # 4 rows x 3 columns; pixel numbers run down each column first:
    #  1  5  9
    #  2  6 10
    #  3  7 11
    #  4  8 12
    mask = np.array(
        [
            [0, 1, 0],
            [1, 1, 0],
            [1, 0, 0],
            [0, 0, 1],
        ],
        dtype=np.uint8,
    )
    assert encode(mask) == "2 2 5 2 12 1"
    np.testing.assert_array_equal(decode("2 2 5 2 12 1", (4, 3)), mask)


def test_run_crossing_a_column_boundary() -> None:
    mask = decode("3 4", (4, 3))  # pixels 3..6: rows 2-3 of column 0, rows 0-1 of column 1
    expected = np.zeros((4, 3), dtype=np.uint8)
    expected[2:, 0] = 1
    expected[:2, 1] = 1
    np.testing.assert_array_equal(mask, expected)


def test_empty_and_full_masks() -> None:
    assert encode(np.zeros((256, 1600), dtype=np.uint8)) == ""
    empty = decode("")
    assert empty.shape == (256, 1600) and empty.dtype == np.uint8 and not empty.any()
    assert encode(np.ones((256, 1600), dtype=bool)) == f"1 {256 * 1600}"
    assert decode(f"1 {256 * 1600}").all()


def test_encode_accepts_bool_and_integers() -> None:
    mask = np.zeros((5, 7), dtype=np.int32)
    mask[1:3, 2] = 7  # any nonzero value is a defect
    mask[4, 6] = -1
    assert encode(mask) == encode(mask != 0) == "12 2 35 1"


def test_decode_output_type() -> None:
    mask = decode("1 2 10 3", (4, 5))
    assert mask.dtype == np.uint8 and mask.flags.c_contiguous
    assert set(np.unique(mask)) == {0, 1}


def test_adjacent_runs_are_accepted() -> None:
    # Not what encode writes ("1 4"), but a valid mask.
    assert encode(decode("1 2 3 2", (4, 3))) == "1 4"


def test_encode_rejects_non_2d() -> None:
    for bad in (np.zeros(10), np.zeros((2, 3, 4))):
        with pytest.raises(ValueError, match="2-D"):
            encode(bad)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 x 3", "not an integer"),
        ("1.5 2", "not an integer"),
        ("1_0 2", "not an integer"),
        ("1 2 3", "odd number"),
        ("0 2", "start 0 is not positive"),
        ("-4 2", "start -4 is not positive"),
        ("1 0", "length 0 is not positive"),
        ("1 -2", "length -2 is not positive"),
        ("10 2 5 1", "ascending"),
        ("1 5 3 2", "overlap"),
        ("12 2", "ends at pixel 13, past the last pixel 12"),
    ],
)
def test_decode_rejects_malformed(rle: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(rle, (4, 3))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (4, 3), (17, 31), (256, 1600)])
def test_random_round_trip(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 0.95, 1.0):
        mask = (rng.random(shape) < density).astype(np.uint8)
        encoded = encode(mask)
        assert encoded == _reference_encode(mask)
        np.testing.assert_array_equal(decode(encoded, shape), mask)
        assert encode(decode(encoded, shape)) == encoded
        values = [int(v) for v in encoded.split()]
        starts = values[0::2]
        assert starts == sorted(starts)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (4, 3), (17, 31), (256, 1600)])
def test_both_ways_of_finding_runs_agree(shape: tuple[int, int]) -> None:
    # ``encode`` finds the runs from row-major changes when they are few (smooth masks, blobs)
    # and from a column-major copy otherwise; both must give the reference's runs.
    rng = np.random.default_rng(len(shape) + shape[0])
    blobs = np.zeros(shape, dtype=bool)
    blobs[shape[0] // 3 :, : shape[1] // 2] = True
    blobs[: shape[0] // 2, -(shape[1] // 4) :] = True
    masks = [blobs, ~blobs] + [rng.random(shape) < d for d in (0.0, 0.02, 0.5, 0.98, 1.0)]
    for mask in masks:
        expected = [int(v) for v in _reference_encode(mask).split()]
        changes = np.flatnonzero(mask[1:] != mask[:-1])
        for bounds in (rle._run_bounds_by_rows(mask, changes), rle._run_bounds_by_columns(mask)):
            bounds[1::2] -= bounds[::2]
            assert bounds.tolist() == expected


def test_a_smooth_strip_mask_matches_the_reference() -> None:
    # Few changes per column: the row-major way, on a full-size strip with runs across columns.
    yy, xx = np.mgrid[:256, :1600]
    mask = ((yy - 128) ** 2 / 90**2 + (xx - 700) ** 2 / 400**2 < 1) | (xx > 1590) | (yy == 0)
    assert encode(mask) == _reference_encode(mask)


def _reference_encode(mask: np.ndarray) -> str:
    """The Kaggle kernels' encoder, pixel by pixel: what ``encode`` must agree with."""
    pixels = np.concatenate([[0], mask.flatten(order="F"), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


@pytest.mark.parametrize("shape", [(256, 1600), (1024, 1024)])
def test_numbers_past_the_formatting_table(shape: tuple[int, int]) -> None:
    # A 1024x1024 mask has starts and lengths beyond 2**19, which take the slower formatter.
    mask = np.zeros(shape, dtype=bool)
    mask[:, -3:] = True
    mask[5:9, 1] = True
    mask[::7, shape[1] // 2] = True
    assert encode(mask) == _reference_encode(mask)
    assert encode(~mask) == _reference_encode(~mask)
