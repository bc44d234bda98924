from pathlib import Path

import numpy as np
import pytest

from service.data import SeverstalDataset, generate_synthetic, read_train_csv, render_strip
from service.data.synthetic import (
    _OUTLINE_MARGIN,
    SEVERSTAL_CLASS_PRIOR,
    Composition,
    _dilate,
    _outlines,
    _quantise,
    compose_strip,
)
from service.evaluation.real import off_steel_mask

N, SEED = 40, 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn"), N, SEED, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout(generated: Path) -> None:
    names = sorted(p.name for p in (generated / "train_images").iterdir())
    assert names == [f"syn0003_{i:05d}.png" for i in range(N)]
    assert set(read_train_csv(generated / "train.csv")) <= set(names)


def test_same_seed_same_bytes(generated: Path, tmp_path: Path) -> None:
    again = generate_synthetic(tmp_path / "again", N, SEED, progress=False)
    assert _files(again) == _files(generated)


def test_prefix_is_independent_of_n(generated: Path, tmp_path: Path) -> None:
    small = generate_synthetic(tmp_path / "small", 7, SEED, progress=False)
    images = _files(small / "train_images")
    assert images == {name: _files(generated / "train_images")[name] for name in images}
    rows = read_train_csv(generated / "train.csv")
    assert read_train_csv(small / "train.csv") == {k: v for k, v in rows.items() if k in images}


def test_reads_back_as_rendered(generated: Path) -> None:
    dataset = SeverstalDataset(generated)
    assert len(dataset) == N
    for i in (0, 1, 2, 3, 4, 5):
        sample = dataset[i]
        image, masks = render_strip(np.random.default_rng([SEED, i]))
        assert sample.image_id == f"syn0003_{i:05d}.png"
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.masks, masks)


def test_defect_statistics(generated: Path) -> None:
    dataset = SeverstalDataset(generated)
    present = np.array([dataset[i].masks.any(axis=(1, 2)) for i in range(len(dataset))])
    defect_free = (~present.any(axis=1)).mean()
    assert 0.3 <= defect_free <= 0.7
    assert present.any(axis=0).all(), "every class should appear over 40 strips"
    assert present.sum(axis=1).max() <= 3


@pytest.mark.parametrize("seed", range(12))
def test_masks_are_exactly_the_altered_pixels(seed: int) -> None:
    composition = compose_strip(np.random.default_rng([seed, 0]), defect_free_fraction=0.0)
    image, masks = composition.image, composition.masks
    background = _quantise(composition.scene.background)
    assert image.shape == (256, 1600) and image.dtype == np.uint8
    assert masks.shape == (4, 256, 1600) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert masks.any()
    assert masks.sum(axis=0).max() <= 1  # one class per pixel
    np.testing.assert_array_equal(image != background, masks.any(axis=0))


@pytest.mark.parametrize("seed", range(12))
def test_defects_lie_on_steel_only(seed: int) -> None:
    composition = compose_strip(np.random.default_rng([seed, 1]), defect_free_fraction=0.0)
    assert not (composition.masks.any(axis=0) & ~composition.scene.steel).any()


def test_some_strips_have_black_off_steel_margins() -> None:
    """About half the strips show a margin at one end or both; it is near black, and the
    real-strip margin finder sees it where the scene put it."""
    with_margin = 0
    for i in range(40):
        rng = np.random.default_rng([9, i])
        composition = compose_strip(rng, defect_free_fraction=1.0)
        off_steel = ~composition.scene.steel
        if not off_steel.any():
            continue
        with_margin += 1
        assert np.median(composition.image[off_steel]) < 20
        assert composition.scene.steel.sum(axis=1).min() >= 500
        found = off_steel_mask(composition.image)
        overlap = (found & off_steel).sum() / off_steel.sum()
        assert overlap > 0.9 and (found & ~off_steel).sum() < 0.05 * off_steel.sum()
    assert 10 <= with_margin <= 30


def test_camera_blurs_and_compresses_but_keeps_the_scene() -> None:
    rng = np.random.default_rng([3, 0])
    composition = compose_strip(rng, defect_free_fraction=0.0)
    image, masks = render_strip(np.random.default_rng([3, 0]), defect_free_fraction=0.0)
    np.testing.assert_array_equal(masks, composition.masks)
    difference = image.astype(np.int16) - composition.image
    assert difference.any() and np.abs(difference).mean() < 6


def test_defect_free_strip() -> None:
    image, masks = render_strip(np.random.default_rng(5), defect_free_fraction=1.0)
    assert not masks.any()
    assert 30 < image.mean() < 200 and image.std() > 2


def test_refuses_to_mix_with_stray_images(tmp_path: Path) -> None:
    out = generate_synthetic(tmp_path / "mixed", 3, 1, progress=False)
    with pytest.raises(FileExistsError, match=r"syn0001_00000\.png"):
        generate_synthetic(out, 3, 2, progress=False)


def _classes_drawn(prior: tuple[float, ...] | None, strips: int = 24) -> np.ndarray:
    """How many of ``strips`` defective strips hold each class."""
    held = np.zeros(4, dtype=int)
    for i in range(strips):
        composition = compose_strip(
            np.random.default_rng([3, i]), defect_free_fraction=0.0, class_prior=prior
        )
        held += composition.masks.reshape(4, -1).any(axis=1)
    return held


def test_a_class_prior_sets_how_often_each_class_is_drawn() -> None:
    only_scratches = _classes_drawn((0.0, 0.0, 1.0, 0.0))
    assert only_scratches[[0, 1, 3]].sum() == 0 and only_scratches[2] == 24
    severstal = _classes_drawn(SEVERSTAL_CLASS_PRIOR)
    assert severstal[2] > severstal[[0, 1, 3]].sum()  # scratches three defects in four
    assert (_classes_drawn(None) > 0).all()


def test_a_class_prior_keeps_the_generator_deterministic() -> None:
    def masks() -> np.ndarray:
        rng = np.random.default_rng([5, 1])
        return compose_strip(rng, defect_free_fraction=0.0, class_prior=SEVERSTAL_CLASS_PRIOR).masks

    assert np.array_equal(masks(), masks())


@pytest.mark.parametrize("prior", [(1.0, 1.0, 1.0), (1.0, -1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0)])
def test_a_malformed_class_prior_is_refused(prior: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="class prior"):
        compose_strip(np.random.default_rng(0), defect_free_fraction=0.0, class_prior=prior)


def _exact_and_outlined(i: int) -> tuple[Composition, Composition]:
    def compose(annotation: str) -> Composition:
        rng = np.random.default_rng([7, i])
        return compose_strip(rng, defect_free_fraction=0.0, annotation=annotation)

    return compose("exact"), compose("outline")


@pytest.mark.parametrize("i", range(6))
def test_an_outline_holds_its_defect_with_a_margin_on_steel_only(i: int) -> None:
    exact, outlined = _exact_and_outlined(i)
    np.testing.assert_array_equal(exact.image, outlined.image)  # the same strip, labelled anew
    for k in range(4):
        pixels, outline = exact.masks[k].astype(bool), outlined.masks[k].astype(bool)
        assert pixels.any() == outline.any()
        assert not (pixels & ~outline).any(), "every altered pixel lies inside its outline"
        assert not (outline & ~exact.scene.steel).any(), "an outline never leaves the steel"
        margin = _dilate(pixels, _OUTLINE_MARGIN[0]) & exact.scene.steel
        assert not (margin & ~outline).any(), "the outline leaves at least the least margin"


def test_an_outline_joins_a_pit_cluster_into_one_region() -> None:
    spots = np.zeros((256, 1600), dtype=bool)
    spots[100:103, 200:203] = spots[100:103, 215:218] = True  # two pits 12 pixels apart
    steel = np.ones_like(spots)
    outlined = _outlines(np.random.default_rng(0), np.stack([spots] + [spots & False] * 3), steel)
    assert outlined[0, 101, 203:215].all(), "the gap between the pits is inside the outline"
    assert not outlined[1:].any()


def test_a_clean_strip_is_the_same_with_either_annotation() -> None:
    def clean(annotation: str) -> Composition:
        return compose_strip(
            np.random.default_rng(11), defect_free_fraction=1.0, annotation=annotation
        )

    exact, outlined = clean("exact"), clean("outline")
    np.testing.assert_array_equal(exact.image, outlined.image)
    assert not outlined.masks.any()


def test_outlined_datasets_are_deterministic(tmp_path: Path) -> None:
    first = generate_synthetic(tmp_path / "a", 4, 2, annotation="outline", progress=False)
    second = generate_synthetic(tmp_path / "b", 4, 2, annotation="outline", progress=False)
    assert _files(first) == _files(second)


def test_an_unknown_annotation_is_refused() -> None:
    with pytest.raises(ValueError, match="annotation"):
        compose_strip(np.random.default_rng(0), annotation="polygon")
