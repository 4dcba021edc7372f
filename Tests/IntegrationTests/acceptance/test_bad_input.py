"""Bad input on the TLS port: garbage and plain text, slowloris handshakes, and one peer opening 10 000
connections. In every case the broker closes what is bad, bounds what is slow by `handshake_timeout`, keeps its
log readable (at most 20 refusal lines a second per listener, the rest summed up), and keeps serving everyone else.

(Malformed MQTT packets are in test_01..04 and the MQTT decoder fuzzer; malformed CRL and OCSP bodies in the
revocation fuzz tests and `bin/fuzz`.)
"""

from __future__ import annotations

import os
import resource
import secrets
import selectors
import socket
import ssl
import struct
import time

import pytest

import harness
import pki

HANDSHAKE_TIMEOUT = 3.0


def client_hello(node: pki.TLSNode) -> bytes:
    """The first flight of a real TLS client (Python's ssl) toward this node: a complete ClientHello record."""
    ctx = ssl.create_default_context(cafile=str(node.cafile))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:8]
    return hello


def closed_by_server(sock: socket.socket, within: float) -> tuple[bool, bytes]:
    """Read until EOF or reset (True) or until `within` seconds passed (False); returns what was read."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    got = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def refusals_by_reason(node: pki.TLSNode) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in node.b.status()["processes"]:
        for listener in (p.get("statistics") or {}).get("listeners", []):
            for reason, n in listener.get("refusals", {}).items():
                out[reason] = out.get(reason, 0) + n
    return out


def good_round_trip(node: pki.TLSNode, tag: str) -> None:
    alice = node.pki.clients["alice"]
    sub = node.sub(alice, f"bad-input/{tag}", f"sub-{tag}")
    sub.wait_subscribed(timeout=10)
    r = node.pub(alice, f"bad-input/{tag}", "ok", client_id=f"pub-{tag}", timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sub.expect(timeout=10) == (f"bad-input/{tag}", "ok")
    sub.close()


def test_garbage_and_plain_text_on_the_tls_port(tls_node, tls_pki) -> None:
    node = tls_node(tls_pki, crl_check=False, options=[f"handshake_timeout = {HANDSHAKE_TIMEOUT:g}s"]).start()
    hello = client_hello(node)
    mqtt_connect = bytes([0x10, 0x10, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x3C, 0x00, 0x04]) + b"evil"
    inputs = {
        "random bytes": secrets.token_bytes(4096),
        "an HTTP request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a plain MQTT CONNECT": mqtt_connect,
        "a record header claiming 64 KiB": b"\x16\x03\x01\xff\xff" + secrets.token_bytes(512),
        "an SSLv2 ClientHello": b"\x80\x2e\x01\x00\x02\x00\x15" + secrets.token_bytes(48),
        "a ClientHello with its body scrambled": hello[:9] + secrets.token_bytes(len(hello) - 9),
        "a ClientHello then garbage": hello + secrets.token_bytes(2048),
        "an alert record": b"\x15\x03\x03\x00\x02\x02\x28",
        "zero bytes": b"\x00" * 1024,
    }
    for _ in range(40):  # and random lengths of random bytes
        inputs[f"{len(inputs)} random"] = secrets.token_bytes(secrets.randbelow(3000) + 1)
    for name, data in inputs.items():
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
            try:
                s.sendall(data)
            except (ConnectionResetError, BrokenPipeError):
                continue
            closed, _ = closed_by_server(s, within=HANDSHAKE_TIMEOUT + 3)
            assert closed, f"{name}: the connection was still open {HANDSHAKE_TIMEOUT + 3:g}s later"
    # The plain-text MQTT client of an operator who forgot --cafile fails cleanly, and the broker still serves.
    cp = pki.mosquitto_pub(node.port, "bad-input/plain", "x", tls=[], timeout=HANDSHAKE_TIMEOUT + 5)
    assert cp.returncode != 0
    good_round_trip(node, "garbage")
    assert node.b.proc is not None and node.b.proc.poll() is None, "the supervisor exited"
    # Each was refused as a protocol error, counted by reason (status, metrics).
    harness.wait_until(lambda: sum(refusals_by_reason(node).values()) >= len(inputs) + 1, 5,
                       message="every bad input counted as a refused handshake")
    print(f"bad input: {len(inputs)} kinds of garbage and plain text on the TLS port, each closed, "
          f"refusals {refusals_by_reason(node)}")


@pytest.mark.time_limit(120)
def test_slowloris_handshakes_bounded_by_the_handshake_timeout(tls_node, tls_pki) -> None:
    node = tls_node(tls_pki, crl_check=False, options=[f"handshake_timeout = {HANDSHAKE_TIMEOUT:g}s"]).start()
    hello = client_hello(node)
    silent, half, trickle = [], [], []
    t0 = time.monotonic()
    for _ in range(100):
        silent.append(socket.create_connection(("127.0.0.1", node.port), timeout=5))
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(hello[: len(hello) // 2])
        half.append(s)
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(hello[:1])
        trickle.append(s)
    # A good client is served while 300 handshakes hang.
    good_round_trip(node, "slowloris")
    # The trickling ones keep sending a byte now and then: that does not extend their time.
    for i in range(1, 4):
        time.sleep(0.5)
        for s in trickle:
            try:
                s.sendall(hello[i:i + 1])
            except OSError:
                pass
    everyone = silent + half + trickle
    deadline = t0 + HANDSHAKE_TIMEOUT + 5
    still_open = [s for s in everyone if not closed_by_server(s, within=max(0.0, deadline - time.monotonic()))[0]]
    took = time.monotonic() - t0
    for s in everyone:
        s.close()
    assert not still_open, f"{len(still_open)} of {len(everyone)} slow handshakes still open after {took:.1f}s"
    timeouts = harness.wait_until(lambda: (n := refusals_by_reason(node).get("handshake timeout", 0)) >= 300 and n,
                                  5, message="300 handshake timeouts counted in status")
    assert timeouts == 300, refusals_by_reason(node)
    # The log stays readable: at most 20 lines a second, and the rest summed up.
    individual = node.lines_with(pki.REFUSED, tls__reason="handshake timeout")
    summed = sum(int(l.fields.get("tls.refused", "0"))
                 for l in node.wait_log("TLS handshake refusals not logged one by one (more than 20 a second)",
                                        timeout=3))
    assert len(individual) + summed == 300, (len(individual), summed)
    assert len(individual) <= 20 * (took + 2), len(individual)
    good_round_trip(node, "after-slowloris")
    print(f"bad input: 300 slow handshakes (silent, half a ClientHello, trickling) all closed by the "
          f"{HANDSHAKE_TIMEOUT:g}s handshake timeout; {len(individual)} logged one by one, {summed} summed up")


def raise_open_files(needed: int) -> None:
    """This process's soft limit on open files up to `needed` (the broker, started afterwards, inherits it and
    raises its own soft limit to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        except (ValueError, OSError):
            pytest.skip(f"the hard limit on open files is {hard} and cannot be raised here; {needed} are needed")
    elif soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.time_limit(240)
def test_ten_thousand_connections_from_one_peer(tls_node, tls_pki) -> None:
    count, timeout = 10_000, 20.0
    raise_open_files(count + 2048)
    node = tls_node(tls_pki, crl_check=False, options=[f"handshake_timeout = {timeout:g}s"]).start()
    worker = harness.ready_workers(node.b.status())[0]["pid"]
    baseline = open_fds(worker)
    # One peer (127.0.0.2, still loopback) opens 10 000 TCP connections to the TLS port and sends nothing.
    attacker: list[socket.socket] = []
    t0 = time.monotonic()
    try:
        # In waves of 250 connects, each wave completed before the next: as fast as the worker accepts, without
        # overflowing the listen backlog (dropped SYNs would only be retried seconds later by the kernel).
        for _ in range(0, count, 250):
            wave = []
            for _ in range(250):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.bind(("127.0.0.2", 0))
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", node.port))
                wave.append(s)
            with selectors.DefaultSelector() as sel:
                for s in wave:
                    sel.register(s, selectors.EVENT_WRITE)
                pending, wave_deadline = len(wave), time.monotonic() + 10
                while pending and time.monotonic() < wave_deadline:
                    for key, _ in sel.select(timeout=0.5):
                        sel.unregister(key.fileobj)
                        pending -= 1
            attacker += wave
        held = harness.wait_until(lambda: (n := open_fds(worker) - baseline) >= count and n, timeout / 2,
                                  interval=0.2, message="the worker to have accepted the 10 000 connections")
        opened = time.monotonic() - t0
        # Everyone else is served meanwhile.
        t1 = time.monotonic()
        good_round_trip(node, "flood")
        served_in = time.monotonic() - t1
        # The handshake timeout closes them all; the worker's descriptors come back down.
        for s in attacker:
            s.setblocking(True)
        closed = 0
        deadline = t0 + timeout + 30
        for s in attacker:
            ok, _ = closed_by_server(s, within=max(0.1, deadline - time.monotonic()))
            closed += ok
        assert closed == count, f"only {closed} of {count} closed by the server"
        all_closed = time.monotonic() - t0
        harness.wait_until(lambda: open_fds(worker) <= baseline + 16, 10,
                           message="the worker's descriptors to come back down")
    finally:
        for s in attacker:
            s.close()
    assert node.b.proc is not None and node.b.proc.poll() is None, "the supervisor exited"
    good_round_trip(node, "after-flood")
    timeouts = harness.wait_until(lambda: (n := refusals_by_reason(node).get("handshake timeout", 0)) >= count and n,
                                  5, message="the handshake timeouts counted in status")
    print(f"bad input: {count} connections from one peer, all {held} held by the worker {opened:.1f}s after the "
          f"first; a good client served meanwhile in {served_in:.2f}s; all closed by the {timeout:g}s handshake "
          f"timeout {all_closed:.1f}s after the first ({timeouts} counted)")
