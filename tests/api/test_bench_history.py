"""``python -m benchmarks.history``: a tiny seeded run in its own Postgres schema."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.history import bench_history

from .conftest import require_postgres


def test_a_tiny_run_reports_percentiles_plans_and_goals(tmp_path: Path) -> None:
    admin_url = require_postgres()
    schema = f"bench_test_{uuid.uuid4().hex[:12]}"
    summary = bench_history(
        admin_url, count=300, repeats=3, deep=2, schema=schema, out=tmp_path / "out"
    )
    assert summary["seeded"]["inspections"] == 300  # type: ignore[index]
    assert 0 < summary["seeded"]["with_defect"] < 300  # type: ignore[index]
    queries = summary["queries"]
    assert set(queries) == {  # type: ignore[arg-type]
        "first_page",
        "deep_page",
        "summary_hour_by_class",
        "summary_hour_by_class_and_line",
    }
    for query in queries.values():  # type: ignore[attr-defined]
        assert 0 < query["p50_ms"] <= query["p95_ms"]
        assert query["plans"] and all("Execution Time" in plan["plan"] for plan in query["plans"])
        assert isinstance(query["uses_index"], bool)
    assert set(summary["goals"]) == set(queries)  # type: ignore[arg-type]
    assert isinstance(summary["all_goals_met"], bool)
    assert (tmp_path / "out" / "summary.json").is_file()
    assert "Planning Time" in (tmp_path / "out" / "explain.txt").read_text()
    engine = create_engine(admin_url)
    with engine.connect() as connection:  # dropped afterwards without --keep
        found = connection.execute(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"), {"s": schema}
        ).first()
    engine.dispose()
    assert found is None
