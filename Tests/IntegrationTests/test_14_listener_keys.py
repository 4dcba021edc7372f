"""14 listener keys: the EMQX listener keys that used to be accepted and ignored take effect or are refused.

The real binary with 2 workers on loopback. `access.<N>` rules (a client from 127.0.0.2 denied, from 127.0.0.1
allowed), `max_connections` exact across both workers (and after a worker is killed), `max_conn_rate`, the PROXY
protocol v1 and v2 (headers written by hand, then MQTT or TLS over the same socket) with access rules applied to
the proxied address, a missing or garbage header, its timeout; refusals counted per listener and reason in
`gatehouse status`; the keys that are refused and numeric values out of range stop `start` naming the line.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import struct
import time
import urllib.request

import pytest

import harness
import pki
from mqtt_helpers import CONNACK, connect_packet

# ---------------------------------------------------------------------------------------------------------------
# Helpers


def mqtt_connect(sock: socket.socket, client_id: str, timeout: float = 3.0) -> str:
    """Send CONNECT (3.1.1) on a connected socket; return "connack" if a CONNACK came back, "closed" if the broker
    closed the connection first."""
    try:
        sock.sendall(connect_packet(client_id))
    except OSError:
        return "closed"
    return _await_connack(sock, timeout)


def _await_connack(sock, timeout: float) -> str:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            return "closed"
        if not chunk:
            return "closed"
        data += chunk
        if len(data) >= 4:
            assert data[0] >> 4 == CONNACK and data[3] == 0, f"unexpected answer {data.hex()}"
            return "connack"
    raise AssertionError(f"neither CONNACK nor close within {timeout}s (got {data.hex()})")


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the broker closed `sock` (EOF or reset), or None if it is still open after `timeout`."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    assert data == b"", f"the broker sent {data!r} instead of closing"
    return time.monotonic() - t0


def client_socket(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def proxy_v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src: str, dst: str, sport: int, dport: int, command: int = 0x1, tlvs: bytes = b"") -> bytes:
    """A PROXY protocol v2 header (HAProxy's spec, section 2.2): TCP over IPv4 or IPv6."""
    if ":" in src:
        family, addresses = 0x21, socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        family, addresses = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body = addresses + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def refused_counts(status: dict, listener: str) -> dict[str, int]:
    """Connections refused at accept for `listener`, by reason, summed over the workers in `status`."""
    total: dict[str, int] = {}
    for p in harness.procs(status, "worker"):
        refused = (p.get("statistics") or {}).get("connections_refused") or {}
        for reason, count in (refused.get(listener) or {}).items():
            total[reason] = total.get(reason, 0) + count
    return total


def wait_refused(broker, listener: str, reason: str, at_least: int, timeout: float = 5.0) -> dict:
    return broker.wait_status(
        lambda st: refused_counts(st, listener).get(reason, 0) >= at_least, timeout,
        f"{at_least} refusals '{reason}' on {listener} in status")


def started(broker, extra: list[str], workers: int = 2, ssl_listener: bool = False, metrics_port: int | None = None
            ) -> dict:
    lines = broker.config_lines(workers=workers, ssl=ssl_listener, extra=extra)
    if metrics_port is not None:
        lines = [l if not l.startswith("node.metrics_listener") else f"node.metrics_listener = 127.0.0.1:{metrics_port}"
                 for l in lines]
    broker.write_config(lines)
    return broker.start_foreground()


def open_clients(broker, port: int, count: int, prefix: str) -> tuple[list[socket.socket], list[socket.socket]]:
    """Open `count` connections one after the other, each with a CONNECT; return (accepted, refused)."""
    accepted, refused = [], []
    for i in range(count):
        s = client_socket(port)
        broker.sockets.append(s)
        (accepted if mqtt_connect(s, f"{prefix}-{i}") == "connack" else refused).append(s)
    return accepted, refused


# ---------------------------------------------------------------------------------------------------------------
# access.<N>


def test_access_rules_deny_one_address_allow_another(broker):
    """access.1 = deny 127.0.0.2, access.2 = allow all: 127.0.0.2 is closed at once, 127.0.0.1 connects."""
    p = "listener.tcp.external"
    metrics = harness.free_port()
    started(broker, [f"{p}.access.2 = allow all", f"{p}.access.1 = deny 127.0.0.2"], metrics_port=metrics)
    for attempt in range(4):  # both workers (the kernel spreads connections over them)
        denied = client_socket(broker.port, source="127.0.0.2")
        broker.sockets.append(denied)
        took = closed_within(denied, 3.0)
        assert took is not None and took < 1.0, f"a client from 127.0.0.2 was not closed at once ({took})"
        allowed = client_socket(broker.port)
        broker.sockets.append(allowed)
        assert mqtt_connect(allowed, f"allowed-{attempt}") == "connack"
    wait_refused(broker, "tcp:external", "access_denied", 4)
    series = 'gatehouse_connections_refused_total{listener="tcp:external",reason="access_denied"} 4'
    harness.wait_until(
        lambda: series in urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode(),
        5, message=f"{series!r} in /metrics")
    text = broker.cli("status").stdout
    assert "tcp:external access_denied=" in text, f"status does not show the refusals:\n{text}"


def test_access_rule_without_match_allows_and_deny_all_closes(broker):
    """No rule matches → allowed (EMQX); a final `deny all` admits only what is listed, before any TLS work."""
    p = "listener.ssl.external"
    started(broker, [f"{p}.access.1 = allow 127.0.0.1/32", f"{p}.access.2 = deny all",
                     "listener.tcp.external.access.1 = deny 10.0.0.0/8"], ssl_listener=True)
    s = client_socket(broker.port, source="127.0.0.3")
    broker.sockets.append(s)
    assert mqtt_connect(s, "nomatch") == "connack", "an address no rule matches was not allowed"
    # On the TLS listener, 127.0.0.3 is closed before the server says anything: no ServerHello comes back.
    denied = client_socket(broker.ssl_port, source="127.0.0.3")
    broker.sockets.append(denied)
    denied.sendall(b"\x16\x03\x01\x00\x05hello")
    assert closed_within(denied, 3.0) is not None
    st = wait_refused(broker, "ssl:external", "access_denied", 1)
    assert not any(l.get("refusals") for p_ in harness.procs(st, "worker")
                   for l in (p_.get("statistics") or {}).get("listeners", [])), "TLS work was done for a denied client"


# ---------------------------------------------------------------------------------------------------------------
# max_connections, max_conn_rate


def test_max_connections_is_exact_across_two_workers(broker):
    """max_connections = 5 with 2 workers: exactly 5 of 10 connections are served, whichever worker took them;
    a closed one frees its place; after kill -9 of a worker its connections no longer count."""
    started(broker, ["listener.tcp.external.max_connections = 5"])
    accepted, refused = open_clients(broker, broker.port, 10, "maxconn")
    assert len(accepted) == 5, f"{len(accepted)} connections served with max_connections = 5"
    owners = [harness.connection_owner(s) for s in accepted]
    assert len(set().union(*owners)) == 2, f"the accepted connections were not spread over both workers: {owners}"
    wait_refused(broker, "tcp:external", "max_connections", 5)

    accepted.pop().close()
    time.sleep(0.3)
    more, _ = open_clients(broker, broker.port, 3, "maxconn-after-close")
    assert len(more) == 1, f"{len(more)} served after one of 5 closed"
    accepted += more

    # kill -9 the worker that holds some of them: its places are free once it is gone, and only those.
    victim = next(iter(harness.connection_owner(accepted[0])))
    held_by_victim = sum(1 for s in accepted if victim in harness.connection_owner(s))
    os.kill(victim, signal.SIGKILL)
    broker.wait_status(lambda st: victim not in harness.child_pids(st) and len(harness.ready_workers(st)) == 2,
                       15, "the killed worker respawned")
    again, _ = open_clients(broker, broker.port, held_by_victim + 3, "maxconn-after-kill")
    assert len(again) == held_by_victim, (
        f"{len(again)} served after kill -9 of a worker that held {held_by_victim} (limit 5)")


def test_max_conn_rate_limits_new_connections_per_second(broker):
    """max_conn_rate = 5: a burst of 15 gets 5 (plus what the elapsed time refills), a second later more."""
    started(broker, ["listener.tcp.external.max_conn_rate = 5"])
    t0 = time.monotonic()
    accepted, refused = open_clients(broker, broker.port, 15, "rate")
    elapsed = time.monotonic() - t0
    assert 5 <= len(accepted) <= 5 + int(elapsed * 5) + 1, f"{len(accepted)} served in {elapsed:.2f}s at 5/s"
    assert refused, "no connection refused by max_conn_rate"
    wait_refused(broker, "tcp:external", "max_conn_rate", len(refused))
    time.sleep(1.1)
    later, _ = open_clients(broker, broker.port, 3, "rate-later")
    assert len(later) == 3, "the rate limit did not refill after a second"


# ---------------------------------------------------------------------------------------------------------------
# PROXY protocol


def test_proxy_protocol_v1_address_is_used_for_access_and_logs(broker):
    p = "listener.tcp.external"
    started(broker, [f"{p}.proxy_protocol = true", f"{p}.access.1 = deny 10.66.0.0/16", f"{p}.access.2 = allow all"])
    s = client_socket(broker.port)
    broker.sockets.append(s)
    s.sendall(proxy_v1("10.9.8.7", "127.0.0.1", 4242, broker.port))
    assert mqtt_connect(s, "proxied-v1") == "connack"
    harness.wait_until(lambda: "10.9.8.7:4242" in broker.stderr(), 5, message="the proxied address in the log")
    # The real address (127.0.0.1) is allowed; the proxied one is denied.
    d = client_socket(broker.port)
    broker.sockets.append(d)
    d.sendall(proxy_v1("10.66.1.1", "127.0.0.1", 4243, broker.port) + connect_packet("denied-v1"))
    assert closed_within(d, 3.0) is not None, "a client denied by its proxied address was served"
    wait_refused(broker, "tcp:external", "access_denied", 1)
    # IPv6 in v1 and the UNKNOWN form (the proxy's own connection: the real address counts).
    six = client_socket(broker.port)
    broker.sockets.append(six)
    six.sendall(proxy_v1("2001:db8::7", "2001:db8::1", 5000, 1883))
    assert mqtt_connect(six, "proxied-v1-ipv6") == "connack"
    unknown = client_socket(broker.port)
    broker.sockets.append(unknown)
    unknown.sendall(b"PROXY UNKNOWN\r\n")
    assert mqtt_connect(unknown, "proxied-unknown") == "connack"


def test_proxy_protocol_v2_then_tls(broker, tls_pki):
    """A v2 header written by hand, then TLS with a client certificate over the same socket; a refused handshake
    is logged with the proxied address (tls.peer)."""
    p = "listener.ssl.external"
    broker.pki = {"server_key": tls_pki.server.key, "server_cert": tls_pki.server.cert, "ca_cert": tls_pki.root.cert}
    started(broker, [f"{p}.proxy_protocol = true", f"{p}.access.1 = deny 192.0.2.0/24",
                     f"{p}.allow_anonymous = true"], ssl_listener=True)

    def tls_client(cert) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(tls_pki.root.cert))
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        return ctx

    raw = client_socket(broker.ssl_port)
    broker.sockets.append(raw)
    raw.sendall(proxy_v2("198.51.100.7", "127.0.0.1", 6000, broker.ssl_port, tlvs=b"\x04\x00\x02ab"))
    tls = tls_client(tls_pki.clients["alice"]).wrap_socket(raw, server_hostname="localhost")
    broker.sockets.append(tls)
    assert mqtt_connect(tls, "proxied-v2-tls") == "connack"
    harness.wait_until(lambda: "198.51.100.7:6000" in broker.stderr(), 5, message="the proxied address in the log")

    # A certificate from another CA: refused, and the refusal line names the proxied peer.
    raw2 = client_socket(broker.ssl_port)
    broker.sockets.append(raw2)
    raw2.sendall(proxy_v2("2001:db8::42", "::1", 6001, broker.ssl_port))
    with pytest.raises((ssl.SSLError, OSError)):
        t2 = tls_client(tls_pki.other_client).wrap_socket(raw2, server_hostname="localhost")
        broker.sockets.append(t2)
        t2.sendall(connect_packet("other-ca"))
        t2.recv(4)
        t2.recv(4)
    line = harness.wait_until(
        lambda: [l for l in pki.log_lines(broker.stderr(), pki.REFUSED) if "2001:db8::42" in l.raw], 5,
        message="a refusal line with the proxied IPv6 peer")[0]
    assert line.fields.get("tls.peer") == "[2001:db8::42]:6001", line.raw

    # Denied by its proxied address: closed before TLS.
    raw3 = client_socket(broker.ssl_port)
    broker.sockets.append(raw3)
    raw3.sendall(proxy_v2("192.0.2.9", "127.0.0.1", 6002, broker.ssl_port) + b"\x16\x03\x01\x00\x05hello")
    assert closed_within(raw3, 3.0) is not None
    wait_refused(broker, "ssl:external", "access_denied", 1)
    # v2 LOCAL (a health check from the proxy itself): the real address counts and the connection is served.
    local = client_socket(broker.ssl_port)
    broker.sockets.append(local)
    local.sendall(V2_SIGNATURE + bytes([0x20, 0x00]) + b"\x00\x00")
    t4 = tls_client(tls_pki.clients["bob"]).wrap_socket(local, server_hostname="localhost")
    broker.sockets.append(t4)
    assert mqtt_connect(t4, "proxy-local") == "connack"


@pytest.mark.parametrize("header", [
    pytest.param(connect_packet("no-header"), id="mqtt-without-header"),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="http"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", id="v1-bad-port"),
    pytest.param(b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", id="v1-bad-address"),
    pytest.param(b"PROXY TCP4 " + b"1" * 200 + b"\r\n", id="v1-too-long"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\x00" * 64, id="v2-too-long"),
    pytest.param(V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, id="v2-bad-version"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4, id="v2-short-addresses"),
])
def test_proxy_protocol_missing_or_garbage_header_is_closed(broker, header):
    started(broker, ["listener.tcp.external.proxy_protocol = true"], workers=1)
    s = client_socket(broker.port)
    broker.sockets.append(s)
    s.sendall(header)
    took = closed_within(s, 3.0)
    assert took is not None and took < 1.0, f"a connection with header {header[:40]!r} was not closed at once"
    wait_refused(broker, "tcp:external", "proxy_header_invalid", 1)


def test_proxy_protocol_timeout(broker):
    p = "listener.tcp.external"
    started(broker, [f"{p}.proxy_protocol = true", f"{p}.proxy_protocol_timeout = 500ms"], workers=1)
    t0 = time.monotonic()
    silent = client_socket(broker.port)
    broker.sockets.append(silent)
    partial = client_socket(broker.port)
    broker.sockets.append(partial)
    partial.sendall(b"PROXY TCP4 10.0.0.1 ")
    for s in (silent, partial):
        assert closed_within(s, 5.0) is not None, "not closed with proxy_protocol_timeout = 500ms"
        took = time.monotonic() - t0
        assert 0.4 <= took < 2.0, f"closed {took:.2f}s after connecting with proxy_protocol_timeout = 500ms"
    wait_refused(broker, "tcp:external", "proxy_header_timeout", 2)


# ---------------------------------------------------------------------------------------------------------------
# Refused keys and values out of range


REFUSED_KEYS = [
    ("acceptors = 16", "Erlang VM tuning"),
    ("zone = external", "no zones"),
    ("active_n = 100", "Erlang VM tuning"),
    ("rate_limit = 100KB,10s", "no byte-rate limit per connection"),
    ("dhfile = /etc/dh.pem", "only ECDHE key exchange is offered"),
    ("secure_renegotiate = false", "renegotiation is disabled entirely"),
]


@pytest.mark.parametrize("line,why", REFUSED_KEYS, ids=[k.split(" ")[0] for k, _ in REFUSED_KEYS])
def test_refused_key_stops_start_naming_the_line(broker, line, why):
    broker.write_config(ssl=True, extra=[f"listener.ssl.external.{line}"])
    key = "listener.ssl.external." + line.split(" ")[0]
    rc, out, err, took = broker.run_start_expect_failure()
    assert rc != 0, f"start accepted {key}"
    where = f"{broker.config_path}:{broker.line_of(key + ' ')}: {key}: "
    assert where in err and why in err, f"stderr does not refuse {key} with file:line:key and why:\n{err}"


@pytest.mark.parametrize("line,why", [
    ("crl_cache_max_size = 9223372036854775807", "out of range (1-1073741824 bytes)"),
    ("node.fetch_refresh_floor = 106751991167d", "too long (the maximum is 1d)"),
    ("listener.tcp.external.max_connections = 0", "out of range (1-10000000)"),
], ids=["crl_cache_max_size", "fetch_refresh_floor", "max_connections"])
def test_numeric_value_out_of_range_stops_start_naming_the_line(broker, line, why):
    broker.write_config(extra=[line])
    key = line.split(" ")[0]
    rc, out, err, took = broker.run_start_expect_failure()
    assert rc != 0, f"start accepted {line}"
    where = f"{broker.config_path}:{broker.line_of(key + ' ')}: {key}: "
    assert where in err and why in err, f"stderr does not refuse {line!r} naming the line:\n{err}"


# ---------------------------------------------------------------------------------------------------------------
# peer_cert_as_username / peer_cert_as_clientid: no fallback to the CONNECT values


def no_cn_certificate(ca: pki.CA, directory) -> pki.Cert:
    """A client certificate without a CN (subject "/O=NoCN"), signed by `ca` (`openssl x509 -req`: the CA's
    `openssl ca` policy demands a CN)."""
    key, csr, crt = directory / "nocn.key", directory / "nocn.csr", directory / "nocn.pem"
    pki.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(csr), "-subj", "/O=NoCN")
    pki.openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
                "-out", str(crt), "-days", "2", "-extfile", str(ca.cnf), "-extensions", "usr_cert")
    return pki.Cert(name="nocn", cert=crt, key=key, subject="O=NoCN", serial=pki.cert_serial(crt))


def tls_connack(port: int, cafile, cert: pki.Cert | None, client_id: str, username: str | None,
                version: int) -> int:
    """CONNECT over TLS (with `cert`, or none); the CONNACK return/reason code."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(cafile))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(connect_packet(client_id, version=version, username=username))
            s.settimeout(5)
            data = b""
            while len(data) < 4:
                chunk = s.recv(64)
                assert chunk, f"closed without CONNACK (got {data.hex()})"
                data += chunk
            assert data[0] >> 4 == CONNACK, data.hex()
            return data[3]


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_peer_cert_fields_missing_refuse_the_connect(broker, tls_pki, tmp_path, version):
    """peer_cert_as_username = cn with a certificate without CN, and peer_cert_as_clientid = cn without any
    certificate (fail_if_no_peer_cert = false): the CONNECT's own username / client id must not be used; the
    client is refused (3.1.1: 0x05, MQTT 5: 0x87) and one warning line names listener, peer and the field."""
    nocn = no_cn_certificate(tls_pki.root, tmp_path)
    broker.pki = {"server_key": tls_pki.server.key, "server_cert": tls_pki.server.cert, "ca_cert": tls_pki.root.cert}
    p = "listener.ssl.external"
    lines = [l if not l.startswith(f"{p}.fail_if_no_peer_cert") else f"{p}.fail_if_no_peer_cert = false"
             for l in broker.config_lines(workers=1, ssl=True)]
    lines += [f"{p}.peer_cert_as_username = cn", f"{p}.peer_cert_as_clientid = cn", f"{p}.allow_anonymous = true"]
    broker.write_config(lines)
    broker.start_foreground()
    refused = 0x87 if version == 5 else 0x05

    # A good certificate: its CN is the username and the client id, whatever CONNECT says.
    assert tls_connack(broker.ssl_port, tls_pki.root.cert, tls_pki.clients["alice"], "x", "admin", version) == 0
    # No CN: claiming "admin" (or "alice") through CONNECT is refused.
    assert tls_connack(broker.ssl_port, tls_pki.root.cert, nocn, "alice", "admin", version) == refused
    # No certificate at all: claiming client id "alice" is refused.
    assert tls_connack(broker.ssl_port, tls_pki.root.cert, None, "alice", None, version) == refused

    warnings = harness.wait_until(
        lambda: [l for l in pki.parse_log(broker.stderr()) if l.level == "warning" and "certificate" in l.message
                 and "peer_cert_as" in l.raw], 5, message="the refusal warnings")
    assert len(warnings) == 2, "\n".join(l.raw for l in warnings)
    for line in warnings:
        assert line.fields.get("listener") == "ssl:external", line.raw
        assert line.fields.get("tls.peer", "").startswith("127.0.0.1:"), line.raw
    assert "peer_cert_as_username = cn" in warnings[0].raw and "no CN" in warnings[0].raw, warnings[0].raw
    assert "no client certificate" in warnings[1].raw, warnings[1].raw
