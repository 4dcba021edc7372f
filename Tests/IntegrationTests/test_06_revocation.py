"""06 revocation: the TLS gate refuses revoked client certificates, and CRLs are swapped while the node runs
(issue 4).

CRLs are made and published the way EMQX's CRL walkthrough and Gatehouse's fetcher do it: `openssl ca -revoke`
and `openssl ca -gencrl` on the test's own copy of the CA database (`own_pki`), then written into
`<cache_dir>/crl/<id>.der.tmp.<pid>`, fsynced and renamed to `<cache_dir>/crl/<id>.der` (or a local `crlfile`
rewritten in place). Every case runs with the listener restricted to TLS 1.2 and to TLS 1.3.
"""

from __future__ import annotations

import re
import stat
import time

import pytest

import pki

VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])
PEER = re.compile(r"^127\.0\.0\.1:\d+$")
# How soon after the rename a new handshake must see the new CRL.
SWAP_DEADLINE = 1.0


def crl(p: pki.TestPKI, name: str, der: bool = True, ca: pki.CA | None = None):
    ca = ca or p.root
    return ca.gencrl(p.dir / name, der=der)


def refusal_lines(node: pki.TLSNode, cert: pki.Cert, reason: str) -> list[pki.LogLine]:
    return node.refusals(tls__serial=cert.serial, tls__reason=reason)


def dump(lines: list[pki.LogLine]) -> str:
    return "\n".join(l.raw for l in lines)


@VERSIONS
def test_revoked_client_refused_after_swap_while_connected_client_stays(tls_node, own_pki, version):
    """Cases 1 and 2: bob publishes, carol (paho) and alice (mosquitto_sub) are subscribed. bob is revoked and the
    new CRL published into the cache: within 1 s bob is refused with alert 44 and one warning line with his
    serial; carol and alice, connected before the swap with other certificates, stay connected and receive what
    is published after it."""
    p = own_pki
    alice, bob, carol = p.clients["alice"], p.clients["bob"], p.clients["carol"]
    node = tls_node(p, version, crls={"root.der": crl(p, "root-1.der")}).start()

    paho_sub = node.paho(carol, "sub-carol")
    assert paho_sub.connect() == 0
    assert paho_sub.subscribe("fleet/#", qos=1) == [1]
    mq_sub = node.sub(alice, "fleet/#", "sub-alice")
    mq_sub.wait_subscribed()

    cp = node.pub(bob, "fleet/bob", "before", client_id="pub-bob")
    assert cp.returncode == 0, f"good bob could not publish: rc={cp.returncode} {cp.stderr}"
    assert paho_sub.expect() == ("fleet/bob", b"before")
    assert mq_sub.expect() == ("fleet/bob", "before")

    p.root.revoke(bob)
    published = node.publish_crl("root.der", crl(p, "root-2.der"), wait=False)
    r = node.wait_refused(bob, published, SWAP_DEADLINE)
    assert "alert certificate revoked" in r.output and r.alert == 44, str(r)

    reloads = node.wait_log(pki.RELOADED)
    assert any(int(l.fields.get("tls.generation", "0")) >= 2 for l in reloads), dump(reloads)

    lines = refusal_lines(node, bob, "certificate revoked")
    assert len(lines) == 1, f"expected one refusal line per refused handshake:\n{dump(node.refusals())}"
    line = lines[0]
    assert line.level == "warning", line.raw
    assert line.fields.get("tls.listener") == f"ssl:{pki.LISTENER}", line.raw
    assert PEER.match(line.fields.get("tls.peer", "")), line.raw
    assert line.fields.get("tls.subject") == "CN=bob", line.raw
    assert "Gatehouse Test Root CA" in line.fields.get("tls.issuer", ""), line.raw

    cp = node.pub(bob, "fleet/bob", "after", client_id="pub-bob-2")
    assert cp.returncode != 0, f"revoked bob could still publish: {cp}"
    node.wait_log(pki.REFUSED, more_than=1, tls__serial=bob.serial, tls__reason="certificate revoked")

    # Connected before the swap with good certificates: still there, still receiving.
    assert not paho_sub.disconnected.is_set(), "carol's paho connection was closed by the swap"
    assert mq_sub.alive(), "alice's mosquitto_sub exited:\n" + "\n".join(mq_sub.transcript)
    cp = node.pub(alice, "fleet/alice", "after the swap", client_id="pub-alice")
    assert cp.returncode == 0, f"good alice could not publish after the swap: {cp.stderr}"
    assert paho_sub.expect() == ("fleet/alice", b"after the swap")
    assert mq_sub.expect() == ("fleet/alice", "after the swap")
    paho_sub.expect_nothing(0.3)  # in particular, nothing from revoked bob
    # Only bob's handshakes were refused.
    assert {l.fields.get("tls.serial") for l in node.refusals()} == {bob.serial}, dump(node.refusals())


@VERSIONS
@pytest.mark.parametrize("fmt", ["der", "pem", "crl"])
def test_crl_formats_in_the_cache(tls_node, own_pki, version, fmt):
    """Case 4a: CRLs published into the cache as `<id>.der` (DER), `<id>.pem` (PEM) and `<id>.crl` (PEM here)."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    der = fmt == "der"
    node = tls_node(p, version, crls={f"root.{fmt}": crl(p, "root-1", der=der)}).start()
    assert node.s_client(bob).accepted
    p.root.revoke(bob)
    published = node.publish_crl(f"root.{fmt}", crl(p, "root-2", der=der), wait=False)
    r = node.wait_refused(bob, published, SWAP_DEADLINE)
    assert r.alert == 44, str(r)
    assert node.s_client(alice).accepted
    assert len(refusal_lines(node, bob, "certificate revoked")) == 1, dump(node.refusals())


@VERSIONS
def test_der_and_pem_side_by_side_and_temp_files_ignored(tls_node, own_pki, version):
    """Case 4b: a DER CRL for the root and a PEM CRL for the intermediate in the cache at once. A stray
    `root.der.tmp.<pid>` (a fetcher write in progress) and a hidden `.root.der`, both revoking alice, are never
    loaded, neither when they appear nor when a later change makes the worker rescan the directory."""
    p = own_pki
    alice, dave = p.clients["alice"], p.inter_client
    node = tls_node(p, version, cacertfile=p.bundle,
                    crls={"root.der": crl(p, "root-1.der"), "inter.pem": crl(p, "inter-1.pem", der=False, ca=p.inter)}
                    ).start()
    assert node.s_client(alice).accepted
    assert node.s_client(dave).accepted
    p.root.revoke(alice)
    p.inter.revoke(dave)
    revoking_alice = crl(p, "root-2.der").read_bytes()
    (node.crl_dir / "root.der.tmp.99999").write_bytes(revoking_alice)
    (node.crl_dir / ".root.der").write_bytes(revoking_alice)
    time.sleep(0.3)
    assert node.s_client(alice).accepted, "a *.tmp.* or hidden file in the cache was loaded"
    t = node.publish_crl("inter.pem", crl(p, "inter-2.pem", der=False, ca=p.inter), wait=False)
    r = node.wait_refused(dave, t, SWAP_DEADLINE)
    assert r.alert == 44, str(r)
    r = node.s_client(alice)
    assert r.accepted, f"after the rescan, a *.tmp.* or hidden file in the cache was loaded\n{r}"
    t = node.publish_crl("root.der", p.dir / "root-2.der", wait=False)
    assert node.wait_refused(alice, t, SWAP_DEADLINE).alert == 44


@VERSIONS
@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_crlfile_rewritten_in_place(tls_node, own_pki, version, der, tmp_path):
    """Case 4c: a local `crlfile` (not in the cache) rewritten in place (same inode, IN_CLOSE_WRITE) → reload."""
    p = own_pki
    alice, bob = p.clients["alice"], p.clients["bob"]
    local = tmp_path / ("local.der" if der else "local.pem")
    local.write_bytes(crl(p, "root-1", der=der).read_bytes())
    node = tls_node(p, version, crlfiles=[local]).start()
    assert node.s_client(bob).accepted
    p.root.revoke(bob)
    new = crl(p, "root-2", der=der)
    before = node.reload_marks()
    inode = local.stat().st_ino
    t = time.monotonic()
    pki.rewrite_in_place(local, new)
    assert local.stat().st_ino == inode
    r = node.wait_refused(bob, t, SWAP_DEADLINE)
    assert r.alert == 44, str(r)
    node.wait_reload(before)
    assert node.s_client(alice).accepted


@VERSIONS
def test_two_crlfiles_comma_separated(tls_node, own_pki, version, tmp_path):
    """`crlfile = a.pem,b.der`: both are loaded (root CRL in PEM revoking bob, intermediate CRL in DER)."""
    p = own_pki
    alice, bob, dave = p.clients["alice"], p.clients["bob"], p.inter_client
    p.root.revoke(bob)
    a = tmp_path / "root.pem"
    a.write_bytes(crl(p, "root-r", der=False).read_bytes())
    b = tmp_path / "inter.der"
    b.write_bytes(crl(p, "inter-1.der", ca=p.inter).read_bytes())
    node = tls_node(p, version, cacertfile=p.bundle, crlfiles=[a, b]).start()
    assert node.s_client(alice).accepted
    assert node.s_client(dave).accepted, "intermediate-issued client refused although its CRL is in crlfile"
    r = node.s_client(bob)
    assert r.refused and r.alert == 44, str(r)


@VERSIONS
def test_crl_signed_by_the_wrong_key_is_rejected_and_last_good_kept(tls_node, own_pki, version):
    """Case 5: the good CRL revokes carol. A CRL with the root's issuer name but signed by another key (and
    revoking bob instead) replaces it in the cache: it is rejected with a `CRL rejected` line, bob still
    connects and carol stays refused (the last good CRL is still in force)."""
    p = own_pki
    alice, bob, carol = p.clients["alice"], p.clients["bob"], p.clients["carol"]
    p.root.revoke(carol)
    node = tls_node(p, version, crls={"root.der": crl(p, "root-good.der")}).start()
    assert node.s_client(bob).accepted
    r = node.s_client(carol)
    assert r.refused and r.alert == 44, str(r)

    impostor = p.impostor.copy(p.dir / "impostor")
    impostor.revoke(bob.cert)
    bad = impostor.gencrl(p.dir / "root-bad.der", der=True)
    before = node.reload_marks()
    node.publish_crl("root.der", bad, wait=False)
    rejected = node.wait_log(pki.REJECTED)
    assert rejected[-1].fields.get("revocation.file") == str(node.crl_dir / "root.der"), rejected[-1].raw
    assert rejected[-1].level == "warning", rejected[-1].raw
    node.wait_reload(before)

    r = node.s_client(bob)
    assert r.accepted, f"bob refused: the badly signed CRL was used\n{r}"
    r = node.s_client(carol)
    assert r.refused and r.alert == 44, f"carol accepted: the last good CRL was dropped\n{r}"
    assert node.s_client(alice).accepted
    assert refusal_lines(node, bob, "certificate revoked") == [], dump(node.refusals())

    # A good CRL published afterwards is taken again.
    p.root.revoke(bob)
    t = node.publish_crl("root.der", crl(p, "root-good-2.der"), wait=False)
    assert node.wait_refused(bob, t, SWAP_DEADLINE).alert == 44


@VERSIONS
def test_expired_crl_refuses(tls_node, own_pki, version):
    """Case 6: the only CRL for the root has a nextUpdate in the past → refused, reason "CRL has expired"."""
    p = own_pki
    alice = p.clients["alice"]
    node = tls_node(p, version, crls={"root.der": p.root.expired_crl(p.dir / "expired.der", der=True)}).start()
    r = node.s_client(alice)
    assert r.refused and not r.accepted, str(r)
    lines = node.wait_log(pki.REFUSED, tls__serial=alice.serial)
    assert lines[0].fields.get("tls.reason") == "CRL has expired", lines[0].raw
    assert "Gatehouse Test Root CA" in lines[0].fields.get("tls.crl_issuer", ""), lines[0].raw
    cp = node.pub(alice, "x/y", "z")
    assert cp.returncode != 0, f"mosquitto_pub succeeded with an expired CRL: {cp}"

    # A fresh CRL fixes it.
    t = node.publish_crl("root.der", crl(p, "fresh.der"))
    r = node.s_client(alice)
    assert r.accepted, f"still refused {time.monotonic() - t:.2f}s after a fresh CRL was published\n{r}"


@VERSIONS
def test_expired_crl_published_over_a_good_one(tls_node, own_pki, version):
    """An expired CRL that replaces a good one verifies fine (signature, issuer), so it is loaded and clients are
    refused with "CRL has expired" (fail closed), not silently kept on the old one."""
    p = own_pki
    alice = p.clients["alice"]
    node = tls_node(p, version, crls={"root.der": crl(p, "good.der")}).start()
    assert node.s_client(alice).accepted
    t = node.publish_crl("root.der", p.root.expired_crl(p.dir / "expired.der", der=True), wait=False)
    node.wait_refused(alice, t, SWAP_DEADLINE)
    line = node.wait_log(pki.REFUSED, tls__serial=alice.serial)[0]
    assert line.fields.get("tls.reason") == "CRL has expired", line.raw


@VERSIONS
def test_no_crl_for_the_issuer_fails_closed(tls_node, own_pki, version):
    """Case 7: CRL checking on, only an unrelated CA's CRL in the cache → refused, "unable to get certificate CRL",
    with the issuer whose CRL is missing logged."""
    p = own_pki
    alice = p.clients["alice"]
    node = tls_node(p, version, crls={"other.der": p.other.gencrl(p.dir / "other.der", der=True)}).start()
    r = node.s_client(alice)
    assert r.refused and not r.accepted, str(r)
    line = node.wait_log(pki.REFUSED, tls__serial=alice.serial)[0]
    assert line.fields.get("tls.reason") == "unable to get certificate CRL", line.raw
    assert "Gatehouse Test Root CA" in line.fields.get("tls.crl_issuer", ""), line.raw
    assert node.pub(alice, "x/y", "z").returncode != 0

    node.publish_crl("root.der", crl(p, "root.der"))
    assert node.s_client(alice).accepted


def test_empty_cache_fails_closed(tls_node, own_pki):
    """Case 7 with nothing at all in the cache (as right after a first start). The supervisor keeps the cache
    directory private (0700)."""
    p = own_pki
    node = tls_node(p, None).start()
    assert stat.S_IMODE(node.cache.stat().st_mode) == 0o700, oct(node.cache.stat().st_mode)
    r = node.s_client(p.clients["alice"])
    assert r.refused and not r.accepted, str(r)
    line = node.wait_log(pki.REFUSED)[0]
    assert line.fields.get("tls.reason") == "unable to get certificate CRL", line.raw


@VERSIONS
def test_resumption_after_swap_does_not_bypass_the_crl(tls_node, own_pki, version, tmp_path):
    """Case 8: a session saved while bob was good is not resumed once his revocation is in force."""
    p = own_pki
    bob = p.clients["bob"]
    node = tls_node(p, version, crls={"root.der": crl(p, "root-1.der")}).start()
    sess = tmp_path / "sess.pem"
    r = node.s_client(bob, sess_out=sess)
    assert r.accepted, str(r)
    assert sess.exists() and sess.stat().st_size > 0, f"no session saved\n{r}"
    # Control: the saved session does resume while nothing changed.
    r = node.s_client(bob, sess_in=sess)
    assert r.accepted and r.reused, f"control: session not resumed before the swap\n{r}"
    r = node.s_client(bob, sess_out=sess)  # a fresh ticket (TLS 1.3 tickets are single use)
    assert r.accepted, str(r)

    p.root.revoke(bob)
    node.publish_crl("root.der", crl(p, "root-2.der"))  # waits for the reload line
    r = node.s_client(bob, sess_in=sess)
    assert not r.reused, f"revoked bob resumed a session from before the swap\n{r}"
    assert r.refused and r.alert == 44, str(r)
    assert len(refusal_lines(node, bob, "certificate revoked")) == 1, dump(node.refusals())


@VERSIONS
@pytest.mark.parametrize("depth", ["chain", "leaf"])
def test_crl_check_depth_with_revoked_intermediate(tls_node, own_pki, version, depth):
    """Case 9: the root's CRL revokes the intermediate CA's own certificate; dave is issued by the intermediate.
    The listener's cacertfile holds root + intermediate and both CRLs are in the cache. `chain` refuses dave,
    `leaf` (only the leaf's own issuer CRL is checked) accepts him. alice (issued by the root) is fine either way."""
    p = own_pki
    alice, dave = p.clients["alice"], p.inter_client
    p.root.revoke(p.inter.cert)
    node = tls_node(p, version, cacertfile=p.bundle, options=[f"crl_check_depth = {depth}"],
                    crls={"root.der": crl(p, "root.der"), "inter.der": crl(p, "inter.der", ca=p.inter)}).start()
    assert node.s_client(alice).accepted
    r = node.s_client(dave)
    if depth == "leaf":
        assert r.accepted, f"crl_check_depth = leaf refused a leaf whose intermediate is revoked\n{r}"
        assert node.refusals() == [], dump(node.refusals())
        return
    assert r.refused and r.alert == 44, str(r)
    line = node.wait_log(pki.REFUSED)[0]
    assert line.fields.get("tls.reason") == "certificate revoked", line.raw
    assert line.fields.get("tls.subject") == "CN=dave", line.raw
    assert line.fields.get("tls.serial") == dave.serial, line.raw
    assert node.pub(dave, "x/y", "z").returncode != 0


@VERSIONS
def test_chain_depth_needs_the_intermediate_crl_too(tls_node, own_pki, version):
    """With `chain`, every CA in the path needs a CRL: without the root's CRL, dave is refused with
    "unable to get certificate CRL" even though the intermediate's CRL is there."""
    p = own_pki
    node = tls_node(p, version, cacertfile=p.bundle, options=["crl_check_depth = chain"],
                    crls={"inter.der": crl(p, "inter.der", ca=p.inter)}).start()
    r = node.s_client(p.inter_client)
    assert r.refused, str(r)
    line = node.wait_log(pki.REFUSED)[0]
    assert line.fields.get("tls.reason") == "unable to get certificate CRL", line.raw
