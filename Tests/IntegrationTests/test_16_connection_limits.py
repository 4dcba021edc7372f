"""16 connection limits: no single client connection can grow a worker without bound (issue 15, items 6, 7, 10,
11, 12).

The real binary with 2 workers on loopback, raw sockets that do not read (a small receive buffer, so the kernel
cannot absorb what the broker sends), paho-mqtt where a well-behaved client is needed. Memory is the VmRSS of
the worker that holds the attacking connection (from /proc), sampled while the attack runs; each attack prints
the growth it reached (`pytest -s`).

- 6 back-pressure: 3M PINGREQs from a client that does not read; a QoS 0 flood to a subscriber that does not read
  (publisher on the same and on the other worker); `send_timeout` / `send_timeout_close`; `high_watermark`.
- 7 topic aliases: Topic Alias Maximum 10 by default; alias topics bounded by `mqtt.max_topic_alias_bytes`; a
  denied publish sets no alias.
- 10 before CONNECT: 300 silent clients parking a large CONNECT; `mqtt.max_connect_packet_size`;
  `max_connections_per_address` exact across the workers.
- 11 route barrier: thousands of packets behind a SUBSCRIBE or a client-id claim are served, not a reason to
  close.
- 12 an outbound topic alias is set only by a packet that is sent.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import threading
import time
from typing import Callable

import pytest

import harness
from harness import wait_until
from mqtt_helpers import (
    CONNACK,
    DISCONNECT,
    PINGREQ_BYTES,
    PINGRESP,
    PINGRESP_BYTES,
    PUBACK,
    PUBLISH,
    SUBACK,
    Closed,
    RawClient,
    connect_packet,
    packet,
    parse_ack,
    parse_connack,
    parse_disconnect,
    passwd_file,
    publish_packet,
    subscribe_packet,
    unique,
    varint,
)

MIB = 1024 * 1024
CONNECT_BYTE = 0x10
LISTENER = "tcp:external"
P = "listener.tcp.external"


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def started(broker: harness.Broker, extra: list[str] = (), workers: int = 2) -> dict:
    """Starts the broker with `extra` lines; a line for a key the defaults set replaces that one."""
    keys = {line.split(" = ")[0] for line in extra}
    lines = [l for l in broker.config_lines(workers=workers) if l.split(" = ")[0] not in keys]
    broker.write_config(lines + list(extra))
    return broker.start_foreground()


def worker_pids(broker: harness.Broker) -> list[int]:
    return [w["pid"] for w in harness.ready_workers(broker.status())]


def owner(sock: socket.socket) -> int:
    owners = wait_until(lambda: harness.connection_owner(sock), 3, message="a worker to accept the connection")
    assert len(owners) == 1, owners
    return next(iter(owners))


def raw_socket(broker: harness.Broker, rcvbuf: int | None = None, source: str = "127.0.0.1",
               want: Callable[[int], bool] | None = None) -> tuple[socket.socket, int]:
    """A TCP connection to the broker (nothing sent yet) and the worker that holds it; with `want`, connections
    are opened until one lands on a worker it accepts. `rcvbuf` shrinks the receive buffer before connecting, so
    that a client that does not read stops the broker's writes early."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", broker.port))
        broker.sockets.append(s)
        pid = owner(s)
        if want is None or want(pid):
            return s, pid
        s.close()
    raise AssertionError("no connection landed on the wanted worker")


def read_packet(s: socket.socket, timeout: float = 3.0) -> tuple[int, bytes]:
    """One packet (type, body) from a plain socket; raises Closed on EOF or reset."""
    s.settimeout(timeout)

    def take(n: int) -> bytes:
        out = b""
        while len(out) < n:
            try:
                chunk = s.recv(n - len(out))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from None
            if not chunk:
                raise Closed("EOF")
            out += chunk
        return out

    first = take(1)[0]
    length, shift = 0, 0
    while True:
        b = take(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first >> 4, take(length)


def mqtt_connect(s: socket.socket, client_id: str, version: int = 4, **kwargs) -> bytes:
    s.sendall(connect_packet(client_id, version=version, **kwargs))
    kind, body = read_packet(s)
    assert kind == CONNACK, (kind, body)
    assert body[1] == 0, f"CONNACK refused: {body.hex()}"
    return body


def closed_within(s: socket.socket, timeout: float) -> bool:
    """Whether the broker closes `s` within `timeout` seconds (whatever it sends before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


class RSSPeak:
    """Samples the VmRSS of some processes; `growth()` is the largest increase over the first sample, in MiB."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.base = {pid: harness.rss_kib(pid) for pid in pids}
        self.peak = dict(self.base)

    def sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], harness.rss_kib(pid))

    def settle(self, limit: float = 30.0, quiet: float = 2.0) -> None:
        """Samples until no process grew for `quiet` seconds (the worker has worked through what the kernel
        buffered for it), at most `limit` seconds."""
        t0 = last_growth = time.monotonic()
        last = dict(self.peak)
        while time.monotonic() - t0 < limit and time.monotonic() - last_growth < quiet:
            time.sleep(0.25)
            self.sample()
            if self.peak != last:
                last, last_growth = dict(self.peak), time.monotonic()

    def growth(self) -> float:
        self.sample()
        return max(self.peak[pid] - self.base[pid] for pid in self.pids) / 1024


def flood(s: socket.socket, data: bytes, rss: RSSPeak, seconds: float, stall: float = 2.0) -> int:
    """Sends `data` without reading, as far as the broker takes it: until all is sent, `seconds` have passed, or
    nothing could be sent for `stall` seconds. Samples `rss` meanwhile. Returns the bytes sent."""
    s.setblocking(False)
    view = memoryview(data)
    sent, t0, last_progress = 0, time.monotonic(), time.monotonic()
    while sent < len(data) and time.monotonic() - t0 < seconds and time.monotonic() - last_progress < stall:
        _, writable, _ = select.select([], [s], [], 0.1)
        if writable:
            try:
                n = s.send(view[sent:sent + 65536])
            except BlockingIOError:
                n = 0
            except (ConnectionResetError, BrokenPipeError):
                break
            if n:
                sent += n
                last_progress = time.monotonic()
        rss.sample()
    s.setblocking(True)
    return sent


class Drainer:
    """Reads everything that arrives on a socket, on a thread, counting the bytes (a client that keeps up)."""

    def __init__(self, s: socket.socket) -> None:
        self.received = 0
        self.sock = s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(None)
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            self.received += len(chunk)


def statistics_sum(status: dict, key: str) -> int:
    return sum((p.get("statistics") or {}).get(key, 0) for p in harness.procs(status, "worker"))


def limit_events(status: dict) -> dict[str, int]:
    """The `limit_hits` counters of every worker, summed."""
    total: dict[str, int] = {}
    for p in harness.procs(status, "worker"):
        for name, count in ((p.get("statistics") or {}).get("limit_hits") or {}).items():
            total[name] = total.get(name, 0) + count
    return total


def wait_limit(broker: harness.Broker, name: str, at_least: int = 1, timeout: float = 5.0) -> dict:
    st = broker.wait_status(lambda st: limit_events(st).get(name, 0) >= at_least, timeout,
                            f"limit counter {name} >= {at_least} in status")
    return limit_events(st)


def subscribe(s: socket.socket, topic_filter: str, qos: int = 0, version: int = 4, packet_id: int = 1) -> None:
    s.sendall(subscribe_packet(packet_id, [(topic_filter, qos)], version))
    kind, body = read_packet(s)
    assert kind == SUBACK and body[-1] == qos, (kind, body.hex())


# ---------------------------------------------------------------------------------------------------------------
# 6 back-pressure


@pytest.mark.time_limit(120)
def test_16_pingreq_flood_from_a_client_that_does_not_read(broker):
    """3M PINGREQs from a client that never reads: the worker stops reading that connection once its outbound side
    is full, so the PINGRESPs waiting cost at most about `high_watermark` (was +224 MiB). Once the client reads,
    every PINGREQ the broker took is answered, in order, and the connection works."""
    started(broker)
    s, worker = raw_socket(broker, rcvbuf=4096)
    mqtt_connect(s, "pinger")
    rss = RSSPeak([worker])
    count = 3_000_000
    sent = flood(s, PINGREQ_BYTES * count, rss, seconds=30)
    rss.settle()
    growth = rss.growth()
    print(f"\n6 PINGREQ flood: {sent // 2} of {count} PINGREQs taken; worker +{growth:.1f} MiB")
    assert growth < 24, f"the worker grew by {growth:.1f} MiB for one client that does not read"
    events = wait_limit(broker, "high_watermark_reads_paused")
    # The client reads now: every PINGREQ taken is answered.
    expected = (sent // 2) * 2
    got = 0
    s.settimeout(10)
    deadline = time.monotonic() + 60
    while got < expected and time.monotonic() < deadline:
        chunk = s.recv(1 << 20)
        assert chunk, f"closed after {got} of {expected} bytes of PINGRESP"
        assert set(chunk) <= {0xD0, 0x00}, chunk[:16].hex()
        got += len(chunk)
    assert got == expected, f"{got} of {expected} bytes of PINGRESP"
    s.sendall(PINGREQ_BYTES)
    assert read_packet(s) == (PINGRESP, b"")
    print(f"  counters: {events}")


@pytest.mark.time_limit(150)
@pytest.mark.parametrize("publisher_on", ["same", "other"])
def test_16_qos0_flood_to_a_subscriber_that_does_not_read(broker, publisher_on):
    """A QoS 0 subscriber that never reads, under a flood from a publisher on the same worker or on the other
    one: what waits for it stays around `high_watermark` (was +55 to +94 MiB); the rest is dropped and counted.
    A subscriber that reads gets the flood meanwhile, and the slow one gets messages again once it reads."""
    started(broker)
    slow, slow_worker = raw_socket(broker, rcvbuf=4096)
    mqtt_connect(slow, "slow")
    subscribe(slow, "flood/#")
    # The reading subscriber is on the slow one's worker: traffic forwarded between workers has bounds of its own.
    fast, _ = raw_socket(broker, want=lambda pid: pid == slow_worker)
    mqtt_connect(fast, "fast")
    subscribe(fast, "flood/#")
    reader = Drainer(fast)
    same = publisher_on == "same"
    pub, pub_worker = raw_socket(broker, want=(lambda pid: pid == slow_worker) if same else
                                 (lambda pid: pid != slow_worker))
    mqtt_connect(pub, "flooder")
    rss = RSSPeak(sorted({slow_worker, pub_worker}))
    payload = b"x" * 1024
    burst = b"".join(publish_packet(f"flood/{i % 100}", payload) for i in range(1000))
    t0 = time.monotonic()
    rounds = 0
    pub.settimeout(30)
    # Within the default send_timeout (15 s): the slow subscriber is to be served again afterwards.
    while rounds < 100 and time.monotonic() - t0 < 8:
        pub.sendall(burst)
        rounds += 1
        rss.sample()
    pub.sendall(PINGREQ_BYTES)  # every publish before it has been routed once it is answered
    assert read_packet(pub, timeout=30) == (PINGRESP, b"")
    for _ in range(10):
        time.sleep(0.1)
        rss.sample()
    rss.sample()
    growth = (rss.peak[slow_worker] - rss.base[slow_worker]) / 1024
    publisher_side = (rss.peak[pub_worker] - rss.base[pub_worker]) / 1024
    print(f"\n6 QoS 0 flood ({publisher_on} worker): {rounds * 1000} messages of 1 KiB in "
          f"{time.monotonic() - t0:.1f}s; slow subscriber's worker +{growth:.1f} MiB"
          + ("" if same else f", publisher's worker +{publisher_side:.1f} MiB"))
    assert growth < 24, f"the worker grew by {growth:.1f} MiB for one subscriber that does not read"
    events = wait_limit(broker, "high_watermark_qos0_dropped")
    print(f"  counters: {events}; the reading subscriber got {reader.received // 1024} KiB")
    assert reader.received > 1024 * 1024
    # The slow subscriber reads what waited for it, then gets new messages again.
    slow.settimeout(2)
    try:
        while slow.recv(1 << 20):
            pass
    except socket.timeout:
        pass
    pub.sendall(publish_packet("flood/after", b"after"))
    deadline = time.monotonic() + 5
    while True:
        kind, body = read_packet(slow, timeout=max(0.1, deadline - time.monotonic()))
        if kind == PUBLISH and body.endswith(b"after"):
            break


def test_16_qos1_waits_in_the_session_queue_while_the_client_is_busy(broker):
    """QoS 1 messages for a client over `high_watermark` wait in its session queue instead of being sent into
    the connection (none dropped): once it reads and acknowledges, it gets every one, in order."""
    # A window of 1000 in flight: without the high watermark all 200 (12.5 MiB) would go into the connection.
    started(broker, [f"{P}.high_watermark = 64KB", "mqtt.max_inflight = 1000"])
    s, worker = raw_socket(broker, rcvbuf=4096)
    mqtt_connect(s, "busy-qos1", clean=False)
    subscribe(s, "q1/#", qos=1)
    pub = RawClient(broker.port, version=4)
    pub.connect(unique("q1pub"))
    count = 200
    for i in range(count):
        pub.publish("q1/t", struct.pack("!I", i) + b"y" * 64 * 1024, qos=1, packet_id=i % 60000 + 1)
    events = wait_limit(broker, "high_watermark_qos12_held")
    print(f"\n6 QoS 1 while busy: counters {events}")
    got: list[int] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        kind, body = read_packet(s, timeout=5)
        assert kind == PUBLISH, (kind, body[:16])
        topic_length = struct.unpack("!H", body[:2])[0]
        packet_id = body[2 + topic_length:4 + topic_length]
        got.append(struct.unpack("!I", body[4 + topic_length:8 + topic_length])[0])
        s.sendall(packet(PUBACK, 0, packet_id))
    assert got == list(range(count)), f"received {len(got)}: {got[:10]}...{got[-10:]}"
    pub.close()


@pytest.mark.time_limit(120)
def test_16_send_timeout_closes_a_stalled_client(broker):
    """`send_timeout = 2s`: a subscriber whose outbound side stays full for 2 s is closed (one log line with the
    reason, counted); with `send_timeout_close = off` on another listener it is kept, and served again once it
    reads."""
    kept_port = harness.free_port()
    started(broker, [
        f"{P}.send_timeout = 2s",
        f"listener.tcp.kept = 127.0.0.1:{kept_port}",
        "listener.tcp.kept.allow_anonymous = true",
        "listener.tcp.kept.send_timeout = 1s",
        "listener.tcp.kept.send_timeout_close = off",
        "listener.tcp.kept.high_watermark = 64KB",
    ])
    stalled, worker = raw_socket(broker, rcvbuf=4096)
    mqtt_connect(stalled, "stalled", version=5)
    subscribe(stalled, "stall/#", version=5)
    kept = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    kept.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    kept.connect(("127.0.0.1", kept_port))
    broker.sockets.append(kept)
    mqtt_connect(kept, "kept")
    subscribe(kept, "stall/#")
    pub = RawClient(broker.port)
    pub.connect(unique("stallpub"))
    burst = b"".join(publish_packet("stall/x", b"z" * 4096) for _ in range(500))
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 15 and not closed:
        pub.send(burst)
        # The broker's FIN waits behind what the client has not read: ask /proc whether the worker let go of it.
        closed = not harness.connection_owner(stalled)
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert closed, "the stalled client is still open 15 s later"
    print(f"\n6 send_timeout: closed {took:.1f}s after the flood began")
    assert took >= 2.0, f"closed after {took:.1f}s, before send_timeout"
    events = wait_limit(broker, "send_timeout_closed")
    wait_limit(broker, "send_timeout_kept")
    wait_until(lambda: "send timeout" in broker.stdout() + broker.stderr(), 5, message="the send timeout logged")
    # The kept one is open, and once it reads it is served again.
    assert harness.connection_state(kept) in ("open", "data")
    kept.settimeout(2)
    try:
        while kept.recv(1 << 20):
            pass
    except socket.timeout:
        pass
    kept.sendall(PINGREQ_BYTES)
    deadline = time.monotonic() + 5
    while True:
        kind, body = read_packet(kept, timeout=max(0.1, deadline - time.monotonic()))
        if kind == PINGRESP:
            break
    print(f"  counters: {events}")
    pub.close()


# ---------------------------------------------------------------------------------------------------------------
# 7 topic aliases


def test_16_topic_alias_maximum_is_10_by_default(broker):
    """An MQTT 5 client is offered Topic Alias Maximum 10 (Mosquitto's default; was 65535); alias 11 is refused
    with DISCONNECT 0x94."""
    started(broker)
    c = RawClient(broker.port, version=5)
    ack = c.connect(unique("alias"))
    assert ack.props.get("TopicAliasMaximum") == 10, ack
    c.send(publish_packet("a/b", b"1", version=5, props={"TopicAlias": 11}))
    got = c.expect_closed()
    assert got and got[0].type == DISCONNECT and parse_disconnect(got[0]).reason == 0x94, got


@pytest.mark.time_limit(120)
def test_16_alias_topics_are_bounded_per_connection(broker):
    """With `mqtt.max_topic_alias = 65535`, 2000 aliases of 32 KiB topics would keep 64 MiB per connection (they
    did); `mqtt.max_topic_alias_bytes` (64KB by default) bounds them: the client is told 0x97 (Quota exceeded)
    once its aliases hold more, with a log line and a counter."""
    started(broker, ["mqtt.max_topic_alias = 65535"])
    s, worker = raw_socket(broker)
    mqtt_connect(s, "aliaser", version=5)
    rss = RSSPeak([worker])
    count, size = 2000, 32 * 1024
    sent_all = True
    for alias in range(1, count + 1):
        topic = f"{alias:05d}/" + "t" * (size - 6)
        try:
            s.sendall(publish_packet(topic, b"", version=5, props={"TopicAlias": alias}))
        except (BrokenPipeError, ConnectionResetError):
            sent_all = False
            break
        if alias % 100 == 0:
            rss.sample()
    if sent_all:
        s.sendall(PINGREQ_BYTES)
    time.sleep(0.5)
    growth = rss.growth()
    print(f"\n7 alias topics: {count} aliases of {size // 1024} KiB offered; worker +{growth:.1f} MiB")
    assert growth < 16, f"the worker grew by {growth:.1f} MiB for one connection's topic aliases"
    kinds = []
    try:
        while True:
            kind, body = read_packet(s, timeout=3)
            kinds.append((kind, body[:1]))
    except (Closed, socket.timeout, OSError):
        pass
    assert (DISCONNECT, b"\x97") in kinds, f"no DISCONNECT 0x97: {kinds[:5]}"
    events = wait_limit(broker, "max_topic_alias_bytes_closed")
    print(f"  counters: {events}")


def test_16_a_denied_publish_sets_no_alias(broker, tmp_path):
    """alice may publish only to alice/#. Her QoS 1 publish to secret/x with alias 1 is refused (PUBACK 0x87) and
    sets no alias: a later publish with alias 1 alone is a protocol error (it resolved to secret/x before)."""
    pw = passwd_file(tmp_path / "passwd", {"alice": "wonder"})
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    started(broker, [f"password_file = {pw}", f"acl_file = {acl}", f"{P}.allow_anonymous = false"])
    c = RawClient(broker.port, version=5)
    c.connect(unique("alice"), username="alice", password="wonder")
    ack = c.publish("secret/x", b"no", qos=1, packet_id=1, props={"TopicAlias": 1})
    assert ack is not None and ack.reason == 0x87, ack
    c.send(publish_packet("", b"again", qos=1, packet_id=2, version=5, props={"TopicAlias": 1}))
    got = c.expect_closed()
    assert got and got[0].type == DISCONNECT and parse_disconnect(got[0]).reason == 0x82, \
        f"alias 1 was set by a denied publish: {got}"
    # An allowed publish sets it.
    c = RawClient(broker.port, version=5)
    c.connect(unique("alice"), username="alice", password="wonder")
    assert c.publish("alice/x", b"yes", qos=1, packet_id=1, props={"TopicAlias": 1}).reason == 0
    assert c.publish("", b"again", qos=1, packet_id=2, props={"TopicAlias": 1}).reason == 0


# ---------------------------------------------------------------------------------------------------------------
# 10 before CONNECT


@pytest.mark.time_limit(120)
def test_16_silent_clients_cannot_park_large_connect_packets(broker):
    """300 clients each announce a CONNECT of 1 MiB, send all but its last byte and fall silent: the worker
    refuses each at its fixed header (CONNECT over `mqtt.max_connect_packet_size`, 64KB), so nothing is parked
    (was +160 MiB per worker for the 10 s connect timeout)."""
    started(broker)
    workers = worker_pids(broker)
    rss = RSSPeak(workers)
    size = MIB
    header = bytes([CONNECT_BYTE]) + varint(size - 4)
    body = connect_packet("parker")[2:]  # the real start of a CONNECT, padded below
    chunk = header + body + b"\0" * (size - len(header) - len(body) - 1)
    sockets = []
    for i in range(300):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("127.0.0.1", broker.port))
        broker.sockets.append(s)
        sockets.append(s)
        try:
            s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if i % 20 == 0:
            rss.sample()
    time.sleep(1)
    growth = rss.growth()
    print(f"\n10 parked CONNECTs: 300 x 1 MiB; largest worker growth +{growth:.1f} MiB")
    assert growth < 24, f"a worker grew by {growth:.1f} MiB for 300 silent clients"
    assert all(closed_within(s, 3) for s in sockets), "a client with an oversized CONNECT is still open"
    wait_limit(broker, "max_connect_packet_size_refused", at_least=300)


def test_16_connect_packet_limit_until_connect_is_accepted(broker):
    """`mqtt.max_connect_packet_size = 4KB`: an MQTT 5 CONNECT with a 5 KiB will is refused with CONNACK 0x95 (3.1.1:
    closed); one with a 3 KiB will connects, and then publishes of 512 KiB (under `mqtt.max_packet_size`) pass."""
    started(broker, ["mqtt.max_connect_packet_size = 4KB"])
    c = RawClient(broker.port, version=5)
    c.send(connect_packet(unique("big"), version=5, will={"topic": "w", "payload": b"w" * 5 * 1024}))
    got = c.expect_closed()
    assert got and got[0].type == CONNACK and parse_connack(got[0], 5).code == 0x95, got
    c = RawClient(broker.port, version=4)
    c.send(connect_packet(unique("big"), version=4, will={"topic": "w", "payload": b"w" * 5 * 1024}))
    assert c.expect_closed() == []
    c = RawClient(broker.port, version=5)
    c.connect(unique("ok"), will={"topic": "w", "payload": b"w" * 3 * 1024})
    assert c.publish("big/one", b"p" * 512 * 1024, qos=1).reason == 0
    wait_limit(broker, "max_connect_packet_size_refused", at_least=2)


def test_16_max_connections_per_address_exact_across_workers(broker):
    """`max_connections_per_address = 3`: three connections from 127.0.0.1 (on both workers) are served, the
    fourth is closed at accept and counted; 127.0.0.2 is served meanwhile; a place freed is taken again."""
    started(broker, [f"{P}.max_connections_per_address = 3"])
    held = []
    owners = set()
    for i in range(3):
        s, pid = raw_socket(broker)
        mqtt_connect(s, f"addr-{i}")
        held.append(s)
        owners.add(pid)
    for _ in range(4):
        extra = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        broker.sockets.append(extra)
        assert closed_within(extra, 2), "a fourth connection from 127.0.0.1 was served"
    other, _ = raw_socket(broker, source="127.0.0.2")
    mqtt_connect(other, "addr-other")
    st = broker.wait_status(
        lambda st: sum(((p.get("statistics") or {}).get("connections_refused") or {}).get(LISTENER, {})
                       .get("max_connections_per_address", 0) for p in harness.procs(st, "worker")) >= 4,
        5, "4 refusals max_connections_per_address in status")
    held.pop().close()

    def one_more() -> bool:
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        broker.sockets.append(s)
        try:
            mqtt_connect(s, unique("again"))
            return True
        except (Closed, AssertionError, OSError):
            return False

    wait_until(one_more, 5, interval=0.2, message="a freed place taken again")
    print(f"\n10 per address: 3 served on workers {sorted(owners)}, 4 refused")
    text = broker.cli("status").stdout
    assert "max_connections_per_address=" in text, text


# ---------------------------------------------------------------------------------------------------------------
# 11 route barrier


@pytest.mark.parametrize("behind", ["subscribe", "claim"])
def test_16_packets_behind_a_route_barrier_are_served(broker, behind):
    """5000 PINGREQs sent in one go right behind a SUBSCRIBE (whose SUBACK waits for the other worker) or a CONNECT
    (whose CONNACK waits for the client id's claim): the worker stops reading while it waits, then answers every
    one; the connection stays (it was closed silently after 1000)."""
    started(broker)
    s, _ = raw_socket(broker)
    count = 5000
    if behind == "claim":
        s.sendall(connect_packet(unique("claim")) + PINGREQ_BYTES * count)
        kind, body = read_packet(s)
        assert kind == CONNACK and body[1] == 0, (kind, body)
    else:
        mqtt_connect(s, unique("barrier"))
        s.sendall(subscribe_packet(1, [(unique("route") + "/#", 0)]) + PINGREQ_BYTES * count)
        kind, _ = read_packet(s)
        assert kind == SUBACK
    for i in range(count):
        try:
            kind, _ = read_packet(s)
        except Closed:
            raise AssertionError(f"closed after {i} of {count} PINGRESPs") from None
        assert kind == PINGRESP
    s.sendall(PINGREQ_BYTES)
    assert read_packet(s) == (PINGRESP, b"")


@pytest.mark.time_limit(120)
def test_16_a_slow_claim_does_not_buffer_what_the_client_sends_behind_its_connect(broker):
    """The other worker is stopped (SIGSTOP), so the client id's claim waits for its 3 s timeout: 300 PUBLISHes of
    512 KiB sent right behind the CONNECT wait in the socket, not in the worker (every packet up to 1000 was
    decoded and held: +150 MiB). Then CONNACK, and the connection works."""
    started(broker)
    s, worker = raw_socket(broker)
    other = [pid for pid in worker_pids(broker) if pid != worker]
    assert len(other) == 1
    rss = RSSPeak([worker])
    os.kill(other[0], signal.SIGSTOP)
    try:
        payload = b"p" * (512 * 1024)
        data = connect_packet(unique("slowclaim")) + b"".join(publish_packet("slow/claim", payload) for _ in range(300))
        sent = flood(s, data, rss, seconds=2.5, stall=2.5)
        rss.sample()
    finally:
        os.kill(other[0], signal.SIGCONT)
    growth = rss.growth()
    print(f"\n11 slow claim: {sent // (512 * 1024)} PUBLISHes of 512 KiB sent behind the CONNECT; worker +{growth:.1f} MiB")
    assert growth < 24, f"the worker grew by {growth:.1f} MiB while the claim waited"
    kind, body = read_packet(s, timeout=10)
    assert kind == CONNACK and body[1] == 0, (kind, body)
    rest = data[sent:]
    s.settimeout(30)
    s.sendall(rest + PINGREQ_BYTES)
    assert read_packet(s, timeout=30) == (PINGRESP, b"")


# ---------------------------------------------------------------------------------------------------------------
# 12 outbound aliases


def test_16_outbound_alias_only_for_a_sent_packet(broker):
    """A subscriber with Topic Alias Maximum 10 and Maximum Packet Size 512: a 1 KiB message on a/b is dropped
    for it, and must not have taken alias 1; the next message on a/b carries the topic with the alias (a client
    that never saw the alias could not read it)."""
    started(broker)
    sub = RawClient(broker.port, version=5)
    sub.connect(unique("aliassub"), props={"TopicAliasMaximum": 10, "MaximumPacketSize": 512})
    sub.subscribe("a/b", qos=0)
    pub = RawClient(broker.port, version=4)
    pub.connect(unique("aliaspub"))
    pub.publish("a/b", b"L" * 1024, qos=1)
    pub.publish("a/b", b"small", qos=1)
    got = sub.expect_publish()  # asserts that an alias without a topic was established before
    assert got.topic == "a/b" and got.payload == b"small", got
    assert got.props.get("TopicAlias") == 1, got
    pub.publish("a/b", b"again", qos=1)
    again = sub.expect_publish()
    assert again.topic == "a/b" and again.payload == b"again"
