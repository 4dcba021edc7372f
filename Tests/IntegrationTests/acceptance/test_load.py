"""Acceptance, load: many concurrent mTLS clients held at once, and a short soak under CRL churn.

- 10 000 concurrent mTLS connections (client certificate, CRL checking on with a CRL, MQTT CONNECT/CONNACK) are
  held against Gatehouse with 2 workers by the load generator's hold mode (`tls-handshake-load --hold`), then
  every one must still answer PINGREQ. The memory they cost (VmRSS summed over supervisor, fetcher and workers)
  is printed per connection.
- `benchmarks/soak --duration 60`: pub/sub load over mTLS while a certificate is revoked every 10 s through a
  CRL fetched from a loopback HTTP server; it must PASS (no message lost, every victim cut off and refused, no good
  client refused, memory flat after the warm-up).
- A worker out of file descriptors pauses accept (no busy loop), keeps its clients and accepts again once
  descriptors are free.

The load generator is the debug (or release) build of the `tls-handshake-load` product; `swift build
--build-tests` (bin/test) builds it with everything else. `TLS_HANDSHAKE_LOAD_BIN` overrides where it is looked for.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness
import pki as tls_pki

CONNECTIONS = 10_000
HOLD_SECONDS = 5


def load_generator() -> Path:
    """The tls-handshake-load binary next to GATEHOUSE_BIN, else in .build/debug or .build/release."""
    candidates = []
    if os.environ.get("TLS_HANDSHAKE_LOAD_BIN"):
        candidates.append(Path(os.environ["TLS_HANDSHAKE_LOAD_BIN"]))
    if os.environ.get("GATEHOUSE_BIN"):
        candidates.append(Path(os.environ["GATEHOUSE_BIN"]).resolve().parent / "tls-handshake-load")
    candidates += [harness.REPO_ROOT / ".build" / d / "tls-handshake-load" for d in ("debug", "release")]
    for c in candidates:
        if c.exists():
            return c
    pytest.fail(f"tls-handshake-load not found (looked at {[str(c) for c in candidates]}); "
                "run `swift build --build-tests` or `swift build --product tls-handshake-load`")


def broker_rss_kib(broker: harness.Broker) -> tuple[int, dict[str, int]]:
    """VmRSS summed over every process of the node (from `status`), and each one's."""
    each = {}
    for p in broker.status()["processes"]:
        name = p["role"] if p["role"] != "worker" else f"worker/{p['slot']}"
        each[name] = harness.rss_kib(p["pid"])
    return sum(each.values()), each


@pytest.fixture
def descriptors():
    """Raise this process's RLIMIT_NOFILE (inherited by the broker it starts) so that 10 000 connections fit
    whatever the machine's default; restored afterwards."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * CONNECTIONS
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(old[0], want), max(old[1], want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (old[1], old[1]))
    yield resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.time_limit(120)
def test_10k_concurrent_mtls_connections_held(make_broker, own_pki, tmp_path, descriptors):
    p = own_pki
    client = p.clients["alice"]
    p.root.revoke(p.clients["bob"])  # a CRL with an entry, checked on every handshake
    crl = p.root.gencrl(tmp_path / "crl.pem")
    b = make_broker("load")
    b.ssl_port = harness.free_port()
    listener = "listener.ssl.load"
    b.write_config(lines=b.config_lines(workers=2, extra=[
        f"{listener} = 127.0.0.1:{b.ssl_port}",
        f"{listener}.keyfile = {p.server.key}",
        f"{listener}.certfile = {p.server.cert}",
        f"{listener}.cacertfile = {p.root.cert}",
        f"{listener}.verify = verify_peer",
        f"{listener}.fail_if_no_peer_cert = true",
        f"{listener}.allow_anonymous = true",
        f"{listener}.enable_crl_check = true",
        f"{listener}.crlfile = {crl}",
    ]))
    b.start_foreground(workers=2)
    assert tls_pki.s_client(b.ssl_port, p.root.cert, p.clients["bob"]).refused, "the CRL is not in force"
    time.sleep(1)
    idle, idle_each = broker_rss_kib(b)

    def hold(seconds: float) -> tuple[dict, int, dict, dict | None]:
        """The load generator's report, the node's RSS while holding, each process's, and status then."""
        proc = subprocess.Popen(
            [str(load_generator()), "--port", str(b.ssl_port), "--hold", str(CONNECTIONS),
             "--hold-seconds", str(seconds), "--threads", "2", "--window", "64", "--timeout", "60",
             "--cert", str(client.cert), "--key", str(client.key), "--ca", str(p.root.cert)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            holding_line = proc.stderr.readline()
            held_rss, held_each, status = 0, {}, None
            if holding_line.startswith("holding"):
                time.sleep(1.5)  # workers report their counters to the supervisor once a second
                held_rss, held_each = broker_rss_kib(b)
                status = b.status()
            stdout, stderr = proc.communicate(timeout=seconds + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert stdout.strip(), f"tls-handshake-load printed nothing (rc {proc.returncode}): {holding_line}{stderr}"
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["held"] == CONNECTIONS and result["failed"] == 0, json.dumps(result, indent=1)
        assert result["alive_after_hold"] == CONNECTIONS, json.dumps(result, indent=1)
        assert proc.returncode == 0, stderr
        return result, held_rss, held_each, status

    result, held_rss, held_each, status = hold(HOLD_SECONDS)
    per_connection = (held_rss - idle) / CONNECTIONS
    print(f"\n{result['held']} of {CONNECTIONS} held (opened in {result['open_seconds']:.1f} s, "
          f"{result['opens_per_second']:.0f}/s), {result['alive_after_hold']} alive after {HOLD_SECONDS} s; "
          f"RSS idle {idle / 1024:.1f} MiB {idle_each}, holding {held_rss / 1024:.1f} MiB {held_each}: "
          f"{per_connection:.1f} KiB per connection (binary: {b.binary})")
    # The broker's own count agrees, every worker took a share (SO_REUSEPORT), and none was restarted.
    assert status is not None
    per_worker = [w.get("statistics", {}).get("connections", 0) for w in harness.procs(status, "worker")]
    assert sum(per_worker) == CONNECTIONS and all(n > 0 for n in per_worker), per_worker
    assert all(w["restarts"] == 0 for w in harness.procs(b.status(), "worker"))


@pytest.mark.time_limit(150)
def test_soak_60s_under_crl_churn(gatehouse_bin, tmp_path):
    """The soak's CI size: 60 s, with 10 fresh handshakes a second so that a per-connection leak stands out in its
    RSS slope (see `leak_verdict` in benchmarks/soak)."""
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(harness.REPO_ROOT / "benchmarks" / "soak"), "--duration", "60",
         "--probes-per-second", "10", "--bin", str(gatehouse_bin), "--json", str(out)],
        capture_output=True, text=True, timeout=140)
    print(proc.stdout)
    assert proc.returncode == 0 and "\nPASS" in proc.stdout, f"{proc.stdout}\n---- stderr ----\n{proc.stderr[-8000:]}"
    result = json.loads(out.read_text())
    f = result["figures"]
    assert f["crl_replacements"] >= 5 and f["victims_revoked"] == f["victims_disconnected"] == f["victims_refused"]
    assert f["lost"] == 0 and f["good_refused"] == 0 and f["published"] > 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mqtt_connect(sock, client_id: str) -> None:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    sock.sendall(bytes([0x10, len(body)]) + body)


@pytest.mark.time_limit(60)
def test_descriptor_exhaustion_pauses_accept(gatehouse_bin, tmp_path):
    """A worker out of file descriptors stops accepting for a second at a time instead of spinning on accept
    (it used to burn a whole core until a descriptor was free), says so once, keeps serving the clients it has and
    accepts again when descriptors free up. The limit is set by a wrapper (`ulimit -n`, soft and hard, so the
    supervisor cannot raise it)."""
    limit = 128
    wrapper = tmp_path / "gatehouse"
    wrapper.write_text(f"#!/bin/sh\nulimit -n {limit}\nexec {gatehouse_bin} \"$@\"\n")
    wrapper.chmod(0o755)
    b = harness.Broker(wrapper, name="nofile")
    try:
        b.write_config(lines=b.config_lines(workers=1))
        worker = harness.procs(b.start_foreground(workers=1), "worker")[0]["pid"]
        socks = []
        for i in range(limit + 60):
            s = harness.connect(b.port)
            mqtt_connect(s, f"nofile-{i}")
            socks.append(s)
        first = socks[0]
        assert first.recv(4) == b"\x20\x02\x00\x00", "the first client was not accepted"
        harness.wait_until(lambda: "cannot accept connections, pausing accept" in b.stderr(), 10,
                           message="the accept pause warning")
        lines = tls_pki.log_lines(b.stderr(), "cannot accept connections, pausing accept")
        assert len(lines) == 1 and lines[0].fields.get("open_files_limit") == f"{limit}/{limit}", lines
        # While the table is full the worker idles: no busy accept loop.
        before, t0 = cpu_seconds(worker), time.monotonic()
        time.sleep(3)
        busy = (cpu_seconds(worker) - before) / (time.monotonic() - t0)
        assert busy < 0.2, f"the worker used {busy:.0%} of a core while out of descriptors"
        # Connected clients are still served.
        first.sendall(b"\xc0\x00")
        assert first.recv(2) == b"\xd0\x00"
        # Free descriptors: the clients waiting in the backlog get in (one per retry is enough to show it).
        for s in socks[1:80]:
            s.close()
        last = socks[-1]
        last.settimeout(10)
        assert last.recv(4) == b"\x20\x02\x00\x00", "a waiting client was not accepted once descriptors were free"
        harness.wait_until(lambda: "accepting connections again" in b.stderr(), 5, message="the resume notice")
    finally:
        for s in locals().get("socks", []):
            s.close()
        notes = b.cleanup()
        b.remove_dir()
        assert not notes, notes
