"""``python -m benchmarks.ab``: two commits served side by side, from git worktrees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.ab import bench_ab
from service.config import Settings
from service.store import ModelStore

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]


def _worktrees() -> list[str]:
    """The repository's worktree folders (not their commits: a commit may land meanwhile)."""
    listing = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "list", "--porcelain"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(
        line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")
    )


def test_two_refs_are_served_and_compared_round_by_round(
    model_store: ModelStore, tmp_path: Path
) -> None:
    before = _worktrees()
    settings = Settings(
        _env_file=None,
        model_store=model_store.root,  # absolute: both servers serve the tiny probe model
        model_name="probe",
        data_root=tmp_path / "no-data",
        max_batch=2,
        onnx_threads=2,
        warmup_runs=1,
    )
    summary = bench_ab(
        settings, repo=REPO, refs=("HEAD", "HEAD"), rounds=2, clients=2, per_client=2, sequential=2
    )
    assert summary["failed_requests"] == 0
    refs = summary["refs"]
    assert refs["a"]["commit"] == refs["b"]["commit"]  # type: ignore[index]
    assert [sorted(r) for r in summary["rounds"]] == [["a", "b"], ["a", "b"]]  # type: ignore[union-attr]
    for name in ("throughput", "one_client_p50"):
        ratios = summary["b_over_a"][name]  # type: ignore[index]
        assert 0 < ratios["min"] <= ratios["median"] <= ratios["max"]
    assert _worktrees() == before  # the checkouts are removed
    for side in ("a", "b"):
        pooled = summary["one_client_pooled_ms"][side]  # type: ignore[index]
        assert 0 < pooled["p50"] <= pooled["p99"]
        assert summary["strips_not_kept"][side] == 0  # type: ignore[index]
