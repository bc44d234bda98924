from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser, main
from tests.tiny_models import publish_committed

COMMANDS = [
    "make-synthetic",
    "train",
    "macs",
    "publish",
    "evaluate",
    "evaluate-real",
    "latency",
    "models",
    "alias",
    "compress",
    "worker",
    "migrate",
    "serve",
    "hash-key",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_module_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service", "--help"], capture_output=True, text=True, check=True
    )
    assert "make-synthetic" in out.stdout


@pytest.mark.parametrize("command", ["bench-codec", "bench-serve", "bench-ab", "bench-history"])
def test_benchmarks_are_not_service_commands(command: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command])
    assert exit_info.value.code == 2


def test_the_service_package_never_imports_the_benchmarks() -> None:
    code = (
        "import sys, service.cli; service.cli.build_parser(); "
        "print(any(name.split('.')[0] == 'benchmarks' for name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_make_synthetic_and_models_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path / "syn"), "--n", "3", "--quiet"]) == 0
    assert (tmp_path / "syn" / "train.csv").is_file()
    prior = ["make-synthetic", "--out", str(tmp_path / "prior"), "--n", "3", "--quiet"]
    assert main([*prior, "--class-prior", "severstal"]) == 0  # the same seed, other classes
    uniform_csv, prior_csv = (tmp_path / name / "train.csv" for name in ("syn", "prior"))
    assert prior_csv.read_text() != uniform_csv.read_text()
    assert main(["models", "--store", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip().endswith("{}")


def test_user_errors_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "alias",
            "--store",
            str(tmp_path),
            "--model",
            "nope",
            "--alias",
            "production",
            "--version",
            "1",
        ]
    )
    assert code == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_architecture_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dataset", "x", "--out", "y", "--arch", "segformer"])


def test_architecture_names_match_the_registries() -> None:
    from service.architectures import ENCODER_NAMES, FAMILY_NAMES
    from service.nets import ENCODERS, FAMILIES

    assert tuple(FAMILIES) == FAMILY_NAMES
    assert tuple(ENCODERS) == ENCODER_NAMES


def test_latency_times_versions_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = publish_committed(tmp_path / "store")
    code = main(
        [
            "latency",
            "--store",
            str(store.root),
            "--model",
            "probe",
            "--refs",
            "production",
            "--size",
            "64x128",
            "--repeats",
            "3",
            "--spinning",
            "off",
            "during_runs",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [1, 1, 64, 128]
    assert set(report["spinning"]) == {"off", "during_runs"}
    for figures in report["spinning"].values():
        assert figures["v1"]["repeats"] == 3
        assert figures["v1"]["speedup"] == 1.0
