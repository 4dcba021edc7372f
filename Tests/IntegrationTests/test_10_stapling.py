"""10 OCSP stapling (issue 6): workers staple the OCSP response that the fetcher published for the listener's
server certificate, in TLS 1.2 (CertificateStatus) and TLS 1.3 (the Certificate entry's status_request
extension), only to clients that ask, from the first handshake, and never past the response's nextUpdate.

Real pieces only: the OCSP answers are made by `openssl ocsp` behind `revocation_servers.OCSPResponder` on
127.0.0.1; the clients are `openssl s_client -status` and a Mosquitto 2 broker bridging to Gatehouse with
`bridge_require_ocsp true` (Mosquitto checks the staple with `OCSP_basic_verify` against `bridge_cafile`, its
status and its validity window, and drops the connection without one). Certificates are made at test time
(`pki.py`); a must-staple certificate carries `tlsfeature = status_request` (RFC 7633).

What a handshake carried is read from s_client's own output: the printed response (its signature value is
compared with the response in the cache, `<cache>/ocsp/external.der`, which makes it the same response) and,
with `-msg`, the sizes of the server's handshake messages (TLS 1.2 CertificateStatus = 8 + the response's
length; in TLS 1.3 the Certificate message grows by the same amount), which shows that a client that does not
send status_request gets no staple at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import harness
import mqtt_helpers
import pki
import revocation_servers as rs

LISTENER = pki.LISTENER
PUBLISHED = "OCSP response published"
LOADED = "OCSP staple loaded"
EXPIRED = "OCSP staple expired, no longer stapled"
OFF = "OCSP stapling is off: the server certificate has no OCSP URL and ocsp_responder_url is not set"
FIRST_FETCH = 10.0  # how long after the start the first response may take to be published and loaded
REFRESH = 2.0  # ocsp_refresh_interval where a test needs new responses
VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])
NO_STAPLE = "OCSP response: no response sent"


# ----------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(request.node, f"_rep_{p}", None) is not None and getattr(request.node, f"_rep_{p}").failed
               for p in ("setup", "call"))


@pytest.fixture
def ocsp_responder(request: pytest.FixtureRequest, tmp_path: Path):
    """Factory: `ocsp_responder(ca, nmin=None)` → a running `OCSPResponder`; stopped at teardown."""
    made: list[rs.OCSPResponder] = []

    def factory(ca: pki.CA, nmin: int | None = None) -> rs.OCSPResponder:
        r = rs.OCSPResponder(ca, tmp_path / f"ocsp-{len(made)}", nmin=nmin)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.stop()
        if _failed(request):
            print(r.describe())


_SERVER_EXT = ["basicConstraints = CA:FALSE", "keyUsage = critical, digitalSignature, keyEncipherment",
               "extendedKeyUsage = serverAuth", "subjectKeyIdentifier = hash",
               "authorityKeyIdentifier = keyid, issuer", "subjectAltName = DNS:localhost, IP:127.0.0.1"]


def issue_server(ca: pki.CA, name: str, *, ocsp_url: str | None = None, must_staple: bool = False) -> pki.Cert:
    """A server certificate (SAN localhost / 127.0.0.1) issued by `ca` with `openssl ca -extfile`, with an AIA OCSP
    URL when `ocsp_url` is given and the TLS feature extension status_request (must-staple) when asked."""
    lines = list(_SERVER_EXT)
    if ocsp_url is not None:
        lines.append(f"authorityInfoAccess = OCSP;URI:{ocsp_url}")
    if must_staple:
        lines.append("tlsfeature = status_request")
    ext = ca.dir / f"{name}.ext"
    ext.write_text("[ ext ]\n" + "\n".join(lines) + "\n")
    key, csr, crt = ca.dir / f"{name}.key", ca.dir / f"{name}.csr", ca.dir / f"{name}.pem"
    pki.openssl("req", "-config", str(ca.cnf), "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    pki.openssl("ca", "-config", str(ca.cnf), "-batch", "-notext", "-in", str(csr), "-out", str(crt),
                "-extfile", str(ext), "-extensions", "ext", "-days", "2")
    return pki.Cert(name=name, cert=crt, key=key, subject="CN=localhost", serial=pki.cert_serial(crt))


def stapling_node(tls_node, p: pki.TestPKI, *, url: str | None = None, issuer: bool = True,
                  refresh: bool = False, version: str | None = None, stapling: bool = True) -> pki.TLSNode:
    """A not yet started `TLSNode` (one worker, `listener.ssl.external` with client certificates required, no CRL
    check) with OCSP stapling on: `ocsp_responder_url = url` when given (else the certificate's AIA),
    `ocsp_issuer_pem` = the root when `issuer` (else found by the broker), refreshed every 2 s when `refresh`."""
    options: list[str] = []
    extra: list[str] = []
    if stapling:
        options.append("enable_ocsp_stapling = true")
        options.append("ocsp_refresh_http_timeout = 2s")
        if url is not None:
            options.append(f"ocsp_responder_url = {url}")
        if issuer:
            options.append(f"ocsp_issuer_pem = {p.root.cert}")
        if refresh:
            options.append(f"ocsp_refresh_interval = {REFRESH:g}s")
            extra.append("node.fetch_refresh_floor = 1s")
    return tls_node(p, version, crl_check=False, options=options, extra=extra)


def ocsp_file(node: pki.TLSNode) -> Path:
    return node.cache / "ocsp" / f"{LISTENER}.der"


def dump(lines: list[pki.LogLine]) -> str:
    return "\n".join(l.raw for l in lines)


def ocsp_log(node: pki.TLSNode) -> str:
    """The log lines about OCSP (for assertion messages)."""
    return dump([l for l in pki.parse_log(node.log()) if "OCSP" in l.message or "stapl" in l.message
                 or any(k.startswith(("ocsp.", "fetch.")) for k in l.fields) or l.message == pki.REFUSED])


def wait_loaded(node: pki.TLSNode, more_than: int = 0, timeout: float = FIRST_FETCH) -> pki.LogLine:
    """Wait for the worker's `OCSP staple loaded` line number `more_than + 1` (and later ones); return the last."""
    try:
        return node.wait_log(LOADED, more_than=more_than, timeout=timeout)[-1]
    except AssertionError as e:
        raise AssertionError(f"{e}\n{ocsp_log(node)}") from None


def stapling_status(node: pki.TLSNode) -> dict:
    st = node.b.status()
    rows = [s for s in st.get("stapling", []) if s.get("listener") == LISTENER]
    assert len(rows) == 1, f"expected one stapling row for {LISTENER}: {json.dumps(st.get('stapling'))}"
    return rows[0]


def iso(ts: str) -> float:
    """Unix time of a log timestamp like 2026-11-30T08:50:42Z / 2026-11-29T08:50:39.992Z."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def log_time(line: pki.LogLine) -> float:
    return iso(line.raw.split(" ", 1)[0])


_SIG = re.compile(r"Signature Value:\s*\n((?:[ \t]+[0-9a-f]{2}(?::[0-9a-f]{2})*:?\s*\n)+)")


def signature_of(text: str) -> str:
    """The first printed `Signature Value` (an OCSP response's own signature comes before its certificates')."""
    m = _SIG.search(text)
    assert m, f"no signature value in:\n{text}"
    return re.sub(r"\s+", "", m.group(1))


def cached_signature(node: pki.TLSNode) -> str:
    return signature_of(pki.ocsp_response_text(ocsp_file(node)))


@dataclasses.dataclass
class Handshake:
    """One `openssl s_client` run (stdin closed at once: it completes the handshake, then closes)."""

    args: list[str]
    rc: int
    output: str

    @property
    def completed(self) -> bool:
        return (bool(re.search(r"^(New|Reused), TLSv1\.[23]", self.output, re.M))
                and "Verify return code: 0 (ok)" in self.output
                and not re.search(r"alert number \d+|error:[0-9A-F]+:SSL routines", self.output))

    @property
    def protocol(self) -> str | None:
        m = re.search(r"^(?:New|Reused), (TLSv1\.[0-3]),", self.output, re.M)
        return m.group(1) if m else None

    @property
    def alert(self) -> str | None:
        m = re.search(r"(?:tlsv1|sslv3) alert [^:\n]*", self.output)
        return m.group(0) if m else None

    @property
    def stapled(self) -> bool:
        return "OCSP Response Data:" in self.output

    @property
    def unstapled(self) -> bool:
        return NO_STAPLE in self.output and "OCSP Response Data:" not in self.output

    def staple(self, name: str) -> str | None:
        """A field of the printed staple, e.g. `Cert Status`, `This Update`, `Responder Id`, `Serial Number`."""
        m = re.search(rf"^\s*{re.escape(name)}: (.*)$", self.output, re.M)
        return m.group(1).strip() if m else None

    def time(self, name: str) -> float:
        """A time field of the printed staple (`This Update`, `Next Update`, `Produced At`) as Unix time."""
        value = self.staple(name)
        assert value, f"no {name!r} in the staple\n{self}"
        return datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc).timestamp()

    @property
    def signature(self) -> str:
        return signature_of(self.output)

    def messages(self, direction: str = "<<<") -> list[tuple[str, int]]:
        """(type, length) of the handshake messages received (`<<<`) or sent (`>>>`), from `-msg`."""
        return [(m.group(2), int(m.group(1), 16)) for m in re.finditer(
            rf"^{direction} TLS 1\.[23], Handshake \[length ([0-9a-f]+)\], (\w+)", self.output, re.M)]

    def message_length(self, kind: str) -> int | None:
        got = [n for t, n in self.messages() if t == kind]
        return got[0] if got else None

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n(rc {self.rc})\n{self.output}"


def handshake(node: pki.TLSNode, version: str | None, status: bool = True, msg: bool = False,
              timeout: float = 5.0) -> Handshake:
    """`openssl s_client [-status] [-msg] -tls1_2|-tls1_3` with alice's client certificate, verifying the server
    against the root."""
    alice = node.pki.clients["alice"]
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}", "-servername", "localhost",
            "-CAfile", str(node.pki.root.cert), "-verify_return_error",
            "-cert", str(alice.cert), "-key", str(alice.key)]
    if version is not None:
        args.append({"1.2": "-tls1_2", "1.3": "-tls1_3"}[version])
    if status:
        args.append("-status")
    if msg:
        args.append("-msg")
    try:
        cp = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return Handshake(args, -9, out + f"\n[s_client timed out after {timeout}s]")
    return Handshake(args, cp.returncode, cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace"))


def assert_good_staple(h: Handshake, node: pki.TLSNode, version: str | None = None) -> None:
    """Accepted, stapled with a successful response saying good about this server certificate."""
    assert h.completed, f"handshake not completed\n{h}"
    if version is not None:
        assert h.protocol == f"TLSv{version}", str(h)
    assert h.stapled, f"no staple\n{h}"
    assert "OCSP Response Status: successful (0x0)" in h.output, str(h)
    assert h.staple("Cert Status") == "good", str(h)
    assert (h.staple("Serial Number") or "").upper().lstrip("0") == node.pki.server.serial, (
        f"the staple is about serial {h.staple('Serial Number')}, the server certificate is {node.pki.server.serial}"
        f"\n{h}")


def server_worker(st: dict) -> dict:
    ws = harness.ready_workers(st)
    assert len(ws) == 1, f"expected one ready worker: {harness.procs(st, 'worker')}"
    return ws[0]


# ----------------------------------------------------------------------------------------------------------------
# s_client: stapled in TLS 1.2 and 1.3, only when asked


@VERSIONS
def test_staple_sent_when_asked_and_only_then(tls_node, own_pki, ocsp_responder, version):
    """`s_client -status` gets `OCSP Response Status: successful` / `Cert Status: good` for the server
    certificate, and it is the published response byte for byte (same signature, CertificateStatus / Certificate
    sizes); without `-status` the server sends no staple (no CertificateStatus in TLS 1.2, a Certificate message
    smaller by exactly the staple in TLS 1.3). `status` says stapled until the response's nextUpdate."""
    p = own_pki
    responder = ocsp_responder(p.root)
    node = stapling_node(tls_node, p, url=responder.url, version=version).start()
    loaded = wait_loaded(node)
    assert loaded.fields.get("listener") == f"ssl:{LISTENER}", loaded.raw
    assert loaded.fields.get("ocsp.must_staple") == "false", loaded.raw
    der = ocsp_file(node).read_bytes()

    with_status = handshake(node, version, status=True, msg=True)
    assert_good_staple(with_status, node, version)
    assert with_status.signature == cached_signature(node), "the staple is not the published response"
    assert with_status.staple("Next Update") is not None, str(with_status)

    without = handshake(node, version, status=False, msg=True)
    assert without.completed, str(without)
    assert without.protocol == f"TLSv{version}", str(without)
    assert "OCSP response" not in without.output and "OCSP Response Data" not in without.output, str(without)

    if version == "1.2":
        assert with_status.message_length("CertificateStatus") == len(der) + 8, (
            f"CertificateStatus is not the {len(der)}-byte published response\n{with_status}")
        assert without.message_length("CertificateStatus") is None, f"a staple was sent unasked\n{without}"
        assert without.message_length("Certificate") == with_status.message_length("Certificate"), str(without)
    else:
        grown = with_status.message_length("Certificate") - without.message_length("Certificate")
        assert grown == len(der) + 8, (
            f"Certificate message with -status is {grown} bytes larger than without; expected the {len(der)}-byte "
            f"response + 8 (so a staple was sent unasked, or another one)\n{with_status}\n{without}")
        assert "CertificateStatus" not in with_status.output, "TLS 1.3 has no CertificateStatus message"

    row = stapling_status(node)
    assert row["state"] == "stapled" and row["must_staple"] is False, row
    assert isinstance(row["next_update"], (int, float)) and row["next_update"] > time.time() + 3600, row
    assert abs(row["next_update"] - iso(loaded.fields["ocsp.next_update"])) < 1, (row, loaded.raw)
    assert row["detail"], row
    cache = [c for c in node.b.last_status.get("cache", []) if c.get("kind") == "ocsp"]
    assert len(cache) == 1, node.b.last_status.get("cache")
    assert cache[0].get("listener") == LISTENER and cache[0].get("url") == responder.url, cache
    assert cache[0].get("published") is True and cache[0].get("next_update") == row["next_update"], cache


def test_new_response_is_carried_by_the_next_handshake(tls_node, own_pki, ocsp_responder):
    """The fetcher refreshes every 2 s. The responder switches to a delegated signer (id-kp-OCSPSigning): right
    after the worker has loaded a response the fetcher published after the switch, the next handshake carries the
    new responder id. Then the responder fails (HTTP 503, the last good response stays): handshakes in TLS 1.2 and
    1.3 carry exactly the response in the cache (same signature), newer than the first one."""
    p = own_pki
    responder = ocsp_responder(p.root)
    node = stapling_node(tls_node, p, url=responder.url, refresh=True).start()
    wait_loaded(node)
    first = handshake(node, "1.2")
    assert_good_staple(first, node)
    assert "CN = Gatehouse Test Root CA" in (first.staple("Responder Id") or ""), str(first)

    responder.signer = pki.issue_ocsp_responder(p.root, "ocsp-signer", ocsp_signing=True)
    # A request already at the responder may still be answered by the CA: the second load after the switch is
    # certainly a delegated one.
    before = len(node.lines_with(LOADED))
    wait_loaded(node, more_than=before + 1, timeout=4 * REFRESH + 5)
    h = handshake(node, "1.3")
    assert_good_staple(h, node, "1.3")
    assert h.staple("Responder Id") == "CN = ocsp-signer", f"not the new response\n{h}"

    # Freeze the cache: once a fetch has failed, no new response can be published.
    responder.http_status = 503
    failed = len(node.lines_with("fetch failed", fetch__kind="ocsp"))
    node.wait_log("fetch failed", more_than=failed, timeout=2 * REFRESH + 3, fetch__kind="ocsp")
    time.sleep(0.3)
    cached = cached_signature(node)
    last = node.lines_with(LOADED)[-1]
    for version in ("1.2", "1.3"):
        h = handshake(node, version)
        assert_good_staple(h, node, version)
        assert h.staple("Responder Id") == "CN = ocsp-signer", f"not the new response\n{h}"
        assert h.signature == cached, f"the staple is not the response in the cache\n{h}"
        assert h.time("This Update") > first.time("This Update"), str(h)
        assert h.time("This Update") == iso(last.fields["ocsp.this_update"]), (
            f"the staple is not the last loaded response {last.raw}\n{h}")
    assert cached_signature(node) == cached, "a response was published after the responder started failing"


# ----------------------------------------------------------------------------------------------------------------
# Never stale


def test_staple_dropped_once_next_update_passed(tls_node, own_pki, ocsp_responder):
    """Responses valid 12 seconds (made by `openssl ocsp`, then re-dated and re-signed with the CA key: `openssl
    ocsp` cannot make them shorter than a minute); the responder is stopped after the first one. Before its
    nextUpdate the staple is still sent; from nextUpdate on, no handshake gets it (`no response sent`), the
    worker says so once and `status` shows the listener unstapled. (About 15 s.)"""
    p = own_pki
    responder = ocsp_responder(p.root)
    responder.valid_for = 12.0
    node = stapling_node(tls_node, p, url=responder.url).start()
    loaded = wait_loaded(node)
    responder.stop()
    next_update = iso(loaded.fields["ocsp.next_update"])
    assert 5 < next_update - time.time() <= 13, loaded.raw

    h = handshake(node, "1.3")
    assert_good_staple(h, node, "1.3")
    row = stapling_status(node)
    assert row["state"] == "stapled" and abs(row["next_update"] - next_update) < 1, row

    # Shortly before nextUpdate: still stapled (the responder is gone, the last good response is used).
    time.sleep(max(0.0, next_update - time.time() - 3))
    assert node.lines_with(EXPIRED) == [], ocsp_log(node)
    h = handshake(node, "1.2")
    if time.time() < next_update - 0.5:
        assert_good_staple(h, node, "1.2")

    # From nextUpdate on (plus a second: the times have a resolution of one second): never stapled.
    time.sleep(max(0.0, next_update + 1.0 - time.time()))
    for version in ("1.2", "1.3", "1.2"):
        h = handshake(node, version)
        assert h.completed, f"not a must-staple certificate: the handshake goes on without a staple\n{h}"
        assert h.unstapled, f"stale staple sent after its nextUpdate ({loaded.fields['ocsp.next_update']})\n{h}"

    expired = node.wait_log(EXPIRED, timeout=2.0)
    assert len(expired) == 1, f"expected the expiry logged once:\n{dump(expired)}"
    line = expired[0]
    assert line.process.startswith("worker"), line.raw
    assert line.level in ("info", "warning"), line.raw
    assert line.fields.get("listener") == f"ssl:{LISTENER}", line.raw
    assert log_time(line) >= next_update - 0.5, f"expired logged before nextUpdate {loaded.fields}\n{line.raw}"

    row = stapling_status(node)
    assert row["state"] == "unstapled", row
    assert row["must_staple"] is False, row
    assert "expired" in row["detail"], row
    time.sleep(0.5)
    handshake(node, "1.3")
    assert len(node.lines_with(EXPIRED)) == 1, ocsp_log(node)


# ----------------------------------------------------------------------------------------------------------------
# Primed: the first handshake after a respawn or a start is stapled


def first_completed_handshake(node: pki.TLSNode, version: str, within: float) -> tuple[Handshake, int]:
    """Try handshakes back to back until one completes (connections are refused while no worker listens);
    return it and the number of attempts."""
    deadline = time.monotonic() + within
    attempts = 0
    last: Handshake | None = None
    while time.monotonic() < deadline:
        last = handshake(node, version, timeout=3.0)
        attempts += 1
        if last.completed:
            return last, attempts
        time.sleep(0.01)
    raise AssertionError(f"no handshake completed within {within}s ({attempts} attempts); last:\n{last}")


def test_first_handshake_after_worker_respawn_is_stapled(tls_node, own_pki, ocsp_responder):
    """kill -9 the only worker (the responder is already stopped, so the staple can only come from the cache):
    handshakes are tried back to back from the kill on, and the first one the new worker completes is stapled
    with the same response; the new worker logged `OCSP staple loaded` before it listened on the TLS port."""
    p = own_pki
    responder = ocsp_responder(p.root)
    node = stapling_node(tls_node, p, url=responder.url).start()
    wait_loaded(node)
    h0 = handshake(node, "1.3")
    assert_good_staple(h0, node, "1.3")
    responder.stop()
    old = server_worker(node.b.status())["pid"]

    os.kill(old, signal.SIGKILL)
    for version in ("1.3", "1.2"):
        h, attempts = first_completed_handshake(node, version, within=15.0)
        assert_good_staple(h, node, version)
        assert h.signature == h0.signature, "not the published response"
        print(f"TLS {version}: first handshake after kill -9 completed after {attempts} attempts")

    st = node.b.wait_status(lambda s: len(harness.ready_workers(s)) == 1 and server_worker(s)["pid"] != old, 10,
                            "a new ready worker")
    new = server_worker(st)["pid"]
    # The log's process column is `worker/<slot>[<pid>]`.
    mine = [l for l in pki.parse_log(node.log()) if l.raw.split(" ", 3)[2].endswith(f"[{new}]")]
    msgs = [(l.message, l.fields.get("listener")) for l in mine]
    assert (LOADED, f"ssl:{LISTENER}") in msgs, dump(mine)
    assert ("listening", f"ssl:{LISTENER}") in msgs, dump(mine)
    assert msgs.index((LOADED, f"ssl:{LISTENER}")) < msgs.index(("listening", f"ssl:{LISTENER}")), (
        "the new worker listened before loading the staple:\n" + dump(mine))


def test_first_handshake_after_start_is_stapled_from_the_cache(tls_node, own_pki, ocsp_responder):
    """A node starts with a response already in its cache (from an earlier run) and the responder gone:
    handshakes tried back to back from the moment `start` is run; the first one that completes is stapled."""
    p = own_pki
    responder = ocsp_responder(p.root)
    first = stapling_node(tls_node, p, url=responder.url).start()
    wait_loaded(first)
    h0 = handshake(first, "1.2")
    assert_good_staple(h0, first, "1.2")
    responder.stop()
    first.b.cleanup()

    second = stapling_node(tls_node, p, url=responder.url)
    for sub in ("ocsp", "meta"):
        shutil.copytree(first.cache / sub, second.cache / sub, dirs_exist_ok=True)
    second.b.write_config(lines=second.lines)
    second.b.start_foreground(wait_ready=False)
    h, attempts = first_completed_handshake(second, "1.2", within=20.0)
    assert_good_staple(h, second, "1.2")
    assert h.signature == h0.signature, "not the cached response"
    print(f"first handshake after start completed after {attempts} attempts")
    second.b.wait_ready(1)
    h = handshake(second, "1.3")
    assert_good_staple(h, second, "1.3")


# ----------------------------------------------------------------------------------------------------------------
# Where the responder comes from


def test_no_ocsp_url_means_stapling_quietly_off(tls_node, own_pki):
    """The server certificate has no AIA OCSP URL and `ocsp_responder_url` is not set: stapling is off, with one
    info line from the fetcher; handshakes go on without a staple; `status` says off; nothing in the cache."""
    p = own_pki
    assert "OCSP" not in pki.openssl("x509", "-in", str(p.server.cert), "-noout", "-text").stdout.decode()
    node = stapling_node(tls_node, p, url=None, issuer=False).start()
    off = node.wait_log(OFF, timeout=5.0)
    for version in ("1.2", "1.3"):
        h = handshake(node, version)
        assert h.completed, str(h)
        assert h.unstapled, str(h)
    row = stapling_status(node)
    assert row["state"] == "off", row
    assert row["must_staple"] is False, row
    time.sleep(1.0)
    off = node.lines_with(OFF)
    assert len(off) == 1, f"expected one line:\n{dump(off)}"
    assert off[0].level == "info", off[0].raw
    assert off[0].process.startswith("fetcher"), off[0].raw
    loud = [l for l in pki.parse_log(node.log()) if l.level in ("warning", "error", "critical")]
    assert loud == [], "stapling off is not quiet:\n" + dump(loud)
    assert not ocsp_file(node).exists()
    assert node.lines_with(PUBLISHED) == [] and node.lines_with(LOADED) == [], ocsp_log(node)


def test_responder_from_the_certificates_aia(tls_node, own_pki, ocsp_responder):
    """Neither `ocsp_responder_url` nor `ocsp_issuer_pem` configured: the fetcher asks the server certificate's AIA
    OCSP URL, finds the issuer itself (cacertfile), and the staple is sent (TLS 1.2 and 1.3)."""
    p = own_pki
    responder = ocsp_responder(p.root)
    p = dataclasses.replace(p, server=issue_server(p.root, "server-aia", ocsp_url=responder.url))
    node = stapling_node(tls_node, p, url=None, issuer=False).start()
    wait_loaded(node)
    published = node.lines_with(PUBLISHED)
    assert published and published[0].fields.get("fetch.url") == responder.url, ocsp_log(node)
    assert responder.count >= 1 and all(r.status == 200 for r in responder.records()), responder.describe()
    for version in ("1.2", "1.3"):
        assert_good_staple(handshake(node, version), node, version)
    assert stapling_status(node)["state"] == "stapled"
    assert node.lines_with(OFF) == []


# ----------------------------------------------------------------------------------------------------------------
# Must-staple (RFC 7633)


def test_must_staple_refused_until_a_staple_is_loaded(tls_node, own_pki, ocsp_responder):
    """The server certificate carries `tlsfeature = status_request`. While the responder answers HTTP 503 there is
    no staple: handshakes (TLS 1.2 and 1.3) are refused with a `TLS handshake refused` line (kind unavailable,
    reason about must-staple) and `status` says unstapled, must-staple. Once the responder answers, the response
    is loaded and the same handshakes are accepted and stapled."""
    p = own_pki
    responder = ocsp_responder(p.root)
    responder.http_status = 503
    server = issue_server(p.root, "server-must-staple", ocsp_url=responder.url, must_staple=True)
    assert "TLS Feature" in pki.openssl("x509", "-in", str(server.cert), "-noout", "-text").stdout.decode()
    p = dataclasses.replace(p, server=server)
    node = stapling_node(tls_node, p, url=None, refresh=True).start()

    for version in ("1.2", "1.3"):
        h = handshake(node, version)
        assert not h.completed, f"must-staple certificate served without a staple\n{h}"
        assert not h.stapled, str(h)
        # Refused at the ClientHello with an alert, not a silent close.
        assert h.alert is not None and "internal error" in h.alert, f"no internal_error alert\n{h}"
    refused = node.wait_log(pki.REFUSED, more_than=1, timeout=3.0)
    for line in refused:
        assert line.fields.get("tls.kind") == "unavailable", line.raw
        assert "must-staple" in line.fields.get("tls.reason", "").lower(), line.raw
        assert line.fields.get("tls.listener") == f"ssl:{LISTENER}", line.raw
    row = stapling_status(node)
    assert row["state"] == "unstapled" and row["must_staple"] is True, row
    assert "must-staple" in row["detail"], row
    assert responder.count >= 1, responder.describe()
    assert node.lines_with(LOADED) == [], ocsp_log(node)

    responder.http_status = None
    loaded = wait_loaded(node, timeout=4 * REFRESH + 5)
    assert loaded.fields.get("ocsp.must_staple") == "true", loaded.raw
    n_refused = len(node.refusals())
    for version in ("1.2", "1.3"):
        assert_good_staple(handshake(node, version), node, version)
    assert len(node.refusals()) == n_refused, dump(node.refusals())
    row = stapling_status(node)
    assert row["state"] == "stapled" and row["must_staple"] is True, row


# ----------------------------------------------------------------------------------------------------------------
# A strict real client: a Mosquitto bridge with bridge_require_ocsp true


class MosquittoBridge:
    """A Mosquitto 2 broker on 127.0.0.1:<free port> (its own process, config and log in a temp dir) with bridge
    connections to a Gatehouse TLS listener. Each connection is (name, require_ocsp, topic lines)."""

    def __init__(self, node: pki.TLSNode, client: pki.Cert, connections: list[tuple[str, bool, list[str]]],
                 version: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gh-mosq-bridge-", dir="/tmp"))
        self.port = harness.free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type all",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it switches to user `mosquitto`, which cannot read the test's keys
        for name, require_ocsp, topics in connections:
            lines += [
                f"connection {name}",
                f"address 127.0.0.1:{node.port}",
                "bridge_protocol_version mqttv311",
                "try_private false",
                "cleansession true",
                f"remote_clientid bridge-{name}",
                f"local_clientid bridge-{name}-local",
                "start_type automatic",
                "restart_timeout 1",
                f"bridge_cafile {node.pki.root.cert}",
                f"bridge_certfile {client.cert}",
                f"bridge_keyfile {client.key}",
                "bridge_insecure false",
                f"bridge_require_ocsp {'true' if require_ocsp else 'false'}",
                *topics,
            ]
            if version is not None:
                lines.append(f"bridge_tls_version tlsv{version}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.subs: list[MosqLocalSub] = []

    def start(self) -> "MosquittoBridge":
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen([mqtt_helpers.MOSQUITTO_BIN, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{self.text()}")
            return _port_open(self.port)

        harness.wait_until(listening, 5, message="mosquitto listening")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return self.text()
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no /{pattern}/ in the mosquitto log within {timeout}s:\n{self.describe()}")

    def connacks(self, name: str) -> int:
        return len(re.findall(self.connack_pattern(name), self.text()))

    @staticmethod
    def connack_pattern(name: str) -> str:
        # Mosquitto names the connection by its local client id here.
        return rf"Received CONNACK on connection bridge-{re.escape(name)}-local\b"

    def pub(self, topic: str, message: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-V", "mqttv311", "-q", "1",
                               "-t", topic, "-m", message, "-i", f"local-pub-{time.monotonic_ns()}"],
                              capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)

    def sub(self, topic: str, client_id: str) -> "MosqLocalSub":
        s = MosqLocalSub(self.port, topic, client_id)
        self.subs.append(s)
        return s

    def describe(self) -> str:
        return (f"mosquitto dir {self.dir}\n---- config ----\n{self.conf.read_text()}\n"
                f"---- log ----\n{self.text()[-20000:]}")

    def stop(self) -> None:
        for s in self.subs:
            s.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class MosqLocalSub(pki.MosquittoSub):
    """`mosquitto_sub` on the local (plain TCP) Mosquitto listener."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        super().__init__(port, topic, [], client_id)


@pytest.fixture
def mosquitto_bridge(request: pytest.FixtureRequest):
    """Factory: `mosquitto_bridge(node, client_cert, connections, version)` → a started `MosquittoBridge`; stopped
    (with its clients) at teardown, its log printed if the test failed."""
    made: list[MosquittoBridge] = []

    def factory(*args, **kwargs) -> MosquittoBridge:
        b = MosquittoBridge(*args, **kwargs)
        made.append(b)
        return b.start()

    yield factory
    for b in made:
        b.stop()
        if _failed(request):
            print(b.describe())
        else:
            shutil.rmtree(b.dir, ignore_errors=True)


BRIDGE_TOPICS = ["topic up/# out 1", "topic down/# in 1"]


def wait_bridge_subscribed(bridge: MosquittoBridge, node: pki.TLSNode, name: str) -> None:
    """The bridge subscribes to its `in` topics on Gatehouse right after the CONNACK: publish on Gatehouse until a
    probe message comes through to a local subscriber."""
    probe = bridge.sub("down/probe", f"probe-{name}")
    probe.wait_subscribed()
    deadline = time.monotonic() + 5.0
    while True:
        cp = node.pub(node.pki.clients["bob"], "down/probe", "ping", client_id="probe-pub")
        assert cp.returncode == 0, f"publishing on Gatehouse failed: {cp.stderr}"
        try:
            probe.expect(timeout=0.5)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError("the bridge never delivered a message from Gatehouse:\n" + bridge.describe())


@VERSIONS
def test_mosquitto_bridge_requiring_ocsp_carries_messages_both_ways(tls_node, own_pki, ocsp_responder,
                                                                    mosquitto_bridge, version):
    """A Mosquitto broker bridges to Gatehouse over TLS (client certificate carol, `bridge_require_ocsp true`,
    `bridge_tls_version`): it accepts Gatehouse's staple (its log says the certificate status is good), connects,
    and carries messages both ways: `up/#` from the local Mosquitto to Gatehouse, `down/#` from Gatehouse to the
    local Mosquitto."""
    p = own_pki
    responder = ocsp_responder(p.root)
    # The listener takes only `version`, so the bridge cannot have fallen back to another one.
    node = stapling_node(tls_node, p, url=responder.url, version=version).start()
    wait_loaded(node)
    bridge = mosquitto_bridge(node, p.clients["carol"], [("gatehouse", True, BRIDGE_TOPICS)], version)
    bridge.wait_log(bridge.connack_pattern("gatehouse"), timeout=10.0)
    text = bridge.text()
    assert re.search(r"OCSP: SSL certificate status: good", text), bridge.describe()
    assert "OCSP: no response" not in text, bridge.describe()

    wait_bridge_subscribed(bridge, node, "gatehouse")

    # Gatehouse → local Mosquitto.
    local = bridge.sub("down/#", "local-sub")
    local.wait_subscribed()
    cp = node.pub(p.clients["bob"], "down/news", "from gatehouse", client_id="gh-pub")
    assert cp.returncode == 0, cp.stderr
    assert local.expect() == ("down/news", "from gatehouse")

    # Local Mosquitto → Gatehouse.
    remote = node.sub(p.clients["alice"], "up/#", "gh-sub")
    remote.wait_subscribed()
    cp = bridge.pub("up/report", "from mosquitto")
    assert cp.returncode == 0, cp.stderr
    assert remote.expect() == ("up/report", "from mosquitto")

    assert bridge.connacks("gatehouse") == 1, "the bridge reconnected:\n" + bridge.describe()
    assert node.refusals() == [], dump(node.refusals())


def test_mosquitto_bridge_requiring_ocsp_refuses_gatehouse_without_stapling(tls_node, own_pki, mosquitto_bridge):
    """The contrast: stapling off on the Gatehouse listener. The same Mosquitto has two bridges to it with the same
    certificates: `lax` (bridge_require_ocsp false) connects and carries messages; `strict` (bridge_require_ocsp
    true) gets no staple, says so (`OCSP: no response`) and never connects, so nothing reaches its topics."""
    p = own_pki
    node = stapling_node(tls_node, p, stapling=False).start()
    bridge = mosquitto_bridge(node, p.clients["carol"], [
        ("lax", False, ["topic lax/# in 1"]),
        ("strict", True, ["topic strict/# in 1"]),
    ])
    bridge.wait_log(bridge.connack_pattern("lax"), timeout=10.0)
    bridge.wait_log(r"OCSP: no response", timeout=10.0)
    assert "OCSP: SSL certificate status" not in bridge.text(), bridge.describe()

    lax = bridge.sub("lax/#", "lax-sub")
    strict = bridge.sub("strict/#", "strict-sub")
    lax.wait_subscribed()
    strict.wait_subscribed()
    wait_deadline = time.monotonic() + 5.0
    while True:
        cp = node.pub(p.clients["bob"], "lax/x", "through", client_id="gh-pub-lax")
        assert cp.returncode == 0, cp.stderr
        try:
            assert lax.expect(timeout=0.5) == ("lax/x", "through")
            break
        except AssertionError:
            if time.monotonic() > wait_deadline:
                raise
    cp = node.pub(p.clients["bob"], "strict/x", "blocked", client_id="gh-pub-strict")
    assert cp.returncode == 0, cp.stderr
    time.sleep(1.0)
    assert strict.messages.empty(), "a message reached the strict bridge's topics"
    assert bridge.connacks("strict") == 0, "the strict bridge connected without a staple:\n" + bridge.describe()
    assert bridge.connacks("lax") == 1, bridge.describe()
    rows = [s for s in node.b.status().get("stapling", []) if s.get("listener") == LISTENER]
    assert all(r.get("state") == "off" for r in rows), rows
