"""The API process never imports torch: build the app, serve a request, check sys.modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.store import ModelStore

pytestmark = pytest.mark.subprocess

SCRIPT = textwrap.dedent(
    """
    import sys
    from fastapi.testclient import TestClient
    import service.api, service.cli
    from service.api import create_app
    from service.config import Settings
    from service.db.migrate import upgrade

    store, database = sys.argv[1], "sqlite:///" + sys.argv[2]
    upgrade(database)
    settings = Settings(_env_file=None, model_store=store, model_name="probe",
                        database_url=database, warmup_runs=1, spool_dir=sys.argv[2] + ".spool")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/inspect", params={"camera_id": "c"},
                               content=bytes(256 * 1600),
                               headers={"content-type": "application/octet-stream"})
        assert response.status_code == 200, response.text
    leaked = sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))
    assert not leaked, leaked
    print("torch-free")
    """
)


def test_serving_never_imports_torch(model_store: ModelStore, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_store.root), str(tmp_path / "db.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "torch-free" in result.stdout
