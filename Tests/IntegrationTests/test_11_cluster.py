"""11 cluster: one broker across N worker processes (issue 7).

Clients land on workers by the kernel's SO_REUSEPORT hash; none of them may notice that there are several.
Every test runs the real binary with `node.worker_processes = 4` (the reload tests 2 -> 4 -> 2) and real MQTT
connections on loopback. Which worker holds a connection is read from /proc (`harness.connection_owner`); tests that
need a client on a particular worker open TCP connections until one lands there, before sending CONNECT.

- 40 clients on at least 3 workers: QoS 0/1/2 pub/sub, every subscriber gets what MQTT says it must (QoS 0 and 2
  once, QoS 1 at least once with DUP on any second copy, in order per publisher, topic and QoS).
- MQTT 5 across workers (paho): no-local, retain-as-published, subscription identifiers, properties.
- Client-id takeover across workers: DISCONNECT 0x8E to the old connection, session present, queued and in-flight
  QoS 1/2 messages and the subscriptions move with the session; a message published right after a takeover, or
  right after a SUBACK on another worker, is not lost (a single broker would deliver it).
- Retained messages set, replaced and cleared through different workers: one view from every worker.
- Shared subscriptions balanced across workers.
- kill -9 of a worker during a QoS 1 stream: persistent subscribers on the other workers lose nothing, those of the
  killed worker get every message after they reconnect.
- `reload` 2 -> 4 -> 2 keeps pub/sub (and persistent sessions of retired workers) working.
- A full restart brings retained messages and persistent sessions back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Iterable

import pytest

import harness
from harness import pid_alive, procs, ready_by_slot, ready_workers, wait_until
from mqtt_helpers import (
    CONNACK,
    DISCONNECT,
    PINGREQ_BYTES,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    QUIET,
    RC_SESSION_TAKEN_OVER,
    SUBACK,
    UNSUBACK,
    WAIT,
    Closed,
    Packet,
    Paho,
    Publish,
    RawClient,
    ack_packet,
    connect_packet,
    disconnect_packet,
    parse_ack,
    parse_connack,
    parse_disconnect,
    parse_publish,
    parse_suback,
    publish_packet,
    subscribe_packet,
    topic_matches,
    unique,
    unsubscribe_packet,
)

WORKERS = 4
# Bound for waits that cover a whole stream of messages or a respawn.
LONG = 10.0
# Session expiry asked for by MQTT 5 clients that want a persistent session.
EXPIRY = 3600

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])

_open_clients: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients():
    """Close every MQTT client a test opened, whatever happened."""
    yield
    while _open_clients:
        c = _open_clients.pop()
        try:
            if isinstance(c, Paho):
                c.stop()
            else:
                c.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


# ----------------------------------------------------------------------------------------------------------------
# The broker


def _start(make_broker, workers: int = WORKERS, name: str = "cluster") -> tuple[harness.Broker, dict]:
    b = make_broker(name)
    b.write_config(workers=workers)
    st = b.start_foreground()
    return b, st


def _pids_by_slot(st: dict) -> dict[int, int]:
    return {slot: w["pid"] for slot, w in ready_by_slot(st).items()}


def _owner(sock, what: str = "the connection") -> int:
    """The worker pid that holds the server side of `sock` (waits until it is accepted)."""
    owners = wait_until(lambda: harness.connection_owner(sock), 3, message=f"a worker to accept {what}")
    assert len(owners) == 1, f"{what} is held by several processes: {owners}"
    return next(iter(owners))


# ----------------------------------------------------------------------------------------------------------------
# An MQTT client whose packets are read by a thread


class Client:
    """A raw MQTT 3.1.1/5.0 connection (`RawClient` underneath) whose incoming packets are read by a thread.

    PUBLISHes are recorded in `publishes` and, while `auto_ack` is on, acknowledged at once (QoS 1: PUBACK; QoS 2:
    PUBREC, and PUBCOMP for the PUBREL). Every other packet goes to `packets`, where the blocking calls
    (connect, subscribe, publish, ping) take their answers from. `want(pid)` places the connection: TCP
    connections are opened until one is accepted by a worker for which it is true (before any byte is sent).
    """

    def __init__(self, port: int, version: int = 4, want: Callable[[int], bool] | None = None, name: str = "",
                 tries: int = 120) -> None:
        self.version = version
        self.name = name or unique("c")
        for _ in range(tries):
            raw = RawClient(port, version)
            pid = _owner(raw.sock, f"the connection of {self.name}")
            if want is None or want(pid):
                break
            raw.close()
        else:
            raise AssertionError(f"{self.name}: no connection landed on a wanted worker in {tries} attempts")
        self.raw = raw
        self.pid = pid
        self.client_id = ""
        self.auto_ack = True
        self.publishes: list[Publish] = []
        self.packets: list[Packet] = []
        self.pubrels: list[int] = []
        self.errors: list[str] = []
        self.closed = False
        self.close_reason = ""
        self._next = 0
        self._stop = False
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"mqtt-{self.name}")
        _open_clients.append(self)
        self._thread.start()

    # ----- the reader thread

    def _read(self) -> None:
        while True:
            try:
                p = self.raw.recv(0.1)
            except TimeoutError:
                if self._stop:
                    return
                continue
            except (Closed, OSError) as e:
                with self._cond:
                    self.closed = True
                    self.close_reason = str(e)
                    self._cond.notify_all()
                return
            try:
                if p.type == PUBLISH:
                    pub = parse_publish(p, self.version, self.raw.aliases)
                    with self._cond:
                        self.publishes.append(pub)
                        self._cond.notify_all()
                    if self.auto_ack and pub.qos == 1:
                        self.send(ack_packet(PUBACK, pub.packet_id, self.version))
                    elif self.auto_ack and pub.qos == 2:
                        self.send(ack_packet(PUBREC, pub.packet_id, self.version))
                elif p.type == PUBREL and self.auto_ack:
                    rel = parse_ack(p, self.version)
                    with self._cond:
                        self.pubrels.append(rel.packet_id)
                    self.send(ack_packet(PUBCOMP, rel.packet_id, self.version))
                else:
                    with self._cond:
                        self.packets.append(p)
                        self._cond.notify_all()
            except Exception as e:  # noqa: BLE001 - reported by check_errors / waits
                with self._cond:
                    self.errors.append(f"{type(e).__name__}: {e} (packet {p!r})")
                    self._cond.notify_all()

    # ----- sending

    def send(self, data: bytes) -> bool:
        with self._send_lock:
            try:
                self.raw.sock.sendall(data)
                return True
            except OSError:
                return False

    def _id(self) -> int:
        self._next = self._next % 65535 + 1
        return self._next

    # ----- waiting

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                r = predicate()
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name} (client id {self.client_id!r}, worker {self.pid}): timed out after {timeout:.1f}s "
                        f"waiting for {what}; received {len(self.publishes)} PUBLISH, other packets {self.packets!r}, "
                        f"closed={self.closed} {self.close_reason}, errors {self.errors}"
                    )
                self._cond.wait(min(left, 0.2))

    def expect(self, ptype: int, timeout: float = WAIT, what: str = "") -> Packet:
        """The next non-PUBLISH packet, which must be of type `ptype`."""

        def first() -> Packet | None:
            if self.packets:
                return self.packets.pop(0)
            if self.closed:
                raise AssertionError(f"{self.name}: connection closed ({self.close_reason}) while waiting for {what}")
            return None

        p = self.wait(first, timeout, what or f"packet type {ptype}")
        assert p.type == ptype, f"{self.name}: expected packet type {ptype} ({what}), got {p!r}"
        return p

    def wait_closed(self, timeout: float = WAIT) -> list[Packet]:
        """Wait until the broker closes the connection; return the non-PUBLISH packets that came first."""
        self.wait(lambda: self.closed, timeout, "the broker to close the connection")
        with self._cond:
            return list(self.packets)

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [p.payload for p in self.publishes]

    def received(self) -> list[Publish]:
        with self._cond:
            return list(self.publishes)

    def wait_payloads(self, want: Iterable[bytes], timeout: float = LONG, what: str = "") -> list[Publish]:
        want = set(want)

        def have() -> bool:
            return want <= {p.payload for p in self.publishes}

        try:
            self.wait(have, timeout, what or f"{len(want)} messages")
        except AssertionError as e:
            missing = sorted(want - set(self.payloads()))
            raise AssertionError(f"{e}\n  missing {len(missing)}: {missing[:20]}") from None
        return self.received()

    # ----- conversations

    def connect(self, client_id: str, clean: bool = True, persistent: bool = False, expect_code: int = 0,
                expect_present: bool | None = None) -> Any:
        """CONNECT (persistent: clean session 0 / MQTT 5 session expiry EXPIRY) and wait for the CONNACK."""
        self.client_id = client_id
        props = {"SessionExpiryInterval": EXPIRY} if (self.version == 5 and persistent) else None
        self.send(connect_packet(client_id, version=self.version, clean=clean, props=props))
        ack = parse_connack(self.expect(CONNACK, what=f"CONNACK for {client_id!r}"), self.version)
        assert ack.code == expect_code, f"{self.name}: CONNACK code 0x{ack.code:02x}, expected 0x{expect_code:02x}"
        if expect_present is not None:
            assert ack.session_present == expect_present, (
                f"{self.name} ({client_id!r} on worker {self.pid}): CONNACK session present = {ack.session_present}, "
                f"expected {expect_present}"
            )
        return ack

    def subscribe(self, filters: list[tuple[str, int]] | str, qos: int = 0, props: dict | None = None) -> list[int]:
        """SUBSCRIBE (each filter with its options byte) and return the SUBACK codes."""
        if isinstance(filters, str):
            filters = [(filters, qos)]
        pid = self._id()
        self.send(subscribe_packet(pid, filters, self.version, props))
        ack = parse_suback(self.expect(SUBACK, what=f"SUBACK for {filters}"), self.version)
        assert ack.packet_id == pid, f"SUBACK for packet id {ack.packet_id}, expected {pid}"
        return ack.codes

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                props: dict | None = None) -> None:
        """PUBLISH and complete the QoS 1/2 flow (the broker must accept it)."""
        pid = self._id() if qos else None
        self.send(publish_packet(topic, payload, qos, retain, packet_id=pid, version=self.version, props=props))
        what = f"the ack of {payload!r} to {topic}"
        if qos == 1:
            ack = parse_ack(self.expect(PUBACK, what=what), self.version)
            assert ack.packet_id == pid and ack.reason < 0x80, f"{self.name}: PUBACK {ack} for packet id {pid}"
        elif qos == 2:
            rec = parse_ack(self.expect(PUBREC, what=what), self.version)
            assert rec.packet_id == pid and rec.reason < 0x80, f"{self.name}: PUBREC {rec} for packet id {pid}"
            self.send(ack_packet(PUBREL, pid, self.version))
            comp = parse_ack(self.expect(PUBCOMP, what=what), self.version)
            assert comp.packet_id == pid, f"{self.name}: PUBCOMP {comp} for packet id {pid}"

    def ping(self) -> None:
        """PINGREQ/PINGRESP: once answered, the broker has processed everything this client sent before."""
        self.send(PINGREQ_BYTES)
        self.expect(PINGRESP, what="PINGRESP")

    def disconnect(self) -> None:
        """A normal DISCONNECT; waits until the broker has closed the connection (so the session is offline)."""
        if self.send(disconnect_packet(self.version)):
            try:
                self.raw.sock.shutdown(socket.SHUT_WR)
                self.wait(lambda: self.closed, WAIT, "the broker to close the connection after DISCONNECT")
            except (AssertionError, OSError):
                pass
        self.close()

    def close(self) -> None:
        self._stop = True
        self.raw.close()
        self._thread.join(timeout=2)

    def check_errors(self) -> None:
        assert not self.errors, f"{self.name}: malformed packets from the broker: {self.errors}"


def _clients_on(port: int, pids: Iterable[int], per_worker: int, version_of: Callable[[int], int],
                prefix: str) -> list[Client]:
    """`per_worker` connections (not connected at the MQTT level yet) on each of `pids`."""
    out = []
    for pid in pids:
        for k in range(per_worker):
            i = len(out)
            out.append(Client(port, version_of(i), want=lambda p, pid=pid: p == pid, name=f"{prefix}{i}"))
    return out


def _paho_on(port: int, want: Callable[[int], bool], prefix: str) -> tuple[Paho, int]:
    """An MQTT 5 paho client connected to a worker for which `want(pid)` holds."""
    for _ in range(120):
        p = Paho(port, unique(prefix), version=5)
        p.connect()
        _open_clients.append(p)
        pid = _owner(p.c.socket(), f"paho client {prefix}")
        if want(pid):
            return p, pid
        p.disconnect()
    raise AssertionError(f"no paho connection landed on a wanted worker in 120 attempts ({prefix})")


# ----------------------------------------------------------------------------------------------------------------
# Checking deliveries


def _check_delivery(sub: Client, expected: list[tuple[bytes, str, int, tuple]], granted: int,
                    retain: bool = False) -> list[str]:
    """Problems with what `sub` received, given `expected` = [(payload, topic, publish QoS, order key)] in publish
    order. MQTT: delivered at min(publish QoS, granted QoS); QoS 0 and 2 exactly once; QoS 1 at least once and any
    further copy with DUP set; in order per publisher, topic and QoS (the order key)."""
    problems: list[str] = []
    want = {e[0]: e for e in expected}
    got = sub.received()
    seen: dict[bytes, int] = {}
    firsts: list[bytes] = []
    for m in got:
        e = want.get(m.payload)
        if e is None:
            problems.append(f"{sub.name}: unexpected message {m!r}")
            continue
        payload, topic, pub_qos, _ = e
        eff = min(pub_qos, granted)
        if (m.topic, m.qos, m.retain) != (topic, eff, retain):
            problems.append(f"{sub.name}: {m!r} should have topic {topic}, QoS {eff}, retain {retain}")
        n = seen.get(payload, 0)
        if n == 0:
            firsts.append(payload)
        elif eff == 1 and not m.dup:
            problems.append(f"{sub.name}: QoS 1 message {payload!r} delivered again without DUP (copy {n + 1})")
        elif eff != 1:
            problems.append(f"{sub.name}: QoS {eff} message {payload!r} delivered {n + 1} times")
        seen[payload] = n + 1
    for payload in want:
        if payload not in seen:
            problems.append(f"{sub.name}: lost {payload!r}")
    # Order per publisher, topic and QoS.
    position = {p: i for i, (p, *_rest) in enumerate(expected)}
    last: dict[tuple, int] = {}
    for payload in firsts:
        key = want[payload][3]
        if position[payload] < last.get(key, -1):
            problems.append(f"{sub.name}: {payload!r} arrived after a later message of the same publisher/topic/QoS")
        last[key] = max(last.get(key, -1), position[payload])
    return problems


def _first_lines(e: BaseException) -> str:
    """An assertion's own message, without the introspection pytest appends (from the first `assert` line)."""
    out = []
    for line in str(e).splitlines():
        if line.startswith("assert "):
            break
        out.append(line)
    return "\n".join(out)


def _assert_no_problems(problems: list[str], what: str) -> None:
    assert not problems, f"{what}: {len(problems)} problems:\n  " + "\n  ".join(problems[:30])


# ----------------------------------------------------------------------------------------------------------------
# Tests


def test_11_forty_clients_pubsub_qos012(make_broker):
    """40 clients (8 publishers, 32 subscribers, MQTT 3.1.1 and 5) spread over 4 workers by the kernel. Every
    subscriber (exact topics, `+`, `#`; granted QoS 0, 1, 2) gets every matching message exactly as MQTT requires."""
    b, st = _start(make_broker)
    workers = set(_pids_by_slot(st).values())
    base = unique("cl/")
    topics = [f"{base}/a", f"{base}/b"]
    filters = [topics[0], topics[1], f"{base}/+", f"{base}/#"]

    clients = [Client(b.port, 5 if i % 2 else 4, name=f"c{i}") for i in range(40)]
    owners = {c.pid for c in clients}
    assert owners <= workers, f"connections held by {owners - workers}, which are not workers {workers}"
    spread = {w: sum(c.pid == w for c in clients) for w in workers}
    assert len(owners) >= 3, f"40 connections landed on only {len(owners)} worker(s): {spread}"
    print(f"connections per worker: {spread}")

    pubs, subs = clients[:8], clients[8:]
    for c in clients:
        c.connect(unique(c.name))
    granted: dict[str, tuple[str, int]] = {}
    for i, s in enumerate(subs):
        f, q = filters[i % 4], (i // 4) % 3
        assert s.subscribe(f, q) == [q], f"{s.name}: SUBACK for {f} at QoS {q}"
        granted[s.name] = (f, q)
    # Publishers and subscribers on different workers: most deliveries cross a worker boundary.
    assert any(p.pid != s.pid for p in pubs for s in subs)

    published: list[tuple[bytes, str, int, tuple]] = []
    lock = threading.Lock()

    def run(pi: int, p: Client) -> None:
        for seq in range(5):
            for ti, t in enumerate(topics):
                for q in (0, 1, 2):
                    payload = b"p%d|t%d|q%d|%d" % (pi, ti, q, seq)
                    with lock:
                        published.append((payload, t, q, (pi, t, q)))
                    p.publish(t, payload, q)

    errors: list[BaseException] = []

    def guarded(pi: int, p: Client) -> None:
        try:
            run(pi, p)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i, p), daemon=True) for i, p in enumerate(pubs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + LONG
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"publishers still publishing after {LONG}s"
    if errors:
        raise errors[0]
    assert len(published) == 8 * 2 * 3 * 5

    for s in subs:
        f, _ = granted[s.name]
        want = [e[0] for e in published if topic_matches(f, e[1])]
        s.wait_payloads(want, what=f"every message matching {f}")
    time.sleep(QUIET)  # duplicates, if any, arrive now

    problems: list[str] = []
    total = 0
    for s in subs:
        f, q = granted[s.name]
        expected = [e for e in published if topic_matches(f, e[1])]
        problems += _check_delivery(s, expected, q)
        s.check_errors()
        total += len(expected)
    _assert_no_problems(problems, "deliveries")
    print(f"{len(published)} publishes, {total} deliveries checked")
    for c in clients:
        c.disconnect()


def test_11_v5_subscription_options_and_properties_across_workers(make_broker):
    """MQTT 5 (paho) with the publisher and each subscriber on a different worker: no-local, retain-as-published,
    subscription identifiers and message properties survive the hop between workers."""
    b, st = _start(make_broker)
    base = unique("o5/")
    topic = f"{base}/t"
    a, wa = _paho_on(b.port, lambda p: True, "a")
    bb, wb = _paho_on(b.port, lambda p: p != wa, "b")
    c, wc = _paho_on(b.port, lambda p: p not in (wa, wb), "c")
    assert a.subscribe(topic, 1, no_local=True, props={"SubscriptionIdentifier": 11}) == [1]
    assert bb.subscribe(f"{base}/+", 1, no_local=True, rap=True, props={"SubscriptionIdentifier": 22}) == [1]
    assert c.subscribe(f"{base}/#", 1, props={"SubscriptionIdentifier": 33}) == [1]

    # No local: A's own message is not delivered to A, but to B and C on the other workers.
    a.publish(topic, b"from-a", qos=1)
    (mb,) = bb.expect(1)
    (mc,) = c.expect(1)
    assert (mb.payload, mb.props.get("SubscriptionIdentifier")) == (b"from-a", [22]), mb
    assert (mc.payload, mc.props.get("SubscriptionIdentifier")) == (b"from-a", [33]), mc
    a.expect_nothing()

    bb.publish(topic, b"from-b", qos=1)
    (ma,) = a.expect(1)
    (mc,) = c.expect(1)
    assert (ma.payload, ma.props.get("SubscriptionIdentifier")) == (b"from-b", [11]), ma
    assert (mc.payload, mc.props.get("SubscriptionIdentifier")) == (b"from-b", [33]), mc
    bb.expect_nothing()

    # Retain as published: B (rap) sees the retain flag of a live delivery, C (no rap) does not.
    a.publish(topic, b"kept", qos=1, retain=True)
    (mb,) = bb.expect(1)
    (mc,) = c.expect(1)
    assert (mb.payload, mb.retain) == (b"kept", True), f"retain-as-published lost across workers: {mb}"
    assert (mc.payload, mc.retain) == (b"kept", False), f"retain flag set without retain-as-published: {mc}"
    a.expect_nothing()

    # The retained message, from another worker than the one it was published through, with the new
    # subscriber's own identifier.
    d, wd = _paho_on(b.port, lambda p: p != wa, "d")
    assert d.subscribe(topic, 1, props={"SubscriptionIdentifier": 44}) == [1]
    (md,) = d.expect(1)
    assert (md.payload, md.retain, md.props.get("SubscriptionIdentifier")) == (b"kept", True, [44]), md

    # Properties pass through unchanged.
    props = {
        "UserProperty": [("k", "v1"), ("k", "v2"), ("ü", "✓")],
        "ContentType": "text/x-gatehouse",
        "ResponseTopic": f"{base}/reply",
        "CorrelationData": b"\x00\x01corr",
        "PayloadFormatIndicator": 1,
        "MessageExpiryInterval": 600,
    }
    a.publish(topic, b"props", qos=1, props=props)
    (mc,) = c.expect(1)
    assert mc.payload == b"props", mc
    assert list(mc.props.get("UserProperty", [])) == props["UserProperty"], mc
    for k in ("ContentType", "ResponseTopic", "CorrelationData", "PayloadFormatIndicator"):
        assert mc.props.get(k) == props[k], f"{k} changed across workers: {mc}"
    assert 0 < mc.props.get("MessageExpiryInterval", 0) <= 600, mc
    assert mc.props.get("SubscriptionIdentifier") == [33], mc
    bb.expect(1)
    d.expect(1)
    a.expect_nothing()

    # Clearing the retained message (through B's worker): nothing for a new subscriber anywhere.
    bb.publish(topic, b"", qos=1, retain=True)
    for cl in (a, c, d):
        (m,) = cl.expect(1)
        assert m.payload == b"", m
    e, _ = _paho_on(b.port, lambda p: p != wb, "e")
    assert e.subscribe(topic, 1) == [1]
    e.expect_nothing()
    for cl in (a, bb, c, d, e):
        cl.disconnect()


@V
def test_11_takeover_across_workers(make_broker, version):
    """A persistent session moves with its client id from worker to worker: queued messages published while it was
    offline, in-flight QoS 1 (unacknowledged) and QoS 2 (PUBREC sent, no PUBCOMP) state, and its subscriptions.
    The connection taken over is closed, with DISCONNECT 0x8E on MQTT 5."""
    b, st = _start(make_broker)
    base = unique("tk/")
    t1, t2 = f"{base}/one", f"{base}/two"
    cid = unique("taker")
    pub = Client(b.port, 5, name="pub")
    pub.connect(unique("tkpub"))

    c1 = Client(b.port, version, name="first")
    c1.connect(cid, clean=False, persistent=True)
    assert c1.subscribe([(t1, 1), (t2, 2)]) == [1, 2]
    c1.disconnect()
    w1 = c1.pid

    queued1 = [b"q1-%d" % i for i in range(5)]
    queued2 = [b"q2-%d" % i for i in range(2)]
    for p in queued1:
        pub.publish(t1, p, 1)
    for p in queued2:
        pub.publish(t2, p, 2)

    # Second connection on another worker: the session comes from worker w1.
    c2 = Client(b.port, version, want=lambda p: p != w1, name="second")
    c2.auto_ack = False
    c2.connect(cid, clean=False, persistent=True, expect_present=True)
    got = c2.wait_payloads(queued1 + queued2, timeout=WAIT, what="the messages queued while offline")
    assert [m.payload for m in got if m.topic == t1] == queued1, got
    assert [m.payload for m in got if m.topic == t2] == queued2, got
    assert len(got) == 7, f"duplicates: {got}"
    for m in got:
        assert m.qos == (1 if m.topic == t1 else 2), m
    by_payload = {m.payload: m for m in got}
    # Acknowledge two QoS 1 messages, PUBREC the first QoS 2 one (without PUBCOMP); leave the rest in flight.
    for p in queued1[:2]:
        c2.send(ack_packet(PUBACK, by_payload[p].packet_id, version))
    rec_id = by_payload[queued2[0]].packet_id
    c2.send(ack_packet(PUBREC, rec_id, version))
    rel = parse_ack(c2.expect(PUBREL, what="PUBREL for the QoS 2 message"), version)
    assert rel.packet_id == rec_id, rel
    c2.ping()  # the acks above are processed

    # Third connection on yet another worker, while the second is online.
    w2 = c2.pid
    c3 = Client(b.port, version, want=lambda p: p != w2, name="third")
    c3.auto_ack = False
    c3.connect(cid, clean=False, persistent=True, expect_present=True)
    before = c2.wait_closed()
    if version == 5:
        assert len(before) == 1 and before[0].type == DISCONNECT, f"taken-over v5 connection got {before!r}"
        reason = parse_disconnect(before[0]).reason
        assert reason == RC_SESSION_TAKEN_OVER, f"DISCONNECT reason 0x{reason:02x}, expected 0x8E"
    else:
        assert not before, f"taken-over 3.1.1 connection got packets: {before!r}"

    # In flight: the unacknowledged QoS 1 messages and the unreleased QoS 2 one are sent again with their packet
    # ids and DUP; the QoS 2 message that got PUBREC continues with PUBREL.
    redo = c3.wait_payloads(queued1[2:] + queued2[1:], timeout=WAIT, what="in-flight messages resent")
    rel = parse_ack(c3.expect(PUBREL, what="PUBREL resent for the QoS 2 message that got PUBREC"), version)
    assert rel.packet_id == rec_id, f"PUBREL for packet id {rel.packet_id}, expected {rec_id}"
    assert len(redo) == 4, f"acknowledged messages were resent, or duplicates: {redo}"
    for m in redo:
        orig = by_payload[m.payload]
        assert m.dup and m.packet_id == orig.packet_id and m.qos == orig.qos, (
            f"resent {m!r} should have DUP and the packet id of {orig!r}"
        )
        c3.send(ack_packet(PUBACK if m.qos == 1 else PUBREC, m.packet_id, version))
    c3.send(ack_packet(PUBCOMP, rec_id, version))
    last = parse_ack(c3.expect(PUBREL, what="PUBREL for the resent QoS 2 message"), version)
    c3.send(ack_packet(PUBCOMP, last.packet_id, version))
    c3.ping()

    # Subscriptions moved too: a new message reaches c3 (and only once).
    c3.auto_ack = True
    pub.publish(t1, b"live-3", 1)
    pub.publish(t2, b"live-3b", 2)
    c3.wait_payloads([b"live-3", b"live-3b"], timeout=WAIT)
    time.sleep(QUIET)
    assert [m.payload for m in c3.received()][4:] == [b"live-3", b"live-3b"], c3.received()

    # And back to the first worker (or any other than c3's).
    w3 = c3.pid
    c4 = Client(b.port, version, want=lambda p: p != w3, name="fourth")
    c4.connect(cid, clean=False, persistent=True, expect_present=True)
    c3.wait_closed()
    pub.publish(t1, b"live-4", 1)
    c4.wait_payloads([b"live-4"], timeout=WAIT)
    time.sleep(QUIET)
    assert c4.payloads() == [b"live-4"], f"session state from earlier workers resurfaced: {c4.received()}"
    assert b"live-4" not in c3.payloads()
    for c in (c2, c3, c4):
        c.check_errors()
    print(f"session moved over workers {w1} -> {w2} -> {w3} -> {c4.pid}")
    c4.disconnect()
    pub.disconnect()


def test_11_takeover_back_and_forth_loses_nothing(make_broker):
    """A persistent session taken over back and forth between two workers, eight times; after each takeover (new
    CONNACK received, old connection closed) a QoS 1 message is published at once from a third worker. Every one
    of them reaches the session's current connection: a single broker would never lose it."""
    b, st = _start(make_broker)
    by_slot = _pids_by_slot(st)
    wa, wb, wc = by_slot[1], by_slot[3], by_slot[0]
    topic = unique("pp/") + "/t"
    cid = unique("pingpong")
    pub = Client(b.port, 5, want=lambda p: p == wc, name="pub")
    pub.connect(unique("pppub"))
    problems: list[str] = []
    prev: Client | None = None
    for hop, w in enumerate([wa, wb] * 4):
        c = Client(b.port, 5 if hop % 4 < 2 else 4, want=lambda p, w=w: p == w, name=f"hop{hop}")
        c.connect(cid, clean=False, persistent=True, expect_present=hop > 0)
        if hop == 0:
            assert c.subscribe(topic, 1) == [1]
        if prev is not None:
            prev.wait_closed()
        payload = b"after-takeover-%d" % hop
        pub.publish(topic, payload, 1)
        try:
            c.wait_payloads([payload], timeout=WAIT)
        except AssertionError:
            problems.append(f"hop {hop} (session moved to worker {w}): {payload!r} published from worker {wc} right "
                            f"after the takeover never arrived; this connection got {c.payloads()}")
        prev = c
    _assert_no_problems(problems, "messages published right after a takeover")
    prev.disconnect()
    pub.disconnect()


def test_11_subscribe_then_publish_at_once_across_workers(make_broker):
    """Once SUBACK is received, a message published from another worker is delivered; once UNSUBACK is received,
    it is not. 30 fresh topics, each published to right after the (UN)SUBACK, as a client of a single broker may."""
    b, st = _start(make_broker)
    by_slot = _pids_by_slot(st)
    base = unique("sp/")
    sub = Client(b.port, 5, want=lambda p: p == by_slot[1], name="sub")
    sub.connect(unique("spsub"))
    pub = Client(b.port, 4, want=lambda p: p == by_slot[2], name="pub")
    pub.connect(unique("sppub"))
    n = 30
    for i in range(n):
        assert sub.subscribe(f"{base}/{i}", 1) == [1]
        pub.publish(f"{base}/{i}", b"sub-%d" % i, 1)
    want = [b"sub-%d" % i for i in range(n)]
    try:
        sub.wait_payloads(want, timeout=WAIT)
    except AssertionError:
        lost = [p for p in want if p not in sub.payloads()]
        raise AssertionError(f"{len(lost)} of {n} messages published right after SUBACK (subscriber on worker "
                             f"{sub.pid}, publisher on worker {pub.pid}) never arrived: {lost}") from None
    for i in range(n):
        pid = sub._id()
        sub.send(unsubscribe_packet(pid, [f"{base}/{i}"], 5))
        ack = parse_suback(sub.expect(UNSUBACK, what="UNSUBACK"), 5)
        assert ack.packet_id == pid and ack.codes == [0], ack
        pub.publish(f"{base}/{i}", b"unsub-%d" % i, 1)
    time.sleep(QUIET)
    late = [p for p in sub.payloads() if p.startswith(b"unsub-")]
    assert not late, f"delivered after UNSUBACK: {late}"
    assert sorted(sub.payloads()) == sorted(want), sub.received()
    sub.disconnect()
    pub.disconnect()


def test_11_retained_one_view_from_every_worker(make_broker):
    """A retained message set through one worker is seen by new subscribers on every worker; replaced through a
    second worker and cleared through a third, every worker shows the change at once."""
    b, st = _start(make_broker)
    workers = sorted(_pids_by_slot(st).values())
    base = unique("rt/")
    topic = f"{base}/x"

    def fresh_view(w: int, flt: str, n: int) -> list[Publish]:
        s = Client(b.port, 5 if w % 2 else 4, want=lambda p: p == w, name=f"view{w}")
        s.connect(unique("rv"))
        assert s.subscribe(flt, 1) == [1]
        if n:
            s.wait(lambda: len(s.publishes) >= n, WAIT, f"{n} retained messages for {flt}")
        time.sleep(QUIET)
        got = s.received()
        s.disconnect()
        return got

    pa = Client(b.port, 5, want=lambda p: p == workers[0], name="pa")
    pa.connect(unique("rpa"))
    pa.publish(topic, b"v1", 1, retain=True)
    for w in workers:
        got = fresh_view(w, topic, 1)
        assert [(m.topic, m.payload, m.retain) for m in got] == [(topic, b"v1", True)], (
            f"worker {w} (set through {workers[0]}): {got}"
        )

    pb = Client(b.port, 4, want=lambda p: p == workers[1], name="pb")
    pb.connect(unique("rpb"))
    pb.publish(topic, b"v2", 2, retain=True)
    for w in workers:
        got = fresh_view(w, topic, 1)
        assert [(m.payload, m.retain, m.qos) for m in got] == [(b"v2", True, 1)], (
            f"worker {w} after the replacement through {workers[1]}: {got}"
        )

    pc = Client(b.port, 5, want=lambda p: p == workers[2], name="pc")
    pc.connect(unique("rpc"))
    pc.publish(topic, b"", 1, retain=True)
    for w in workers:
        got = fresh_view(w, topic, 0)
        assert got == [], f"worker {w} still has the retained message cleared through {workers[2]}: {got}"

    # One retained message set through each worker; a wildcard subscriber on each worker sees all four.
    setters = [pa, pb, pc, Client(b.port, 4, want=lambda p: p == workers[3], name="pd")]
    setters[3].connect(unique("rpd"))
    want = {}
    for i, s in enumerate(setters):
        t = f"{base}/m/{i}"
        s.publish(t, b"from-worker-%d" % s.pid, 1, retain=True)
        want[t] = b"from-worker-%d" % s.pid
    for w in workers:
        got = fresh_view(w, f"{base}/m/+", 4)
        assert {m.topic: m.payload for m in got} == want and len(got) == 4, f"worker {w}: {got}"
        assert all(m.retain for m in got), got
    for s in setters:
        s.disconnect()


def test_11_shared_subscription_spread_across_workers(make_broker):
    """`$share/g/topic` with two members on each worker: every message goes to exactly one member, members on every
    worker get some, none is lost; a normal subscriber gets them all."""
    b, st = _start(make_broker)
    workers = sorted(_pids_by_slot(st).values())
    topic = unique("sh/") + "/t"
    members = _clients_on(b.port, workers, 2, lambda i: 5 if i % 2 else 4, "member")
    for m in members:
        m.connect(unique("shm"))
        assert m.subscribe(f"$share/g/{topic}", 1) == [1]
    plain = Client(b.port, 5, name="plain")
    plain.connect(unique("shplain"))
    assert plain.subscribe(topic, 1) == [1]
    pub = Client(b.port, 4, name="pub")
    pub.connect(unique("shpub"))

    n = 200
    want = [b"s%03d" % i for i in range(n)]
    for p in want:
        pub.publish(topic, p, 1)
    plain.wait_payloads(want)
    deadline = time.monotonic() + LONG
    while time.monotonic() < deadline and sum(len(m.publishes) for m in members) < n:
        time.sleep(0.05)
    time.sleep(QUIET)

    got = {m.name: m.payloads() for m in members}
    everything = [p for ps in got.values() for p in ps]
    dup = sorted({p for p in everything if everything.count(p) > 1})
    assert not dup, f"messages delivered to more than one member (or twice): {dup[:20]}"
    assert sorted(everything) == want, f"lost: {sorted(set(want) - set(everything))[:20]}"
    per_worker = {w: sum(len(got[m.name]) for m in members if m.pid == w) for w in workers}
    per_member = {m.name: len(got[m.name]) for m in members}
    print(f"shared group (publisher on worker {pub.pid}): per worker {per_worker}, per member {per_member}")
    assert all(per_worker.values()), f"members on some worker got nothing: {per_worker}"
    assert all(per_member.values()), f"some member got nothing: {per_member}"
    # Round robin over every member on every worker: each gets its share (25 of 200 for 8 members), give or
    # take what in-flight route changes cost.
    share = n / len(members)
    assert all(share / 2 <= c <= share * 2 for c in per_member.values()), f"uneven shares: {per_member}"
    for m in members:
        for msg in m.received():
            assert (msg.topic, msg.qos, msg.dup) == (topic, 1, False), msg
    assert plain.payloads() == want, "the normal subscriber did not get every message once, in order"
    for c in [*members, plain, pub]:
        c.check_errors()
        c.disconnect()


def test_11_kill9_worker_during_qos1_stream(make_broker):
    """kill -9 of a worker in the middle of a QoS 1 stream. Persistent subscribers on the other workers lose
    nothing (in order); the killed worker's subscribers, once it is respawned, reconnect (one to the new worker
    in its slot, one to another) and get every message they had not received; routes are sane afterwards."""
    b, st = _start(make_broker)
    by_slot = _pids_by_slot(st)
    workers = [by_slot[s] for s in sorted(by_slot)]
    victim_slot = 2
    victim = by_slot[victim_slot]
    topic = unique("k9/") + "/stream"
    pub = Client(b.port, 5, want=lambda p: p == workers[0], name="pub")
    pub.connect(unique("k9pub"))

    subs = _clients_on(b.port, workers, 2, lambda i: 5 if i % 2 else 4, "sub")
    for s in subs:
        s.connect(unique("k9sub"), clean=False, persistent=True)
        assert s.subscribe(topic, 1) == [1]
    survivors = [s for s in subs if s.pid != victim]
    victims = [s for s in subs if s.pid == victim]
    assert len(victims) == 2 and len(survivors) == 6

    n, kill_at = 400, 120
    want = [b"m%04d" % i for i in range(n)]
    killed_at = 0.0
    for i, p in enumerate(want):
        pub.publish(topic, p, 1)
        if i == kill_at:
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
        time.sleep(0.002)
    stream_end = time.monotonic()
    print(f"stream of {n} went on {stream_end - killed_at:.2f}s after the kill")

    for s in victims:
        s.wait_closed(timeout=WAIT)
    # Survivors: everything, in order, no copy without DUP (their connections never broke).
    problems: list[str] = []
    for s in survivors:
        s.wait_payloads(want, what="the whole stream (subscriber on a surviving worker)")
    time.sleep(QUIET)
    expected = [(p, topic, 1, "k") for p in want]
    for s in survivors:
        problems += _check_delivery(s, expected, 1)
    _assert_no_problems(problems, "subscribers on the surviving workers")

    # The slot is refilled and the new worker takes part in routing at once (no persistence involved): a new
    # subscriber on it gets a message published on worker 0, a publisher on it reaches the survivors; once each.
    st = b.wait_status(
        lambda s: ready_by_slot(s).get(victim_slot, {}).get("pid") not in (None, victim)
        and len(ready_workers(s)) == WORKERS,
        LONG,
        f"a new ready worker in slot {victim_slot}",
    )
    respawned = ready_by_slot(st)[victim_slot]["pid"]
    assert not pid_alive(victim)
    fresh = Client(b.port, 5, want=lambda p: p == respawned, name="fresh-on-respawned")
    fresh.connect(unique("k9fresh"))
    assert fresh.subscribe(topic, 1) == [1]
    pub2 = Client(b.port, 4, want=lambda p: p == respawned, name="pub-on-respawned")
    pub2.connect(unique("k9pub2"))
    after = [b"after-respawn-1", b"after-respawn-2"]
    pub.publish(topic, after[0], 1)
    pub2.publish(topic, after[1], 1)
    for s in survivors + [fresh]:
        s.wait_payloads(after, timeout=WAIT, what="the messages published after the respawn")
    time.sleep(QUIET)
    for s in survivors + [fresh]:
        counts = [s.payloads().count(p) for p in after]
        assert counts == [1, 1], f"{s.name} on worker {s.pid} got the messages after the respawn {counts} times"

    # The killed worker's persistent subscribers reconnect, one to the new worker in the slot, one elsewhere: the
    # session is there, and every message of the stream they had not received (and the two published since)
    # arrives.
    before = {s.client_id: set(s.payloads()) for s in victims}
    problems: list[str] = []
    again = []
    for k, old in enumerate(victims):
        want_pid = (lambda p: p == respawned) if k == 0 else (lambda p: p != respawned)
        c = Client(b.port, old.version, want=want_pid, name=f"{old.name}-again")
        again.append(c)
        missing = [p for p in want + after if p not in before[old.client_id]]
        try:
            c.connect(old.client_id, clean=False, persistent=True, expect_present=True)
            c.wait_payloads(missing, what=f"the {len(missing)} messages {old.client_id} missed while its worker was down")
            c.check_errors()
        except AssertionError as e:
            problems.append(f"{old.client_id} (had {len(before[old.client_id])} of {len(want)} before the kill, "
                            f"reconnected on worker {c.pid}, respawned worker {respawned}): {_first_lines(e)}")
    _assert_no_problems(problems, "persistent subscribers of the killed worker")
    for s in survivors + again + [fresh, pub, pub2]:
        s.disconnect()


def _reload(b: harness.Broker, n: int, before: dict[int, int]) -> dict:
    b.write_config(workers=n)
    cp = b.cli("reload")
    assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"
    surplus = {pid for slot, pid in before.items() if slot >= n}

    def ok(s: dict) -> bool:
        bs = ready_by_slot(s)
        return (
            sorted(bs) == list(range(n))
            and len(procs(s, "worker")) == n
            and all(bs[slot]["pid"] == pid for slot, pid in before.items() if slot < n)
            and not any(pid_alive(p) for p in surplus)
        )

    return b.wait_status(ok, b.shutdown_timeout + 5, f"{n} ready workers after reload")


def _mesh(pubs: list[Client], subs: list[Client], topic: str, tag: str) -> None:
    """Each publisher publishes one QoS 1 message; each subscriber gets each exactly once."""
    want = []
    for p in pubs:
        payload = f"{tag}/{p.name}".encode()
        p.publish(topic, payload, 1)
        want.append(payload)
    for s in subs:
        s.wait_payloads(want, timeout=WAIT, what=f"{tag}: one message from each publisher")
    time.sleep(QUIET)
    for s in subs:
        got = [p for p in s.payloads() if p.startswith(tag.encode() + b"/")]
        assert sorted(got) == sorted(want), f"{tag}: {s.name} on worker {s.pid} got {got}, expected {want}"


def test_11_reload_scaling_2_to_4_to_2_keeps_pubsub(make_broker):
    """2 workers -> 4 -> 2 by `reload`: clients on the kept workers stay connected and keep publishing and receiving;
    clients on the new workers take part in routing; after the scale-down, nothing is routed to the retired
    workers and clients that reconnect work as before."""
    b, st = _start(make_broker, workers=2)
    b.shutdown_timeout = 5.0
    topic = unique("rl/") + "/t"
    s2 = _pids_by_slot(st)
    old_subs = _clients_on(b.port, s2.values(), 1, lambda i: 4 + i % 2, "oldsub")
    old_pubs = _clients_on(b.port, s2.values(), 1, lambda i: 5 - i % 2, "oldpub")
    for c in old_subs + old_pubs:
        c.connect(unique(c.name))
    for s in old_subs:
        assert s.subscribe(topic, 1) == [1]
    _mesh(old_pubs, old_subs, topic, "two")

    st = _reload(b, 4, s2)
    s4 = _pids_by_slot(st)
    new_workers = [s4[2], s4[3]]
    new_subs = _clients_on(b.port, new_workers, 1, lambda i: 5 - i % 2, "newsub")
    new_pubs = _clients_on(b.port, new_workers, 1, lambda i: 4 + i % 2, "newpub")
    for c in new_subs + new_pubs:
        c.connect(unique(c.name))
    for s in new_subs:
        assert s.subscribe(topic, 1) == [1]
    # New connections spread over all four workers.
    probes = [Client(b.port, 4, name=f"probe{i}") for i in range(24)]
    spread = {c.pid for c in probes}
    for c in probes:
        c.close()
    assert len(spread) >= 3, f"24 new connections landed on {spread} only"
    _mesh(old_pubs + new_pubs, old_subs + new_subs, topic, "four")

    st = _reload(b, 2, s4)
    for c in new_subs + new_pubs:
        c.wait_closed(timeout=b.shutdown_timeout + 2)
    for c in old_subs + old_pubs:
        assert not c.closed, f"{c.name} on a kept worker was disconnected by the scale-down"
    _mesh(old_pubs, old_subs, topic, "back-to-two")
    # Clients of the retired workers reconnect (to the remaining ones) and work as before.
    again_subs = [Client(b.port, s.version, name=f"{s.name}-again") for s in new_subs]
    again_pubs = [Client(b.port, p.version, name=f"{p.name}-again") for p in new_pubs]
    for c in again_subs + again_pubs:
        assert c.pid in s2.values(), f"{c.name} landed on {c.pid}, not one of the remaining workers {s2}"
        c.connect(unique(c.name))
    for s in again_subs:
        assert s.subscribe(topic, 1) == [1]
    _mesh(old_pubs + again_pubs, old_subs + again_subs, topic, "reconnected")
    for c in old_subs + old_pubs + again_subs + again_pubs:
        c.check_errors()
        c.disconnect()


def test_11_reload_scale_down_keeps_persistent_sessions(make_broker):
    """Persistent sessions held by workers that a reload retires are not lost: their clients reconnect to a
    remaining worker with session present, their subscriptions and the messages published meanwhile."""
    b, st = _start(make_broker, workers=4)
    b.shutdown_timeout = 5.0
    topic = unique("rd/") + "/t"
    s4 = _pids_by_slot(st)
    retiring = _clients_on(b.port, [s4[2], s4[3]], 1, lambda i: 4 + i % 2, "retiring")
    for c in retiring:
        c.connect(unique(c.name), clean=False, persistent=True)
        assert c.subscribe(topic, 1) == [1]
    pub = Client(b.port, 5, want=lambda p: p == s4[0], name="pub")
    pub.connect(unique("rdpub"))
    pub.publish(topic, b"before", 1)
    for c in retiring:
        c.wait_payloads([b"before"], timeout=WAIT)

    _reload(b, 2, s4)
    for c in retiring:
        c.wait_closed(timeout=b.shutdown_timeout + 2)
    queued = [b"while-retired-%d" % i for i in range(5)]
    for p in queued:
        pub.publish(topic, p, 1)
    for old in retiring:
        c = Client(b.port, old.version, name=f"{old.name}-again")
        c.connect(old.client_id, clean=False, persistent=True, expect_present=True)
        got = c.wait_payloads(queued, timeout=WAIT, what="messages published after its worker was retired")
        assert [m.payload for m in got if m.payload in queued][: len(queued)] == queued, got
        pub.publish(topic, b"live-" + old.name.encode(), 1)
        c.wait_payloads([b"live-" + old.name.encode()], timeout=WAIT, what="a live message (subscription kept)")
        c.disconnect()
    pub.disconnect()


def _stop_and_start(b: harness.Broker) -> dict:
    """Graceful stop (SIGTERM to the supervisor, as `gatehouse stop` does; the CLI itself would wait for our
    unreaped foreground child), then `start` again with the same config and data directory."""
    os.kill(b.proc.pid, signal.SIGTERM)
    try:
        rc = b.proc.wait(timeout=b.shutdown_timeout + 5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"supervisor still running {b.shutdown_timeout + 5:.0f}s after SIGTERM") from None
    assert rc == 0, f"supervisor exited with {rc} after SIGTERM"
    wait_until(lambda: not b.leftover_pids(), 3, message="every gatehouse process of the first run to exit")
    # Keep the first run's log next to the second's.
    os.replace(b.stderr_path, b.dir / "supervisor.stderr.first-run")
    b.proc = None
    return b.start_foreground()


def test_11_full_restart_keeps_retained_and_persistent_sessions(make_broker):
    """Stop the whole broker and start it again: retained messages (as last set, replaced or cleared through
    different workers) and persistent sessions (subscriptions, queued QoS 1/2 messages, in-flight QoS 1
    messages) are back."""
    b, st = _start(make_broker)
    workers = sorted(_pids_by_slot(st).values())
    base = unique("rs/")

    setters = [Client(b.port, 4 + i % 2, want=lambda p, w=w: p == w, name=f"set{i}") for i, w in enumerate(workers)]
    for s in setters:
        s.connect(unique("rsset"))
    retained = {}
    for i, s in enumerate(setters):
        t = f"{base}/r/{i}"
        s.publish(t, b"kept-%d" % i, 1 + i % 2, retain=True)
        retained[t] = b"kept-%d" % i
    setters[0].publish(f"{base}/r/replaced", b"old", 1, retain=True)
    setters[1].publish(f"{base}/r/replaced", b"new", 1, retain=True)
    retained[f"{base}/r/replaced"] = b"new"
    setters[2].publish(f"{base}/r/gone", b"soon gone", 1, retain=True)
    setters[3].publish(f"{base}/r/gone", b"", 1, retain=True)

    # Persistent sessions: s5 (MQTT 5) and s4 (3.1.1) offline with queued messages; inflight (3.1.1) online with
    # unacknowledged QoS 1 messages when the broker stops.
    q1, q2 = f"{base}/q/a", f"{base}/q2"
    s5 = Client(b.port, 5, want=lambda p: p == workers[1], name="s5")
    s5.connect(unique("rs5"), clean=False, persistent=True)
    assert s5.subscribe([(f"{base}/q/#", 1), (q2, 2)]) == [1, 2]
    s4 = Client(b.port, 4, want=lambda p: p == workers[2], name="s4")
    s4.connect(unique("rs4"), clean=False, persistent=True)
    assert s4.subscribe(f"{base}/q/#", 1) == [1]
    inflight = Client(b.port, 4, want=lambda p: p == workers[3], name="inflight")
    inflight.auto_ack = False
    inflight.connect(unique("rsif"), clean=False, persistent=True)
    assert inflight.subscribe(f"{base}/if", 1) == [1]
    s5.disconnect()
    s4.disconnect()

    queued1 = [b"queued-%d" % i for i in range(5)]
    queued2 = [b"queued2-%d" % i for i in range(2)]
    for p in queued1:
        setters[0].publish(q1, p, 1)
    for p in queued2:
        setters[1].publish(q2, p, 2)
    unacked = [b"unacked-%d" % i for i in range(3)]
    for p in unacked:
        setters[2].publish(f"{base}/if", p, 1)
    got = inflight.wait_payloads(unacked, timeout=WAIT)
    inflight_ids = {m.payload: m.packet_id for m in got}
    for s in setters:
        s.disconnect()

    st = _stop_and_start(b)
    inflight.wait_closed(timeout=1)
    workers = sorted(_pids_by_slot(st).values())

    # Each part is checked even if an earlier one fails, so that a failure report shows all of what came back.
    problems: list[str] = []

    def part(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AssertionError as e:
            problems.append(f"{what}: {_first_lines(e)}")
            return None

    def retained_from(w: int) -> None:
        v = Client(b.port, 5, want=lambda p: p == w, name=f"view{w}")
        v.connect(unique("rsview"))
        assert v.subscribe(f"{base}/r/#", 1) == [1]
        try:
            v.wait(lambda: len(v.publishes) >= len(retained), WAIT, "the retained messages after the restart")
        except AssertionError:
            pass  # reported just below, with what did arrive
        time.sleep(QUIET)
        got = {m.topic: m.payload for m in v.received()}
        v.disconnect()
        assert got == retained, f"worker {w}: retained after restart {got}, expected {retained}"
        assert len(v.received()) == len(retained), v.received()

    for w in workers:
        part(f"retained messages seen from worker {w}", lambda w=w: retained_from(w))

    def session_v5() -> Client:
        a5 = Client(b.port, 5, name="s5-again")
        a5.connect(s5.client_id, clean=False, persistent=True, expect_present=True)
        got = a5.wait_payloads(queued1 + queued2, timeout=WAIT, what="queued messages after the restart")
        assert [m.payload for m in got if m.topic == q1] == queued1, got
        assert [m.payload for m in got if m.topic == q2] == queued2, got
        return a5

    def session_v311() -> Client:
        a4 = Client(b.port, 4, name="s4-again")
        a4.connect(s4.client_id, clean=False, persistent=True, expect_present=True)
        got = a4.wait_payloads(queued1, timeout=WAIT, what="queued messages after the restart")
        assert [m.payload for m in got] == queued1, got
        return a4

    def session_inflight() -> Client:
        ai = Client(b.port, 4, name="inflight-again")
        ai.connect(inflight.client_id, clean=False, persistent=True, expect_present=True)
        got = ai.wait_payloads(unacked, timeout=WAIT, what="in-flight messages resent after the restart")
        for m in got:
            assert m.dup and m.packet_id == inflight_ids[m.payload], f"resent {m!r}: DUP and the original packet id"
        return ai

    a5 = part("MQTT 5 session with queued QoS 1/2 messages", session_v5)
    a4 = part("MQTT 3.1.1 session with queued QoS 1 messages", session_v311)
    ai = part("MQTT 3.1.1 session with in-flight QoS 1 messages", session_inflight)

    def subscriptions_kept() -> None:
        p = Client(b.port, 5, name="pub-after")
        p.connect(unique("rspub"))
        p.publish(f"{base}/q/b", b"after-restart", 1)
        p.publish(f"{base}/if", b"after-restart-if", 1)
        a5.wait_payloads([b"after-restart"], timeout=WAIT)
        a4.wait_payloads([b"after-restart"], timeout=WAIT)
        ai.wait_payloads([b"after-restart-if"], timeout=WAIT)
        time.sleep(QUIET)
        assert len(a5.received()) == 8 and len(a4.received()) == 6, (a5.received(), a4.received())
        for c in (a5, a4, ai, p):
            c.check_errors()
            c.disconnect()

    if a5 and a4 and ai:
        part("subscriptions after the restart", subscriptions_kept)
    _assert_no_problems(problems, "after a full restart")
