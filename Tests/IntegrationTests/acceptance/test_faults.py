"""Faults an operator will meet, each injected into a running node, with what must happen stated and asserted.

| fault                                   | expected                                                               |
|-----------------------------------------|------------------------------------------------------------------------|
| kill -9 of the fetcher mid-download     | nothing partial published; workers and their clients unaffected; the   |
|                                         | respawned fetcher downloads again and publishes the whole CRL          |
| kill -9 of a worker under load          | the other worker's clients keep their connection and every message;    |
|                                         | the respawned worker serves new clients                                |
| CRL server down > refresh interval      | the last good CRL decides until its nextUpdate, then the fail policy  |
|                                         | (closed: "CRL has expired"); back up: fetched and served again         |
| OCSP responder down                     | the last good staple until its nextUpdate, then no staple; back up:    |
|                                         | stapled again                                                          |
| cache directory full / read-only        | publication fails with a clear error, the last good file stays (on     |
|                                         | disk and in the workers), no temp file left; space back: published     |
| cache directory removed and recreated   | workers keep what they loaded; the fetcher rebuilds the tree and       |
|                                         | publishes again; workers pick it up                                    |
| reload with an invalid config           | refused with file, line and key; the old config keeps running          |
| kill -9 of the supervisor               | no orphan: every child exits; the node starts again at once            |
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import harness
import pki
from test_09_fetcher import (assert_no_temp_files, assert_worker_uses_crl_revoking, crl_file, crl_listener,  # noqa: F401
                             crl_server, fetch_lines, fetcher_pid, new_fetcher, wait_failed, wait_handshake,
                             wait_published)
from test_10_stapling import (EXPIRED, LOADED, assert_good_staple, handshake, ocsp_log, ocsp_responder,  # noqa: F401
                              stapling_node, wait_loaded)

FETCH_FAILED = "fetch failed"


def fast_refresh() -> list[str]:
    return ["node.fetch_refresh_floor = 1s", "crl_cache_refresh_interval = 1s"]


# ----------------------------------------------------------------------------------------------------------------
# The fetcher killed during a download


@pytest.mark.time_limit(120)
def test_fetcher_killed_mid_download(tls_node, own_pki, crl_server) -> None:
    p = own_pki
    alice, bob, carol = p.clients["alice"], p.clients["bob"], p.clients["carol"]
    first = p.root.gencrl(p.dir / "first.der", der=True)
    url = crl_server.serve("/ca.crl", first)
    node = tls_node(p, options=crl_listener(url), extra=fast_refresh()).start()
    wait_published(node, url)
    wait_handshake(node, alice, accepted=True)  # the worker has loaded it
    published = crl_file(node, url).read_bytes()
    # A client connected before the fault, and one subscribed: both must not notice anything.
    sub = node.sub(alice, "faults/fetcher", "fetcher-sub")
    sub.wait_subscribed()

    # The next CRL is big and served slowly; kill the fetcher while it is downloading.
    p.root.revoke(bob)
    pki.revoke_many(p.root, 35000)
    big = p.root.gencrl(p.dir / "big.der", der=True)
    crl_server.put("/ca.crl", big.read_bytes())
    crl_server.fault("/ca.crl", throttle=400_000)

    def in_flight() -> bool:
        reqs = crl_server.requests("/ca.crl")
        return bool(reqs) and reqs[-1].status == 200 and 100_000 < reqs[-1].body_bytes < big.stat().st_size // 2 \
            and not reqs[-1].complete

    harness.wait_until(in_flight, 15, interval=0.02, message="the big download to be under way")
    victim = fetcher_pid(node)
    os.kill(victim, signal.SIGKILL)

    # Workers unaffected: the old CRL stays in force, handshakes go on, the subscriber still gets messages.
    assert crl_file(node, url).read_bytes() == published, "the published CRL changed although its download was killed"
    assert node.s_client(carol).accepted
    assert node.pub(carol, "faults/fetcher", "during").returncode == 0
    assert sub.expect() == ("faults/fetcher", "during")

    # A new fetcher resumes: the whole CRL is published, nothing partial ever was, no temp file is left.
    new_fetcher(node, victim)
    wait_published(node, url, more_than=1, timeout=big.stat().st_size / 400_000 + 15)
    assert crl_file(node, url).read_bytes() == big.read_bytes()
    assert_no_temp_files(node)
    assert_worker_uses_crl_revoking(node, bob, carol)
    assert sub.alive(), "the subscriber was disconnected"
    assert node.pub(carol, "faults/fetcher", "after").returncode == 0
    assert sub.expect() == ("faults/fetcher", "after")


# ----------------------------------------------------------------------------------------------------------------
# A worker killed under load


class NumberedStream:
    """A paho publisher that, once started, sends payloads n = 0, 1, ... to `topic` at QoS 1 from its own thread."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.sent = 0
        self.stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"stream-{topic.replace('/', '-')}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            info = self.client.publish(self.topic, str(self.sent).encode(), qos=1)
            info.wait_for_publish(timeout=5)
            self.sent += 1
            time.sleep(0.002)

    def finish(self) -> int:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.client.loop_stop()
        self.client.disconnect()
        return self.sent


class Counter:
    """A paho subscriber recording every payload of a topic (QoS 1)."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: list[int] = []
        self.disconnects = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.on_message = lambda c, u, m: self.got.append(int(m.payload))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: setattr(self, "disconnects", self.disconnects + 1)
        self.client.connect("127.0.0.1", port)
        self.sock = self.client.socket()
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5), f"{client_id}: no SUBACK"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def owner_slot(broker: harness.Broker, sock, status: dict) -> int | None:
    pids = harness.connection_owner(sock)
    for w in harness.ready_workers(status):
        if w["pid"] in pids:
            return w["slot"]
    return None


@pytest.mark.time_limit(120)
def test_worker_killed_under_load(broker) -> None:
    broker.write_config(workers=2)
    st = broker.start_foreground()
    # Clients until each worker holds a subscriber (SO_REUSEPORT spreads connections across the workers).
    subs: dict[int, Counter] = {}
    extra: list[Counter] = []
    for i in range(40):
        c = Counter(broker.port, "faults/load", f"counter-{i}")
        slot = owner_slot(broker, c.sock, st)
        if slot is not None and slot not in subs:
            subs[slot] = c
        else:
            extra.append(c)
        if len(subs) == 2:
            break
    for c in extra:
        c.close()
    assert len(subs) == 2, f"could not place a subscriber on each worker: {sorted(subs)}"
    victim_slot, survivor_slot = 1, 0
    victim_pid = harness.ready_by_slot(st)[victim_slot]["pid"]
    survivor = subs[survivor_slot]
    # The publisher must live on the surviving worker too, or its own connection is the one lost.
    for i in range(40):
        stream = NumberedStream(broker.port, "faults/load")
        if owner_slot(broker, stream.client.socket(), st) == survivor_slot:
            stream.start()
            break
        stream.finish()
    else:
        raise AssertionError("could not place the publisher on the surviving worker")

    time.sleep(1.0)
    os.kill(victim_pid, signal.SIGKILL)
    time.sleep(1.5)
    sent = stream.finish()
    harness.wait_until(lambda: len(survivor.got) >= sent, 10, message=f"{sent} messages at the survivor's client")

    # The surviving worker's clients never noticed: no disconnect, every message once, in order.
    assert survivor.disconnects == 0
    assert survivor.got == list(range(sent)), f"lost or reordered: {len(survivor.got)} of {sent}"
    print(f"faults: worker killed under load: {sent} QoS 1 messages, {len(survivor.got)} received by the "
          f"surviving worker's subscriber, 0 lost")

    # The victim is respawned in its slot and serves new clients.
    st = broker.wait_status(lambda s: (w := harness.ready_by_slot(s).get(victim_slot)) and w["pid"] != victim_pid,
                            15, "a respawned worker in the victim's slot")
    for i in range(40):
        c = Counter(broker.port, "faults/after", f"after-{i}")
        if owner_slot(broker, c.sock, st) == victim_slot:
            break
        c.close()
    else:
        raise AssertionError("no new connection reached the respawned worker")
    cp = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", "faults/after",
                         "-m", "7"], capture_output=True, timeout=10)
    assert cp.returncode == 0, cp.stderr
    harness.wait_until(lambda: c.got == [7], 5, message="the respawned worker's client to get the message")
    for x in (c, *subs.values()):
        x.close()


# ----------------------------------------------------------------------------------------------------------------
# The CRL server down for longer than the refresh interval


@pytest.mark.time_limit(90)
def test_crl_server_down_then_fail_policy_then_back(tls_node, own_pki, crl_server) -> None:
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    p.root.revoke(bob)
    now = datetime.now(timezone.utc)
    short = p.root.gencrl(p.dir / "short.der", der=True, last_update=now - timedelta(seconds=5),
                          next_update=now + timedelta(seconds=12))
    url = crl_server.serve("/ca.crl", short)
    node = tls_node(p, options=crl_listener(url), extra=fast_refresh()).start()
    wait_published(node, url)
    assert_worker_uses_crl_revoking(node, bob, alice)

    crl_server.fault("/ca.crl", status=503)
    wait_failed(node, url, "crl")
    time.sleep(3)  # three refresh intervals without the CA
    # Until nextUpdate: the last good CRL decides.
    assert_worker_uses_crl_revoking(node, bob, alice)
    st = node.b.status()
    row = [c for c in st["cache"] if c.get("url") == url][0]
    assert row.get("last_error"), row

    # After nextUpdate: the fail policy (closed) refuses everyone, saying why.
    time.sleep(max(0.0, (now + timedelta(seconds=13)).timestamp() - time.time()))
    r = wait_handshake(node, alice, accepted=False, timeout=5)
    assert r.alert is not None, str(r)
    assert node.wait_log(pki.REFUSED, tls__serial=alice.serial, tls__reason="CRL has expired")

    # The CA comes back with a fresh CRL: served again without any restart.
    crl_server.clear("/ca.crl")
    crl_server.put("/ca.crl", p.root.gencrl(p.dir / "fresh.der", der=True).read_bytes())
    wait_published(node, url, more_than=1, timeout=10)
    wait_handshake(node, alice, accepted=True, timeout=5)
    assert_worker_uses_crl_revoking(node, bob, alice)


# ----------------------------------------------------------------------------------------------------------------
# The OCSP responder down


@pytest.mark.time_limit(90)
def test_ocsp_responder_down_staple_until_next_update(tls_node, own_pki, ocsp_responder) -> None:
    p = own_pki
    responder = ocsp_responder(p.root)
    responder.valid_for = 10.0
    node = stapling_node(tls_node, p, url=responder.url, refresh=True).start()
    loaded = wait_loaded(node)
    responder.http_status = 503  # down
    next_update = datetime.fromisoformat(loaded.fields["ocsp.next_update"].replace("Z", "+00:00")).timestamp()

    # Until nextUpdate: the last good response is stapled.
    assert_good_staple(handshake(node, "1.3"), node, "1.3")
    time.sleep(max(0.0, next_update - time.time() - 3))
    h = handshake(node, "1.2")
    if time.time() < next_update - 0.5:
        assert_good_staple(h, node, "1.2")
    assert node.lines_with(FETCH_FAILED, fetch__kind="ocsp"), ocsp_log(node)

    # After it: never stapled, said once.
    time.sleep(max(0.0, next_update + 1.0 - time.time()))
    h = handshake(node, "1.3")
    assert h.completed and h.unstapled, str(h)
    node.wait_log(EXPIRED, timeout=3)

    # Back up: stapled again.
    before = len(node.lines_with(LOADED))
    responder.http_status = None
    responder.valid_for = 3600
    wait_loaded(node, more_than=before, timeout=10)
    assert_good_staple(handshake(node, "1.2"), node, "1.2")


# ----------------------------------------------------------------------------------------------------------------
# The cache directory full, then read-only


class Tmpfs:
    """A small tmpfs mounted over a directory (the test runs as root, as CI does)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                            capture_output=True, text=True)
        if cp.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {cp.stderr.strip()}")

    def remount(self, option: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{option}", str(self.path)], check=True, capture_output=True)

    def fill(self) -> Path:
        filler = self.path / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def tmpfs_mounts():
    mounts: list[Tmpfs] = []
    yield lambda path, size: mounts.append(Tmpfs(path, size)) or mounts[-1]
    for m in mounts:
        m.unmount()


@pytest.mark.time_limit(90)
def test_cache_directory_full_then_read_only(tls_node, own_pki, crl_server, tmpfs_mounts) -> None:
    p = own_pki
    alice, bob, carol = p.clients["alice"], p.clients["bob"], p.clients["carol"]
    p.root.revoke(bob)
    first = p.root.gencrl(p.dir / "first.der", der=True)
    url = crl_server.serve("/ca.crl", first)
    node = tls_node(p, options=crl_listener(url), extra=fast_refresh())
    fs = tmpfs_mounts(node.cache, "1m")
    node.crl_dir.mkdir(mode=0o700, exist_ok=True)
    node.start()
    wait_published(node, url)
    assert_worker_uses_crl_revoking(node, bob, alice)
    good = crl_file(node, url).read_bytes()

    # Full: a new, bigger CRL (revoking carol too) cannot be written.
    filler = fs.fill()
    p.root.revoke(carol)
    pki.revoke_many(p.root, 5000)
    crl_server.put("/ca.crl", p.root.gencrl(p.dir / "next.der", der=True).read_bytes())
    line = wait_failed(node, url, "crl", timeout=10)
    assert "No space left on device" in line.fields.get("fetch.error", ""), line.raw
    time.sleep(1.5)
    assert crl_file(node, url).read_bytes() == good, "the last good CRL was changed"
    assert_worker_uses_crl_revoking(node, bob, alice)
    assert node.s_client(carol).accepted, "the worker lost the last good CRL or loaded a partial one"
    assert_no_temp_files(node, settle=0.5)

    # Read-only (space back, but the file system refuses writes): the same.
    filler.unlink()
    fs.remount("ro")
    failures = len(node.lines_with(FETCH_FAILED, fetch__url=url))
    line = node.wait_log(FETCH_FAILED, more_than=failures, timeout=10, fetch__url=url)[-1]
    assert "Read-only file system" in line.fields.get("fetch.error", ""), line.raw
    assert crl_file(node, url).read_bytes() == good
    assert node.s_client(carol).accepted

    # Writable again: the pending CRL is published and applied.
    fs.remount("rw")
    wait_published(node, url, more_than=1, timeout=10)
    assert_worker_uses_crl_revoking(node, carol, alice)
    assert_no_temp_files(node)


# ----------------------------------------------------------------------------------------------------------------
# The cache directory removed and recreated


@pytest.mark.time_limit(90)
def test_cache_directory_removed_and_recreated(tls_node, own_pki, crl_server) -> None:
    p = own_pki
    alice, bob, carol = p.clients["alice"], p.clients["bob"], p.clients["carol"]
    p.root.revoke(bob)
    url = crl_server.serve("/ca.crl", p.root.gencrl(p.dir / "first.der", der=True))
    node = tls_node(p, options=crl_listener(url), extra=fast_refresh()).start()
    wait_published(node, url)
    assert_worker_uses_crl_revoking(node, bob, alice)

    # Removed: the worker keeps the revocation data it loaded (bob stays refused, alice accepted).
    shutil.rmtree(node.cache)
    time.sleep(0.5)
    assert_worker_uses_crl_revoking(node, bob, alice)

    # The fetcher rebuilds the tree and publishes again on its own; the worker watches the new directories.
    harness.wait_until(lambda: crl_file(node, url).exists(), 15,
                       message=f"the CRL republished into the recreated cache\n{fetch_lines(node)}")
    assert node.lines_with("the cache directory was removed; recreated it, fetching everything again")
    assert node.lines_with("CRL file removed, keeping what was loaded from it until a new one is published",
                           revocation__file=str(crl_file(node, url)))
    p.root.revoke(carol)
    crl_server.put("/ca.crl", p.root.gencrl(p.dir / "second.der", der=True).read_bytes())
    wait_handshake(node, carol, accepted=False, timeout=10)
    assert_worker_uses_crl_revoking(node, carol, alice)

    # Removed and recreated empty by the operator: the same.
    shutil.rmtree(node.cache)
    node.cache.mkdir(mode=0o700)
    harness.wait_until(lambda: crl_file(node, url).exists(), 15, message="the CRL republished again")
    assert_worker_uses_crl_revoking(node, carol, alice)
    assert_no_temp_files(node)


# ----------------------------------------------------------------------------------------------------------------
# A reload with an invalid config


def test_invalid_reload_keeps_the_running_config(broker) -> None:
    broker.write_config(workers=2)
    st = broker.start_foreground()
    pids = harness.child_pids(st)
    good = broker.config_path.read_text()
    broker.config_path.write_text(good + "mqtt.max_packet_size = lots\nnode.worker_processes = 3\n")
    cp = broker.cli("reload")
    assert cp.returncode != 0, cp.stdout
    message = cp.stdout + cp.stderr
    assert str(broker.config_path) in message and ":" in message, message
    assert "max_packet_size" in message, message
    # The old config keeps running: the same processes, two workers, and MQTT is served.
    time.sleep(1.0)
    st = broker.status()
    assert harness.child_pids(st) == pids
    assert len(harness.ready_workers(st)) == 2
    cp = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "t", "-m", "m"],
                        capture_output=True, timeout=10)
    assert cp.returncode == 0, cp.stderr
    # Fixed: the reload applies.
    broker.config_path.write_text(good.replace("node.worker_processes = 2", "node.worker_processes = 3"))
    assert broker.cli("reload").returncode == 0
    broker.wait_ready(3)


# ----------------------------------------------------------------------------------------------------------------
# The supervisor killed with -9


def test_supervisor_killed_leaves_no_orphan(broker) -> None:
    broker.write_config(workers=2)
    st = broker.start_foreground()
    children = harness.child_pids(st)
    assert len(children) == 3, st
    os.kill(broker.supervisor_pid, signal.SIGKILL)
    broker.proc.wait(timeout=5)
    harness.wait_until(lambda: not any(harness.pid_alive(pid) for pid in children), 5,
                       message=f"the children {sorted(children)} to exit after the supervisor was killed")
    assert not broker.leftover_pids(), broker.leftover_pids()
    # And the node starts again at once on the same directories and ports (no stale socket or lock in the way).
    broker.proc = None
    broker.start_foreground()
    cp = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "t", "-m", "m"],
                        capture_output=True, timeout=10)
    assert cp.returncode == 0, cp.stderr
