"""13 the gate holds at every instant, fetcher side: what the fetcher publishes when the responder says the server
certificate is revoked, rollback floors that outlive the cache, redirects, the certificates a staple carries, and
server certificate rotation.

Real pieces only, as in 09: `openssl ca` as CA, `openssl ocsp` behind `revocation_servers.OCSPResponder`, CRLs
served by `revocation_servers.CRLServer` (a second one on 127.0.0.2 plays another host), `openssl ocsp -respin
... -resp_text` to read what was published, `openssl s_client` for handshakes.

- A REVOKED or unknown answer that passes every other check is published at once (`ocsp/<listener>.der`,
  `cert_status` in the sidecar) so that the workers stop stapling; one loud line per episode; a later good answer
  is published again.
- The highest CRL accepted per lineage is kept in `<node.data_dir>/crl-floors.json`: an older CRL is a rollback
  even after the cache directory or its metadata is lost.
- `node.fetch_redirects` (default `same_host`) refuses redirects to another host, for CRLs and OCSP.
- The published staple keeps only the signer certificate it needs.
- A replaced `certfile` makes the OCSP response due at once, for the new certificate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import harness
import pki
import revocation_servers as rs
from test_09_fetcher import (  # noqa: F401 - fixtures
    FAILED, FAST_CRL, OCSP_PUBLISHED, PUBLISHED, REFRESH, SERVER_REVOKED, _failed, assert_no_temp_files,
    assert_worker_uses_crl_revoking, check_good_staple, crl_file, crl_id, crl_listener, crl_server, dump,
    fetch_lines, fetcher_pid, new_fetcher, ocsp_file, ocsp_listener, ocsp_meta, ocsp_node, ocsp_responder,
    settled_meta, stapled_status, wait_failed, wait_published,
)

LISTENER = pki.LISTENER
SERVER_UNKNOWN = "server certificate unknown to its OCSP responder"
LOUD = {"revoked": (SERVER_REVOKED, "critical"), "unknown": (SERVER_UNKNOWN, "error")}


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def un_revoke(ca: pki.CA, cert: pki.Cert) -> None:
    """Turn `cert`'s line in the CA database back from R (revoked) to V (`openssl ca` cannot un-revoke; a CA that
    revoked by mistake edits its database), so `openssl ocsp` answers good again."""
    index = ca.dir / "index.txt"
    out = []
    for line in index.read_text().splitlines():
        f = line.split("\t")
        if len(f) >= 4 and f[0] == "R" and f[3].upper().lstrip("0") == cert.serial:
            f[0], f[2] = "V", ""
        out.append("\t".join(f))
    index.write_text("\n".join(out) + "\n")


def make_unknown(responder: rs.OCSPResponder, p: pki.TestPKI) -> None:
    """The responder answers from an empty database: every certificate is unknown to it."""
    empty = p.dir / "empty-index.txt"
    empty.write_text("")
    responder.index = empty


def staple_text(node: pki.TLSNode, p: pki.TestPKI, cert: Path | None = None) -> str:
    """`openssl ocsp -respin <published> -resp_text -issuer root -cert <cert> -CAfile root`."""
    return pki.ocsp_response_text(ocsp_file(node), p.root.cert, cert or p.server.cert, cafile=p.root.cert)


def stapling_row(node: pki.TLSNode) -> dict:
    rows = [s for s in node.b.status().get("stapling", []) if s.get("listener") == LISTENER]
    assert len(rows) == 1, node.b.last_status
    return rows[0]


def metrics_port(node: pki.TLSNode) -> int:
    """Turn the metrics endpoint on for a node that is not started yet; returns its port."""
    port = harness.free_port()
    node.lines = [l for l in node.lines if not l.startswith("node.metrics_listener")]
    node.lines.append(f"node.metrics_listener = 127.0.0.1:{port}")
    return port


def metric(port: int, name: str, labels: str) -> float | None:
    """One sample of `GET /metrics` (`name{labels} value`), or None when absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def certificates_in(response: Path) -> list[str]:
    """The subjects of the certificates an OCSP response carries (`openssl ocsp -resp_text -noverify`)."""
    text = pki.ocsp_response_text(response)
    return re.findall(r"^\s*Subject: (.*)$", text, re.M)


def wait_status_published(node: pki.TLSNode, status: str, timeout: float, more_than: int = 0) -> pki.LogLine:
    try:
        return node.wait_log(OCSP_PUBLISHED, more_than=more_than, timeout=timeout, fetch__listener=LISTENER,
                             ocsp__cert_status=status)[-1]
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fetch_lines(node)}") from None


# ----------------------------------------------------------------------------------------------------------------
# 1. A REVOKED (or unknown) answer withdraws the staple at once


@pytest.mark.parametrize("status", ["revoked", "unknown"])
def test_revoked_or_unknown_answer_is_published_at_once(tls_node, own_pki, ocsp_responder, status):
    """From a published good response, the CA revokes the server certificate (or the responder stops knowing
    it): the next poll publishes the verified REVOKED (unknown) response in place of the good one, with
    `cert_status`, revocation time and reason in the sidecar; one loud line for the episode however many polls
    follow; `status` shows the staple withdrawn and the metric `gatehouse_ocsp_certificate_revoked` is 1. When the
    responder says good again, a good response is published again."""
    p = own_pki
    responder = ocsp_responder(p.root)
    node = tls_node(p, crl_check=False, options=ocsp_listener(responder, p.root.cert, True),
                    extra=["node.fetch_refresh_floor = 1s"])
    port = metrics_port(node)
    node.start()
    check_good_staple(node, p, responder.url)
    labels = f'listener="ssl:{LISTENER}"'

    if status == "revoked":
        p.root.revoke(p.server)
    else:
        make_unknown(responder, p)
    line = wait_status_published(node, status, timeout=3 * REFRESH + 5)
    text = staple_text(node, p)
    assert f"{p.server.cert}: {status}" in text and "Response verify OK" in text, text
    m = settled_meta(node.cache / "meta" / f"ocsp-{LISTENER}.json", ocsp_file(node))
    assert m["cert_status"] == status, m
    if status == "revoked":
        assert m["revocation_reason"] == "keyCompromise", m
        assert isinstance(m["revoked_at"], (int, float)) and abs(m["revoked_at"] - time.time()) < 120, m
        assert "keyCompromise" in text, text
    assert m["last_error"] is None and m["consecutive_failures"] == 0, m
    assert line.level in ("warning", "error", "critical"), line.raw

    # One loud line for the episode, whatever the number of polls that say the same.
    message, level = LOUD[status]
    polls = responder.count
    harness.wait_until(lambda: responder.count >= polls + 2, 3 * REFRESH + 5, message="two more polls")
    time.sleep(0.5)
    loud = node.lines_with(message, fetch__listener=LISTENER)
    assert len(loud) == 1 and loud[0].level == level, dump(loud) + "\n" + fetch_lines(node)
    assert node.lines_with(FAILED) == [], fetch_lines(node)
    assert f"{p.server.cert}: {status}" in staple_text(node, p)

    row = stapling_row(node)
    assert row["state"] == "withdrawn" and status in row["detail"], row
    if status == "revoked":
        assert "keyCompromise" in row["detail"], row
    cache = [c for c in node.b.last_status["cache"] if c.get("kind") == "ocsp"]
    assert cache and cache[0]["cert_status"] == status, cache
    assert metric(port, "gatehouse_ocsp_certificate_revoked", labels) == 1.0
    assert metric(port, "gatehouse_ocsp_stapled", labels) == 0.0

    # The responder says good again: a good response (newer thisUpdate) is published again.
    goods = len(node.lines_with(OCSP_PUBLISHED, ocsp__cert_status="good"))
    if status == "revoked":
        un_revoke(p.root, p.server)
    else:
        responder.index = None
    wait_status_published(node, "good", timeout=3 * REFRESH + 5, more_than=goods)
    text = staple_text(node, p)
    assert f"{p.server.cert}: good" in text and "Response verify OK" in text, text
    m = harness.wait_until(lambda: (m := ocsp_meta(node))["cert_status"] == "good" and m, 2, message="good sidecar")
    assert m["revoked_at"] is None and m["revocation_reason"] is None, m
    assert stapling_row(node)["state"] == "stapled"
    assert metric(port, "gatehouse_ocsp_certificate_revoked", labels) == 0.0
    assert len(node.lines_with(message, fetch__listener=LISTENER)) == 1, fetch_lines(node)
    assert_no_temp_files(node)


def test_revoked_from_the_start_is_published_with_one_critical_line(tls_node, own_pki, ocsp_responder):
    """The server certificate is revoked before the node starts: the verified REVOKED response is published (there
    was no good one to keep), `server certificate revoked by its OCSP responder` is logged once at critical over
    several polls, and nothing counts as a failed fetch."""
    p = own_pki
    p.root.revoke(p.server)
    responder = ocsp_responder(p.root)
    node = ocsp_node(tls_node, p, responder, refresh=True)
    wait_status_published(node, "revoked", timeout=10)
    assert f"{p.server.cert}: revoked" in staple_text(node, p)
    harness.wait_until(lambda: responder.count >= 3, 3 * REFRESH + 5, message="three polls")
    time.sleep(0.5)
    loud = node.lines_with(SERVER_REVOKED, fetch__listener=LISTENER)
    assert len(loud) == 1 and loud[0].level == "critical", dump(loud)
    assert node.lines_with(FAILED) == [], fetch_lines(node)
    assert stapling_row(node)["state"] == "withdrawn"


# ----------------------------------------------------------------------------------------------------------------
# 2. The rollback floor survives the loss of the cache


def _remove_cache(node: pki.TLSNode, url: str) -> None:
    shutil.rmtree(node.cache)


def _replace_published_file(node: pki.TLSNode, url: str) -> None:
    """As a crash between the two renames leaves it: a data file the sidecar does not describe (garbage here, so the
    worker keeps the CRL it has)."""
    f = crl_file(node, url)
    tmp = f.with_name(f.name + ".garbage")
    tmp.write_bytes(os.urandom(64))
    os.rename(tmp, f)


def _corrupt_metadata(node: pki.TLSNode, url: str) -> None:
    path = node.cache / "meta" / f"crl-{crl_id(url)}.json"
    m = json.loads(path.read_text())
    m["sha256"] = "0" * 64
    path.write_text(json.dumps(m))


# (what is lost, whether the fetcher is then killed (-9; the supervisor respawns it) instead of resumed)
LOSSES = {
    "cache_removed": (_remove_cache, False),
    "cache_removed_fetcher_killed": (_remove_cache, True),
    "published_file_replaced": (_replace_published_file, False),
    "metadata_corrupt_fetcher_killed": (_corrupt_metadata, True),
}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_crl_rollback_refused_after_the_cache_is_lost(tls_node, own_pki, crl_server, loss):
    """CRL n+1 (revoking bob) is published over plain HTTP. Then the cache loses what it knew (the directory is
    removed, or the published file or its sidecar no longer match; the fetcher goes on, or is killed and
    respawned) while the server replays CRL n (older, unexpired, revoking nobody): it is refused as a rollback
    below the lineage's floor, whatever the cache says, and bob stays refused. The same CRL n+1 served again is
    accepted (equal to the floor)."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    older = p.root.gencrl(p.dir / "older.der", der=True)  # n
    p.root.revoke(bob)
    good = p.root.gencrl(p.dir / "good.der", der=True).read_bytes()  # n + 1
    url = crl_server.serve("/root.crl", p.dir / "served.der")
    crl_server.put("/root.crl", good)
    node = tls_node(p, options=crl_listener(url), extra=FAST_CRL).start()
    wait_published(node, url)
    assert_worker_uses_crl_revoking(node, bob, alice)
    floors = node.b.data_dir / "crl-floors.json"
    harness.wait_until(floors.exists, 2, message=f"{floors} to exist")
    assert str(pki.crl_number(p.dir / "good.der")) in floors.read_text(), floors.read_text()

    # The fetcher is stopped (SIGSTOP) while the server starts replaying CRL n and the cache loses its knowledge,
    # so that no fetch can see the replay before the loss.
    lose, kill = LOSSES[loss]
    failed = len(node.lines_with(FAILED, fetch__url=url))
    victim = fetcher_pid(node)
    os.kill(victim, signal.SIGSTOP)
    try:
        crl_server.put("/root.crl", older.read_bytes())
        lose(node, url)
    finally:
        os.kill(victim, signal.SIGKILL if kill else signal.SIGCONT)
    if kill:
        new_fetcher(node, victim)
    line = wait_failed(node, url, "crl", more_than=failed, timeout=3 * REFRESH + 8)
    assert "rollback" in line.fields.get("fetch.error", ""), line.raw
    assert str(pki.crl_number(older)) in line.fields["fetch.error"], line.raw
    time.sleep(REFRESH + 1)
    assert len(node.lines_with(PUBLISHED, fetch__url=url)) == 1, fetch_lines(node)
    f = crl_file(node, url)
    assert not f.exists() or f.read_bytes() != older.read_bytes(), "the older CRL was published"
    r = node.s_client(bob)
    assert r.refused, f"bob accepted after a rollback attempt\n{r}"

    # The current CRL again: accepted (equal to the floor) and published again (the cache no longer vouched for
    # what it had), bob refused as revoked, alice accepted.
    crl_server.put("/root.crl", good)
    wait_published(node, url, more_than=1, timeout=3 * REFRESH + 5)
    assert f.read_bytes() == good
    assert_worker_uses_crl_revoking(node, bob, alice)
    assert_no_temp_files(node)


# ----------------------------------------------------------------------------------------------------------------
# 4. Redirects


@pytest.fixture
def other_host(request: pytest.FixtureRequest):
    """A CRL server on 127.0.0.2: another host as far as URLs go."""
    s = rs.CRLServer("127.0.0.2")
    yield s
    s.stop()
    if _failed(request):
        print(s.describe())


@pytest.mark.parametrize("policy", [None, "none", "same_host", "any"])
def test_crl_redirects_follow_the_policy(tls_node, own_pki, crl_server, other_host, policy):
    """Two CRL URLs on 127.0.0.1: one redirects to the same host (another path), one to 127.0.0.2. With the
    default (`same_host`) the first is published and the second fails with a clear reason; `none` refuses both;
    `any` follows both."""
    p = own_pki
    served = p.root.gencrl(p.dir / "served.der", der=True)
    crl_server.serve("/here.crl", served)
    same = crl_server.serve("/old.crl", served, redirect="/here.crl")
    far_target = other_host.serve("/root.crl", served)
    far = crl_server.serve("/moved.crl", served, redirect=far_target)
    extra = [f"node.fetch_redirects = {policy}"] if policy else []
    node = tls_node(p, options=[f"crl_cache_urls = {same},{far}"], extra=extra).start()

    expect = {None: (True, False), "same_host": (True, False), "none": (False, False), "any": (True, True)}[policy]
    for url, followed, target in ((same, expect[0], crl_server.url("/here.crl")), (far, expect[1], far_target)):
        if followed:
            wait_published(node, url)
            assert crl_file(node, url).read_bytes() == served.read_bytes()
        else:
            line = wait_failed(node, url, "crl")
            error = line.fields.get("fetch.error", "")
            assert "redirect" in error and "refused" in error and target in error, line.raw
            assert f"node.fetch_redirects = {policy or 'same_host'}" in error, line.raw
            assert not crl_file(node, url).exists()
    assert other_host.count("/root.crl") == (1 if expect[1] else 0), other_host.describe()


@pytest.mark.parametrize("policy", [None, "any"])
def test_ocsp_redirect_to_another_host(tls_node, own_pki, ocsp_responder, tmp_path, policy):
    """The configured OCSP responder (127.0.0.1) redirects (307) to the real one on 127.0.0.2: refused by default
    (a fetch failure naming the redirect), followed with `node.fetch_redirects = any`."""
    p = own_pki
    real = rs.OCSPResponder(p.root, tmp_path / "real", host="127.0.0.2")
    try:
        front = ocsp_responder(p.root)
        front.redirect = real.url
        extra = [f"node.fetch_redirects = {policy}"] if policy else []
        node = tls_node(p, crl_check=False, options=ocsp_listener(front, p.root.cert, False), extra=extra).start()
        if policy == "any":
            check_good_staple(node, p, front.url)
            assert real.count >= 1
        else:
            line = wait_failed(node, front.url, "ocsp")
            error = line.fields.get("fetch.error", "")
            assert "redirect" in error and "refused" in error and real.url in error, line.raw
            assert real.count == 0, real.describe()
            assert front.count == 1, f"retried with GET after a refused redirect\n{front.describe()}"
            assert not ocsp_file(node).exists()
    finally:
        real.stop()


# ----------------------------------------------------------------------------------------------------------------
# 5. The staple carries only the signer certificate it needs


@pytest.mark.parametrize("signer", ["delegated", "ca"])
def test_staple_carries_only_the_signer_certificate(tls_node, own_pki, ocsp_responder, signer):
    """The responder puts its whole chain and more into the response (`openssl ocsp -rother`). The published
    staple keeps only the certificate that signed it: the delegated responder's, or the CA's when the CA signed
    (the listener's certfile does not carry the root, so a client needs it to verify the staple). It still
    verifies with `openssl ocsp -respin ... -CAfile`, and the worker staples it as it is."""
    p = own_pki
    delegated = pki.issue_ocsp_responder(p.root, "ocsp-signer", ocsp_signing=True) if signer == "delegated" else None
    responder = ocsp_responder(p.root, signer=delegated)
    responder.rother = pki.concat(p.dir / "extras.pem", p.root.cert, p.inter.cert, p.other.cert)
    # What the responder sends: its signer and the three others.
    raw = p.dir / "raw.der"
    raw.write_bytes(responder.respond(pki.ocsp_request(p.root.cert, p.server.cert, p.dir / "req.der").read_bytes()))
    assert len(certificates_in(raw)) == 4, pki.ocsp_response_text(raw)

    node = ocsp_node(tls_node, p, responder)
    check_good_staple(node, p, responder.url)
    subjects = certificates_in(ocsp_file(node))
    want = "CN=ocsp-signer" if delegated else "O=Gatehouse Tests, CN=Gatehouse Test Root CA"
    assert subjects == [want], f"{subjects}\n{pki.ocsp_response_text(ocsp_file(node))}"
    # `-CAfile` alone (no -issuer, no -verify_other): the signer is found in the response.
    cp = subprocess.run(["openssl", "ocsp", "-respin", str(ocsp_file(node)), "-CAfile", str(p.root.cert)],
                        capture_output=True, timeout=20)
    assert b"Response verify OK" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    assert ocsp_file(node).stat().st_size < raw.stat().st_size

    out = stapled_status(node, p.clients["alice"])
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out


# ----------------------------------------------------------------------------------------------------------------
# 6. The staple of the certificate now served


def test_rotated_server_certificate_gets_its_own_staple(tls_node, own_pki, ocsp_responder):
    """With the default 5-minute OCSP interval, the server's certfile is first rewritten in place half-written (a
    clear fetch failure, retried), then replaced whole with a new certificate and key (atomic renames): within a
    few seconds a good response about the NEW serial is published and the sidecar names the new certificate."""
    p = own_pki
    responder = ocsp_responder(p.root)
    node = ocsp_node(tls_node, p, responder)
    check_good_staple(node, p, responder.url)
    assert p.server.serial in (ocsp_meta(node)["certificate"] or "").upper()
    new = p.root.issue("server-next", "localhost", server=True)
    assert new.serial != p.server.serial

    # Half written (in place: IN_CLOSE_WRITE): a failure that names the file, and nothing published.
    pem = new.cert.read_bytes()
    with open(p.server.cert, "wb") as f:
        f.write(pem[: len(pem) // 2])
    line = wait_failed(node, responder.url, "ocsp", timeout=5)
    assert str(p.server.cert) in line.fields.get("fetch.error", ""), line.raw
    assert len(node.lines_with(OCSP_PUBLISHED)) == 1

    # The whole new certificate and key, each renamed into place.
    t = time.monotonic()
    for source, target in ((new.key, p.server.key), (new.cert, p.server.cert)):
        tmp = target.with_name(target.name + ".new")
        shutil.copyfile(source, tmp)
        os.rename(tmp, target)
    node.wait_log(OCSP_PUBLISHED, more_than=1, timeout=5, fetch__listener=LISTENER)
    took = time.monotonic() - t
    assert took < 5, took
    text = pki.ocsp_response_text(ocsp_file(node), p.root.cert, p.server.cert, cafile=p.root.cert)
    assert f"{p.server.cert}: good" in text and "Response verify OK" in text, text
    serials = re.findall(r"Serial Number: ([0-9A-Fa-f]+)", text)
    assert serials and all(s.upper().lstrip("0") == new.serial for s in serials), (new.serial, text)
    m = settled_meta(node.cache / "meta" / f"ocsp-{LISTENER}.json", ocsp_file(node))
    assert new.serial in (m["certificate"] or "").upper(), m
    assert m["cert_status"] == "good" and m["consecutive_failures"] == 0, m
