"""16 storage limits (issue 15, items 8, 9 and 13): what a client can make a worker hold is bounded.

Each test starts the real binary with 2 workers and talks to it with raw MQTT connections (placed on a chosen
worker through /proc, see `test_11_cluster.Client`). Every limit has a key, a default, a counter in `status`
(`limit_hits`, by the key of the limit) and what it holds now (`storage`); the figures each attack reaches (VmRSS
of the workers, database and WAL size) are printed, before the assertions, so that a run on the code before the
fix reports what the attack cost there.

- 8. Offline queues: forty offline persistent sessions subscribed to one topic share one copy of each message, in
  memory and in the database, and the WAL stays small; `mqtt.max_queued_bytes` drops a session's oldest messages;
  `mqtt.max_node_queued_bytes` drops the oldest queued messages of the worker, whichever session holds them.
- 8. Retained messages: `mqtt.max_retained_messages` and `mqtt.max_retained_bytes` refuse new topics (the message
  is still delivered), replacing and clearing still work, and both workers agree.
- 9. Subscriptions: `mqtt.max_subscriptions` (SUBACK 0x97 / 0x80) and `mqtt.max_topic_levels` (SUBACK 0x8F / 0x80,
  PUBLISH: DISCONNECT 0x90 / close); a hundred filters of 32,752 levels are refused instead of costing hundreds of
  MiB on the client's worker and on the peer it would be announced to.
- 13. A stopped peer worker: what the other one buffers for it stays under `node.max_peer_buffered_bytes`, what
  does not fit is dropped and counted, and the link recovers when the peer runs again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import procs, ready_by_slot, rss_kib, wait_until
from mqtt_helpers import (
    DISCONNECT,
    SUBACK,
    UNSUBACK,
    RC_TOPIC_FILTER_INVALID,
    RC_TOPIC_NAME_INVALID,
    connect_packet,
    parse_disconnect,
    parse_suback,
    publish_packet,
    subscribe_packet,
    unique,
    unsubscribe_packet,
)
from test_11_cluster import Client, _open_clients

MIB = 1 << 20
RC_QUOTA_EXCEEDED = 0x97
RC_V3_FAILURE = 0x80
# Long waits: streams of megabytes through a debug build.
LONG = 20.0
WAIT_SHORT = 5.0

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


@pytest.fixture(autouse=True)
def _close_clients():
    """Close every client a test opened (the clients register themselves in test_11's list)."""
    yield
    while _open_clients:
        c = _open_clients.pop()
        try:
            c.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


# ----------------------------------------------------------------------------------------------------------------
# The node and its figures


def _start(make_broker, extra: list[str] = ()) -> tuple[harness.Broker, dict[int, int]]:
    b = make_broker("limits")
    b.write_config(workers=2, extra=list(extra))
    st = b.start_foreground()
    return b, {slot: w["pid"] for slot, w in ready_by_slot(st).items()}


def _statistics(b: harness.Broker) -> list[dict]:
    return [p.get("statistics") or {} for p in procs(b.status(), "worker")]


def _hits(b: harness.Broker, key: str) -> int:
    """How often the limit `key` was hit, summed over the workers (0 if status does not report it)."""
    return sum(int((s.get("limit_hits") or {}).get(key, 0)) for s in _statistics(b))


def _wait_hits(b: harness.Broker, key: str, at_least: int = 1) -> int:
    """Counters reach status once a second."""
    box = {"n": 0}

    def enough() -> bool:
        box["n"] = _hits(b, key)
        return box["n"] >= at_least

    try:
        wait_until(enough, 5, interval=0.2, message=f"limit_hits[{key}] >= {at_least}")
    except AssertionError:
        raise AssertionError(
            f"status does not count the limit {key}: limit_hits = "
            f"{[s.get('limit_hits') for s in _statistics(b)]} (expected at least {at_least})"
        ) from None
    return box["n"]


def _store_files(b: harness.Broker) -> tuple[int, int]:
    """Bytes of the database and of its WAL."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    db = b.data_dir / "gatehouse.db"
    return size(db), size(Path(str(db) + "-wal"))


class Sampler:
    """Samples the VmRSS of some pids and the database and WAL sizes every 50 ms; keeps the peaks."""

    def __init__(self, b: harness.Broker, pids: list[int]) -> None:
        self.b = b
        self.pids = pids
        self.base = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.base)
        self.peak_db = 0
        self.peak_wal = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_kib(pid))
        db, wal = _store_files(self.b)
        self.peak_db = max(self.peak_db, db)
        self.peak_wal = max(self.peak_wal, wal)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sample()

    def growth_mib(self, pid: int) -> float:
        return (self.peak[pid] - self.base[pid]) / 1024

    def report(self, what: str) -> str:
        workers = ", ".join(
            f"worker {pid}: {self.base[pid] / 1024:.0f} -> peak {self.peak[pid] / 1024:.0f} MiB "
            f"(+{self.growth_mib(pid):.0f})"
            for pid in self.pids
        )
        line = (f"[figures] {what}: {workers}; database peak {self.peak_db / MIB:.1f} MiB, "
                f"WAL peak {self.peak_wal / MIB:.1f} MiB")
        print(line)
        return line


def _on(pid: int):
    return lambda owner: owner == pid


def _numbered(i: int, size: int) -> bytes:
    head = f"{i:06d}:".encode()
    return head + b"x" * (size - len(head))


def _number(payload: bytes) -> int:
    return int(payload[:6])


def _persistent(port: int, version: int, want=None, name: str = "") -> tuple[Client, str]:
    c = Client(port, version, want=want, name=name)
    cid = unique("s")
    c.connect(cid, clean=False, persistent=True)
    return c, cid


def _reconnect(port: int, version: int, cid: str, pid: int | None = None) -> Client:
    c = Client(port, version, want=_on(pid) if pid else None, name=cid)
    c.connect(cid, clean=False, persistent=True, expect_present=True)
    return c


def _suffix_ok(numbers: list[int], last: int) -> bool:
    """The messages kept are the newest ones, in order, without a gap."""
    return bool(numbers) and numbers == list(range(numbers[0], last + 1))


# ----------------------------------------------------------------------------------------------------------------
# 8. Offline queues


@pytest.mark.time_limit(150)
def test_08_offline_sessions_share_one_copy_of_each_message(make_broker):
    """Forty offline persistent sessions subscribed to one topic, five messages of ~1 MB: every session gets all
    five when it comes back (nothing dropped under the default limits), but each worker holds each message once,
    in memory and in the database, and the WAL stays small.

    Before: each queued copy had its own payload (in memory, in the write-behind batch and in the database), and
    each snapshot of a session rewrote its whole queue: +100 MiB and more per worker, a 200 MiB database, a WAL
    larger still."""
    b, pids = _start(make_broker)
    sessions: list[tuple[str, int]] = []
    for i in range(40):
        c, cid = _persistent(b.port, 4, want=_on(pids[i % 2]), name=f"sub{i}")
        assert c.subscribe("fan/t", qos=1) == [1]
        c.disconnect()
        c.close()
        sessions.append((cid, c.pid))
    time.sleep(1.5)  # the sessions' snapshots are committed: the baseline includes them

    sampler = Sampler(b, list(pids.values()))
    publisher = Client(b.port, 4, name="publisher")
    publisher.connect(unique("pub"))
    for i in range(5):
        publisher.publish("fan/t", _numbered(i, 1_000_000), qos=1)
    publisher.disconnect()
    # Snapshots of changing sessions are written within a second; give the store time to commit them all.
    time.sleep(4)
    sampler.stop()
    figures = sampler.report("40 offline sessions x 5 x 1 MB")
    db, wal = _store_files(b)
    print(f"[figures] after the burst: database {db / MIB:.1f} MiB, WAL {wal / MIB:.1f} MiB")

    for cid, pid in sessions:
        c = _reconnect(b.port, 4, cid, pid)
        got = c.wait(lambda: len(c.publishes) >= 5 and c.publishes, LONG, f"5 messages for {cid}")
        assert [_number(p.payload) for p in got[:5]] == [0, 1, 2, 3, 4], f"{cid} got {got}"
        c.disconnect()
        c.close()

    for pid in pids.values():
        assert sampler.growth_mib(pid) < 64, f"worker {pid} grew by {sampler.growth_mib(pid):.0f} MiB: {figures}"
    assert sampler.peak_db + sampler.peak_wal < 64 * MIB, f"the store grew too large: {figures}"


def test_08_session_queue_bytes_drop_oldest(make_broker):
    """`mqtt.max_queued_bytes = 64KB`: twenty 8 KB messages for an offline session keep only the newest (about
    seven), in order; the drops are counted under the key."""
    b, pids = _start(make_broker, ["mqtt.max_queued_bytes = 64KB"])
    c, cid = _persistent(b.port, 5)
    assert c.subscribe("q/t", qos=1) == [1]
    c.disconnect()
    publisher = Client(b.port, 5, name="publisher")
    publisher.connect(unique("pub"))
    for i in range(20):
        publisher.publish("q/t", _numbered(i, 8 * 1024), qos=1)
    c = _reconnect(b.port, 5, cid)
    c.wait(lambda: any(_number(p.payload) == 19 for p in c.publishes), LONG, "the newest message")
    time.sleep(0.3)
    numbers = [_number(p.payload) for p in c.received()]
    print(f"[figures] max_queued_bytes 64KB, 20 x 8 KB queued: received {numbers}")
    assert _suffix_ok(numbers, 19) and 5 <= len(numbers) <= 8, f"expected the newest ~7 messages, got {numbers}"
    assert _wait_hits(b, "mqtt.max_queued_bytes", 12) >= 12


def test_08_node_queue_budget_drops_oldest_across_sessions(make_broker):
    """`mqtt.max_node_queued_bytes = 1MB` over 2 workers: each worker queues at most 512 KB for all its sessions
    together. Three offline sessions per worker, forty 32 KB messages each: every session keeps only the newest
    messages (a suffix, in order), and no worker holds more than its share."""
    b, pids = _start(make_broker, ["mqtt.max_node_queued_bytes = 1MB", "mqtt.max_queued_bytes = 16MB"])
    sessions = []
    for i in range(6):
        c, cid = _persistent(b.port, 4, want=_on(pids[i % 2]), name=f"sub{i}")
        assert c.subscribe("n/t", qos=1) == [1]
        c.disconnect()
        sessions.append((cid, c.pid))
    publisher = Client(b.port, 4, name="publisher")
    publisher.connect(unique("pub"))
    for i in range(40):
        publisher.publish("n/t", _numbered(i, 32 * 1024), qos=1)
    publisher.ping()
    time.sleep(1.2)
    queued = [(s.get("storage") or {}).get("queued_bytes") for s in _statistics(b)]
    print(f"[figures] max_node_queued_bytes 1MB (512 KB per worker): queued bytes per worker {queued}")
    per_worker: dict[int, int] = {}
    for cid, pid in sessions:
        c = _reconnect(b.port, 4, cid, pid)
        c.wait(lambda: any(_number(p.payload) == 39 for p in c.publishes), LONG, f"the newest message for {cid}")
        time.sleep(0.2)
        numbers = [_number(p.payload) for p in c.received()]
        assert _suffix_ok(numbers, 39), f"{cid}: expected the newest messages in order, got {numbers}"
        per_worker[pid] = per_worker.get(pid, 0) + len(numbers)
        c.disconnect()
    print(f"[figures] messages kept per worker for 3 sessions x 40 x 32 KB: {per_worker}")
    for pid, kept in per_worker.items():
        assert kept <= 17, f"worker {pid} kept {kept} messages of 32 KB for its sessions, over its 512 KB share"
    assert all(q is not None and q <= 512 * 1024 + 40 * 1024 for q in queued), f"queued bytes per worker: {queued}"
    assert _wait_hits(b, "mqtt.max_node_queued_bytes") > 0


# ----------------------------------------------------------------------------------------------------------------
# 8. Retained messages


def test_08_retained_limits(make_broker):
    """`mqtt.max_retained_messages = 10`, `mqtt.max_retained_bytes = 1MB`: beyond them a new topic is not
    retained (the message is still delivered to subscribers); replacing or clearing a retained message still
    works; both workers hold the same set."""
    b, pids = _start(make_broker, ["mqtt.max_retained_messages = 10", "mqtt.max_retained_bytes = 1MB"])
    live = Client(b.port, 4, want=_on(pids[1]), name="live")
    live.connect(unique("live"))
    assert live.subscribe("#", qos=0) == [0]
    publisher = Client(b.port, 4, want=_on(pids[0]), name="publisher")
    publisher.connect(unique("pub"))
    for i in range(3):
        publisher.publish(f"big/{i}", b"B" * 400 * 1024, qos=1, retain=True)
    for i in range(20):
        publisher.publish(f"r/{i}", f"v{i}".encode(), qos=1, retain=True)
    live.wait(lambda: len(live.publishes) >= 23, LONG, "every message delivered live")

    def retained_on(pid: int) -> dict[str, bytes]:
        c = Client(b.port, 4, want=_on(pid), name="late")
        c.connect(unique("late"))
        c.subscribe("#", qos=0)
        time.sleep(0.5)
        got = {p.topic: p.payload for p in c.received() if p.retain}
        c.close()
        return got

    expected = {"big/0", "big/1"} | {f"r/{i}" for i in range(8)}
    for pid in pids.values():
        got = retained_on(pid)
        print(f"[figures] retained on worker {pid}: {sorted(got)}")
        assert set(got) == expected, f"worker {pid} retains {sorted(got)}, expected {sorted(expected)}"
    assert _wait_hits(b, "mqtt.max_retained_bytes") >= 1
    assert _wait_hits(b, "mqtt.max_retained_messages") >= 12

    # At the limit: replacing is allowed, clearing makes room.
    publisher.publish("r/0", b"new", qos=1, retain=True)
    publisher.publish("r/1", b"", qos=1, retain=True)
    publisher.publish("r/19", b"late", qos=1, retain=True)
    time.sleep(0.3)
    for pid in pids.values():
        got = retained_on(pid)
        assert got.get("r/0") == b"new" and "r/1" not in got and got.get("r/19") == b"late", (
            f"worker {pid}: {sorted(got.items())}")


# ----------------------------------------------------------------------------------------------------------------
# 9. Subscriptions


@V
def test_09_max_subscriptions(make_broker, version):
    """`mqtt.max_subscriptions = 5`: a SUBSCRIBE for seven new filters gets five grants and two refusals (MQTT 5:
    0x97 Quota exceeded; 3.1.1: 0x80); replacing an existing subscription is no new one; after an UNSUBSCRIBE
    there is room again."""
    b, _ = _start(make_broker, ["mqtt.max_subscriptions = 5"])
    c = Client(b.port, version, name="subscriber")
    c.connect(unique("c"))
    refused = RC_QUOTA_EXCEEDED if version == 5 else RC_V3_FAILURE
    codes = c.subscribe([(f"s/{i}", 1) for i in range(7)])
    assert codes == [1] * 5 + [refused] * 2, f"SUBACK codes {codes}"
    assert c.subscribe("s/0", qos=0) == [0], "replacing an existing subscription must be granted"
    c.send(unsubscribe_packet(99, ["s/1"], version))
    parse_suback(c.expect(UNSUBACK, what="UNSUBACK"), version)
    assert c.subscribe("s/new", qos=1) == [1]
    assert c.subscribe("s/other", qos=1) == [refused]
    assert _wait_hits(b, "mqtt.max_subscriptions", 3) >= 3


def _deep(levels: int, leaf: str = "x") -> str:
    return "a/" * (levels - 1) + leaf


@V
def test_09_max_topic_levels(make_broker, version):
    """Default `mqtt.max_topic_levels = 128` (EMQX's): a filter of 129 levels is refused (MQTT 5: 0x8F Topic Filter
    invalid; 3.1.1: 0x80), one of 128 is granted; a PUBLISH to a 129-level topic closes the connection (MQTT 5:
    DISCONNECT 0x90 Topic Name invalid first) and reaches no one; a 128-level one is delivered."""
    b, _ = _start(make_broker)
    watcher = Client(b.port, version, name="watcher")
    watcher.connect(unique("w"))
    assert watcher.subscribe("#", qos=0) == [0]
    c = Client(b.port, version, name="deep")
    c.connect(unique("d"))
    bad = RC_TOPIC_FILTER_INVALID if version == 5 else RC_V3_FAILURE
    codes = c.subscribe([(_deep(128), 0), (_deep(129), 0), ("$share/g/" + _deep(129), 0), (_deep(129, "#"), 0)])
    assert codes == [0, bad, bad, bad], f"SUBACK codes {codes}"

    c.publish(_deep(128), b"ok", qos=1)
    watcher.wait_payloads([b"ok"], WAIT_SHORT, "the 128-level publish")
    c.send(publish_packet(_deep(129), b"too deep", qos=1, packet_id=7, version=version))
    got = c.wait_closed(WAIT_SHORT)
    if version == 5:
        assert got and got[-1].type == DISCONNECT, f"expected DISCONNECT 0x90, got {got}"
        assert parse_disconnect(got[-1]).reason == RC_TOPIC_NAME_INVALID, got
    else:
        assert not got, f"3.1.1: expected the connection to close without an answer, got {got}"
    time.sleep(0.3)
    assert b"too deep" not in watcher.payloads()
    assert _wait_hits(b, "mqtt.max_topic_levels", 4) >= 4


@pytest.mark.time_limit(240)
def test_09_deep_filters_cost_nothing(make_broker):
    """A hundred filters of 32,752 levels each (the most a 65,535-byte filter holds): refused, so neither the
    client's worker nor the peer it would be announced to grows. Before: all granted, +241 MiB on the client's
    worker and +238 MiB on the other."""
    b, pids = _start(make_broker)
    c = Client(b.port, 5, want=_on(pids[0]), name="deep")
    c.connect(unique("d"))
    sampler = Sampler(b, list(pids.values()))
    # Distinct from the first level on, so that no two share a path in the subscription tree.
    filters = [f"{i}/" + _deep(32_751) for i in range(100)]
    codes: list[int] = []
    for start in range(0, len(filters), 12):
        # The filters themselves are too long for an error message: wait with a short one.
        c.send(subscribe_packet(start + 1, [(f, 0) for f in filters[start:start + 12]], 5))
        try:
            ack = parse_suback(c.expect(SUBACK, timeout=60, what="SUBACK"), 5)
        except AssertionError:
            raise AssertionError(f"no SUBACK for the filters {start}..{start + 11} within 60 s") from None
        codes += ack.codes
    c.ping()
    time.sleep(1.5)  # the routes reach the peer and are applied there
    sampler.stop()
    figures = sampler.report("100 filters x 32,752 levels")
    assert all(code >= 0x80 for code in codes), f"granted: {sum(code < 0x80 for code in codes)} of 100"
    for pid in pids.values():
        assert sampler.growth_mib(pid) < 24, f"worker {pid} grew by {sampler.growth_mib(pid):.0f} MiB: {figures}"


# ----------------------------------------------------------------------------------------------------------------
# 13. Between workers


@pytest.mark.time_limit(150)
def test_13_stopped_peer_does_not_grow_a_worker(make_broker):
    """The worker of a subscriber is stopped (SIGSTOP) while a publisher on the other worker sends 300 MB at
    QoS 1: the publisher's worker keeps at most `node.max_peer_buffered_bytes` (64 MB) for the stopped peer and
    counts what it drops; once the peer runs again (SIGCONT), the link is back and new publishes reach the
    subscriber. Before: every forwarded byte was buffered, in the peer link's write queue and again for replay."""
    b, pids = _start(make_broker)
    sub = Client(b.port, 4, want=_on(pids[1]), name="subscriber")
    sub.connect(unique("sub"), clean=False, persistent=True)
    assert sub.subscribe("slow/t", qos=1) == [1]
    publisher = Client(b.port, 4, want=_on(pids[0]), name="publisher")
    publisher.connect(unique("pub"))
    publisher.publish("slow/t", b"warm-up", qos=1)
    sub.wait_payloads([b"warm-up"], WAIT_SHORT, "the warm-up message")

    sampler = Sampler(b, [pids[0]])
    os.kill(pids[1], signal.SIGSTOP)
    try:
        for i in range(300):
            publisher.publish("slow/t", _numbered(i, 1_000_000), qos=1)
        time.sleep(1.5)
        sampler.stop()
        figures = sampler.report("300 x 1 MB for a stopped peer")
        statistics = _statistics(b)
        print(f"[figures] storage while the peer is stopped: {[s.get('storage') for s in statistics]}")
    finally:
        os.kill(pids[1], signal.SIGCONT)
    # 64 MB kept for the peer, plus what is in flight through the worker.
    assert sampler.growth_mib(pids[0]) < 100, f"the publisher's worker grew without bound: {figures}"
    assert _wait_hits(b, "node.max_peer_buffered_bytes") > 0

    # The link comes back: a new publish reaches the subscriber on the peer.
    def delivered() -> bool:
        marker = unique("after").encode()
        publisher.publish("slow/t", marker, qos=1)
        try:
            sub.wait(lambda: marker in sub.payloads(), 1.0, "a publish after the peer resumed")
            return True
        except AssertionError:
            return False

    wait_until(delivered, 30, interval=0.2, message="publishes to reach the resumed peer again")
