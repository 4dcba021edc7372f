"""09 fetcher: CRLs and OCSP responses downloaded from real servers on loopback, validated and published into the
cache directory (issue 5).

The CA is the `openssl` CLI (`openssl ca -revoke`, `-gencrl`) on the test's own copy of the CA database
(`own_pki`); CRLs are served by `revocation_servers.CRLServer` (Python http.server on 127.0.0.1, ETag /
Last-Modified / 304, injected faults) and OCSP answers are made by the real `openssl ocsp` responder behind
`revocation_servers.OCSPResponder`. The cache layout, sidecar and log lines checked here are the fetcher contract:

    <cache>/crl/<id>.der  <cache>/meta/crl-<id>.json     id = first 16 hex of sha256(URL)
    <cache>/ocsp/<listener>.der  <cache>/meta/ocsp-<listener>.json
    <cache>/requests/<id>.url                            a distribution point reported by a worker

Tests that need refreshing use `node.fetch_refresh_floor = 1s` and 2 s intervals; the others keep the defaults, so
a fetch that happens there is the first one (or a bug).
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import harness
import pki
import revocation_servers as rs

REFRESH = 2.0  # crl_cache_refresh_interval / ocsp_refresh_interval where a test needs refreshing
HTTP_TIMEOUT = 2.0
FAST_CRL = ["node.fetch_refresh_floor = 1s", f"crl_cache_refresh_interval = {REFRESH:g}s",
            f"crl_cache_http_timeout = {HTTP_TIMEOUT:g}s"]
FIRST_FETCH = 10.0  # how long after the start the first fetch may take to be published
PUBLISHED = "CRL published"
NOT_MODIFIED = "CRL not modified"
OCSP_PUBLISHED = "OCSP response published"
FAILED = "fetch failed"
REPORTED = "CRL distribution point reported"
SERVER_REVOKED = "server certificate revoked by its OCSP responder"
LISTENER = pki.LISTENER


# ----------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(request.node, f"_rep_{p}", None) is not None and getattr(request.node, f"_rep_{p}").failed
               for p in ("setup", "call"))


@pytest.fixture
def crl_server(request: pytest.FixtureRequest):
    s = rs.CRLServer()
    yield s
    s.stop()
    if _failed(request):
        print(s.describe())


@pytest.fixture
def ocsp_responder(request: pytest.FixtureRequest, tmp_path: Path):
    """Factory: `ocsp_responder(ca, signer=None)` → a running `OCSPResponder`; stopped at teardown."""
    made: list[rs.OCSPResponder] = []

    def factory(ca: pki.CA, signer: pki.Cert | None = None) -> rs.OCSPResponder:
        r = rs.OCSPResponder(ca, tmp_path / f"ocsp-{len(made)}", signer=signer)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.stop()
        if _failed(request):
            print(r.describe())


def crl_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def crl_file(node: pki.TLSNode, url: str) -> Path:
    return node.cache / "crl" / f"{crl_id(url)}.der"


def crl_meta(node: pki.TLSNode, url: str) -> dict:
    return json.loads((node.cache / "meta" / f"crl-{crl_id(url)}.json").read_text())


def ocsp_file(node: pki.TLSNode) -> Path:
    return node.cache / "ocsp" / f"{LISTENER}.der"


def ocsp_meta(node: pki.TLSNode) -> dict:
    return json.loads((node.cache / "meta" / f"ocsp-{LISTENER}.json").read_text())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_files(node: pki.TLSNode) -> list[str]:
    """`*.tmp.*` files anywhere in the cache directory."""
    return sorted(str(p.relative_to(node.cache)) for p in node.cache.rglob("*") if ".tmp." in p.name)


def assert_no_temp_files(node: pki.TLSNode, settle: float = 2.0) -> None:
    """No temp file is left once the fetcher is done (one being written right now may still exist for a moment:
    the sidecar is renamed into place around the log line)."""
    left: list[str] = []

    def none_left() -> bool:
        left[:] = temp_files(node)
        return not left

    try:
        harness.wait_until(none_left, settle, interval=0.02, message="no temp file in the cache")
    except AssertionError:
        raise AssertionError(f"temp files left in {node.cache}: {left}") from None


def settled_meta(path: Path, data_file: Path, timeout: float = 2.0) -> dict:
    """The sidecar once it describes the current data file (it may be renamed into place just after the log
    line that announced the data file)."""
    def ready():
        m = json.loads(path.read_text())
        return m if m.get("sha256") == sha256(data_file.read_bytes()) else None

    return harness.wait_until(ready, timeout, interval=0.02, message=f"{path} to describe {data_file}")


def dump(lines: list[pki.LogLine]) -> str:
    return "\n".join(l.raw for l in lines)


def fetch_lines(node: pki.TLSNode) -> str:
    """The fetcher's log lines (for assertion messages)."""
    return dump([l for l in pki.parse_log(node.log()) if l.process.startswith("fetcher") or "fetch" in l.message
                 or any(k.startswith("fetch.") for k in l.fields)])


def revocation_lines(node: pki.TLSNode) -> str:
    """What the fetcher published and what the worker loaded (for assertion messages)."""
    keep = (PUBLISHED, OCSP_PUBLISHED, pki.RELOADED, pki.REJECTED, "OCSP staple loaded")
    return dump([l for l in pki.parse_log(node.log()) if l.message in keep or "no CRL is loaded" in l.message])


def wait_published(node: pki.TLSNode, url: str, more_than: int = 0, timeout: float = FIRST_FETCH) -> pki.LogLine:
    try:
        return node.wait_log(PUBLISHED, more_than=more_than, timeout=timeout, fetch__url=url)[-1]
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fetch_lines(node)}") from None


def wait_failed(node: pki.TLSNode, url: str, kind: str, more_than: int = 0, timeout: float = 12.0) -> pki.LogLine:
    try:
        return node.wait_log(FAILED, more_than=more_than, timeout=timeout, fetch__url=url, fetch__kind=kind)[-1]
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fetch_lines(node)}") from None


def wait_handshake(node: pki.TLSNode, cert: pki.Cert, accepted: bool, timeout: float = 3.0) -> pki.SClientResult:
    """Poll with s_client until `cert` is accepted (or refused); the worker reloads a published file by inotify."""
    deadline = time.monotonic() + timeout
    while True:
        r = node.s_client(cert)
        if (r.accepted if accepted else r.refused):
            return r
        if time.monotonic() >= deadline:
            raise AssertionError(f"{cert.name} still {'refused' if accepted else 'accepted'} after {timeout}s\n{r}"
                                 f"\nlast refusals:\n{dump(node.refusals()[-3:])}\nrevocation lines:\n"
                                 f"{revocation_lines(node)}")
        time.sleep(0.05)


def assert_worker_uses_crl_revoking(node: pki.TLSNode, revoked: pki.Cert, good: pki.Cert) -> None:
    """The worker has loaded the published CRL: `good` is accepted (so a CRL for the issuer is there; before, every
    client is refused with "unable to get certificate CRL") and `revoked` is refused with alert 44."""
    wait_handshake(node, good, accepted=True)
    before = len(node.refusals(tls__serial=revoked.serial))
    # The fetcher's "CRL published" line comes before the worker has loaded the file (a big CRL takes a moment).
    deadline = time.monotonic() + 10
    while True:
        r = node.s_client(revoked)
        if r.refused or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.refused and r.alert == 44, f"{revoked.name} not refused with alert 44 (certificate revoked)\n{r}"
    line = node.wait_log(pki.REFUSED, more_than=before, tls__serial=revoked.serial)[-1]
    assert line.fields.get("tls.reason") == "certificate revoked", line.raw


def crl_time(path: Path, which: str) -> float:
    """lastUpdate / nextUpdate of a DER CRL (Unix seconds) from `openssl crl -noout -<which>`."""
    out = pki.openssl("crl", "-inform", "DER", "-in", str(path), "-noout", f"-{which}").stdout.decode().strip()
    value = " ".join(out.split("=", 1)[1].split())
    return datetime.strptime(value, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=timezone.utc).timestamp()


def check_crl_meta(node: pki.TLSNode, url: str, origin: str, published: bytes) -> dict:
    """The sidecar of a published CRL describes the published file."""
    f = crl_file(node, url)
    m = settled_meta(node.cache / "meta" / f"crl-{crl_id(url)}.json", f)
    assert m["kind"] == "crl", m
    assert m["source_url"] == url, m
    assert m["origin"] == origin, m
    assert m["listener"] is None, m
    assert m["file"] == f"crl/{crl_id(url)}.der", m
    assert m["sha256"] == sha256(published) == sha256(f.read_bytes()), m
    assert m["crl_number"] == str(pki.crl_number(f)), m
    assert abs(m["this_update"] - crl_time(f, "lastupdate")) < 1.5, m
    assert abs(m["next_update"] - crl_time(f, "nextupdate")) < 1.5, m
    now = time.time()
    for k in ("fetched_at", "published_at", "last_attempt"):
        assert isinstance(m[k], (int, float)) and now - 120 < m[k] <= now + 1, (k, m)
    assert m["last_error"] is None and m["consecutive_failures"] == 0, m
    return m


def fetcher_pid(node: pki.TLSNode) -> int:
    """The fetcher: in `status`, a child of the supervisor, with `fetcher` on its command line."""
    pid = harness.the_fetcher(node.b.status())["pid"]
    assert harness.pid_alive(pid), pid
    assert harness.parent_pid(pid) == node.b.supervisor_pid, f"fetcher {pid} is not a child of the supervisor"
    assert any("fetcher" in a for a in harness.proc_cmdline(pid)), harness.proc_cmdline(pid)
    return pid


def new_fetcher(node: pki.TLSNode, old: int, timeout: float = 5.0) -> dict:
    """Wait until status shows one fetcher, running, that is not `old` (for a moment after a restart or a kill it
    may list the old one draining next to the new one respawning)."""
    def one_new(st: dict) -> bool:
        fs = harness.procs(st, "fetcher")
        return len(fs) == 1 and fs[0]["pid"] not in (0, old) and harness.pid_alive(fs[0]["pid"])

    st = node.b.wait_status(one_new, timeout, f"a new fetcher replacing pid {old}")
    assert not harness.pid_alive(old), f"the old fetcher {old} is still alive"
    return harness.procs(st, "fetcher")[0]


def restart(node: pki.TLSNode, old_log: str) -> None:
    """Stop the whole node (SIGTERM to the supervisor, every process gone), keep its log as `old_log`, start it
    again with the same config and cache."""
    b = node.b
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGTERM)
    b.proc.wait(timeout=b.shutdown_timeout + 5)
    harness.wait_until(lambda: not b.leftover_pids(), 5, message="every process of the node to exit")
    b.stderr_path.rename(b.dir / old_log)
    b.proc = None
    node.start()


def crl_listener(url: str) -> list[str]:
    return [f"crl_cache_urls = {url}"]


# ----------------------------------------------------------------------------------------------------------------
# CRLs: first fetch, update, 304


def test_first_fetch_publishes(tls_node, own_pki, crl_server):
    """A CRL configured in `crl_cache_urls` (served as PEM) is fetched at start and published as DER into
    `crl/<id>.der` with its sidecar; the worker then refuses the revoked client with alert 44 and accepts a good
    one."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    p.root.revoke(bob)
    served = p.root.gencrl(p.dir / "served.pem")
    url = crl_server.serve("/ca/root.crl", served)
    node = tls_node(p, options=crl_listener(url)).start()

    line = wait_published(node, url)
    f = crl_file(node, url)
    want = pki.crl_to_der(served)
    assert f.read_bytes() == want, "the published file is not the served CRL in DER"
    assert line.level == "info", line.raw
    assert line.fields.get("fetch.file") == str(f), line.raw
    assert line.fields.get("revocation.crl_number") == str(pki.crl_number(served, "PEM")), line.raw
    assert line.fields.get("revocation.entries") == "1", line.raw
    assert int(line.fields.get("fetch.bytes", "-1")) == served.stat().st_size, line.raw
    for k in ("fetch.download_ms", "fetch.validate_ms", "fetch.publish_ms"):
        assert float(line.fields.get(k, "-1")) >= 0, (k, line.raw)

    m = check_crl_meta(node, url, "configured", want)
    reqs = crl_server.requests("/ca/root.crl")
    assert len(reqs) == 1 and reqs[0].status == 200, crl_server.describe()
    assert m["etag"] == reqs[0].sent_headers["ETag"], (m, reqs[0].sent_headers)
    # Last-Modified is kept as a validator only when it is at least a second older than the answer's Date (a CRL
    # rewritten within the second it was served would otherwise get 304 until it changes again).
    sent = reqs[0].sent_headers
    modified = email.utils.parsedate_to_datetime(sent["Last-Modified"])
    served_at = email.utils.parsedate_to_datetime(sent["Date"])
    validating = sent["Last-Modified"] if (served_at - modified).total_seconds() >= 1 else None
    assert m["last_modified"] == validating, (m, sent)
    assert_no_temp_files(node)

    assert_worker_uses_crl_revoking(node, bob, alice)


def test_updated_crl_is_published_within_the_refresh_interval(tls_node, own_pki, crl_server):
    """After `openssl ca -revoke` + `-gencrl` on the CA, the served CRL changes: the fetcher publishes it within
    the refresh interval (2 s) and the worker refuses the newly revoked client."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    url = crl_server.serve("/root.crl", p.root.gencrl(p.dir / "served.der", der=True))
    node = tls_node(p, options=crl_listener(url), extra=FAST_CRL).start()
    first = wait_published(node, url)
    wait_handshake(node, bob, accepted=True)

    p.root.revoke(bob)
    crl_server.put("/root.crl", p.root.gencrl(p.dir / "second.der", der=True).read_bytes())
    t = time.monotonic()
    second = wait_published(node, url, more_than=1, timeout=REFRESH + 4)
    took = time.monotonic() - t
    assert took <= REFRESH + 1.5, f"the updated CRL was published {took:.2f}s after it changed (interval {REFRESH}s)"
    assert int(second.fields["revocation.crl_number"]) == int(first.fields["revocation.crl_number"]) + 1, (
        first.raw, second.raw)
    assert second.fields.get("revocation.entries") == "1", second.raw
    assert crl_file(node, url).read_bytes() == (p.dir / "second.der").read_bytes()
    check_crl_meta(node, url, "configured", (p.dir / "second.der").read_bytes())

    r = node.wait_refused(bob, t, REFRESH + 2.5)
    assert r.alert == 44, str(r)
    assert node.s_client(alice).accepted


def test_unchanged_crl_costs_a_304(tls_node, own_pki, crl_server):
    """An unchanged CRL is asked for with If-None-Match (the ETag) and answered 304: the published file is left
    alone (same inode, same bytes), `CRL not modified` is logged, and nothing is published again."""
    p = own_pki
    p.root.revoke(p.clients["bob"])
    served = p.root.gencrl(p.dir / "served.der", der=True)
    url = crl_server.serve("/root.crl", served)
    node = tls_node(p, options=crl_listener(url), extra=FAST_CRL).start()
    wait_published(node, url)
    f = crl_file(node, url)
    st = f.stat()
    meta = settled_meta(node.cache / "meta" / f"crl-{crl_id(url)}.json", f)

    lines = node.wait_log(NOT_MODIFIED, more_than=1, timeout=3 * REFRESH + 3, fetch__url=url)
    assert all(l.fields.get("fetch.http_status") == "304" for l in lines), dump(lines)
    reqs = crl_server.requests("/root.crl")
    etag = reqs[0].sent_headers["ETag"]
    assert reqs[0].status == 200 and len(reqs) >= 3, crl_server.describe()
    for r in reqs[1:]:
        assert r.headers.get("if-none-match") == etag, f"not a conditional request:\n{crl_server.describe()}"
        assert r.status == 304, crl_server.describe()
    assert len(node.lines_with(PUBLISHED, fetch__url=url)) == 1, dump(node.lines_with(PUBLISHED))
    now = f.stat()
    assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), "the published file was replaced"
    assert f.read_bytes() == served.read_bytes()
    after = crl_meta(node, url)
    assert after["published_at"] == meta["published_at"] and after["sha256"] == meta["sha256"], (meta, after)
    assert after["last_attempt"] > meta["last_attempt"], (meta, after)
    assert_no_temp_files(node)


# ----------------------------------------------------------------------------------------------------------------
# CRLs: misbehaving servers. Each starts from a published good CRL (revoking bob) and must end with that file
# kept, one `fetch failed` line naming the URL and the reason, and the worker still using the good CRL.


def _fault_slow(server, path, p):
    server.fault(path, slow=HTTP_TIMEOUT + 3)


def _fault_500(server, path, p):
    server.fault(path, status=500)


def _fault_garbage(server, path, p):
    server.fault(path, body=b"<html><body>Service temporarily unavailable</body></html>\n" + os.urandom(512))


def _fault_oversized(server, path, p):
    # A real, newer and correctly signed CRL, only too big for crl_cache_max_size = 200KB.
    pki.revoke_many(p.root, 6000)
    big = p.root.gencrl(p.dir / "big.der", der=True)
    assert big.stat().st_size > 250_000, big.stat().st_size
    server.put(path, big.read_bytes())


def _fault_redirect_loop(server, path, p):
    server.fault(path, redirect=path)


def _fault_wrong_key(server, path, p):
    # The root's subject name, another key; a higher cRLNumber and no entry for bob.
    impostor = p.impostor.copy(p.dir / "impostor-ca")
    (impostor.dir / "crlnumber").write_text("2000\n")
    server.put(path, impostor.gencrl(p.dir / "impostor.der", der=True).read_bytes())


def _fault_rollback(server, path, p):
    server.put(path, (p.dir / "older.der").read_bytes())


CRL_FAULTS = {
    "slow": (_fault_slow, "curl error 28"),
    "http_500": (_fault_500, "HTTP 500"),
    "garbage": (_fault_garbage, "not a CRL"),
    "oversized": (_fault_oversized, "body larger than"),
    "redirect_loop": (_fault_redirect_loop, "redirects"),
    "wrong_key": (_fault_wrong_key, "signature does not verify"),
    "older_crl_number": (_fault_rollback, "rollback"),
}


@pytest.mark.parametrize("fault", list(CRL_FAULTS))
def test_misbehaving_crl_server_keeps_the_last_good_file(tls_node, own_pki, crl_server, fault):
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    apply, reason = CRL_FAULTS[fault]
    p.root.gencrl(p.dir / "older.der", der=True)  # cRLNumber n, revokes nobody
    p.root.revoke(bob)
    good = p.root.gencrl(p.dir / "good.der", der=True)  # n + 1, revokes bob
    url = crl_server.serve("/root.crl", good)
    extra = FAST_CRL + (["crl_cache_max_size = 200KB"] if fault == "oversized" else [])
    node = tls_node(p, options=crl_listener(url), extra=extra).start()
    wait_published(node, url)
    f = crl_file(node, url)
    before, inode = f.read_bytes(), f.stat().st_ino
    assert before == good.read_bytes()
    assert_worker_uses_crl_revoking(node, bob, alice)

    apply(crl_server, "/root.crl", p)
    line = wait_failed(node, url, "crl", timeout=3 * REFRESH + HTTP_TIMEOUT + 6)
    assert reason in line.fields.get("fetch.error", ""), f"expected {reason!r} in fetch.error:\n{line.raw}"
    assert line.level == "warning", line.raw
    assert line.fields.get("fetch.kept") == "true", line.raw
    retry = float(line.fields.get("fetch.retry_in", "-1"))
    assert 0 < retry <= REFRESH * 1.25, f"retry_in {retry} outside (0, interval {REFRESH}s + jitter]\n{line.raw}"

    assert f.read_bytes() == before and f.stat().st_ino == inode, "the last good CRL was replaced"
    assert len(node.lines_with(PUBLISHED, fetch__url=url)) == 1, dump(node.lines_with(PUBLISHED))
    # The sidecar records the failure (it may be renamed into place just after the log line).
    m = harness.wait_until(lambda: (m := crl_meta(node, url))["consecutive_failures"] >= 1 and m, 2,
                           message="the sidecar to record the failure")
    assert m["sha256"] == sha256(before) and reason in (m["last_error"] or ""), m
    assert_no_temp_files(node)
    # The worker still has the good CRL: bob (revoked there) refused, alice accepted.
    r = node.s_client(bob)
    assert r.refused and r.alert == 44, str(r)
    assert node.s_client(alice).accepted


# ----------------------------------------------------------------------------------------------------------------
# OCSP responses for stapling


def ocsp_listener(responder: rs.OCSPResponder | None, issuer: Path, refresh: bool) -> list[str]:
    out = ["enable_ocsp_stapling = true", f"ocsp_issuer_pem = {issuer}", f"ocsp_refresh_http_timeout = {HTTP_TIMEOUT:g}s"]
    if responder is not None:
        out.append(f"ocsp_responder_url = {responder.url}")
    if refresh:
        out.append(f"ocsp_refresh_interval = {REFRESH:g}s")
    return out


def ocsp_node(tls_node, p: pki.TestPKI, responder: rs.OCSPResponder | None, refresh: bool = False) -> pki.TLSNode:
    extra = ["node.fetch_refresh_floor = 1s"] if refresh else []
    return tls_node(p, crl_check=False, options=ocsp_listener(responder, p.root.cert, refresh), extra=extra).start()


def check_good_staple(node: pki.TLSNode, p: pki.TestPKI, url: str) -> bytes:
    line = node.wait_log(OCSP_PUBLISHED, timeout=FIRST_FETCH, fetch__listener=LISTENER)[-1]
    assert line.fields.get("fetch.url") == url, line.raw
    assert line.fields.get("ocsp.cert_status") == "good", line.raw
    f = ocsp_file(node)
    text = pki.ocsp_response_text(f, p.root.cert, p.server.cert, cafile=p.root.cert)
    assert f"{p.server.cert}: good" in text and "Response verify OK" in text, text
    data = f.read_bytes()
    m = settled_meta(node.cache / "meta" / f"ocsp-{LISTENER}.json", f)
    assert (m["kind"], m["origin"], m["listener"], m["source_url"]) == ("ocsp", "stapling", LISTENER, url), m
    assert m["file"] == f"ocsp/{LISTENER}.der", m
    assert m["sha256"] == sha256(data), m
    now = time.time()
    assert m["this_update"] <= now + 1 and 0 < m["next_update"] - now <= 86400 + 60, m
    assert m["last_error"] is None and m["consecutive_failures"] == 0, m
    assert line.fields.get("revocation.next_update"), line.raw
    assert_no_temp_files(node)
    return data


def stapled_status(node: pki.TLSNode, cert: pki.Cert, timeout: float = 3.0) -> str:
    """Poll `openssl s_client -status` until the worker staples a response; return the s_client output."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}", "-servername", "localhost",
            "-CAfile", str(node.cafile), "-verify_return_error", "-cert", str(cert.cert), "-key", str(cert.key),
            "-status"]
    deadline = time.monotonic() + timeout
    while True:
        cp = subprocess.run(args, input=b"", capture_output=True, timeout=10)
        out = cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace")
        if "OCSP Response Status" in out or time.monotonic() >= deadline:
            return out
        time.sleep(0.05)


@pytest.mark.parametrize("signer", ["ca", "delegated"])
def test_ocsp_good_response_is_published(tls_node, own_pki, ocsp_responder, signer):
    """The responder (signed by the CA itself, or by a delegated responder certificate with id-kp-OCSPSigning)
    says good: `ocsp/external.der` appears, `openssl ocsp -respin ... -resp_text` says good and verifies, and the
    worker staples it (`openssl s_client -status`)."""
    p = own_pki
    cert = pki.issue_ocsp_responder(p.root, "ocsp-signer", ocsp_signing=True) if signer == "delegated" else None
    responder = ocsp_responder(p.root, signer=cert)
    node = ocsp_node(tls_node, p, responder)
    data = check_good_staple(node, p, responder.url)
    assert responder.count >= 1 and all(r.status == 200 for r in responder.records()), responder.describe()
    # The worker staples what was published.
    out = stapled_status(node, p.clients["alice"])
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    assert f"Serial Number: {p.server.serial}" in out, out
    if cert is not None:
        assert "Responder Id: CN = ocsp-signer" in pki.ocsp_response_text(ocsp_file(node)), "not the delegated signer"


def test_ocsp_get_is_the_fallback_when_post_is_refused(tls_node, own_pki, ocsp_responder):
    """A responder that refuses POST (405) is asked again with GET (/<url-encoded base64 request>)."""
    p = own_pki
    responder = ocsp_responder(p.root)
    responder.allow_post = False
    node = ocsp_node(tls_node, p, responder)
    check_good_staple(node, p, responder.url)
    recs = responder.records()
    assert [r.method for r in recs if r.status == 200] == ["GET"], responder.describe()
    assert any(r.method == "POST" and r.status == 405 for r in recs), responder.describe()


def test_ocsp_responder_from_the_certificates_aia(tls_node, own_pki, ocsp_responder):
    """Without `ocsp_responder_url`, the request goes to the server certificate's AIA OCSP URL."""
    p = own_pki
    responder = ocsp_responder(p.root)
    server = pki.issue_with_extensions(p.root, "server-aia", "localhost", "server", ocsp_url=responder.url)
    p = dataclasses.replace(p, server=server)
    node = ocsp_node(tls_node, p, None)
    check_good_staple(node, p, responder.url)


def _ocsp_another_cert(responder, p):
    responder.about = p.clients["alice"].cert


def _ocsp_expired(responder, p):
    responder.expired = True


def _ocsp_delegated_without_eku(responder, p):
    responder.signer = pki.issue_ocsp_responder(p.root, "ocsp-no-eku", ocsp_signing=False)


def _ocsp_try_later(responder, p):
    responder.canned = rs.TRY_LATER


# (apply, what fetch.error contains, the levels the `fetch failed` line may have): a response that fails validation
# is at least a warning. A REVOKED or unknown answer that passes is no fault: it is published at once, so that the
# workers stop stapling (test_13_gate_fetcher).
OCSP_FAULTS = {
    "another_certificate": (_ocsp_another_cert, "does not cover", ("warning", "error")),
    "expired": (_ocsp_expired, "expired", ("warning", "error")),
    "delegated_without_eku": (_ocsp_delegated_without_eku, "responder", ("warning", "error")),
    "try_later": (_ocsp_try_later, "tryLater", ("warning", "error")),
}


@pytest.mark.parametrize("fault", list(OCSP_FAULTS))
def test_bad_ocsp_response_keeps_the_last_good_staple(tls_node, own_pki, ocsp_responder, fault):
    """From a published good response, the responder starts answering badly: nothing is published, the last good
    response stays, and `fetch failed` names the listener, the URL and the reason."""
    p = own_pki
    apply, reason, levels = OCSP_FAULTS[fault]
    responder = ocsp_responder(p.root)
    node = ocsp_node(tls_node, p, responder, refresh=True)
    good = check_good_staple(node, p, responder.url)
    inode = ocsp_file(node).stat().st_ino

    apply(responder, p)
    line = wait_failed(node, responder.url, "ocsp", timeout=3 * REFRESH + 6)
    assert reason in line.fields.get("fetch.error", ""), f"expected {reason!r} in fetch.error:\n{line.raw}"
    assert line.fields.get("fetch.listener") == LISTENER, line.raw
    assert line.fields.get("fetch.kept") == "true", line.raw
    assert line.level in levels, line.raw
    f = ocsp_file(node)
    assert f.read_bytes() == good and f.stat().st_ino == inode, "the last good OCSP response was replaced"
    assert len(node.lines_with(OCSP_PUBLISHED)) == 1, dump(node.lines_with(OCSP_PUBLISHED))
    m = harness.wait_until(lambda: (m := ocsp_meta(node))["consecutive_failures"] >= 1 and m, 2,
                           message="the sidecar to record the failure")
    assert m["sha256"] == sha256(good) and reason in (m["last_error"] or ""), m
    assert_no_temp_files(node)


# ----------------------------------------------------------------------------------------------------------------
# kill -9, restarts


def test_kill9_during_a_large_download_publishes_nothing_partial(tls_node, own_pki, crl_server):
    """A 1.7 MB CRL served at 400 KB/s. The fetcher is killed with SIGKILL in the middle of the download: no
    partial file is published, the respawned fetcher downloads it again and publishes it whole (it parses, the
    sidecar's sha256 matches) and no temp file is left."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    p.root.revoke(bob)
    pki.revoke_many(p.root, 35000)
    big = p.root.gencrl(p.dir / "big.der", der=True)
    size = big.stat().st_size
    assert size > 1_500_000, size
    url = crl_server.serve("/big.crl", big, throttle=400_000)
    node = tls_node(p, options=crl_listener(url)).start()

    def in_flight():
        reqs = crl_server.requests("/big.crl")
        return reqs and reqs[-1].status == 200 and 100_000 < reqs[-1].body_bytes < size // 2 and not reqs[-1].complete

    harness.wait_until(in_flight, 10, interval=0.02, message="the download to be under way")
    victim = fetcher_pid(node)
    os.kill(victim, signal.SIGKILL)
    f = crl_file(node, url)
    assert not f.exists(), "a CRL was published although its download was killed"

    assert new_fetcher(node, victim)["restarts"] >= 1
    assert not f.exists() or f.read_bytes() == big.read_bytes(), "a partial CRL was published"
    line = wait_published(node, url, timeout=size / 400_000 + 10)
    assert f.read_bytes() == big.read_bytes()
    pki.openssl("crl", "-inform", "DER", "-in", str(f), "-noout")
    assert line.fields.get("revocation.entries") == str(35001), line.raw
    check_crl_meta(node, url, "configured", big.read_bytes())
    assert_no_temp_files(node)
    reqs = crl_server.requests("/big.crl")
    assert len(reqs) >= 2 and not reqs[0].complete and reqs[-1].complete, crl_server.describe()
    assert_worker_uses_crl_revoking(node, bob, alice)


def test_restarts_resume_from_the_cache_without_refetching(tls_node, own_pki, crl_server):
    """With the default (long) refresh interval: after `gatehouse restart fetcher` and after a restart of the
    whole node, the fetcher resumes from the sidecar and does not download the still fresh CRL again; restarted
    while the CRL server is down, the worker still gets the published file and the fetcher does not even try."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    p.root.revoke(bob)
    served = p.root.gencrl(p.dir / "served.der", der=True)
    url = crl_server.serve("/root.crl", served)
    node = tls_node(p, options=crl_listener(url)).start()
    wait_published(node, url)
    f = crl_file(node, url)
    published, meta = f.read_bytes(), settled_meta(node.cache / "meta" / f"crl-{crl_id(url)}.json", f)
    assert crl_server.count("/root.crl") == 1

    # restart fetcher
    old = fetcher_pid(node)
    cp = node.b.cli("restart", "fetcher")
    assert cp.returncode == 0, cp.stderr
    new_fetcher(node, old)
    time.sleep(3)
    assert crl_server.count("/root.crl") == 1, f"re-downloaded after restart fetcher\n{crl_server.describe()}"

    # the whole node, server up
    restart(node, "run1.stderr")
    node.wait_log("fetcher running")
    wait_handshake(node, alice, accepted=True)
    time.sleep(3)
    assert crl_server.count("/root.crl") == 1, f"re-downloaded after a restart\n{crl_server.describe()}"
    assert node.lines_with(PUBLISHED) == [] and node.lines_with(FAILED) == [], fetch_lines(node)

    # the whole node, server down
    crl_server.stop()
    restart(node, "run2.stderr")
    node.wait_log("fetcher running")
    assert_worker_uses_crl_revoking(node, bob, alice)
    time.sleep(3)
    assert node.lines_with(FAILED) == [], f"the fetcher tried a fresh item again:\n{fetch_lines(node)}"
    assert f.read_bytes() == published
    after = crl_meta(node, url)
    for k in ("fetched_at", "published_at", "sha256", "etag", "crl_number"):
        assert after[k] == meta[k], (k, meta, after)


# ----------------------------------------------------------------------------------------------------------------
# Distribution points reported by workers


def report(requests_dir: Path, url: str, n: int) -> None:
    """Drop a request file the way a worker does: `<id>.url` (one line), written to a temp name and renamed."""
    name = f"{crl_id(url)}.url"
    tmp = requests_dir / f"{name}.tmp.{os.getpid()}.{n}"
    tmp.write_text(url + "\n")
    os.rename(tmp, requests_dir / name)


def test_reported_distribution_point_is_fetched_once(tls_node, own_pki, crl_server):
    """The same distribution point reported 100 times (before, during and after its download, which the server
    holds for 1.5 s) is fetched exactly once: single flight, then fresh."""
    p = own_pki
    url = crl_server.serve("/cdp.crl", p.root.gencrl(p.dir / "cdp.der", der=True), slow=1.5)
    node = tls_node(p).start()
    requests_dir = node.cache / "requests"
    harness.wait_until(requests_dir.is_dir, 5, message=f"{requests_dir} to exist")

    for n in range(40):
        report(requests_dir, url, n)
    harness.wait_until(lambda: crl_server.count("/cdp.crl") >= 1, 10, message="the fetch to start")
    for n in range(40, 70):
        report(requests_dir, url, n)
    wait_published(node, url)
    for n in range(70, 100):
        report(requests_dir, url, n)
    harness.wait_until(lambda: not list(requests_dir.glob("*.url")), 5, message="every request file to be taken")
    time.sleep(2)
    assert crl_server.count("/cdp.crl") == 1, crl_server.describe()
    assert len(node.lines_with(REPORTED, fetch__url=url)) == 1, dump(node.lines_with(REPORTED))
    assert len(node.lines_with(PUBLISHED, fetch__url=url)) == 1, dump(node.lines_with(PUBLISHED))
    check_crl_meta(node, url, "reported", (p.dir / "cdp.der").read_bytes())
    assert_no_temp_files(node)


def test_worker_reports_the_distribution_point_of_a_client_certificate(tls_node, own_pki, crl_server):
    """Client certificates whose CRL distribution point is the CRL server, and no CRL configured for their CA:
    the first handshake is refused (no CRL), the worker reports the distribution point, the fetcher fetches it
    once, and then a good certificate is accepted and a revoked one refused."""
    p = own_pki
    url = crl_server.url("/cdp/root.crl")
    eve = pki.issue_with_extensions(p.root, "eve", "eve", "client", crl_url=url)
    frank = pki.issue_with_extensions(p.root, "frank", "frank", "client", crl_url=url)
    p.root.revoke(frank)
    crl_server.serve("/cdp/root.crl", p.root.gencrl(p.dir / "cdp.der", der=True))
    node = tls_node(p).start()

    r = node.s_client(eve)
    assert r.refused, f"accepted without any CRL for its issuer\n{r}"
    first = node.wait_log(pki.REFUSED, tls__serial=eve.serial)[0]
    assert first.fields.get("tls.reason") == "unable to get certificate CRL", first.raw
    node.wait_log(REPORTED, timeout=5, fetch__url=url)
    wait_published(node, url)
    check_crl_meta(node, url, "reported", (p.dir / "cdp.der").read_bytes())

    wait_handshake(node, eve, accepted=True)
    r = wait_handshake(node, frank, accepted=False)
    assert r.alert == 44, str(r)
    assert node.wait_log(pki.REFUSED, tls__serial=frank.serial)[-1].fields.get("tls.reason") == "certificate revoked"
    assert node.s_client(eve).accepted
    time.sleep(1)
    assert crl_server.count("/cdp/root.crl") == 1, crl_server.describe()
    assert len(node.lines_with(REPORTED, fetch__url=url)) == 1, dump(node.lines_with(REPORTED))
