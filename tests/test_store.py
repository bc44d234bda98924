from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from service.store import (
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    IntegrityError,
    InvalidNameError,
    ManifestDraft,
    Metrics,
    ModelStore,
    NotFoundError,
    sha256_file,
    write_json,
)
from service.store.store import ALIASES_FILE


def make_draft(params: int = 10) -> ManifestDraft:
    return ManifestDraft(
        classes=[DefectClassSpec(id=1, name="pits")],
        input=InputSpec(height=256, width=1600, channels=1),
        postprocess=[ClassPostprocess(class_id=1, threshold=0.5, min_area=64)],
        architecture=ArchitectureSpec(
            family="unet", encoder="resnet18", in_channels=1, num_classes=1
        ),
        metrics=Metrics(params=params, macs=100, dice=0.9),
    )


@pytest.fixture
def artefacts(tmp_path: Path) -> dict[str, Path]:
    files = {"model.onnx": tmp_path / "a.onnx", "weights.safetensors": tmp_path / "w.st"}
    files["model.onnx"].write_bytes(b"onnx-bytes")
    files["weights.safetensors"].write_bytes(b"weights")
    return files


def test_publish_writes_a_version_with_hashes(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    store = ModelStore(tmp_path / "store")
    manifest = store.publish("strip", make_draft(), artefacts)
    assert manifest.version == 1
    folder = tmp_path / "store" / "strip" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "weights.safetensors",
    ]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["files"]["model.onnx"] == sha256_file(artefacts["model.onnx"])
    assert on_disk["lineage"]["parent_version"] is None
    assert store.load("strip", 1).manifest == manifest
    assert not [
        p for p in (tmp_path / "store" / "strip").iterdir() if p.name.startswith(".staging")
    ]


def test_versions_increase_and_never_overwrite(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    store = ModelStore(tmp_path)
    first = store.publish("strip", make_draft(1), artefacts)
    second = store.publish("strip", make_draft(2), artefacts)
    assert (first.version, second.version) == (1, 2)
    assert store.manifest("strip", 1).metrics.params == 1
    assert store.versions("strip") == [1, 2]
    assert store.resolve("strip", "latest") == 2


def test_concurrent_publishers_get_distinct_versions(
    tmp_path: Path, artefacts: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path)
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(store.publish("strip", make_draft(), artefacts).version)
        )
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6]


def test_tampered_file_is_refused(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(), artefacts)
    (tmp_path / "strip" / "1" / "model.onnx").write_bytes(b"evil")
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        store.load("strip", 1)


def test_missing_and_extra_files_are_refused(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(), artefacts)
    (tmp_path / "strip" / "1" / "extra.bin").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="unexpected"):
        store.load("strip", 1)
    (tmp_path / "strip" / "1" / "extra.bin").unlink()
    (tmp_path / "strip" / "1" / "weights.safetensors").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        store.load("strip", 1)


def test_aliases_move_between_versions(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(1), artefacts)
    store.publish("strip", make_draft(2), artefacts)
    store.set_alias("strip", "production", 1)
    store.set_alias("strip", "candidate", 2)
    assert store.load("strip", "production").manifest.version == 1
    store.set_alias("strip", "production", 2)
    assert store.aliases("strip") == {"candidate": 2, "production": 2}
    store.remove_alias("strip", "candidate")
    assert store.aliases("strip") == {"production": 2}


def test_alias_to_a_tampered_or_missing_version_is_refused(
    tmp_path: Path, artefacts: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(), artefacts)
    with pytest.raises(NotFoundError):
        store.set_alias("strip", "production", 7)
    (tmp_path / "strip" / "1" / "weights.safetensors").write_bytes(b"changed")
    with pytest.raises(IntegrityError):
        store.set_alias("strip", "production", 1)
    assert store.aliases("strip") == {}


def test_unknown_names_raise_not_found(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.load("nothing", "production")
    with pytest.raises(NotFoundError):
        store.manifest("nothing", 1)
    assert store.models() == []


def test_invalid_model_name_is_rejected(tmp_path: Path, artefacts: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        ModelStore(tmp_path).publish("../escape", make_draft(), artefacts)


def test_write_json_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "job" / "result.json"
    write_json(path, {"version": 1})
    write_json(path, {"version": 2, "at": tmp_path})
    assert json.loads(path.read_text()) == {"version": 2, "at": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_store_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, service.store, service.inference.runtime, service.rle, service.cli; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


BAD_MODEL_NAMES = ["..", ".", "../escape", "a..b", "a/b", "Strip", "-strip", "", "s" * 65, "s\n"]


@pytest.mark.parametrize("name", BAD_MODEL_NAMES)
def test_every_method_refuses_an_invalid_model_name(
    tmp_path: Path, artefacts: dict[str, Path], name: str
) -> None:
    """Nothing outside the store is opened: ``..`` next to the store holds a model of its own."""
    ModelStore(tmp_path).publish("outside", make_draft(), artefacts)  # tmp_path/outside/1
    store = ModelStore(tmp_path / "outside" / "store")  # its '..' is a model with version 1
    calls = [
        lambda: store.versions(name),
        lambda: store.manifest(name, 1),
        lambda: store.resolve(name, 1),
        lambda: store.load(name, 1),
        lambda: store.aliases(name),
        lambda: store.set_alias(name, "production", 1),
        lambda: store.remove_alias(name, "production"),
        lambda: store.publish(name, make_draft(), artefacts),
    ]
    for call in calls:
        with pytest.raises(InvalidNameError, match="invalid model name") as raised:
            call()
        assert raised.value.code == "invalid_model_name"
    assert not (tmp_path / "outside" / ALIASES_FILE).exists()


@pytest.mark.parametrize("alias", ["..", "a..b", "Production", "prod/1", "p" * 65])
def test_every_method_refuses_an_invalid_alias_name(
    tmp_path: Path, artefacts: dict[str, Path], alias: str
) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(), artefacts)
    for call in (
        lambda: store.set_alias("strip", alias, 1),
        lambda: store.remove_alias("strip", alias),
        lambda: store.resolve("strip", alias),
    ):
        with pytest.raises(InvalidNameError, match="invalid alias name") as raised:
            call()
        assert raised.value.code == "invalid_alias_name"


def test_folders_with_other_names_are_not_models(
    tmp_path: Path, artefacts: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path)
    store.publish("strip", make_draft(), artefacts)
    (tmp_path / "Not-A-Model" / "1").mkdir(parents=True)
    assert store.models() == ["strip"]
