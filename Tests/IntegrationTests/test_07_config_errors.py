"""07 supervision: a bad config or a busy port makes `start` fail fast, saying where and why."""

from __future__ import annotations

import socket
from pathlib import Path
import time

import pytest

import harness

# Each case: (id, function(broker) -> (lines, key, extra substrings expected in stderr)).


def _unknown_key_did_you_mean(b):
    lines = [l for l in b.config_lines(ssl=True) if not l.startswith("listener.ssl.external.verify")]
    lines.append("listener.ssl.external.verfy = verify_peer")
    key = "listener.ssl.external.verfy"
    return lines, key, ["unknown key", "did you mean 'listener.ssl.external.verify'?"]


def _unknown_node_key(b):
    lines = b.config_lines()
    lines.insert(2, "node.worker_procesess = 2")
    return lines, "node.worker_procesess", ["unknown key", "node.worker_processes"]


def _bad_duration(b):
    lines = [l if not l.startswith("node.shutdown_timeout") else "node.shutdown_timeout = 5 parsecs"
             for l in b.config_lines()]
    return lines, "node.shutdown_timeout", []


def _port_out_of_range(b):
    lines = [l if not l.startswith("listener.tcp.external =") else "listener.tcp.external = 127.0.0.1:70000"
             for l in b.config_lines()]
    return lines, "listener.tcp.external", []


def _bad_worker_count(b):
    lines = [l if not l.startswith("node.worker_processes") else "node.worker_processes = two"
             for l in b.config_lines()]
    return lines, "node.worker_processes", []


def _missing_certfile(b):
    missing = b.dir / "no-such-dir" / "server.pem"
    lines = [l if not l.startswith("listener.ssl.external.certfile") else f"listener.ssl.external.certfile = {missing}"
             for l in b.config_lines(ssl=True)]
    return lines, "listener.ssl.external.certfile", [str(missing)]


def _bad_verify_value(b):
    lines = [l if not l.startswith("listener.ssl.external.verify") else "listener.ssl.external.verify = verify_maybe"
             for l in b.config_lines(ssl=True)]
    return lines, "listener.ssl.external.verify", []


def _certfile_not_a_certificate(b):
    garbage = b.dir / "garbage.pem"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_text("this is not a certificate\n")
    lines = [l if not l.startswith("listener.ssl.external.certfile") else f"listener.ssl.external.certfile = {garbage}"
             for l in b.config_lines(ssl=True)]
    # The file exists, so the loader accepts the line; building the TLS context refuses it, naming the listener.
    return lines, "listener.ssl.external", ["cannot load certificate chain", str(garbage)]


def _key_does_not_match_certificate(b):
    lines = b.config_lines(ssl=True)
    cafile = next(l.split("=", 1)[1].strip() for l in lines if l.startswith("listener.ssl.external.cacertfile"))
    # The CA certificate with the server's key: both files are valid, they just do not belong together.
    lines = [l if not l.startswith("listener.ssl.external.certfile") else f"listener.ssl.external.certfile = {cafile}"
             for l in lines]
    return lines, "listener.ssl.external", ["private key does not match certificate"]


def _must_staple_without_stapling(b):
    # RFC 7633: a certificate that promises a staple, on a listener that does not staple.
    import subprocess
    d = b.dir / "must-staple"
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "server.key"), "-out", str(d / "server.pem"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "tlsfeature=status_request"],
                   check=True, capture_output=True, timeout=30)
    lines = []
    for l in b.config_lines(ssl=True):
        if l.startswith("listener.ssl.external.certfile"):
            l = f"listener.ssl.external.certfile = {d / 'server.pem'}"
        elif l.startswith("listener.ssl.external.keyfile"):
            l = f"listener.ssl.external.keyfile = {d / 'server.key'}"
        lines.append(l)
    return lines, "listener.ssl.external", ["must-staple", "enable_ocsp_stapling = true"]


CASES = {
    "unknown-key-did-you-mean": _unknown_key_did_you_mean,
    "unknown-node-key": _unknown_node_key,
    "bad-duration": _bad_duration,
    "port-out-of-range": _port_out_of_range,
    "worker-count-not-a-number": _bad_worker_count,
    "missing-certfile": _missing_certfile,
    "bad-verify-value": _bad_verify_value,
    "certfile-not-a-certificate": _certfile_not_a_certificate,
    "key-does-not-match-certificate": _key_does_not_match_certificate,
    "must-staple-without-stapling": _must_staple_without_stapling,
}


def _assert_nothing_left(broker):
    deadline = time.monotonic() + 2
    while broker.leftover_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {p: harness.proc_cmdline(p) for p in broker.leftover_pids()}
    assert not left, f"gatehouse processes left after a failed start: {left}"


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_07_invalid_config_start_fails(broker, case):
    lines, key, extras = CASES[case](broker)
    broker.write_config(lines)
    line = next(i for i, l in enumerate(lines, start=1) if l.startswith(key + " ") or l.startswith(key + "="))

    rc, out, err, took = broker.run_start_expect_failure(foreground=True)
    assert rc != 0, f"start exited 0 with an invalid config ({case})"
    assert took < 5, f"start took {took:.1f}s to reject the config"
    where = f"{broker.config_path}:{line}: {key}"
    assert where in err, f"stderr does not contain {where!r}:\n{err}"
    for e in extras:
        assert e in err, f"stderr does not contain {e!r}:\n{err}"
    if case == "unknown-key-did-you-mean":
        exact = f"{where}: unknown key (did you mean 'listener.ssl.external.verify'?)"
        assert exact in err, f"stderr lacks the exact line {exact!r}:\n{err}"
    _assert_nothing_left(broker)


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "daemon"])
def test_07_busy_port_start_fails(broker, foreground):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEADDR / SO_REUSEPORT
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        broker.port = port
        broker.write_config(workers=2)

        rc, out, err, took = broker.run_start_expect_failure(foreground=foreground, timeout=20)
        text = err + out
        assert rc != 0, f"start exited 0 although port {port} is busy"
        assert took < 10, f"start took {took:.1f}s to fail"
        assert "address already in use" in text.lower(), f"no 'address already in use' in:\n{text}"
        assert str(port) in text, f"port {port} not mentioned:\n{text}"
        assert "tcp:external" in text, f"listener name tcp:external not mentioned:\n{text}"
        assert f"127.0.0.1:{port}" in text, f"address 127.0.0.1:{port} not mentioned:\n{text}"
        _assert_nothing_left(broker)
    finally:
        holder.close()


def test_07_invalid_config_daemon_start_fails(broker):
    """Without --foreground the same error reaches the operator and `start` exits non-zero."""
    lines, key, extras = _unknown_key_did_you_mean(broker)
    broker.write_config(lines)
    line = broker.line_of(key + " ")
    rc, out, err, took = broker.run_start_expect_failure(foreground=False)
    assert rc != 0, "daemonizing start exited 0 with an invalid config"
    assert took < 5, f"start took {took:.1f}s to reject the config"
    where = f"{broker.config_path}:{line}: {key}: unknown key (did you mean 'listener.ssl.external.verify'?)"
    assert where in err, f"stderr does not contain {where!r}:\n{err}"
    assert not broker.socket_path.exists(), "a control socket was left behind"
    _assert_nothing_left(broker)


def test_07_bad_acl_file_start_fails(broker):
    """A malformed ACL file is refused at start with its own file and line, before any worker runs."""
    acl = broker.dir / "acl.conf"
    acl.parent.mkdir(parents=True, exist_ok=True)
    acl.write_text("user alice\ntopics read a/#\n")
    broker.write_config(broker.config_lines() + [f"acl_file = {acl}"])
    rc, out, err, took = broker.run_start_expect_failure(foreground=True)
    assert rc != 0, "start exited 0 with a malformed ACL file"
    assert f"{acl}:2: unknown keyword 'topics'" in err, f"stderr does not name the ACL line:\n{err}"
    _assert_nothing_left(broker)


def test_07_corrupt_message_store_start_fails(broker):
    """A `gatehouse.db` that is not a database (or is damaged) is one clear error naming the file; the broker does
    not start and the file is left exactly as it was (it may hold retained messages and sessions)."""
    lines = broker.config_lines()
    broker.write_config(lines)
    data_dir = next(l.split("=", 1)[1].strip() for l in lines if l.startswith("node.data_dir"))
    db = Path(data_dir) / "gatehouse.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    garbage = b"this is not an SQLite database, but it holds somebody's data\n" * 64
    db.write_bytes(garbage)
    rc, out, err, took = broker.run_start_expect_failure(foreground=True)
    assert rc != 0, "start exited 0 with a corrupt message store"
    assert took < 5, f"start took {took:.1f}s to reject the store"
    assert str(db) in err, f"stderr does not name {db}:\n{err}"
    assert "node.data_dir" in err and "message store" in err, err
    assert db.read_bytes() == garbage, "the corrupt store was modified"
    _assert_nothing_left(broker)
