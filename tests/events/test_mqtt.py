"""The MQTT publisher against a real Mosquitto: QoS 1 delivery, a closed port never blocks the
caller, a full outbox drops its oldest (counted), and a broker that comes back gets the rest."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from service.events.mqtt import BrokerAddress, MqttPublisher
from service.metrics import MQTT_MESSAGES

BROKER = "mqtt://127.0.0.1:1883"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def counted(outcome: str) -> float:
    return MQTT_MESSAGES.labels(outcome)._value.get()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Subscriber:
    """A plain paho subscriber collecting (topic, payload, qos) in a queue."""

    def __init__(self, port: int, topic: str) -> None:
        self.received: queue.Queue[tuple[str, dict, int]] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.received.put(
            (m.topic, json.loads(m.payload), m.qos)
        )
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "the subscriber could not subscribe"

    def take(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict, int]]:
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[int, callable]]:
    """A Mosquitto of our own on a free port, and a function that stops or starts it."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    state: dict[str, subprocess.Popen | None] = {"process": None}

    def running(on: bool) -> None:
        if on and state["process"] is None:
            state["process"] = subprocess.Popen([MOSQUITTO, "-c", str(config)])
            for _ in range(100):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        return
                time.sleep(0.05)
            raise RuntimeError("mosquitto did not start")
        if not on and state["process"] is not None:
            state["process"].terminate()
            state["process"].wait(timeout=5)
            state["process"] = None

    running(True)
    yield port, running
    running(False)


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_the_address_comes_from_the_url() -> None:
    assert BrokerAddress.parse("mqtt://broker:1884") == BrokerAddress("broker", 1884, False)
    assert BrokerAddress.parse("mqtts://u%40x:p%3Aw@broker") == BrokerAddress(
        "broker", 8883, True, "u@x", "p:w"
    )
    with pytest.raises(ValueError, match="mqtt://host"):
        BrokerAddress.parse("http://broker")


def test_messages_arrive_with_qos_1_and_are_counted_sent() -> None:
    topic = f"test-{time.monotonic_ns()}/line/cam/inspection"
    subscriber = Subscriber(1883, topic)
    publisher = MqttPublisher(BrokerAddress.parse(BROKER), client_id="test-pub", qos=1)
    before = counted("sent")
    publisher.start()
    try:
        for index in range(20):
            publisher.offer(topic, {"index": index})
        assert publisher.wait_until_drained(10)
        received = subscriber.take(20)
    finally:
        publisher.close()
        subscriber.close()
    assert [payload["index"] for _, payload, _ in received] == list(range(20))
    assert {qos for _, _, qos in received} == {1}
    assert counted("sent") - before == 20


def test_a_closed_port_never_blocks_and_a_full_outbox_drops_its_oldest() -> None:
    address = BrokerAddress("127.0.0.1", free_port(), False)
    publisher = MqttPublisher(address, client_id="test-closed", qos=1, outbox_size=5)
    dropped, lost = counted("dropped"), counted("lost")
    publisher.start()
    started = time.perf_counter()
    for index in range(12):
        publisher.offer("nowhere/inspection", {"index": index})
    offered_in = time.perf_counter() - started
    status = publisher.status()
    publisher.close(drain_s=0)
    assert offered_in < 0.5  # twelve offers against a closed port: no connect on this path
    assert status["connected"] is False and status["outbox"] == 5
    assert counted("dropped") - dropped == 7
    assert counted("lost") - lost == 5  # left in the outbox at shutdown


@pytest.mark.subprocess
def test_a_broker_that_comes_back_gets_what_waited(private_broker) -> None:
    port, running = private_broker
    topic = "restart/line/cam/inspection"
    publisher = MqttPublisher(BrokerAddress("127.0.0.1", port, False), client_id="test-restart")
    publisher.start()
    try:
        subscriber = Subscriber(port, topic)
        publisher.offer(topic, {"index": 0})
        assert subscriber.take(1)[0][1] == {"index": 0}
        subscriber.close()
        running(False)
        wait_until(lambda: not publisher.status()["connected"], "the publisher to see it gone")
        for index in range(1, 4):  # the broker is down: these wait in the outbox
            publisher.offer(topic, {"index": index})
        running(True)
        subscriber = Subscriber(port, topic)
        assert publisher.wait_until_drained(30)
        indices = sorted(payload["index"] for _, payload, _ in subscriber.take(3, timeout=30))
        subscriber.close()
    finally:
        publisher.close()
    assert indices == [1, 2, 3]
