"""service.nets: logit shapes, the Architecture record, pruned rebuilds, parameters and MACs."""

import json

import pytest

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")

from safetensors.torch import load, save  # noqa: E402
from torch import nn  # noqa: E402

from service.nets import (  # noqa: E402
    ENCODERS,
    FAMILIES,
    Architecture,
    build_model,
    count_params_and_macs,
    record_layer_shapes,
)
from service.nets.profile import architecture_table  # noqa: E402

NARROW = 0.25


def logits(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(image)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomise_norms(model: nn.Module) -> None:
    """Non-default norm weights and statistics, so a misaligned channel changes the logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("num_classes", [1, 4])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_the_image_size(family, encoder, in_channels, num_classes):
    model = build_model(Architecture(family, encoder, in_channels, num_classes, NARROW))
    out = logits(model, torch.zeros(2, in_channels, 64, 96))
    assert out.shape == (2, num_classes, 64, 96)


@pytest.mark.parametrize("height, width", [(64, 160), (96, 32), (32, 256)])
@pytest.mark.parametrize("family", FAMILIES)
def test_non_square_images(family, height, width):
    model = build_model(Architecture(family, "resnet34", 1, 4, NARROW))
    assert logits(model, torch.zeros(1, 1, height, width)).shape == (1, 4, height, width)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoder_features_halve_down_to_one_32nd(encoder):
    model = build_model(Architecture("unet", encoder, 3, 1, NARROW))
    features = model.encoder(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in features] == model.encoder.out_channels
    assert [f.shape[2:] for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]


@pytest.mark.parametrize("family", FAMILIES)
def test_classifier_is_the_final_conv(family):
    model = build_model(Architecture(family, "resnet18", 1, 4, NARROW))
    assert isinstance(model.classifier, nn.Conv2d)
    assert model.classifier.out_channels == 4
    assert any(m is model.classifier for m in model.head.modules())


@pytest.mark.parametrize(
    "field, name, choices",
    [("family", "deeplab", "unet, fpn"), ("encoder", "vgg16", "resnet18, resnet34")],
)
def test_unknown_names_list_the_choices(field, name, choices):
    names = {"family": "unet", "encoder": "resnet18", field: name}
    with pytest.raises(ValueError, match=choices):
        Architecture(names["family"], names["encoder"], 1, 4)


def test_architecture_round_trips_through_json():
    arch = Architecture(
        "fpn",
        "resnext50_32x4d",
        1,
        4,
        0.5,
        layer_shapes={"encoder.conv1": [1, 19, 1], "encoder.bn1": [19]},
    )
    assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def test_recorded_shapes_name_real_layers():
    arch = Architecture("unet", "resnet18", 1, 4, NARROW, layer_shapes={"decoder.nope": [8]})
    with pytest.raises(ValueError, match=r"decoder\.nope"):
        build_model(arch)


@pytest.mark.parametrize(
    "family, encoder, multiplier",
    [
        ("unet", "resnet18", 0.5),
        ("fpn", "resnet18", 0.5),
        # narrow ResNeXt: its 3x3 convs are depthwise and pruning removes groups
        ("unet", "resnext50_32x4d", NARROW),
    ],
)
def test_pruned_net_rebuilds_exactly_from_its_record(family, encoder, multiplier):
    arch = Architecture(family, encoder, 3, 4, multiplier)
    image = torch.randn(1, 3, 64, 96)
    model, rebuilt = prune_and_rebuild(arch, image, pruning_ratio=0.4)
    assert param_count(model) < 0.6 * param_count(build_model(arch))
    assert model.classifier.out_channels == 4
    assert torch.allclose(logits(rebuilt, image), logits(model, image))


def prune_and_rebuild(
    arch: Architecture, image: torch.Tensor, pruning_ratio: float
) -> tuple[nn.Module, nn.Module]:
    """The net of ``arch`` (norms randomised) pruned by magnitude, its output layers left alone,
    and the net rebuilt from its JSON record with its weights."""
    model = build_model(arch).eval()
    randomise_norms(model)
    tp.pruner.MagnitudePruner(
        model,
        image,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=pruning_ratio,
        ignored_layers=model.output_layers,
    ).step()
    record = json.dumps({**arch.to_dict(), "layer_shapes": record_layer_shapes(model)})
    rebuilt = build_model(Architecture.from_dict(json.loads(record)))
    rebuilt.load_state_dict(load(save(model.state_dict())), strict=True)
    return model, rebuilt


def test_pruning_through_the_decoder_concat_keeps_skips_aligned():
    """Channels that are always zero can be removed without changing the logits.

    The stem and layer1 channels chosen here reach the U-Net decoder through two concats;
    pruning them must cut the matching input slices of the decoder convs.
    """
    model = build_model(Architecture("unet", "resnet18", 1, 4, 0.5)).eval()
    randomise_norms(model)
    dead = [3, 7, 11]
    with torch.no_grad():
        for norm in (model.encoder.bn1, *(block.bn2 for block in model.encoder.layer1)):
            norm.weight[dead] = 0
            norm.bias[dead] = 0
    image = torch.randn(1, 1, 64, 96)
    before = logits(model, image)
    concat_convs = [model.decoder.blocks[i].conv1[0] for i in (2, 3)]
    widths = [conv.in_channels for conv in concat_convs]
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=image)
    graph.get_pruning_group(model.encoder.conv1, tp.prune_conv_out_channels, idxs=dead).prune()
    assert [conv.in_channels for conv in concat_convs] == [w - len(dead) for w in widths]
    assert torch.allclose(logits(model, image), before, atol=1e-5)


def test_full_unet_resnet34_cost():
    """The reference net: about 24.4 M parameters and 49 GMACs on a 1x256x1600 strip frame."""
    model = build_model(Architecture("unet", "resnet34", 1, 4)).train()
    params, macs = count_params_and_macs(model, 256, 1600)
    assert params == param_count(model)
    assert params == pytest.approx(24.4e6, rel=0.1)
    assert macs == pytest.approx(49e9, rel=0.1)
    assert model.training


def test_architecture_table_covers_every_net():
    rows = architecture_table(height=64, width=96, width_multipliers=(NARROW,))
    assert {(r["family"], r["encoder"]) for r in rows} == {
        (family, encoder) for family in FAMILIES for encoder in ENCODERS
    }
    for row in rows:  # each row is the net it names, at the width and image size asked for
        model = build_model(Architecture(row["family"], row["encoder"], 1, 4, NARROW))
        _, macs = count_params_and_macs(model, 64, 96)
        assert (row["params"], row["gmacs"]) == (param_count(model), round(macs / 1e9, 2))


@pytest.mark.parametrize("head_stride", [2, 4])
def test_a_coarser_head_drops_decoder_blocks_and_upsamples_to_full_size(head_stride):
    full = build_model(Architecture("unet", "resnet18", 1, 4, 0.5))
    coarse = build_model(Architecture("unet", "resnet18", 1, 4, 0.5, head_stride=head_stride))
    assert len(coarse.decoder.blocks) == len(full.decoder.blocks) - {2: 1, 4: 2}[head_stride]
    assert logits(coarse, torch.zeros(2, 1, 64, 96)).shape == (2, 4, 64, 96)
    assert count_params_and_macs(coarse, 64, 96)[1] < count_params_and_macs(full, 64, 96)[1]
    assert coarse.classifier.in_channels == coarse.decoder.blocks[-1].conv2[0].out_channels


def test_a_pruned_coarse_head_net_rebuilds_exactly_from_its_record():
    arch = Architecture("unet", "resnet18", 1, 4, 0.5, presence_head=True, head_stride=2)
    image = torch.randn(1, 1, 64, 96)
    model, rebuilt = prune_and_rebuild(arch, image, pruning_ratio=0.5)
    assert model.classifier.in_channels < 16
    for ours, theirs in zip(logits(rebuilt, image), logits(model, image), strict=True):
        assert torch.allclose(ours, theirs)


@pytest.mark.parametrize(
    "family, head_stride, message",
    [("unet", 3, "head_stride must be one of"), ("fpn", 2, "U-Net option")],
)
def test_head_strides_outside_the_unet_choices_are_refused(family, head_stride, message):
    with pytest.raises(ValueError, match=message):
        build_model(Architecture(family, "resnet18", 1, 4, NARROW, head_stride=head_stride))
