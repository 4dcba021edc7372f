"""Helpers for the MQTT integration tests (01 connect, 02 subscribe, 03 publish, 04 retain, 08 auth).

- A tiny raw MQTT 3.1.1 / 5.0 packet builder and parser (variable byte integers, strings, properties) and
  `RawClient`, a blocking socket client for the tests that must see or send exact bytes.
- `Paho`, a thin wrapper around a paho-mqtt 2.x client (no automatic reconnect, every wait bounded).
- `mosquitto_pub` / `MosquittoSub` around the mosquitto command line clients.
- `MQTTBroker`: the broker under test, either Gatehouse (`harness.Broker`, one worker) or, with
  `GATEHOUSE_TEST_AGAINST_MOSQUITTO=1`, a Mosquitto 2 started with an equivalent config. The latter exists to
  check the tests' own expectations against a broker known to follow the specs; tests of behaviour where Gatehouse
  intentionally differs are marked `gatehouse_only`.

Every wait is bounded (`WAIT`, 3 s by default) so that, against a broker that does not answer, each test fails
after a few seconds instead of hanging.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

import harness

# How long any single wait for a packet, a message or a connection state may take.
WAIT = 3.0
# How long to wait to be reasonably sure that something does NOT arrive.
QUIET = 0.4

AGAINST_MOSQUITTO = os.environ.get("GATEHOUSE_TEST_AGAINST_MOSQUITTO", "") not in ("", "0")
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN", shutil.which("mosquitto") or "/usr/sbin/mosquitto")

gatehouse_only = pytest.mark.skipif(
    AGAINST_MOSQUITTO, reason="tests behaviour specific to Gatehouse (see the test's docstring)"
)


def mosquitto_deviates(why: str):
    """Skip against Mosquitto: the test follows the spec where Mosquitto 2.0.11 does not (`why` says how)."""
    return pytest.mark.skipif(AGAINST_MOSQUITTO, reason=f"Mosquitto 2.0.11 deviates from the spec: {why}")

# --------------------------------------------------------------------------------------------------------------
# Packet types, reason codes

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15
PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 15: "AUTH",
}

RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_NOT_AUTHORIZED = 0x87
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_RETAIN_NOT_SUPPORTED = 0x9A

# --------------------------------------------------------------------------------------------------------------
# Encoding


def varint(n: int) -> bytes:
    """MQTT Variable Byte Integer."""
    assert 0 <= n <= 268_435_455, n
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def binary(b: bytes) -> bytes:
    """Two-byte length, then the bytes (Binary Data, and UTF-8 strings given as bytes)."""
    return u16(len(b)) + b


def string(s: str | bytes) -> bytes:
    return binary(s.encode() if isinstance(s, str) else s)


# Property identifier -> (name, type). Types: byte, u16, u32, varint, str, bin, pair.
PROPERTIES: dict[int, tuple[str, str]] = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROPERTY_IDS = {name: pid for pid, (name, _) in PROPERTIES.items()}
# Properties that may appear more than once; decoded as lists.
REPEATABLE = {"UserProperty", "SubscriptionIdentifier"}


def properties(props: dict[str, Any] | Iterable[tuple[str, Any]] | None = None) -> bytes:
    """Encode a property list (with its length prefix). `props` maps names to values; `UserProperty` takes a list
    of (key, value) pairs and `SubscriptionIdentifier` a list of ints or an int. A list of (name, value) pairs
    keeps the order given."""
    items: list[tuple[str, Any]] = []
    if props is None:
        pass
    elif isinstance(props, dict):
        for name, value in props.items():
            if name in REPEATABLE and isinstance(value, list):
                items += [(name, v) for v in value]
            else:
                items.append((name, value))
    else:
        items = list(props)
    body = bytearray()
    for name, value in items:
        pid = PROPERTY_IDS[name]
        kind = PROPERTIES[pid][1]
        body += varint(pid)
        if kind == "byte":
            body.append(value)
        elif kind == "u16":
            body += u16(value)
        elif kind == "u32":
            body += u32(value)
        elif kind == "varint":
            body += varint(value)
        elif kind == "str":
            body += string(value)
        elif kind == "bin":
            body += binary(value)
        elif kind == "pair":
            body += string(value[0]) + string(value[1])
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """A whole packet: fixed header (type, flags, remaining length) and the given variable header + payload."""
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect_packet(
    client_id: str | bytes = "",
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    username: str | bytes | None = None,
    password: bytes | str | None = None,
    will: dict | None = None,
    props: dict | None = None,
    protocol_name: bytes | None = None,
    level: int | None = None,
) -> bytes:
    """CONNECT. `version` 3 (MQIsdp), 4 (3.1.1) or 5. `will` = {topic, payload, qos, retain, props}."""
    if protocol_name is None:
        protocol_name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    vh = string(protocol_name) + bytes([level if level is not None else version, flags]) + u16(keepalive)
    if version == 5:
        vh += properties(props)
    pl = string(client_id)
    if will is not None:
        if version == 5:
            pl += properties(will.get("props"))
        pl += string(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        pl += string(username)
    if password is not None:
        pl += binary(password.encode() if isinstance(password, str) else password)
    return packet(CONNECT, 0, vh + pl)


def publish_packet(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    version: int = 4,
    props: dict | None = None,
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    vh = string(topic)
    if qos > 0:
        vh += u16(packet_id if packet_id is not None else 1)
    if version == 5:
        vh += properties(props)
    return packet(PUBLISH, flags, vh + payload)


def ack_packet(ptype: int, packet_id: int, version: int = 4, reason: int | None = None) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP (PUBREL gets its mandatory flags 0b0010)."""
    body = u16(packet_id)
    if version == 5 and reason is not None:
        body += bytes([reason])
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def subscribe_packet(
    packet_id: int, filters: Iterable[tuple[str | bytes, int]], version: int = 4, props: dict | None = None
) -> bytes:
    """SUBSCRIBE; each filter comes with its options byte (QoS, and for v5 No Local 0x04, Retain As Published
    0x08, Retain Handling << 4)."""
    body = u16(packet_id)
    if version == 5:
        body += properties(props)
    for topic, options in filters:
        body += string(topic) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def sub_options(qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


def unsubscribe_packet(packet_id: int, filters: Iterable[str], version: int = 4) -> bytes:
    body = u16(packet_id)
    if version == 5:
        body += properties(None)
    for topic in filters:
        body += string(topic)
    return packet(UNSUBSCRIBE, 0x02, body)


PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"


def disconnect_packet(version: int = 4, reason: int | None = None, props: dict | None = None) -> bytes:
    if version == 5 and (reason is not None or props):
        return packet(DISCONNECT, 0, bytes([reason or 0]) + properties(props))
    return packet(DISCONNECT, 0, b"")


# --------------------------------------------------------------------------------------------------------------
# Decoding


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        assert self.left() >= n, f"truncated packet: need {n} bytes at {self.pos}, have {self.left()}"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value, mult = 0, 1
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise AssertionError("malformed variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        return self.binary().decode("utf-8")

    def properties(self) -> dict[str, Any]:
        length = self.varint()
        end = self.pos + length
        out: dict[str, Any] = {}
        while self.pos < end:
            pid = self.varint()
            assert pid in PROPERTIES, f"unknown property id 0x{pid:02x}"
            name, kind = PROPERTIES[pid]
            if kind == "byte":
                v: Any = self.byte()
            elif kind == "u16":
                v = self.u16()
            elif kind == "u32":
                v = self.u32()
            elif kind == "varint":
                v = self.varint()
            elif kind == "str":
                v = self.string()
            elif kind == "bin":
                v = self.binary()
            else:
                v = (self.string(), self.string())
            if name in REPEATABLE:
                out.setdefault(name, []).append(v)
            else:
                assert name not in out, f"property {name} appears twice"
                out[name] = v
        assert self.pos == end, "property length mismatch"
        return out


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type{self.type}")

    @property
    def raw(self) -> bytes:
        return packet(self.type, self.flags, self.body)

    def __repr__(self) -> str:
        b = self.body if len(self.body) <= 64 else self.body[:64] + b"..."
        return f"<{self.name} flags=0x{self.flags:x} len={len(self.body)} {b.hex()}>"


@dataclass
class Connack:
    session_present: bool
    code: int
    props: dict[str, Any] = field(default_factory=dict)


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    props: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Publish({self.topic!r}, {_short(self.payload)}, qos={self.qos}, retain={self.retain}, "
                f"dup={self.dup}, id={self.packet_id}, {self.props})")


@dataclass
class Ack:
    """PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK/DISCONNECT contents."""

    packet_id: int | None
    reason: int = 0
    codes: list[int] = field(default_factory=list)  # SUBACK / UNSUBACK v5 payload
    props: dict[str, Any] = field(default_factory=dict)


def parse_connack(p: Packet, version: int) -> Connack:
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    assert p.flags == 0, f"CONNACK flags must be 0: {p!r}"
    r = Reader(p.body)
    ack_flags = r.byte()
    assert ack_flags & 0xFE == 0, f"reserved CONNACK acknowledge flags set: {p!r}"
    code = r.byte()
    props = r.properties() if version == 5 and r.left() else {}
    assert r.left() == 0, f"trailing bytes in CONNACK {p!r}"
    return Connack(bool(ack_flags & 1), code, props)


def parse_publish(p: Packet, version: int, aliases: dict[int, str] | None = None) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 3
    assert qos != 3, f"PUBLISH with QoS 3: {p!r}"
    r = Reader(p.body)
    topic = r.string()
    pid = r.u16() if qos else None
    props = r.properties() if version == 5 else {}
    if "TopicAlias" in props and aliases is not None:
        alias = props["TopicAlias"]
        if topic:
            aliases[alias] = topic
        else:
            assert alias in aliases, f"PUBLISH with unknown topic alias {alias}: {p!r}"
            topic = aliases[alias]
    return Publish(topic, r.take(r.left()), qos, bool(p.flags & 1), bool(p.flags & 8), pid, props)


def parse_ack(p: Packet, version: int) -> Ack:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (v5 reason code and properties are optional on the wire)."""
    assert p.type in (PUBACK, PUBREC, PUBREL, PUBCOMP), f"expected a publish ack, got {p!r}"
    want_flags = 0x02 if p.type == PUBREL else 0
    assert p.flags == want_flags, f"{p.name} flags 0x{p.flags:x}, expected 0x{want_flags:x}"
    r = Reader(p.body)
    pid = r.u16()
    reason, props = 0, {}
    if version == 5 and r.left():
        reason = r.byte()
        if r.left():
            props = r.properties()
    assert r.left() == 0, f"trailing bytes in {p!r}"
    return Ack(pid, reason, props=props)


def parse_suback(p: Packet, version: int) -> Ack:
    """SUBACK or UNSUBACK: packet id, reason codes (v5 and SUBACK only; an empty list for a 3.1.1 UNSUBACK)."""
    assert p.type in (SUBACK, UNSUBACK), f"expected SUBACK/UNSUBACK, got {p!r}"
    assert p.flags == 0, f"{p.name} flags must be 0: {p!r}"
    r = Reader(p.body)
    pid = r.u16()
    props = r.properties() if version == 5 else {}
    codes = list(r.take(r.left()))
    return Ack(pid, codes=codes, props=props)


def parse_disconnect(p: Packet) -> Ack:
    """A v5 DISCONNECT: reason code (0 if omitted) and properties."""
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    r = Reader(p.body)
    reason = r.byte() if r.left() else 0
    props = r.properties() if r.left() else {}
    return Ack(None, reason, props=props)


# --------------------------------------------------------------------------------------------------------------
# Raw socket client


class Closed(Exception):
    """The broker closed (or reset) the connection."""


class RawClient:
    """A blocking MQTT client speaking raw bytes. Every receive waits at most `WAIT` seconds by default."""

    def __init__(self, port: int, version: int = 4, host: str = "127.0.0.1") -> None:
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.aliases: dict[int, str] = {}

    # ----- sending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a connection the broker already closed; False if it was."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    # ----- receiving

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed = True
            raise Closed(str(e)) from None
        if not chunk:
            self.closed = True
            raise Closed("EOF")
        self.buf += chunk

    def _parse_one(self) -> Packet | None:
        if len(self.buf) < 2:
            return None
        value, mult, i = 0, 1, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            value += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            assert i <= 4, f"broker sent a malformed remaining length: {bytes(self.buf[:8]).hex()}"
        if len(self.buf) < i + value:
            return None
        p = Packet(self.buf[0] >> 4, self.buf[0] & 0x0F, bytes(self.buf[i : i + value]))
        del self.buf[: i + value]
        return p

    def recv(self, timeout: float = WAIT) -> Packet:
        """The next packet. Raises TimeoutError if none arrives in time, Closed if the connection closes."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._parse_one()
            if p is not None:
                return p
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = WAIT, what: str = "") -> Packet:
        """The next packet, which must be of type `ptype` (PINGRESPs in between are an error too)."""
        try:
            p = self.recv(timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {PACKET_NAMES[ptype]} within {timeout:.1f}s{' (' + what + ')' if what else ''}"
            ) from None
        except Closed as e:
            raise AssertionError(
                f"connection closed ({e}) while waiting for {PACKET_NAMES[ptype]}{' (' + what + ')' if what else ''}"
            ) from None
        assert p.type == ptype, f"expected {PACKET_NAMES[ptype]}{' (' + what + ')' if what else ''}, got {p!r}"
        return p

    def expect_publish(self, timeout: float = WAIT, what: str = "") -> Publish:
        return parse_publish(self.expect(PUBLISH, timeout, what), self.version, self.aliases)

    def expect_nothing(self, wait: float = QUIET) -> None:
        """Nothing arrives (and the connection stays open) for `wait` seconds."""
        try:
            p = self.recv(wait)
        except TimeoutError:
            return
        except Closed as e:
            raise AssertionError(f"connection closed unexpectedly ({e})") from None
        raise AssertionError(f"expected nothing, got {p!r}")

    def expect_closed(self, timeout: float = WAIT) -> list[Packet]:
        """Wait until the broker closes the connection; return the packets that arrived before that."""
        got: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(
                    f"connection still open {timeout:.1f}s later (received meanwhile: {got!r})"
                ) from None

    # ----- conversations

    def connect(self, client_id: str | bytes = "", expect_code: int | None = 0, **kwargs: Any) -> Connack:
        """Send CONNECT (see `connect_packet`), return the CONNACK; by default it must accept."""
        kwargs.setdefault("version", self.version)
        self.send(connect_packet(client_id, **kwargs))
        ack = parse_connack(self.expect(CONNACK, what=f"CONNECT of {client_id!r}"), self.version)
        if expect_code is not None:
            assert ack.code == expect_code, f"CONNACK code 0x{ack.code:02x}, expected 0x{expect_code:02x}: {ack}"
        return ack

    def subscribe(
        self, filters: list[tuple[str, int]] | str, qos: int = 0, packet_id: int = 1, props: dict | None = None
    ) -> list[int]:
        """SUBSCRIBE and return the SUBACK codes (which must be for this packet id)."""
        if isinstance(filters, str):
            filters = [(filters, qos)]
        self.send(subscribe_packet(packet_id, filters, self.version, props))
        ack = parse_suback(self.expect(SUBACK, what=f"SUBSCRIBE {filters}"), self.version)
        assert ack.packet_id == packet_id, f"SUBACK for packet id {ack.packet_id}, expected {packet_id}"
        assert len(ack.codes) == len(filters), f"SUBACK has {len(ack.codes)} codes for {len(filters)} filters"
        return ack.codes

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False, packet_id: int = 1,
                props: dict | None = None) -> Ack | None:
        """PUBLISH and complete the QoS 1/2 flow; return the PUBACK / PUBCOMP."""
        self.send(publish_packet(topic, payload, qos, retain, packet_id=packet_id, version=self.version, props=props))
        if qos == 1:
            ack = parse_ack(self.expect(PUBACK), self.version)
            assert ack.packet_id == packet_id
            return ack
        if qos == 2:
            rec = parse_ack(self.expect(PUBREC), self.version)
            assert rec.packet_id == packet_id
            if rec.reason >= 0x80:
                return rec
            self.send(ack_packet(PUBREL, packet_id, self.version))
            comp = parse_ack(self.expect(PUBCOMP), self.version)
            assert comp.packet_id == packet_id
            return comp
        return None

    def ack(self, pub: Publish) -> None:
        """Acknowledge a received PUBLISH (QoS 1: PUBACK; QoS 2: PUBREC, PUBREL, PUBCOMP)."""
        if pub.qos == 1:
            self.send(ack_packet(PUBACK, pub.packet_id, self.version))
        elif pub.qos == 2:
            self.send(ack_packet(PUBREC, pub.packet_id, self.version))
            rel = parse_ack(self.expect(PUBREL), self.version)
            assert rel.packet_id == pub.packet_id
            self.send(ack_packet(PUBCOMP, pub.packet_id, self.version))

    def ping(self) -> None:
        self.send(PINGREQ_BYTES)
        p = self.expect(PINGRESP)
        assert p.raw == PINGRESP_BYTES, p

    def disconnect(self, reason: int | None = None, props: dict | None = None) -> None:
        """DISCONNECT, then wait (briefly) for the broker to close the connection: once it has, it has processed
        the DISCONNECT, so a test can rely on the session being offline."""
        if self.try_send(disconnect_packet(self.version, reason, props)):
            try:
                self.sock.shutdown(socket.SHUT_WR)
                self.expect_closed(timeout=WAIT)
            except (AssertionError, OSError):
                pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the network connection fails without a DISCONNECT."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


def expect_closed_after_error(
    c: RawClient, allowed_v5_reasons: Iterable[int], timeout: float = WAIT, what: str = ""
) -> int | None:
    """The broker closes the connection after a protocol violation. A v3.1.1 broker sends nothing; a v5 broker may
    first send DISCONNECT with one of `allowed_v5_reasons`. Returns that reason code, if any."""
    got = c.expect_closed(timeout)
    if c.version != 5 or not got:
        assert not got, f"{what}: expected the connection to be closed without a reply, got {got!r}"
        return None
    assert len(got) == 1 and got[0].type == DISCONNECT, f"{what}: expected at most one DISCONNECT, got {got!r}"
    reason = parse_disconnect(got[0]).reason
    allowed = set(allowed_v5_reasons)
    assert reason in allowed, f"{what}: DISCONNECT reason 0x{reason:02x}, expected one of {sorted(hex(a) for a in allowed)}"
    return reason


# --------------------------------------------------------------------------------------------------------------
# paho-mqtt


def _short(b: bytes) -> str:
    return repr(b) if len(b) <= 48 else f"{b[:32]!r}...({len(b)} bytes)"


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: dict[str, Any]

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, {_short(self.payload)}, qos={self.qos}, retain={self.retain}, {self.props})"


def _paho_props_to_dict(props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if props is None:
        return out
    for name in PROPERTY_IDS:
        if hasattr(props, name):
            out[name] = getattr(props, name)
    return out


class Paho:
    """A paho-mqtt 2.x client on its own network thread, without automatic reconnect. `version` is 3 (3.1),
    4 (3.1.1) or 5. Received messages collect in `messages`."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        version: int = 5,
        clean: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        will: dict | None = None,
        connect_props: dict[str, Any] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.port = port
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.connect_props = connect_props or {}
        proto = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        kwargs: dict[str, Any] = dict(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=proto,
            reconnect_on_failure=False,
        )
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.c.max_queued_messages_set(0)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(
                will["topic"], will.get("payload", b""), will.get("qos", 0), will.get("retain", False),
                self._props("WILLMESSAGE", will.get("props")),
            )
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connacks: queue.Queue[tuple[int, Any, dict]] = queue.Queue()
        self.acks: dict[int, tuple[list[int], dict]] = {}
        self.published: dict[int, int] = {}
        self.disconnects: queue.Queue[tuple[int, dict]] = queue.Queue()
        self._cond = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = self._on_disconnect
        self.started = False

    def _props(self, packet_type: str, values: dict[str, Any] | None) -> Any:
        if self.version != 5 or not values:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        p = Properties(getattr(PacketTypes, packet_type))
        for name, value in values.items():
            setattr(p, name, value)
        return p

    # ----- callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connacks.put((reason_code.value, flags, _paho_props_to_dict(properties)))

    def _on_message(self, client, userdata, msg) -> None:
        props = _paho_props_to_dict(getattr(msg, "properties", None))
        self.messages.put(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        codes = [rc.value for rc in reason_codes] if isinstance(reason_codes, list) else [reason_codes.value]
        with self._cond:
            self.acks[mid] = (codes, _paho_props_to_dict(properties))
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self.published[mid] = reason_code.value
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.disconnects.put((reason_code.value, _paho_props_to_dict(properties)))

    # ----- actions

    def connect(self, expect_code: int | None = 0, clean: bool | None = None) -> tuple[int, bool, dict]:
        """Connect and wait for CONNACK; returns (reason code as paho reports it, session present, properties)."""
        clean = self.clean if clean is None else clean
        props = dict(self.connect_props)
        if self.session_expiry is not None:
            props["SessionExpiryInterval"] = self.session_expiry
        kwargs: dict[str, Any] = {}
        if self.version == 5:
            kwargs["clean_start"] = clean
            kwargs["properties"] = self._props("CONNECT", props)
        self.c.connect("127.0.0.1", self.port, self.keepalive, **kwargs)
        self.c.loop_start()
        self.started = True
        try:
            code, flags, cprops = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"paho v{self.version}: no CONNACK within {WAIT}s") from None
        if expect_code is not None:
            assert code == expect_code, f"paho v{self.version}: CONNACK reason {code:#x}, expected {expect_code:#x}"
        return code, bool(flags.session_present), cprops

    def _wait_mid(self, table: dict, mid: int, what: str) -> Any:
        deadline = time.monotonic() + WAIT
        with self._cond:
            while mid not in table:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"paho v{self.version}: no {what} within {WAIT}s")
                self._cond.wait(left)
            return table[mid]

    def subscribe(self, topic: str | list, qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0,
                  props: dict | None = None) -> list[int]:
        """Subscribe and wait for SUBACK; returns the reason codes (granted QoS or failure codes)."""
        if self.version == 5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
            if isinstance(topic, list):
                arg: Any = [(t, SubscribeOptions(qos=q)) for t, q in topic]
                rc, mid = self.c.subscribe(arg, properties=self._props("SUBSCRIBE", props))
            else:
                rc, mid = self.c.subscribe(topic, options=opts, properties=self._props("SUBSCRIBE", props))
        else:
            rc, mid = self.c.subscribe(topic if isinstance(topic, list) else topic, qos)
        assert rc == 0, f"paho subscribe failed locally: {rc}"
        return self._wait_mid(self.acks, mid, "SUBACK")[0]

    def unsubscribe(self, topic: str) -> list[int]:
        rc, mid = self.c.unsubscribe(topic)
        assert rc == 0, f"paho unsubscribe failed locally: {rc}"
        return self._wait_mid(self.acks, mid, "UNSUBACK")[0]

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                props: dict | None = None, wait: bool = True) -> int:
        """Publish; for QoS 1/2 wait until the flow completes and return the PUBACK/PUBREC reason code."""
        info = self.c.publish(topic, payload, qos, retain, self._props("PUBLISH", props))
        assert info.rc == 0, f"paho publish failed locally: {info.rc}"
        if not wait:
            return 0
        return self._wait_mid(self.published, info.mid, f"completion of QoS {qos} publish to {topic}")

    def expect(self, n: int = 1, timeout: float = WAIT) -> list[Message]:
        """The next `n` messages, each within `timeout` of the previous."""
        out: list[Message] = []
        for _ in range(n):
            try:
                out.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(
                    f"paho v{self.version}: got {len(out)} of {n} messages within {timeout}s: {out[:5]!r}"
                ) from None
        return out

    def expect_nothing(self, wait: float = QUIET) -> None:
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"paho v{self.version}: expected no message, got {m!r}")

    def drain(self, wait: float = QUIET) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                out.append(self.messages.get(timeout=wait))
            except queue.Empty:
                return out

    def disconnect(self, props: dict | None = None, reason: int | None = None) -> None:
        """A normal DISCONNECT, then stop the network thread."""
        if self.started:
            if reason is not None and self.version == 5:
                from paho.mqtt.reasoncodes import ReasonCode
                from paho.mqtt.packettypes import PacketTypes

                self.c.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason), self._props("DISCONNECT", props))
            else:
                self.c.disconnect(properties=self._props("DISCONNECT", props))
            self.stop()

    def kill(self) -> None:
        """Drop the network connection without DISCONNECT."""
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.stop()

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.c.loop_stop()


# --------------------------------------------------------------------------------------------------------------
# mosquitto_pub / mosquitto_sub


def _version_arg(version: int) -> list[str]:
    return ["-V", {3: "mqttv31", 4: "mqttv311", 5: "mqttv5"}[version]]


def mosquitto_pub(port: int, topic: str, payload: bytes | None, version: int = 4, qos: int = 0,
                  retain: bool = False, extra: Iterable[str] = (), tmp: Path | None = None,
                  expect_rc: int | None = 0) -> subprocess.CompletedProcess:
    """Publish one message with mosquitto_pub; an empty payload is sent with -n, anything else from a file so
    that binary payloads arrive byte-exact."""
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *_version_arg(version), "-q", str(qos), "-t", topic]
    if retain:
        args.append("-r")
    tmpfile = None
    if not payload:
        args.append("-n")
    else:
        fd, tmpfile = tempfile.mkstemp(prefix="gh-pub-", dir=str(tmp) if tmp else None)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        args += ["-f", tmpfile]
    args += list(extra)
    try:
        cp = subprocess.run(args, capture_output=True, timeout=WAIT + 2, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(args)} did not finish within {WAIT + 2}s") from None
    finally:
        if tmpfile:
            os.unlink(tmpfile)
    if expect_rc is not None:
        assert cp.returncode == expect_rc, (
            f"{' '.join(args)} -> rc {cp.returncode}, expected {expect_rc}; stderr: {cp.stderr.decode(errors='replace')}"
        )
    return cp


_live_subs: list["MosquittoSub"] = []


def kill_stray_clients() -> None:
    """SIGKILL any mosquitto_sub a test left running (e.g. one interrupted by the time limit)."""
    while _live_subs:
        s = _live_subs.pop()
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


class MosquittoSub:
    """mosquitto_sub printing one line per message: `M <qos> <retain> <topic> <hex payload>`. Started with -d so
    that the SUBACK can be awaited before anything is published."""

    def __init__(self, port: int, topics: list[str], version: int = 4, qos: int = 0, count: int | None = None,
                 extra: Iterable[str] = ()) -> None:
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *_version_arg(version), "-q", str(qos), "-d",
                "-F", "M %q %r %t %x"]
        for t in topics:
            args += ["-t", t]
        if count is not None:
            args += ["-C", str(count)]
        args += list(extra)
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _live_subs.append(self)
        self.lines: queue.Queue[str] = queue.Queue()
        self.suback = threading.Event()
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("M "):
                self.lines.put(line)
            elif "received SUBACK" in line:
                self.suback.set()

    def wait_subscribed(self) -> None:
        if not self.suback.wait(WAIT):
            self.close()
            raise AssertionError(f"{' '.join(self.args)}: no SUBACK within {WAIT}s; stderr: {self.stderr!r}")

    def expect(self, n: int, timeout: float = WAIT) -> list[tuple[int, bool, str, bytes]]:
        out = []
        for _ in range(n):
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub: got {len(out)} of {n} messages within {timeout}s") from None
            _, qos, retain, topic, hexpayload = (line.split(" ", 4) + [""])[:5]
            out.append((int(qos), retain == "1", topic, bytes.fromhex(hexpayload)))
        return out

    def close(self) -> None:
        # With -C it exits by itself; otherwise SIGKILL: mosquitto_sub 2.0.11 sometimes deadlocks on SIGTERM
        # (seen stuck in a futex wait, orphaned, after a SIGTERM during its own shutdown).
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=1)
        if self.proc.stderr is not None:
            os.set_blocking(self.proc.stderr.fileno(), False)
            try:
                self.stderr = self.proc.stderr.read() or b""
            except OSError:
                pass
            self.proc.stderr.close()


# --------------------------------------------------------------------------------------------------------------
# The broker under test


def passwd_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made with mosquitto_passwd."""
    first = True
    for user, pw in users.items():
        args = ["mosquitto_passwd", *(["-c"] if first else []), "-b", str(path), user, pw]
        subprocess.run(args, check=True, capture_output=True, timeout=10)
        first = False
    return path


@dataclass
class Settings:
    """Broker settings the tests vary, translated to either broker's config."""

    allow_anonymous: bool = True
    password_file: Path | None = None
    acl_file: Path | None = None
    max_queued_messages: int | None = None
    max_packet_size: int | None = None
    max_topic_alias: int | None = None
    max_inflight: int | None = None
    retain_available: bool | None = None
    gatehouse_extra: list[str] = field(default_factory=list)
    mosquitto_extra: list[str] = field(default_factory=list)


class GatehouseMQTT:
    """Gatehouse with one worker and one TCP listener, configured from `Settings`."""

    kind = "gatehouse"

    def __init__(self, broker: harness.Broker, settings: Settings) -> None:
        self.b = broker
        self.settings = settings
        self.name = broker.name
        self.dir = broker.dir
        self.port = broker.port

    def config_lines(self) -> list[str]:
        s = self.settings
        lines = [l for l in self.b.config_lines(workers=1) if not l.startswith("listener.tcp.external.allow_anonymous")]
        lines.append(f"allow_anonymous = {'true' if s.allow_anonymous else 'false'}")
        if s.password_file is not None:
            lines.append(f"password_file = {s.password_file}")
        if s.acl_file is not None:
            lines.append(f"acl_file = {s.acl_file}")
        if s.max_queued_messages is not None:
            lines.append(f"mqtt.max_queued_messages = {s.max_queued_messages}")
        if s.max_packet_size is not None:
            lines.append(f"mqtt.max_packet_size = {s.max_packet_size}")
        if s.max_topic_alias is not None:
            lines.append(f"mqtt.max_topic_alias = {s.max_topic_alias}")
        if s.max_inflight is not None:
            lines.append(f"mqtt.max_inflight = {s.max_inflight}")
        if s.retain_available is not None:
            lines.append(f"mqtt.retain_available = {'true' if s.retain_available else 'false'}")
        return lines + list(s.gatehouse_extra)

    def start(self) -> "GatehouseMQTT":
        self.b.write_config(lines=self.config_lines())
        self.b.start_foreground(workers=1)
        return self

    def reload(self) -> None:
        self.b.write_config(lines=self.config_lines())
        cp = self.b.cli("reload")
        assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"

    def server_pids(self) -> set[int]:
        """The pids that serve MQTT connections (the workers)."""
        return {w["pid"] for w in harness.ready_workers(self.b.status())}

    def alive(self) -> bool:
        return self.b.proc is not None and self.b.proc.poll() is None

    def describe(self) -> str:
        return self.b.describe()

    def cleanup(self) -> list[str]:
        return self.b.cleanup()

    def remove_dir(self) -> None:
        self.b.remove_dir()


class MosquittoMQTT:
    """A Mosquitto 2 broker with a config equivalent to `GatehouseMQTT`'s (to validate the tests themselves)."""

    kind = "mosquitto"

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.dir = Path(tempfile.mkdtemp(prefix="gh-mosq-", dir="/tmp"))
        self.port = harness.free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self._log_file: Any = None

    def config_lines(self) -> list[str]:
        s = self.settings
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if s.allow_anonymous else 'false'}",
            "persistence false",
            f"max_queued_messages {s.max_queued_messages if s.max_queued_messages is not None else 1000}",
            "log_dest stderr",
            "log_type all",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto switches to user `mosquitto`, which cannot read our temp files
        if s.password_file is not None:
            lines.append(f"password_file {s.password_file}")
        if s.acl_file is not None:
            lines.append(f"acl_file {s.acl_file}")
        if s.max_packet_size is not None:
            lines.append(f"max_packet_size {s.max_packet_size}")
        if s.max_topic_alias is not None:
            lines.append(f"max_topic_alias {s.max_topic_alias}")
        if s.max_inflight is not None:
            lines.append(f"max_inflight_messages {s.max_inflight}")
        if s.retain_available is not None:
            lines.append(f"retain_available {'true' if s.retain_available else 'false'}")
        return lines + list(s.mosquitto_extra)

    def start(self) -> "MosquittoMQTT":
        self.conf.write_text("\n".join(self.config_lines()) + "\n")
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen([MOSQUITTO_BIN, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        harness.wait_until(listening, 5, message="mosquitto listening")
        return self

    def reload(self) -> None:
        self.conf.write_text("\n".join(self.config_lines()) + "\n")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def server_pids(self) -> set[int]:
        assert self.proc is not None
        return {self.proc.pid}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"mosquitto dir {self.dir}\n---- config ----\n{self.conf.read_text()}\n---- log ----\n{text[-20000:]}"

    def cleanup(self) -> list[str]:
        notes = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                notes.append(f"had to SIGKILL mosquitto pid {self.proc.pid}")
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
        return notes

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


MQTTBroker = GatehouseMQTT | MosquittoMQTT


_probe_failures = 0


def probe_mqtt(broker: "MQTTBroker") -> None:
    """Fail fast if the broker does not answer a CONNECT at all (e.g. no MQTT layer yet): one short wait here
    instead of every wait in the test timing out. Any CONNACK counts, a refusal too. After the first failure in a
    session, later probes wait only 1 s."""
    global _probe_failures
    timeout = WAIT if _probe_failures == 0 else 1.0
    try:
        c = RawClient(broker.port, 4)
        c.send(connect_packet(unique("probe"), version=4))
        p = c.recv(timeout)
        assert p.type == CONNACK, f"answered CONNECT with {p!r}"
    except (TimeoutError, Closed, OSError, AssertionError) as e:
        _probe_failures += 1
        pytest.fail(f"{broker.kind} on port {broker.port} does not answer CONNECT with CONNACK within {timeout:g}s "
                    f"({type(e).__name__}: {e}); is the MQTT layer there?", pytrace=False)
    c.disconnect()


def unique(prefix: str = "t") -> str:
    """A short unique name for client ids and topics."""
    unique.n += 1  # type: ignore[attr-defined]
    return f"{prefix}{os.getpid() % 1000}x{unique.n}"  # type: ignore[attr-defined]


unique.n = 0  # type: ignore[attr-defined]


class Bystander:
    """A subscriber and a publisher connected before a misbehaving client does its thing; `check()` afterwards
    proves that the broker still routes between them and that its serving processes did not change (no crash and
    respawn of the worker)."""

    def __init__(self, broker: "MQTTBroker", version: int = 4) -> None:
        self.broker = broker
        self.topic = unique("bystander/")
        self.pids = broker.server_pids()
        self.sub = RawClient(broker.port, version)
        self.sub.connect(unique("by-sub"))
        assert self.sub.subscribe(self.topic, 1) == [1]
        self.pub = RawClient(broker.port, version)
        self.pub.connect(unique("by-pub"))
        self.n = 0

    def check(self) -> None:
        self.n += 1
        payload = b"still here %d" % self.n
        self.pub.publish(self.topic, payload, qos=1, packet_id=self.n)
        m = self.sub.expect_publish(what="bystander message after the misbehaving client")
        assert (m.topic, m.payload) == (self.topic, payload), m
        self.sub.ack(m)
        # A brand new connection works too.
        fresh = RawClient(self.broker.port, 4)
        fresh.connect(unique("fresh"))
        fresh.ping()
        fresh.disconnect()
        assert self.broker.server_pids() == self.pids, "the serving process changed (crashed and respawned?)"

    def close(self) -> None:
        self.sub.disconnect()
        self.pub.disconnect()


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Reference matcher (MQTT 3.1.1 section 4.7 / 5.0 section 4.7), including the `$` rule."""
    if topic.startswith("$") and topic_filter[:1] in ("#", "+"):
        return False
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)
