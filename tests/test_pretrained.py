"""ImageNet weights from the registry packages: a strict load, and the grey stem they fold into."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from service.nets import ENCODERS  # noqa: E402
from service.nets.pretrained import (  # noqa: E402
    CLASSIFIER_PREFIXES,
    IMAGENET_MEAN,
    IMAGENET_PACKAGES,
    IMAGENET_STD,
    PretrainedMismatch,
    encoder_state_from,
    fold_stem_normalisation,
    imagenet_normalisation,
    load_pretrained_encoder,
    read_imagenet_weights,
)
from service.store.manifest import Normalisation  # noqa: E402


@pytest.mark.parametrize("name", sorted(IMAGENET_PACKAGES))
def test_every_encoder_tensor_comes_from_the_package(name: str) -> None:
    encoder = ENCODERS[name](1, 1.0)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    loaded = load_pretrained_encoder(encoder, name, imagenet_normalisation())
    state = encoder.state_dict()
    assert loaded.tensors_loaded == len(state)
    assert loaded.tensors_in_file == len(state) + len(loaded.classifier_tensors_unused)
    assert loaded.classifier_tensors_unused
    assert all(n.startswith(CLASSIFIER_PREFIXES) for n in loaded.classifier_tensors_unused)
    weights, _ = read_imagenet_weights(name)
    block_weight = "_blocks.3._depthwise_conv.weight"
    assert torch.equal(state[block_weight], weights[block_weight])
    changed = [k for k in state if k.endswith("weight") and not torch.equal(state[k], before[k])]
    assert len(changed) == len([k for k in state if k.endswith("weight")])


def lite0_weights() -> dict[str, torch.Tensor]:
    return read_imagenet_weights("efficientnet_lite0")[0]


def test_a_missing_tensor_is_an_error_that_names_it() -> None:
    weights = lite0_weights()
    del weights["_blocks.5._project_conv.weight"]
    encoder = ENCODERS["efficientnet_lite0"](1, 1.0)
    with pytest.raises(
        PretrainedMismatch, match=r"missing \['_blocks\.5\._project_conv\.weight'\]"
    ):
        encoder_state_from(encoder, weights, imagenet_normalisation())


def test_a_mis_shaped_tensor_is_an_error_that_names_it() -> None:
    encoder = ENCODERS["efficientnet_lite0"](1, 0.5)
    with pytest.raises(PretrainedMismatch, match=r"mis-shaped \['_blocks\.0\._project_conv"):
        encoder_state_from(encoder, lite0_weights(), imagenet_normalisation())


def test_an_unexpected_tensor_is_an_error_that_names_it() -> None:
    weights = lite0_weights()
    weights["_blocks.99._bn1.weight"] = torch.ones(3)
    encoder = ENCODERS["efficientnet_lite0"](1, 1.0)
    with pytest.raises(PretrainedMismatch, match=r"unexpected \['_blocks\.99\._bn1\.weight'\]"):
        encoder_state_from(encoder, weights, imagenet_normalisation())


def test_a_load_that_fails_leaves_the_encoder_untouched() -> None:
    encoder = ENCODERS["efficientnet_lite0"](1, 0.5)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(PretrainedMismatch):
        load_pretrained_encoder(encoder, "efficientnet_lite0", imagenet_normalisation())
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_encoders_without_shipped_weights_are_refused() -> None:
    with pytest.raises(PretrainedMismatch, match="no ImageNet weights ship for encoder 'resnet18'"):
        load_pretrained_encoder(ENCODERS["resnet18"](1, 1.0), "resnet18", Normalisation())


def imagenet_rgb(grey: torch.Tensor) -> torch.Tensor:
    """A [0, 1] grey image replicated to RGB and normalised per channel as ImageNet was."""
    return torch.cat([(grey - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)], 1)


@pytest.mark.parametrize(
    "normalisation", [imagenet_normalisation(), Normalisation(mean=0.5, std=0.25)]
)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_the_folded_stem_gives_the_imagenet_stem_on_the_grey_image(
    normalisation: Normalisation, in_channels: int
) -> None:
    rgb = ENCODERS["efficientnet_lite0"](3, 1.0).eval()
    weights = lite0_weights()
    rgb.load_state_dict({k: weights[k] for k in rgb.state_dict()})
    folded = ENCODERS["efficientnet_lite0"](in_channels, 1.0).eval()
    load_pretrained_encoder(folded, "efficientnet_lite0", normalisation)
    grey = torch.rand(2, 1, 48, 64)
    served = ((grey - normalisation.mean) / normalisation.std).expand(-1, in_channels, -1, -1)
    with torch.no_grad():
        expected = rgb._bn0(rgb._conv_stem(imagenet_rgb(grey)))
        actual = folded._bn0(folded._conv_stem(served))
    inner = (..., slice(1, -1), slice(1, -1))  # zero padding differs on the border
    scale = expected[inner].abs().max()
    assert torch.allclose(actual[inner], expected[inner], atol=1e-5 * scale)
    assert not torch.allclose(actual[..., 0, :], expected[..., 0, :], atol=1e-5 * scale)


def test_folding_refuses_a_stem_that_is_not_rgb() -> None:
    with pytest.raises(PretrainedMismatch, match="RGB stem"):
        fold_stem_normalisation(torch.zeros(32, 1, 3, 3), 1, Normalisation())
    with pytest.raises(PretrainedMismatch, match="1 or 3 input channels"):
        fold_stem_normalisation(torch.zeros(32, 3, 3, 3), 2, Normalisation())
