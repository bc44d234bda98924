"""Line events on a real database and the real broker: recorded inspections published with
their fields, alarm rules firing and clearing, alarms stored and paged, coils read back along
their length."""

from __future__ import annotations

import io
import json
import queue
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from PIL import Image

from service.db import make_engine, make_session_factory, new_inspection
from service.db.alarms import list_alarms
from service.db.coils import coil_strips, list_coils
from service.db.inspections import insert_inspection
from service.db.migrate import upgrade
from service.defects import DefectValues
from service.events.alarms import AlarmRule
from service.events.line import LineEvents
from service.events.mqtt import BrokerAddress, MqttPublisher
from service.images.overlay import class_colour
from service.metrics import ALARMS, MQTT_MESSAGES

from .strips import BLOCK_BBOX, RAW, plain_strip, post_strip, strip_with_block

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def row(index: int, *classes: int, coil: str = "C1", position: float | None = None):
    defects = [
        DefectValues(c, f"class-{c}", "1 4", 4, 0.9, (10 * c, 5, 10 * c + 20, 40)) for c in classes
    ]
    return new_inspection(
        camera_id="cam-1",
        frame_id=f"f{index}",
        line_id="L1",
        coil_id=coil,
        captured_at=T0 + timedelta(seconds=index),
        received_at=T0 + timedelta(seconds=index, milliseconds=5),
        position_m=position,
        model_name="tiny",
        model_version=1,
        image_height=256,
        image_width=1600,
        timings={},
        defects=defects,
    )


@pytest.fixture
def engine(fresh_database_url: str):
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


def subscribe(topic: str) -> tuple[mqtt.Client, queue.Queue]:
    received: queue.Queue = queue.Queue()
    ready = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: received.put((m.topic, json.loads(m.payload), m.qos))
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *args: ready.put(True)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    ready.get(timeout=5)
    return client, received


def test_inspections_and_alarms_reach_the_broker_and_the_database(engine) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    client, received = subscribe(f"{prefix}/#")
    rule = AlarmRule(name="scale-burst", class_id=3, count=2, window_strips=3)
    fired_before = ALARMS.labels(rule="scale-burst")._value.get()
    publisher = MqttPublisher(BrokerAddress.parse("mqtt://127.0.0.1:1883"), client_id=prefix)
    events = LineEvents(engine=engine, rules=[rule], publisher=publisher, topic_prefix=prefix)
    events.start()
    rows = [row(0, 3), row(1), row(2, 3), row(3, 3), row(4), row(5), row(6), row(7, 3), row(8, 3)]
    try:
        for inspection in rows:
            with engine.connect() as connection:
                insert_inspection(connection, inspection)
            events.inspected(inspection)
        assert events.wait_idle(10)
        assert publisher.wait_until_drained(10)
        messages = [received.get(timeout=10) for _ in range(len(rows) + 2)]
    finally:
        events.stop()
        client.disconnect()
        client.loop_stop()
    inspections = [m for m in messages if m[0].endswith("/inspection")]
    alarms = [m for m in messages if m[0].endswith("/alarm")]
    assert [m[1]["frame_id"] for m in inspections] == [f"f{i}" for i in range(9)]
    topic, first, qos = inspections[0]
    assert topic == f"{prefix}/L1/cam-1/inspection" and qos == 1
    assert set(first) == {
        "inspection_id", "frame_id", "camera_id", "line_id", "coil_id", "position_m",
        "captured_at", "received_at", "model", "has_defect", "defects",
    }  # fmt: skip
    assert first["model"] == {"name": "tiny", "version": 1}
    assert first["defects"] == [
        {"class_id": 3, "class_name": "class-3", "area_px": 4, "score": 0.9,
         "bbox": [30, 5, 50, 40]}
    ]  # fmt: skip
    assert "encoded_pixels" not in json.dumps(first)
    # Fires at strip 2 (strips 0 and 2 in the last three), clears at 5, fires again at 8.
    assert [(a[0], a[1]["first_inspection_id"], a[1]["last_inspection_id"]) for a in alarms] == [
        (f"{prefix}/L1/alarm", str(rows[0].id), str(rows[2].id)),
        (f"{prefix}/L1/alarm", str(rows[7].id), str(rows[8].id)),
    ]
    assert ALARMS.labels(rule="scale-burst")._value.get() - fired_before == 2
    with make_session_factory(engine)() as session:
        page = list_alarms(session, limit=1)
        assert [a.last_inspection_id for a in page.items] == [rows[8].id]
        rest = list_alarms(session, limit=5, cursor=page.next_cursor)
        assert [a.last_inspection_id for a in rest.items] == [rows[2].id]
        assert rest.next_cursor is None
        assert list_alarms(session, limit=5, rule="other").items == []
        assert (
            len(list_alarms(session, limit=5, line_id="L1", since=T0 + timedelta(seconds=5)).items)
            == 1
        )


def test_a_coils_strips_come_in_order_of_position_then_of_capture(engine) -> None:
    rows = [
        row(0, 1, position=12.0),
        row(1, position=3.5),
        row(2, 1, 2),  # no position: after the positioned strips, by capture time
        row(3, position=7.25),
        row(4, 2, coil="C2"),
    ]
    with engine.connect() as connection:
        for inspection in reversed(rows):
            insert_inspection(connection, inspection)
    with make_session_factory(engine)() as session:
        strips = coil_strips(session, coil_id="C1")
        assert [s.frame_id for s in strips] == ["f1", "f3", "f0", "f2"]
        coils = {c.coil_id: c for c in list_coils(session, limit=10)}
    assert set(coils) == {"C1", "C2"}
    assert (coils["C1"].strips, coils["C1"].defects) == (4, {"class-1": 2, "class-2": 1})
    assert coils["C2"].last_received_at == rows[4].received_at
    assert coils["C1"].first_received_at == rows[0].received_at


def test_through_the_app_strips_reach_the_broker_the_alarms_and_the_coil_map(
    running_app, fresh_database_url: str
) -> None:
    prefix = f"app-{uuid.uuid4().hex[:8]}"
    subscriber, received = subscribe(f"{prefix}/#")
    rules = [{"name": "blocks", "class_id": 1, "count": 2, "window_strips": 3}]
    settings = {"mqtt_url": "mqtt://127.0.0.1:1883", "mqtt_topic_prefix": prefix}
    try:
        with running_app(fresh_database_url, alarm_rules=rules, **settings) as client:
            for index in range(4):
                body = (strip_with_block() if index in (0, 2, 3) else plain_strip()).tobytes()
                response = post_strip(
                    client, body, RAW, frame_id=f"f{index}", line_id="L1", coil_id="C9",
                    position_m=str(2.5 * index),
                )  # fmt: skip
                assert response.status_code == 200, response.text
                assert response.json()["position_m"] == 2.5 * index
            replay = post_strip(
                client, plain_strip().tobytes(), RAW, frame_id="f0", line_id="L1", coil_id="C9"
            )
            assert replay.status_code == 200 and replay.headers.get("idempotent-replay") == "true"
            services = client.app.state.services  # type: ignore[attr-defined]
            assert services.events.wait_idle(10)
            assert services.events.publisher.wait_until_drained(10)
            ready = client.get("/readyz").json()["line_events"]
            alarms = client.get("/v1/alarms", params={"line_id": "L1"}).json()
            coil = client.get("/v1/coils/C9").json()
            listing = client.get("/v1/coils", params={"line_id": "L1"}).json()
            picture = client.get("/v1/coils/C9/map.png")
            missing = client.get("/v1/coils/nowhere")
            bad = client.get("/v1/alarms", params={"colour": "red"})
        messages = [received.get(timeout=10) for _ in range(5)]
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert received.empty()  # the replay was not published again
    frames = [m[1]["frame_id"] for m in messages if m[0] == f"{prefix}/L1/cam-1/inspection"]
    assert frames == ["f0", "f1", "f2", "f3"]
    assert [m[1]["rule"] for m in messages if m[0] == f"{prefix}/L1/alarm"] == ["blocks"]
    assert ready["mqtt"]["connected"] is True and ready["alarm_rules"] == 1
    assert [(a["rule"], a["count"]) for a in alarms["items"]] == [("blocks", 2)]
    assert [s["frame_id"] for s in coil["strips"]] == ["f0", "f1", "f2", "f3"]
    assert [s["position_m"] for s in coil["strips"]] == [0.0, 2.5, 5.0, 7.5]
    assert coil["strips"][0]["defects"][0]["bbox"] == BLOCK_BBOX
    assert coil["counts"] == {coil["strips"][0]["defects"][0]["class_name"]: 3}
    assert listing["items"][0]["coil_id"] == "C9" and listing["items"][0]["strips"] == 4
    assert picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == np.array(class_colour(1))).all(axis=2).sum() > 20
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "coil_not_found"
    assert bad.status_code == 422


def test_a_broker_that_is_down_never_fails_an_inspection(
    running_app, fresh_database_url: str
) -> None:
    lost_before = MQTT_MESSAGES.labels("lost")._value.get()
    closed = "mqtt://127.0.0.1:9"  # discard port: nothing listens
    with running_app(fresh_database_url, mqtt_url=closed, mqtt_outbox_size=2) as client:
        answers = [
            post_strip(client, plain_strip().tobytes(), RAW, frame_id=f"d{i}").status_code
            for i in range(5)
        ]
        ready = client.get("/readyz")
    assert answers == [200] * 5
    assert ready.status_code == 200
    assert ready.json()["line_events"]["mqtt"]["connected"] is False
    assert MQTT_MESSAGES.labels("lost")._value.get() - lost_before == 2  # the outbox at shutdown
