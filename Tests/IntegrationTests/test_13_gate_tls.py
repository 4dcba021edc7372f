"""13 the gate at every instant (TLS side): each test here is a path by which a revoked or unverified client got in
on the code before the gate issue, and checks that it no longer does.

- critical CRL extensions: a CRL with a critical extension OpenSSL's verifier does not handle is refused at load
  (the last good CRL stays), instead of refusing every client of its CA or, next to another CRL of that issuer,
  silently losing to an older one;
- one CRL per lineage in force, the newest, whatever its source: a newer CRL past its nextUpdate is not bypassed by
  an older valid `crlfile`; a file that goes back to an older CRL (a replay) is refused;
- resumption: a ticket is honoured only when a full handshake with the same certificate would be (CRL past its
  nextUpdate under `closed`, expired client certificate); `reuse_sessions = off`; bounded ticket lifetime;
- live revocation of a CA certificate of the chain under `crl_check_depth = chain`;
- the same clock-skew leeway for a CRL's thisUpdate as the fetcher's;
- TLS 1.2 ciphers ECDHE with AEAD only by default;
- certificate and key rotation without a restart, a mismatched pair keeping the old identity without holding up
  a CRL, and never a staple for another certificate than the one served.

Real pieces: the `openssl ca` PKI of pki.py (`-gencrl`, `-revoke`, `-crlexts` for extensions), `openssl s_client`
(alerts, `-sess_out`/`-sess_in` resumption, `-status`, `-cipher`), paho-mqtt clients, CRLs published into the cache
the way the fetcher does (temp file, fsync, rename).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import harness
import pki

VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])
REJECTED = pki.REJECTED
DISCONNECTED = "client disconnected: certificate revoked"


def _gencrl_with_extension(ca: pki.CA, out: Path, extension_line: str) -> Path:
    """`openssl ca -gencrl -crlexts` with a section holding `extension_line` (besides the authority key id)."""
    section = f"crlext_{int(time.monotonic() * 1000)}"
    ca.cnf.write_text(ca.cnf.read_text() + f"\n[ {section} ]\nauthorityKeyIdentifier = keyid:always\n"
                      f"{extension_line}\n")
    pki.openssl("ca", "-config", str(ca.cnf), "-batch", "-gencrl", "-crlexts", section, "-out", str(out))
    return out


def _issue_until(ca: pki.CA, name: str, not_after: datetime) -> pki.Cert:
    """A client certificate (usr_cert) valid until `not_after`."""
    key, csr, crt = ca.dir / f"{name}.key", ca.dir / f"{name}.csr", ca.dir / f"{name}.pem"
    pki.openssl("req", "-config", str(ca.cnf), "-new", *pki._EC, "-keyout", str(key), "-out", str(csr),
                "-subj", f"/CN={name}")
    pki.openssl("ca", "-config", str(ca.cnf), "-batch", "-notext", "-in", str(csr), "-out", str(crt),
                "-extensions", "usr_cert", "-enddate", pki.openssl_time(not_after))
    return pki.Cert(name=name, cert=crt, key=key, subject=f"CN={name}", serial=pki.cert_serial(crt))


# ----------------------------------------------------------------------------------------------------------------
# Critical extensions


def test_critical_extension_crl_refused_and_last_good_kept(tls_node, own_pki):
    """A newer CRL of the same CA with a critical issuerAltName: OpenSSL's verifier would refuse every client with
    it ("unhandled critical CRL extension"). It is refused at load, loudly, and the last good CRL stays."""
    p = own_pki
    node = tls_node(p, crls={"root.pem": p.root.gencrl(p.dir / "first.pem")}).start()
    alice = p.clients["alice"]
    assert node.s_client(alice).accepted

    bad = _gencrl_with_extension(p.root, p.dir / "critical.pem", "issuerAltName = critical, URI:http://ca.example/")
    node.publish_crl("root.pem", bad)
    lines = node.wait_log(REJECTED, revocation__file=str(node.crl_dir / "root.pem"))
    assert "critical extension issuerAltName" in lines[-1].fields.get("error", ""), lines[-1].raw
    r = node.s_client(alice)
    assert r.accepted, f"a good client is refused after a CRL with a critical extension arrived\n{r}"
    assert not node.refusals(tls__reason="unhandled critical CRL extension")


def test_critical_extension_crl_next_to_a_crlfile_is_refused_loudly(tls_node, own_pki):
    """Two sources for one CA: the `crlfile` holds an older CRL, the cache a newer one that revokes bob but carries a
    critical cRLNumber-free extension OpenSSL does not handle. OpenSSL would prefer the older CRL and ignore bob's
    revocation without a word; the newer CRL must be refused with a log line that says why."""
    p = own_pki
    older = p.root.gencrl(p.dir / "older.pem")
    crlfile = p.dir / "local.pem"
    crlfile.write_bytes(older.read_bytes())
    node = tls_node(p, crlfiles=[crlfile]).start()
    p.root.revoke(p.clients["bob"])
    newer = _gencrl_with_extension(p.root, p.dir / "newer.pem", "freshestCRL = critical, URI:http://ca.example/d.crl")
    node.publish_crl("root.pem", newer)
    lines = node.wait_log(REJECTED, revocation__file=str(node.crl_dir / "root.pem"))
    assert "critical extension" in lines[-1].fields.get("error", "") and "freshest" in lines[-1].fields["error"].lower(), (
        lines[-1].raw)


# ----------------------------------------------------------------------------------------------------------------
# The newest CRL per lineage is in force


def test_newer_expired_crl_is_not_bypassed_by_an_older_valid_crlfile(tls_node, own_pki):
    """crlfile: CRL n, valid, revoking nobody. Cache: CRL n+1, revoking bob, whose nextUpdate has passed. OpenSSL's
    own choice prefers the CRL whose time is valid (the older one) and lets bob in. The newest CRL of the lineage
    is the one in force: under `crl_fail_policy = closed` its issuer's clients are refused (CRL has expired)."""
    p = own_pki
    crlfile = p.dir / "local.pem"
    p.root.gencrl(crlfile)
    p.root.revoke(p.clients["bob"])
    expired = p.root.expired_crl(p.dir / "expired.pem")
    node = tls_node(p, crlfiles=[crlfile], crls={"root.pem": expired}).start()
    r = node.s_client(p.clients["bob"])
    assert r.refused, f"bob (revoked by the newest CRL) got in through an older CRL\n{r}"
    lines = node.wait_log(pki.REFUSED, tls__serial=p.clients["bob"].serial)
    assert lines[-1].fields.get("tls.reason") == "CRL has expired", lines[-1].raw


def test_replayed_older_crl_in_the_cache_is_refused(tls_node, own_pki):
    """CRL n+1 (bob revoked) is in force; the cache file is then replaced by the older CRL n (a replay over plain
    HTTP after the fetcher lost its floor). The worker refuses the older CRL and bob stays refused."""
    p = own_pki
    older = p.root.gencrl(p.dir / "n.pem")
    p.root.revoke(p.clients["bob"])
    newer = p.root.gencrl(p.dir / "n1.pem")
    node = tls_node(p, crls={"root.pem": newer}).start()
    assert node.s_client(p.clients["bob"]).alert == 44
    node.publish_crl("root.pem", older)
    lines = node.wait_log(REJECTED, revocation__file=str(node.crl_dir / "root.pem"))
    assert "older than the CRL in force" in lines[-1].fields.get("error", ""), lines[-1].raw
    r = node.s_client(p.clients["bob"])
    assert r.alert == 44, f"bob got back in after an older CRL was replayed\n{r}"


# ----------------------------------------------------------------------------------------------------------------
# Resumption


@VERSIONS
def test_resumption_refused_once_the_crl_is_past_next_update(tls_node, own_pki, tmp_path, version):
    """A CRL whose nextUpdate passes without a file change (the CA is down): a full handshake is refused with "CRL
    has expired" (closed policy) and so must a resumption from a ticket issued before."""
    p = own_pki
    now = datetime.now(timezone.utc)
    crl = p.root.gencrl(p.dir / "short.pem", last_update=now - timedelta(minutes=1),
                        next_update=now + timedelta(seconds=6))
    node = tls_node(p, version, crls={"root.pem": crl}).start()
    alice = p.clients["alice"]
    session = tmp_path / "alice.sess"
    first = node.s_client(alice, sess_out=session, settle=1.0)
    assert first.accepted, str(first)
    assert session.exists() and session.stat().st_size > 0
    assert node.s_client(alice, sess_in=session, sess_out=tmp_path / "again.sess", settle=1.0).reused
    time.sleep(max(0.0, (now + timedelta(seconds=7) - datetime.now(timezone.utc)).total_seconds()))
    full = node.s_client(alice)
    assert full.refused, f"a full handshake passed on a CRL past its nextUpdate\n{full}"
    resumed = node.s_client(alice, sess_in=session)
    assert not (resumed.reused and resumed.accepted), f"resumed past a CRL's nextUpdate\n{resumed}"
    assert resumed.refused, str(resumed)
    node.wait_log("TLS resumption refused, full handshake required", tls__serial=alice.serial)


@VERSIONS
def test_resumption_refused_once_the_client_certificate_expired(tls_node, own_pki, tmp_path, version):
    p = own_pki
    short = _issue_until(p.root, "shortlived", datetime.now(timezone.utc) + timedelta(seconds=8))
    node = tls_node(p, version, crls={"root.pem": p.root.gencrl(p.dir / "crl.pem")}).start()
    session = tmp_path / "short.sess"
    assert node.s_client(short, sess_out=session, settle=1.0).accepted
    deadline = time.monotonic() + 15
    while not node.s_client(short).refused:
        assert time.monotonic() < deadline, "the short-lived certificate never expired"
        time.sleep(0.5)
    resumed = node.s_client(short, sess_in=session)
    assert not (resumed.reused and resumed.accepted), f"resumed with an expired certificate\n{resumed}"


@VERSIONS
def test_reuse_sessions_off_means_no_resumption(tls_node, own_pki, tmp_path, version):
    """No ticket is issued (s_client then has no session to save, or one the server does not resume)."""
    p = own_pki
    node = tls_node(p, version, crls={"root.pem": p.root.gencrl(p.dir / "crl.pem")},
                    options=["reuse_sessions = false"]).start()
    alice = p.clients["alice"]
    session = tmp_path / "alice.sess"
    first = node.s_client(alice, sess_out=session, settle=1.0)
    assert first.accepted, str(first)
    assert "Post-Handshake New Session Ticket arrived" not in first.output, str(first)
    if session.exists():
        again = node.s_client(alice, sess_in=session)
        assert again.accepted and not again.reused, f"resumed although reuse_sessions = false\n{again}"


def test_ticket_lifetime_is_bounded(tls_node, own_pki):
    p = own_pki
    node = tls_node(p, "1.3", crls={"root.pem": p.root.gencrl(p.dir / "crl.pem")}).start()
    r = node.s_client(p.clients["alice"], settle=1.0)
    hints = [int(h) for h in re.findall(r"TLS session ticket lifetime hint: (\d+)", r.output)]
    assert hints and max(hints) <= 600, f"ticket lifetime hint {hints} (OpenSSL's default is 7200)\n{r}"


# ----------------------------------------------------------------------------------------------------------------
# Live revocation of the chain, clock skew, ciphers


def test_chain_depth_live_revocation_disconnects_clients_of_a_revoked_intermediate(tls_node, own_pki):
    """crl_check_depth = chain: dave's certificate comes from the intermediate CA. When the root's new CRL revokes
    the intermediate, dave (connected) is disconnected, as a new handshake of his would be refused."""
    p = own_pki
    bundle = p.bundle
    root_crl = p.root.gencrl(p.dir / "root1.pem")
    inter_crl = p.inter.gencrl(p.dir / "inter1.pem")
    node = tls_node(p, crls={"root.pem": root_crl, "inter.pem": inter_crl}, cacertfile=bundle,
                    options=["crl_check_depth = chain"]).start()
    dave = node.paho(p.inter_client, "dave-chain")
    assert dave.connect() == 0
    p.root.revoke(p.inter.cert)
    node.publish_crl("root.pem", p.root.gencrl(p.dir / "root2.pem"))
    assert dave.disconnected.wait(3), "dave stayed connected after his issuing CA was revoked"
    lines = node.wait_log(DISCONNECTED, tls__serial=p.inter_client.serial)
    assert lines[0].fields.get("tls.revoked_serial") == pki.cert_serial(p.inter.cert), lines[0].raw


def test_crl_with_this_update_a_little_ahead_is_used(tls_node, own_pki):
    """A CA whose clock runs two minutes ahead: the fetcher accepts the CRL (5 minutes of leeway), so the worker
    must use it too instead of refusing every client with "CRL is not yet valid"."""
    p = own_pki
    now = datetime.now(timezone.utc)
    p.root.revoke(p.clients["bob"])
    ahead = p.root.gencrl(p.dir / "ahead.pem", last_update=now + timedelta(minutes=2),
                          next_update=now + timedelta(days=1))
    node = tls_node(p, crls={"root.pem": ahead}).start()
    r = node.s_client(p.clients["alice"])
    assert r.accepted, f"a good client refused on a CRL dated two minutes ahead\n{r}"
    assert node.s_client(p.clients["bob"]).alert == 44


@pytest.mark.parametrize("cipher,accepted", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
    ("ECDHE-ECDSA-AES128-SHA", False),
    ("ECDHE-ECDSA-AES256-SHA384", False),
])
def test_tls12_default_ciphers_are_ecdhe_with_aead(tls_node, own_pki, cipher, accepted):
    p = own_pki
    node = tls_node(p, crls={"root.pem": p.root.gencrl(p.dir / "crl.pem")}).start()
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}", "-tls1_2", "-cipher", cipher,
            "-CAfile", str(node.cafile), "-cert", str(p.clients["alice"].cert), "-key", str(p.clients["alice"].key)]
    import subprocess

    cp = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    out = cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace")
    negotiated = re.search(r"Cipher is (\S+)", out)
    if accepted:
        assert negotiated and negotiated.group(1) == cipher, out
    else:
        assert not negotiated or negotiated.group(1) == "(NONE)", f"{cipher} was negotiated\n{out}"


# ----------------------------------------------------------------------------------------------------------------
# Rotation of the server's certificate and key


def _served_serial(node: pki.TLSNode) -> str:
    r = node.s_client(node.pki.clients["alice"], settle=0.5)
    assert r.accepted, str(r)
    import subprocess

    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.output, re.S)
    assert pem, str(r)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0).encode(), capture_output=True)
    return out.stdout.decode().strip().split("=", 1)[1].upper().lstrip("0")


def _replace(path: Path, source: Path) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(source.read_bytes())
    os.rename(tmp, path)


def _live_identity(node: pki.TLSNode, tmp_path: Path) -> tuple[Path, Path]:
    """Points the (not yet started) node's certfile and keyfile at copies of the server's, which a test replaces."""
    p = node.pki
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    cert.write_bytes(p.server.cert.read_bytes())
    key.write_bytes(p.server.key.read_bytes())
    node.lines = [line.replace(str(p.server.cert), str(cert)).replace(str(p.server.key), str(key))
                  for line in node.lines]
    return cert, key


def test_certificate_rotation_without_restart_and_mismatched_pair_kept_out(tls_node, own_pki, tmp_path):
    p = own_pki
    node = tls_node(p, crls={"root.pem": p.root.gencrl(p.dir / "crl1.pem")})
    cert, key = _live_identity(node, tmp_path)
    node.start()
    worker_pid = harness.ready_workers(node.b.status())[0]["pid"]
    assert _served_serial(node) == p.server.serial

    # A consistent new pair (written key first, then certificate, each atomically) is served without a restart.
    second = p.root.issue("server2", "localhost", server=True)
    _replace(key, second.key)
    _replace(cert, second.cert)
    node.wait_log("TLS identity loaded", tls__certificate_serial=second.serial, timeout=10)
    assert _served_serial(node) == second.serial
    assert harness.ready_workers(node.b.status())[0]["pid"] == worker_pid

    # A half-done rotation: a new certificate with the old key. The old identity stays, said once, and a CRL
    # published meanwhile still applies at once.
    third = p.root.issue("server3", "localhost", server=True)
    _replace(cert, third.cert)
    node.wait_log("new certificate and key not usable together, keeping the previous identity", timeout=10)
    assert _served_serial(node) == second.serial
    p.root.revoke(p.clients["bob"])
    node.publish_crl("root.pem", p.root.gencrl(p.dir / "crl2.pem"))
    assert node.s_client(p.clients["bob"]).alert == 44
    time.sleep(3.5)  # retries at 1 s and 2 s: still one line
    assert len(node.lines_with("new certificate and key not usable together, keeping the previous identity")) == 1
    _replace(key, third.key)
    node.wait_log("TLS identity loaded", tls__certificate_serial=third.serial, timeout=10)
    assert _served_serial(node) == third.serial


# ----------------------------------------------------------------------------------------------------------------
# The operator sees the cliff coming


def test_status_and_metrics_show_every_crl_in_force_with_its_cliff(tls_node, own_pki):
    """A `crlfile` and a CRL in the cache for two issuers: `status --json` lists per worker every CRL in force with
    issuer, source, cRLNumber, thisUpdate, nextUpdate, entries and the time from which its issuer's clients are
    refused (nextUpdate under `closed`); the text status has the table; the metrics have the seconds left."""
    from test_12_live_revocation import _scrape

    p = own_pki
    metrics_port = harness.free_port()
    now = datetime.now(timezone.utc)
    crlfile = p.root.gencrl(p.dir / "root-local.pem", last_update=now - timedelta(minutes=5),
                            next_update=now + timedelta(hours=3))
    inter = p.inter.gencrl(p.dir / "inter.pem")
    node = tls_node(p, crlfiles=[crlfile], crls={"inter.pem": inter}, cacertfile=p.bundle)
    node.lines = [l if not l.startswith("node.metrics_listener") else f"node.metrics_listener = 127.0.0.1:{metrics_port}"
                  for l in node.lines]
    node.start()
    deadline = time.monotonic() + 5
    while True:
        workers = harness.ready_workers(node.b.status())
        listeners = (workers[0].get("statistics") or {}).get("listeners", []) if workers else []
        in_force = listeners[0].get("crls_in_force", []) if listeners else []
        if len(in_force) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(in_force) == 2, f"CRLs in force reported: {listeners}"
    by_issuer = {c["issuer"]: c for c in in_force}
    root = by_issuer["CN=Gatehouse Test Root CA,O=Gatehouse Tests"]
    assert root["source"] == f"crlfile {crlfile}", root
    assert root["crl_number"] == str(pki.crl_number(crlfile, inform="PEM")), root
    assert abs(root["next_update"] - (now + timedelta(hours=3)).timestamp()) < 2, root
    assert root["refuses_from"] == root["next_update"], root
    assert root["entries"] == 0 and root["this_update"] <= time.time(), root
    other = by_issuer["CN=Gatehouse Test Intermediate CA,O=Gatehouse Tests"]
    assert other["source"] == str(node.crl_dir / "inter.pem"), other

    text = node.b.cli("status").stdout
    assert "CRL IN FORCE" in text and f"crlfile {crlfile}" in text, text

    samples = _scrape(metrics_port)
    refusal = [v for k, v in samples.items()
               if k.startswith("gatehouse_crl_in_force_refusal_seconds{") and "Test Root CA" in k and 'worker="0"' in k]
    assert refusal and 3 * 3600 - 30 < refusal[0] <= 3 * 3600, (refusal, sorted(samples)[:50])


# ----------------------------------------------------------------------------------------------------------------
# Staples: withdrawn when the responder stops saying good, never for another certificate


def _ocsp_response(ca: pki.CA, cert: Path, out: Path) -> Path:
    """`openssl ocsp` answering from the CA's own index, as a responder would (no nonce, valid one day)."""
    pki.openssl("ocsp", "-index", str(ca.dir / "index.txt"), "-rsigner", str(ca.cert), "-rkey", str(ca.key),
                "-CA", str(ca.cert), "-issuer", str(ca.cert), "-cert", str(cert), "-respout", str(out),
                "-no_nonce", "-ndays", "1")
    return out


def _stapling_node(tls_node, p: pki.TestPKI, *options: str) -> pki.TLSNode:
    """A node that staples, whose fetcher cannot reach its responder: the tests publish the responses themselves
    into the cache the way the fetcher does."""
    return tls_node(p, crl_check=False, options=[
        "enable_ocsp_stapling = true", f"ocsp_issuer_pem = {p.root.cert}",
        f"ocsp_responder_url = http://127.0.0.1:{harness.free_port()}/ocsp", "ocsp_refresh_http_timeout = 1s",
        *options])


def _staple(node: pki.TLSNode) -> tuple[str | None, str]:
    """(the serial the staple is about, or None when nothing was stapled; s_client's output)."""
    import subprocess

    alice = node.pki.clients["alice"]
    cp = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}", "-status", "-CAfile",
                         str(node.cafile), "-cert", str(alice.cert), "-key", str(alice.key)],
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    out = cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace")
    if "OCSP Response Data:" not in out:
        return None, out
    m = re.search(r"^\s*Serial Number: (\S+)", out, re.M)
    status = re.search(r"^\s*Cert Status: (\S+)", out, re.M)
    assert status and status.group(1) == "good", f"a staple that does not say good was sent\n{out}"
    return (m.group(1).upper().lstrip("0") if m else "?"), out


def test_revoked_ocsp_answer_withdraws_the_staple_at_once(tls_node, own_pki):
    p = own_pki
    node = _stapling_node(tls_node, p).start()
    ocsp_dir = node.cache / "ocsp"
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", _ocsp_response(p.root, p.server.cert, p.dir / "good.der"))
    node.wait_log("OCSP staple loaded", timeout=5)
    serial, out = _staple(node)
    assert serial == p.server.serial, out

    p.root.revoke(p.server)
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", _ocsp_response(p.root, p.server.cert, p.dir / "revoked.der"))
    node.wait_log("OCSP staple withdrawn: the responder no longer says good", timeout=5)
    serial, out = _staple(node)
    assert serial is None, f"still stapling after the responder said revoked\n{out}"
    deadline = time.monotonic() + 5
    while True:
        listeners = harness.ready_workers(node.b.status())[0].get("statistics", {}).get("listeners", [])
        staple = listeners[0].get("staple") if listeners else None
        if (staple and staple.get("state") == "withdrawn") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert staple and staple["state"] == "withdrawn" and "revoked" in (staple.get("detail") or ""), staple


def test_rotated_certificate_is_never_served_with_the_old_staple(tls_node, own_pki, tmp_path):
    """The staple in the cache is about the old certificate; after a rotation it must not go out with the new one
    (before the fix the stapling identity was fixed at start: the new certificate went out with the old staple)."""
    p = own_pki
    node = _stapling_node(tls_node, p)
    cert, key = _live_identity(node, tmp_path)
    node.start()
    ocsp_dir = node.cache / "ocsp"
    good = _ocsp_response(p.root, p.server.cert, p.dir / "good.der")
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", good)
    node.wait_log("OCSP staple loaded", timeout=5)
    assert _staple(node)[0] == p.server.serial

    second = p.root.issue("server2", "localhost", server=True)
    _replace(key, second.key)
    _replace(cert, second.cert)
    # Whatever makes the worker rebuild (here the same response published again) must not staple the old
    # certificate's response to the new one.
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", good)
    deadline = time.monotonic() + 10
    while _served_serial(node) != second.serial:
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.2)
    serial, out = _staple(node)
    assert serial in (None, second.serial), f"the new certificate {second.serial} went out with a staple for {serial}\n{out}"
    # The response for the new certificate is stapled once it is published.
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", _ocsp_response(p.root, second.cert, p.dir / "good2.der"))
    deadline = time.monotonic() + 5
    while _staple(node)[0] != second.serial:
        assert time.monotonic() < deadline, "the new certificate's response was never stapled"
        time.sleep(0.2)


def test_crlfile_with_too_many_entries_is_refused_before_parsing(tls_node, own_pki):
    """`crl_cache_max_entries` bounds what a worker parses too (a `crlfile` is read by the worker itself)."""
    p = own_pki
    pki.revoke_many(p.root, 5)
    crlfile = p.root.gencrl(p.dir / "big.pem")
    good = p.dir / "good.pem"
    node = tls_node(p, crlfiles=[crlfile], crls={"root.pem": p.root.gencrl(good)},
                    extra=["crl_cache_max_entries = 3"])
    node.start()
    lines = node.wait_log(REJECTED, revocation__file=str(crlfile))
    assert "more than crl_cache_max_entries (3)" in lines[-1].fields.get("error", ""), lines[-1].raw


def test_crl_without_number_reissued_within_the_same_second_replaces_the_one_in_force(tls_node, own_pki):
    """A CA without cRLNumber (EMQX's walkthrough CA has no crlnumber file) that revokes bob and reissues its CRL
    within the same second: both CRLs are equally new by thisUpdate, and the one just published must win."""
    p = own_pki
    p.root.cnf.write_text("".join(l for l in p.root.cnf.read_text().splitlines(keepends=True)
                                  if not l.startswith("crlnumber")))
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    first = p.root.gencrl(p.dir / "first.pem", last_update=at, next_update=at + timedelta(days=1))
    node = tls_node(p, crls={"root.pem": first}).start()
    assert node.s_client(p.clients["bob"]).accepted
    p.root.revoke(p.clients["bob"])
    second = p.root.gencrl(p.dir / "second.pem", last_update=at, next_update=at + timedelta(days=1))
    assert "X509v3 CRL Number" not in pki.openssl("crl", "-in", str(second), "-noout", "-text").stdout.decode()
    node.publish_crl("root.pem", second)
    r = node.s_client(p.clients["bob"])
    assert r.alert == 44, f"bob still accepted: the CRL just published lost a tie to the one in force\n{r}"


def test_must_staple_listener_refuses_handshakes_once_the_responder_says_revoked(tls_node, own_pki):
    """A must-staple certificate (RFC 7633): once the responder says revoked, there is no valid staple, so every
    handshake is refused (a client honouring must-staple would abort anyway), with one critical line."""
    from test_10_stapling import issue_server

    p = own_pki
    must = issue_server(p.root, "must", must_staple=True)
    node = _stapling_node(tls_node, p)
    node.lines = [line.replace(str(p.server.cert), str(must.cert)).replace(str(p.server.key), str(must.key))
                  for line in node.lines]
    node.start()
    ocsp_dir = node.cache / "ocsp"
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", _ocsp_response(p.root, must.cert, p.dir / "good.der"))
    node.wait_log("OCSP staple loaded", timeout=5)
    assert node.s_client(p.clients["alice"]).accepted

    p.root.revoke(must)
    pki.publish(ocsp_dir, f"{pki.LISTENER}.der", _ocsp_response(p.root, must.cert, p.dir / "revoked.der"))
    node.wait_log("must-staple certificate withdrawn by its OCSP responder: handshakes are refused", timeout=5)
    r = node.s_client(p.clients["alice"])
    assert r.refused, f"a must-staple certificate the responder says is revoked was still served\n{r}"
