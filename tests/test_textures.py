"""Real-texture bank for synthetic strips: clean windows only, seamless quilts, determinism."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.data.synthetic import _quantise, compose_strip, generate_synthetic
from service.data.textures import PATCH, SteelTextures, _sine_window, clean_windows
from tests.data_folders import write_painted_neu_folder

SIDE = 200


def _neu_folder(root: Path, images: int = 6) -> Path:
    """NEU's layout: noisy images with a dark defect square in the top-left quarter; the first
    is in the validation split, whose pixels must never reach the bank."""

    def paint(_: int, image: np.ndarray, mask: np.ndarray) -> None:
        image[10:60, 10:60], mask[10:60, 10:60] = 5, 1

    return write_painted_neu_folder(root, images, paint)


def test_windows_keep_clear_of_defects_and_their_rim() -> None:
    image = np.full((SIDE, SIDE), 120, dtype=np.uint8)
    defect = np.zeros((SIDE, SIDE), dtype=bool)
    defect[100, 100] = True
    windows = list(clean_windows(image, defect))
    assert windows and all(w.shape == (PATCH, PATCH) for w in windows)
    # A 5x5 grid of windows; the 2x2 whose spans reach (100, 100) grown by the rim are out.
    assert len(windows) == 25 - 4


def test_a_window_with_an_unlabelled_dark_spot_is_left_out() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(110, 130, (PATCH, PATCH)).astype(np.uint8)
    assert len(list(clean_windows(image, np.zeros_like(image, dtype=bool)))) == 1
    image[20:28, 20:28] = 10
    assert list(clean_windows(image, np.zeros_like(image, dtype=bool))) == []


def test_bank_reads_the_train_split_only_and_is_mean_free(tmp_path: Path) -> None:
    bank = SteelTextures.from_neu(_neu_folder(tmp_path / "neu"))
    assert len(bank) == 5  # one window per training image, none from validation
    assert bank.patches.shape[1:] == (PATCH, PATCH)
    np.testing.assert_allclose(bank.patches.mean(axis=(1, 2)), 0.0, atol=1e-3)
    again = SteelTextures.from_neu(tmp_path / "neu")
    np.testing.assert_array_equal(again.patches, bank.patches)


def test_a_folder_without_clean_windows_is_refused(tmp_path: Path) -> None:
    root = _neu_folder(tmp_path / "neu")
    for path in (root / "masks").iterdir():
        Image.fromarray(np.ones((SIDE, SIDE), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match="no defect-free"):
        SteelTextures.from_neu(root)


def test_half_overlapping_sine_windows_keep_unit_energy() -> None:
    window = _sine_window(64)
    np.testing.assert_allclose(window[:32] ** 2 + window[32:] ** 2, 1.0, atol=1e-12)


def test_a_quilt_keeps_about_the_contrast_of_its_patches() -> None:
    rng = np.random.default_rng(2)
    patches = rng.standard_normal((8, PATCH, PATCH)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(p).resize((8, 8)).resize((PATCH, PATCH))) for p in patches]
    )
    bank = SteelTextures(smooth * (10.0 / smooth.std()))
    quilts = [bank.draw(rng, 256, 1600) for _ in range(4)]
    assert all(q.shape == (256, 1600) for q in quilts)
    assert all(5.0 < q.std() < 15.0 for q in quilts)


def test_textured_strips_are_deterministic_and_masks_stay_exact(tmp_path: Path) -> None:
    bank = SteelTextures.from_neu(_neu_folder(tmp_path / "neu"))
    first = compose_strip(np.random.default_rng([4, 0]), defect_free_fraction=0.0, textures=bank)
    second = compose_strip(np.random.default_rng([4, 0]), defect_free_fraction=0.0, textures=bank)
    np.testing.assert_array_equal(first.image, second.image)
    background = _quantise(first.scene.background)
    np.testing.assert_array_equal(first.image != background, first.masks.any(axis=0))
    plain = compose_strip(np.random.default_rng([4, 0]), defect_free_fraction=0.0)
    assert not np.array_equal(plain.image, first.image)


def test_generating_with_a_bank_is_reproducible(tmp_path: Path) -> None:
    bank = SteelTextures.from_neu(_neu_folder(tmp_path / "neu"))
    one = generate_synthetic(tmp_path / "one", 3, 5, textures=bank, progress=False)
    two = generate_synthetic(tmp_path / "two", 3, 5, textures=bank, progress=False)
    for name in ("train.csv", "classes.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    for path in sorted((one / "train_images").iterdir()):
        assert path.read_bytes() == (two / "train_images" / path.name).read_bytes()


def test_make_synthetic_takes_a_texture_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    textures = str(_neu_folder(tmp_path / "neu"))
    out = tmp_path / "syn"
    assert main(["make-synthetic", "--out", str(out), "--n", "2", "--textures", textures]) == 0
    assert len(list((out / "train_images").iterdir())) == 2
    missing = str(tmp_path / "nowhere")
    assert main(["make-synthetic", "--out", str(out), "--n", "2", "--textures", missing]) == 2
    assert "NEU-Seg" in capsys.readouterr().err
