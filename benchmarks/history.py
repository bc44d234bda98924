"""QA history benchmark: listing pages and summaries over a million seeded inspections (Postgres).

A fresh schema (``search_path``) is migrated with the project's Alembic migrations and seeded
with ``COPY`` in chunks: 4 cameras on each of 2 lines, coils of a few hundred strips, received
over the last 60 days, about half defect-free and the rest with 1-3 defect classes (a realistic
mix, log-normal areas, short RLE strings). The secondary indexes are dropped for the load and
recreated from their own definitions (``pg_indexes``), then the tables are analysed. COPY
bypasses the write path that keeps the hourly rollup, so the rollup is then recounted the way
migration 0004 fills it (``rebuild_rollup``), and that time is reported too.

Every query goes through the data-access functions the API calls (``list_inspections``,
``defect_summary``), each repetition in its own session as a request has; p50/p95 over the
repetitions. The SQL those functions send is captured as it goes out and run again under
``EXPLAIN (ANALYZE, BUFFERS)``: the plans, and which indexes they use, go into the summary and
``<out>/explain.txt``. Goals: pages p95 under 50 ms, the 30-day hourly summary under 500 ms.

``python -m benchmarks.history [--database-url URL] [--count N] ...`` prints the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from benchmarks.harness import percentiles, print_json
from service.db import InspectionFilter, list_inspections, make_engine, make_session_factory
from service.db.migrate import upgrade
from service.db.rollup import rebuild_rollup
from service.db.summary import defect_summary
from service.host import host_description

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GOAL_PAGE_P95_MS = 50.0
GOAL_SUMMARY_P95_MS = 500.0
CHUNK = 50_000
DAYS = 60
LINES = ("L1", "L2")
CAMERAS_PER_LINE = 4
STRIPS_PER_COIL = 400
CLASSES = {1: "pits", 2: "crack", 3: "scratch", 4: "scale"}
CLASS_WEIGHTS = (0.35, 0.1, 0.35, 0.2)
"""How often each class is among a defective strip's defects (crack is the rare one)."""
DEFECT_COUNT_WEIGHTS = (0.6, 0.3, 0.1)
"""1, 2 or 3 defect classes on a strip that has any."""
TIMINGS = '{"decode_ms": 1.2, "infer_ms": 14.8, "total_ms": 17.1}'
_INSPECTION_COLUMNS = (
    "id, camera_id, frame_id, line_id, coil_id, captured_at, received_at, model_name, "
    "model_version, has_defect, timings, image_height, image_width"
)
_DEFECT_COLUMNS = (
    "inspection_id, class_id, class_name, encoded_pixels, area_px, score, "
    "bbox_x_min, bbox_y_min, bbox_x_max, bbox_y_max"
)
_SCAN = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)"
    r"|(?:Parallel )?Seq Scan on (\S+)"
)


def bench_history(
    database_url: str = DEFAULT_URL,
    *,
    count: int = 1_000_000,
    repeats: int = 30,
    deep: int = 200,
    schema: str = "bench_history",
    out: Path = Path("var/bench-history"),
    keep: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = lambda _line: None,
) -> dict[str, object]:
    """Seed ``count`` inspections into a fresh ``schema``, time the history queries, return
    the summary (also written to ``<out>/summary.json``, the plans to ``<out>/explain.txt``)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"schema must be a plain lower-case identifier, got {schema!r}")
    admin = create_engine(make_url(database_url), isolation_level="AUTOCOMMIT")
    url = (
        make_url(database_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    _run(admin, f"DROP SCHEMA IF EXISTS {schema} CASCADE", f"CREATE SCHEMA {schema}")
    engine = make_engine(url)
    try:
        upgrade(url)
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        seeded = _seed(engine, count=count, now=now, seed=seed, log=log)
        seeding_s = time.perf_counter() - started
        log(f"seeded {seeded['inspections']} inspections in {seeding_s:.1f} s")
        rollup_s = _fill_rollup(engine)
        log(f"hourly rollup recounted in {rollup_s:.1f} s")
        queries = _measure(engine, now=now, repeats=repeats, deep=deep, log=log)
    finally:
        engine.dispose()
        if not keep:
            _run(admin, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
    goals = {
        name: {
            "p95_ms": query["p95_ms"],
            "goal_ms": query["goal_ms"],
            "met": query["p95_ms"] < query["goal_ms"],
        }
        for name, query in queries.items()
    }
    summary: dict[str, object] = {
        "database": {
            "url": make_url(database_url).render_as_string(),
            "schema": schema,
            "kept": keep,
            "server": seeded["server"],
        },
        "seeded": {
            "inspections": seeded["inspections"],
            "defects": seeded["defects"],
            "with_defect": seeded["with_defect"],
            "days": DAYS,
            "seconds": round(seeding_s, 1),
            "copy_seconds": seeded["copy_seconds"],
            "index_seconds": seeded["index_seconds"],
            "rollup_seconds": round(rollup_s, 1),
        },
        "repeats": repeats,
        "queries": queries,
        "goals": goals,
        "all_goals_met": all(goal["met"] for goal in goals.values()),
        "machine": {
            **host_description(),
            "python": platform.python_version(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "explain.txt").write_text(_explain_text(queries))
    return summary


def _run(engine: Engine, *statements: str) -> None:
    with engine.connect() as connection:
        for statement in statements:
            connection.execute(text(statement))


# --- seeding ------------------------------------------------------------------------------


def _seed(
    engine: Engine, *, count: int, now: datetime, seed: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """COPY ``count`` inspections and their defects; indexes rebuilt after, tables analysed."""
    rng = random.Random(seed)
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / max(count, 1)
    cameras = [(line, f"{line}-C{k}") for line in LINES for k in range(1, CAMERAS_PER_LINE + 1)]
    frames = dict.fromkeys((camera for _line, camera in cameras), 0)
    totals = {"inspections": 0, "defects": 0, "with_defect": 0}
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection is not None
        with connection.cursor() as cursor:
            server = cursor.execute("SHOW server_version").fetchone()
            cursor.execute("SET maintenance_work_mem = '256MB'")
            indexes = cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                "JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_index x ON x.indexrelid = c.oid "
                "WHERE i.schemaname = current_schema() "
                "AND i.tablename IN ('inspections', 'defects') "
                "AND NOT x.indisprimary AND NOT x.indisunique "
                "AND c.relnamespace = current_schema()::regnamespace"
            ).fetchall()
            for name, _definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            copy_started = time.perf_counter()
            for first in range(0, count, CHUNK):
                inspections, defects = io.StringIO(), io.StringIO()
                for i in range(first, min(first + CHUNK, count)):
                    line, camera = cameras[rng.randrange(len(cameras))]
                    frames[camera] += 1
                    received = start + step * i + timedelta(milliseconds=rng.randrange(1000))
                    inspection_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                    picked = _defects(rng)
                    coil = f"{line}-K{i // (STRIPS_PER_COIL * len(LINES)):05d}"
                    captured = received - timedelta(milliseconds=150)
                    inspections.write(
                        f"{inspection_id}\t{camera}\t{frames[camera]}\t{line}\t{coil}\t"
                        f"{captured.isoformat()}\t{received.isoformat()}\tstrip-defects\t1\t"
                        f"{'t' if picked else 'f'}\t{TIMINGS}\t256\t1600\n"
                    )
                    for class_id, area in picked:
                        x = rng.randrange(1600 - 64)
                        y = rng.randrange(256 - 16)
                        defects.write(
                            f"{inspection_id}\t{class_id}\t{CLASSES[class_id]}\t"
                            f"{x * 256 + y + 1} {min(area, 256 - y)} {x * 256 + 257 + y} 8\t"
                            f"{area}\t{0.5 + rng.random() / 2:.3f}\t{x}\t{y}\t{x + 63}\t{y + 15}\n"
                        )
                        totals["defects"] += 1
                    totals["with_defect"] += bool(picked)
                    totals["inspections"] += 1
                with cursor.copy(f"COPY inspections ({_INSPECTION_COLUMNS}) FROM STDIN") as copy:
                    copy.write(inspections.getvalue())
                with cursor.copy(f"COPY defects ({_DEFECT_COLUMNS}) FROM STDIN") as copy:
                    copy.write(defects.getvalue())
                log(f"copied {totals['inspections']}/{count}")
            copy_seconds = time.perf_counter() - copy_started
            index_started = time.perf_counter()
            for name, definition in indexes:
                cursor.execute(definition)
                log(f"rebuilt {name}")
            cursor.execute("ANALYZE inspections")
            cursor.execute("ANALYZE defects")
            index_seconds = time.perf_counter() - index_started
        connection.commit()
    finally:
        raw.close()
    # A fresh table has no visibility map yet; VACUUM sets it so index-only scans can be used
    # as they would be on a long-lived table (autovacuum's job in production).
    vacuum = engine.execution_options(isolation_level="AUTOCOMMIT")
    with vacuum.connect() as connection:
        connection.execute(text("VACUUM inspections"))
        connection.execute(text("VACUUM defects"))
    return {
        **totals,
        "server": server[0] if server else None,
        "copy_seconds": round(copy_seconds, 1),
        "index_seconds": round(index_seconds, 1),
    }


def _fill_rollup(engine: Engine) -> float:
    """Recount the hourly rollup as migration 0004 does (COPY bypassed the write path that
    keeps it); returns the seconds the recount took, vacuuming and analysing excluded."""
    started = time.perf_counter()
    with engine.begin() as connection:
        rebuild_rollup(connection)
    seconds = time.perf_counter() - started
    vacuum = engine.execution_options(isolation_level="AUTOCOMMIT")
    with vacuum.connect() as connection:
        connection.execute(text("VACUUM ANALYZE inspection_hours"))
        connection.execute(text("VACUUM ANALYZE defect_hours"))
    return seconds


def _defects(rng: random.Random) -> list[tuple[int, int]]:
    """About half the strips are clean; the rest carry 1-3 distinct classes with areas."""
    if rng.random() < 0.5:
        return []
    how_many = rng.choices((1, 2, 3), DEFECT_COUNT_WEIGHTS)[0]
    picked: set[int] = set()
    while len(picked) < how_many:
        picked.add(rng.choices(tuple(CLASSES), CLASS_WEIGHTS)[0])
    return [(class_id, int(rng.lognormvariate(6.0, 1.0)) + 1) for class_id in sorted(picked)]


# --- measuring ----------------------------------------------------------------------------


def _measure(
    engine: Engine, *, now: datetime, repeats: int, deep: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    sessions = make_session_factory(engine)
    page_filter = InspectionFilter(camera_id="L1-C2", class_id=2, has_defect=True)
    with sessions() as session:  # follow the cursor down to the deep page
        cursor: str | None = None
        depth = 0
        while depth < deep:
            page = list_inspections(session, limit=50, cursor=cursor, where=page_filter)
            if page.next_cursor is None:
                break
            cursor, depth = page.next_cursor, depth + 1
    window = InspectionFilter(since=now - timedelta(days=30), until=now)
    cases: dict[str, tuple[str, float, Callable[[Any], object]]] = {
        "first_page": (
            "list_inspections(limit=50, camera_id=L1-C2, class_id=2, has_defect=true)",
            GOAL_PAGE_P95_MS,
            lambda s: list_inspections(s, limit=50, where=page_filter),
        ),
        "deep_page": (
            f"the same filter, page {depth + 1} (next_cursor followed {depth} times)",
            GOAL_PAGE_P95_MS,
            lambda s: list_inspections(s, limit=50, cursor=cursor, where=page_filter),
        ),
        "summary_hour_by_class": (
            "defect_summary(bucket=hour, last 30 days)",
            GOAL_SUMMARY_P95_MS,
            lambda s: defect_summary(s, bucket="hour", where=window),
        ),
        "summary_hour_by_class_and_line": (
            "defect_summary(bucket=hour, group_by=line, last 30 days)",
            GOAL_SUMMARY_P95_MS,
            lambda s: defect_summary(s, bucket="hour", where=window, group_by="line"),
        ),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, (what, goal_ms, call) in cases.items():
        with sessions() as session:
            call(session)  # warm: plans cached, pages in the buffer cache
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            with sessions() as session:
                result = call(session)
            seconds.append(time.perf_counter() - started)
        with _captured(engine) as statements, sessions() as session:
            call(session)
        settings = [statement for statement, _ in statements if _is_setting(statement)]
        plans = [
            _explain(engine, statement, parameters, settings)
            for statement, parameters in statements
            if not _is_setting(statement)
        ]
        results[name] = {
            "what": what,
            "goal_ms": goal_ms,
            **percentiles(seconds),
            "rows": _rows(result),
            "plans": plans,
            "uses_index": all(plan["uses_index"] for plan in plans),
        }
        log(f"{name}: p50 {results[name]['p50_ms']} ms, p95 {results[name]['p95_ms']} ms")
    results["deep_page"]["depth"] = depth
    return results


def _rows(result: object) -> int:
    items = getattr(result, "items", None)
    if items is not None:
        return len(items)
    return len(result.classes) + len(result.inspections)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The queries and settings (with their parameters) sent while the block runs."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") or _is_setting(statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _is_setting(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SET ")


def _explain(
    engine: Engine, statement: str, parameters: Any, settings: list[str]
) -> dict[str, Any]:
    """The plan of ``statement`` under the settings its transaction made (``SET LOCAL``)."""
    with engine.connect() as connection:
        for setting in settings:
            connection.exec_driver_sql(setting)
        rows = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
        ).all()
    plan = "\n".join(row[0] for row in rows)
    scans = [
        {"node": match[0] or "Seq Scan", "on": match[1] or match[2]}
        for match in _SCAN.findall(plan)
    ]
    return {
        "sql": statement,
        "parameters": {key: str(value) for key, value in dict(parameters or {}).items()},
        "plan": plan,
        "scans": scans,
        "uses_index": any(scan["node"] != "Seq Scan" for scan in scans),
        "seq_scans": sorted({scan["on"] for scan in scans if scan["node"] == "Seq Scan"}),
    }


def _explain_text(queries: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name, query in queries.items():
        parts.append(f"=== {name}: {query['what']}\n")
        parts.append(
            f"p50 {query['p50_ms']} ms, p95 {query['p95_ms']} ms (goal {query['goal_ms']})\n"
        )
        for plan in query["plans"]:
            parts.append(f"\n-- {plan['sql']}\n-- parameters: {plan['parameters']}\n")
            parts.append(plan["plan"] + "\n")
        parts.append("\n")
    return "".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history",
        description="seed Postgres, time history pages and summaries",
    )
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help="Postgres to seed (in its own schema)"
    )
    parser.add_argument("--count", type=int, default=1_000_000, help="inspections to seed")
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions per query")
    parser.add_argument("--deep", type=int, default=200, help="pages to follow for the deep page")
    parser.add_argument("--schema", default="bench_history", help="schema, created fresh")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--out", type=Path, default=Path("var/bench-history"), help="results folder"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print_json(
        bench_history(
            args.database_url,
            count=args.count,
            repeats=args.repeats,
            deep=args.deep,
            schema=args.schema,
            out=args.out,
            keep=args.keep,
            log=(lambda _line: None) if args.quiet else _log_to_stderr,
        )
    )
    return 0


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
