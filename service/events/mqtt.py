"""Line events over MQTT, never on an answer's path.

``MqttPublisher.offer`` only appends to a bounded outbox and returns. paho's network thread
connects and reconnects with back-off; one sender thread moves the outbox into paho while
connected.
A broker that is down or slow never delays or fails an inspection: the outbox fills, its
oldest messages go first (counted), and what the broker acknowledged, refused or what was
dropped is counted by outcome.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from service.metrics import MQTT_CONNECTED, MQTT_MESSAGES, MQTT_OUTBOX

logger = logging.getLogger(__name__)

SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
MIN_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
KEEPALIVE_S = 30
MAX_IN_FLIGHT = 100
"""Messages handed to paho and not yet acknowledged: paho keeps (and after a reconnect resends)
these itself, so the outbox stays the one bounded queue."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(
                f"MQTT_URL must be mqtt://host[:port] or mqtts://host[:port], got {url!r}"
            )
        default_port, tls = SCHEMES[parts.scheme]
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


class MqttPublisher:
    """A bounded outbox drained by one thread into a paho client (QoS 0, 1 or 2)."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        qos: int = 1,
        outbox_size: int = 10_000,
    ) -> None:
        self.address = address
        self.qos = qos
        self._outbox: collections.deque[Message] = collections.deque()
        self._outbox_size = outbox_size
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._in_flight: set[int] = set()
        self._acked_early: set[int] = set()
        self._client = self._make_client(client_id)
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self.last_error: str | None = None

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.max_inflight_messages_set(MAX_IN_FLIGHT)
        client.reconnect_delay_set(min_delay=MIN_BACKOFF_S, max_delay=MAX_BACKOFF_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried, never waited for)."""
        self._client.connect_async(self.address.host, self.address.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._thread.start()

    def offer(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue one JSON message; never blocks on the broker. A full outbox drops its oldest."""
        message = Message(topic, json.dumps(payload, separators=(",", ":")).encode())
        with self._lock:
            if len(self._outbox) >= self._outbox_size:
                self._outbox.popleft()
                MQTT_MESSAGES.labels(outcome="dropped").inc()
            self._outbox.append(message)
            MQTT_OUTBOX.set(len(self._outbox))
            self._lock.notify()

    def status(self) -> dict[str, Any]:
        """For /readyz: connected or not, what waits, and the last connection error."""
        with self._lock:
            waiting = len(self._outbox)
        return {
            "connected": self._connected.is_set(),
            "broker": f"{self.address.host}:{self.address.port}",
            "outbox": waiting,
            "last_error": self.last_error,
        }

    def wait_until_drained(self, timeout: float) -> bool:
        """True once the outbox is empty and the broker acknowledged every message sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._outbox or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def close(self, drain_s: float = 2.0) -> None:
        """Send what can go within ``drain_s``, then disconnect; what is left is counted lost."""
        if self._thread.is_alive():
            self.wait_until_drained(drain_s if self._connected.is_set() else 0.0)
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            lost = len(self._outbox) + len(self._in_flight)
            self._outbox.clear()
            self._in_flight.clear()
            MQTT_OUTBOX.set(0)
        if lost:
            MQTT_MESSAGES.labels(outcome="lost").inc(lost)
        self._client.disconnect()
        self._client.loop_stop()
        MQTT_CONNECTED.set(0)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._connected.wait(timeout=1.0):
                continue
            message = self._next_message()
            if message is not None:
                self._send(message)

    def _next_message(self) -> Message | None:
        with self._lock:
            while not self._ready_to_send() and not self._stopping.is_set():
                if not self._connected.is_set():
                    return None
                self._lock.wait(timeout=1.0)
            if not self._ready_to_send():
                return None
            message = self._outbox.popleft()
            MQTT_OUTBOX.set(len(self._outbox))
            return message

    def _ready_to_send(self) -> bool:
        return bool(self._outbox) and len(self._in_flight) < MAX_IN_FLIGHT

    def _send(self, message: Message) -> None:
        """Hand one message to paho. paho's lock is never taken under ours (its thread calls
        back under its own), so its acknowledgement may arrive before we record the id. A
        connection lost meanwhile (``MQTT_ERR_NO_CONN``) still leaves the message with paho,
        which sends it after reconnecting."""
        info = self._client.publish(message.topic, message.payload, qos=self.qos)
        with self._lock:
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._outbox.appendleft(message)  # not taken: it goes first next time
                MQTT_OUTBOX.set(len(self._outbox))
                self._lock.wait(timeout=0.1)
            elif info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                MQTT_MESSAGES.labels(outcome="sent").inc()
            else:
                self._in_flight.add(info.mid)

    def _note_error(self, error: str) -> None:
        if error != self.last_error:
            logger.warning("MQTT %s:%d: %s", self.address.host, self.address.port, error)
        self.last_error = error

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._note_error(f"connection refused: {reason_code}")
            return
        self.last_error = None
        MQTT_CONNECTED.set(1)
        self._connected.set()
        with self._lock:
            self._lock.notify_all()

    def _on_connect_fail(self, client, userdata) -> None:
        self._note_error("cannot reach the broker")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        MQTT_CONNECTED.set(0)
        self._connected.clear()
        with self._lock:
            self._lock.notify_all()
        if not self._stopping.is_set():
            self._note_error(f"disconnected: {reason_code}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid not in self._in_flight:
                self._acked_early.add(mid)
                return
            self._in_flight.discard(mid)
            outcome = "refused" if reason_code.is_failure else "sent"
            MQTT_MESSAGES.labels(outcome=outcome).inc()
            self._lock.notify_all()
