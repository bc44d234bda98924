"""ONNX Runtime's spinning: ``ONNX_SPINNING`` off, during_runs or on (true/false still read), and
what each sets on the session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.config import Settings
from service.inference.runtime import OnnxSegmenter
from service.inference.spinning import SPIN_MODES

PROBE = Path(__file__).parent / "data" / "models" / "probe.onnx"


def _entries(segmenter: OnnxSegmenter) -> tuple[str, str]:
    options = segmenter.session.get_session_options()
    spin = options.get_session_config_entry("session.intra_op.allow_spinning")
    try:
        stop = options.get_session_config_entry("session.force_spinning_stop")
    except RuntimeError:  # never set
        stop = ""
    return spin, stop


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("off", ("0", "")), ("during_runs", ("1", "1")), ("on", ("1", ""))],
)
def test_each_mode_sets_the_session(mode: str, expected: tuple[str, str]) -> None:
    segmenter = OnnxSegmenter(PROBE, intra_op_threads=2, spinning=mode)  # type: ignore[arg-type]
    assert _entries(segmenter) == expected
    logits = segmenter(np.zeros((1, 1, 32, 64), dtype=np.float32))
    assert logits.shape[0] == 1


def test_the_default_spins_during_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONNX_SPINNING", raising=False)
    assert Settings(_env_file=None).onnx_spinning == "during_runs"
    assert set(SPIN_MODES) == {"off", "during_runs", "on"}


@pytest.mark.parametrize(
    ("value", "mode"),
    [("true", "on"), ("1", "on"), ("false", "off"), ("0", "off"), ("on", "on"), ("off", "off")],
)
def test_the_boolean_form_still_reads(
    monkeypatch: pytest.MonkeyPatch, value: str, mode: str
) -> None:
    monkeypatch.setenv("ONNX_SPINNING", value)
    assert Settings(_env_file=None).onnx_spinning == mode


def test_an_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_SPINNING", "sometimes")
    with pytest.raises(ValidationError, match="during_runs"):
        Settings(_env_file=None)
