"""Real-defect bank for synthetic strips: train split only, exact footprints, determinism."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.data.real_defects import MIN_PIXELS, RealDefects, defect_delta
from service.data.synthetic import HEIGHT, WIDTH, _quantise, compose_strip
from tests.data_folders import write_painted_neu_folder

SIDE = 200


def _neu_folder(root: Path, images: int = 6) -> Path:
    """NEU's layout: noisy steel with a dark inclusion (class 1) and a bright scratch (class
    3); the first image is in the validation split and carries a patch (class 2) as well, so
    that a bank holding patches has read it."""

    def paint(index: int, image: np.ndarray, mask: np.ndarray) -> None:
        image[20:30, 40:46], mask[20:30, 40:46] = 60, 1
        image[:, 150:153], mask[:, 150:153] = 200, 3
        if index == 0:
            image[100:160, 20:90], mask[100:160, 20:90] = 40, 2

    return write_painted_neu_folder(root, images, paint, levels=(110, 130))


def test_a_delta_is_the_defect_less_the_steel_around_it() -> None:
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[50:60, 70:75] = True
    image = np.where(mask, 70, 120).astype(np.uint8)
    mask[60, 70] = True  # a mask pixel the defect left at the steel's level
    delta = defect_delta(image, mask)
    assert delta.shape == (11, 5)
    np.testing.assert_allclose(delta[:10], -50.0, atol=1.0)
    assert delta[10, 0] == -1.0 and (delta[10, 1:] == 0).all()


def test_bank_reads_the_train_split_only_and_maps_the_classes(tmp_path: Path) -> None:
    bank = RealDefects.from_neu(_neu_folder(tmp_path / "neu"))
    # inclusion -> pits (1), scratches -> scratch (3); the only patch is in validation.
    assert sorted(bank.deltas) == [1, 3]
    assert len(bank.deltas[1]) == len(bank.deltas[3]) == 5
    assert not bank.has(4) and not bank.has(2)
    assert all((delta < 0).all() for delta in bank.deltas[1])
    assert all((delta > 0).all() for delta in bank.deltas[3])
    again = RealDefects.from_neu(tmp_path / "neu")
    for ours, theirs in zip(bank.deltas[1], again.deltas[1], strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_folder_without_defects_is_refused(tmp_path: Path) -> None:
    root = _neu_folder(tmp_path / "neu")
    for path in (root / "masks").iterdir():
        Image.fromarray(np.zeros((SIDE, SIDE), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match=f"no defect of {MIN_PIXELS}"):
        RealDefects.from_neu(root)


def test_a_drawn_defect_fits_the_strip_and_changes_every_footprint_pixel() -> None:
    rng = np.random.default_rng(3)
    bank = RealDefects({4: [np.full((400, 300), -30.0, dtype=np.float32)]})
    for _ in range(10):
        delta = bank.draw(rng, 4, HEIGHT, WIDTH)
        assert delta.shape[0] <= HEIGHT and delta.shape[1] <= WIDTH
        footprint = delta != 0
        assert footprint.any() and (np.abs(delta[footprint]) >= 1.0).all()


def test_strips_with_real_defects_are_deterministic_and_masks_stay_exact(
    tmp_path: Path,
) -> None:
    bank = RealDefects.from_neu(_neu_folder(tmp_path / "neu"))
    first, second = (
        compose_strip(np.random.default_rng([7, 0]), defect_free_fraction=0.0, defects=bank)
        for _ in range(2)
    )
    np.testing.assert_array_equal(first.image, second.image)
    changed = first.image != _quantise(first.scene.background)
    np.testing.assert_array_equal(changed, first.masks.any(axis=0))
    seeds_with_a_real_defect = 0
    for seed in range(12):
        plain = compose_strip(np.random.default_rng([7, seed]), defect_free_fraction=0.0)
        real = compose_strip(
            np.random.default_rng([7, seed]), defect_free_fraction=0.0, defects=bank
        )
        seeds_with_a_real_defect += not np.array_equal(plain.masks, real.masks)
    assert seeds_with_a_real_defect > 0


def test_make_synthetic_takes_a_real_defect_folder(tmp_path: Path) -> None:
    from service.cli import main

    neu = str(_neu_folder(tmp_path / "neu"))
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        command = ["make-synthetic", "--quiet", "--out", str(out), "--n", "3"]
        assert main([*command, "--real-defects", neu]) == 0
        runs.append(out)
    for path in sorted((runs[0] / "train_images").iterdir()):
        assert path.read_bytes() == (runs[1] / "train_images" / path.name).read_bytes()
    assert (runs[0] / "train.csv").read_bytes() == (runs[1] / "train.csv").read_bytes()
