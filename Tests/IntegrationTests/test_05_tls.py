"""05 TLS: the TLS listener with client certificates (issue 4), without CRL swaps (those are in 06).

Every case runs once with the listener restricted to TLS 1.2 and once to TLS 1.3 (`tls_versions`), the clients
forced to the same version. The listener checks CRLs and the root's (empty) CRL is in the cache, as in
production. Clients: `openssl s_client`, `mosquitto_pub` / `mosquitto_sub` and paho, all over loopback.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

import pki

VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])
PEER = re.compile(r"^127\.0\.0\.1:\d+$")


def started(tls_node, tls_pki, version, **kwargs):
    crl = tls_pki.root.gencrl(tls_pki.dir / f"root-{version}-{time.monotonic_ns()}.der", der=True)
    kwargs.setdefault("crls", {"root.der": crl})
    return tls_node(tls_pki, version, **kwargs).start()


@VERSIONS
def test_good_client_publishes_and_subscriber_receives(tls_node, tls_pki, version):
    """Case 1: mosquitto_pub with a good certificate publishes; mosquitto_sub over TLS receives it."""
    node = started(tls_node, tls_pki, version)
    alice, bob = tls_pki.clients["alice"], tls_pki.clients["bob"]
    r = node.s_client(alice)
    assert r.accepted, str(r)
    assert f"TLSv{version}" in r.output, str(r)
    sub = node.sub(alice, "tls/case1/#", "sub-alice")
    sub.wait_subscribed()
    cp = node.pub(bob, "tls/case1/x", f"hello over TLS {version}", client_id="pub-bob")
    assert cp.returncode == 0, f"mosquitto_pub failed rc={cp.returncode}: {cp.stderr}"
    assert sub.expect() == ("tls/case1/x", f"hello over TLS {version}")
    assert node.refusals() == [], "good clients were refused:\n" + "\n".join(l.raw for l in node.refusals())


@VERSIONS
def test_paho_publish_subscribe_over_tls(tls_node, tls_pki, version):
    node = started(tls_node, tls_pki, version)
    a = node.paho(tls_pki.clients["alice"], "paho-alice")
    assert a.connect() == 0
    assert a.subscribe("tls/paho/#", qos=1) == [1]
    b = node.paho(tls_pki.clients["bob"], "paho-bob")
    assert b.connect() == 0
    b.publish("tls/paho/1", b"\x00binary\xff", qos=1)
    assert a.expect() == ("tls/paho/1", b"\x00binary\xff")


@VERSIONS
def test_no_client_certificate_is_refused(tls_node, tls_pki, version):
    """Case 3a: fail_if_no_peer_cert; one warning line with reason "peer did not return a certificate"."""
    node = started(tls_node, tls_pki, version)
    r = node.s_client(None)
    assert r.refused and not r.accepted, str(r)
    # TLS 1.3 answers with certificate_required (116); TLS 1.2 with handshake_failure (40).
    assert r.alert == (116 if version == "1.3" else 40), str(r)
    refusals = node.wait_log(pki.REFUSED)
    assert len(refusals) == 1, "\n".join(l.raw for l in refusals)
    line = refusals[0]
    assert line.level == "warning", line.raw
    assert line.fields.get("tls.reason") == "peer did not return a certificate", line.raw
    assert line.fields.get("tls.listener") == f"ssl:{pki.LISTENER}", line.raw
    assert PEER.match(line.fields.get("tls.peer", "")), line.raw

    cp = node.pub(None, "tls/nocert", "x")
    assert cp.returncode != 0, f"mosquitto_pub without a certificate succeeded: {cp}"
    node.wait_log(pki.REFUSED, more_than=1)


@VERSIONS
def test_certificate_from_another_ca_is_refused(tls_node, tls_pki, version):
    """Case 3b: a certificate issued by an unrelated CA → alert unknown_ca (48), logged with its subject/serial."""
    node = started(tls_node, tls_pki, version)
    mallory = tls_pki.other_client
    r = node.s_client(mallory)
    assert r.refused and not r.accepted, str(r)
    assert r.alert == 48, str(r)
    line = node.wait_log(pki.REFUSED)[0]
    assert line.fields.get("tls.reason") == "unable to get local issuer certificate", line.raw
    assert line.fields.get("tls.subject") == mallory.subject, line.raw
    assert line.fields.get("tls.serial") == mallory.serial, line.raw
    assert "Unrelated CA" in line.fields.get("tls.issuer", ""), line.raw

    cp = node.pub(mallory, "tls/other", "x")
    assert cp.returncode != 0, f"mosquitto_pub with another CA's certificate succeeded: {cp}"
    # The listener still serves good clients.
    assert node.s_client(tls_pki.clients["alice"]).accepted


@pytest.mark.parametrize("listener_version,client_version", [("1.2", "1.3"), ("1.3", "1.2")])
def test_tls_versions_restricts_the_listener(tls_node, tls_pki, listener_version, client_version):
    node = started(tls_node, tls_pki, listener_version)
    alice = tls_pki.clients["alice"]
    r = node.s_client(alice, version=client_version)
    assert r.refused and not r.accepted, str(r)
    r = node.s_client(alice, version=None)
    assert r.accepted and f"TLSv{listener_version}" in r.output, str(r)


def test_both_versions_by_default(tls_node, tls_pki):
    node = started(tls_node, tls_pki, None)
    for v in ("1.2", "1.3"):
        r = node.s_client(tls_pki.clients["alice"], version=v)
        assert r.accepted and f"TLSv{v}" in r.output, str(r)


@VERSIONS
def test_session_resumption_works_when_nothing_changed(tls_node, tls_pki, version, tmp_path):
    """Case 8b: with one worker and no CRL change, a saved session is resumed ("Reused")."""
    node = started(tls_node, tls_pki, version)
    sess = tmp_path / "sess.pem"
    alice = tls_pki.clients["alice"]
    r = node.s_client(alice, sess_out=sess)
    assert r.accepted and not r.reused, str(r)
    assert sess.exists() and sess.stat().st_size > 0, f"s_client saved no session\n{r}"
    r = node.s_client(alice, sess_in=sess)
    assert r.accepted, str(r)
    assert r.reused, f"session not resumed\n{r}"


@VERSIONS
def test_peer_cert_as_username_with_acl(tls_node, tls_pki, version, tmp_path):
    """Case 10: `peer_cert_as_username = cn`; the ACL grants user `alice` only `alice/#`. Anonymous clients are
    not allowed, so a CONNACK 0 already shows the CN became the username."""
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\nuser bob\ntopic read bob/#\n")
    node = started(tls_node, tls_pki, version, options=["peer_cert_as_username = cn"],
                   extra=[f"acl_file = {acl}"], anonymous=False)

    a = node.paho(tls_pki.clients["alice"], "acl-alice")
    assert a.connect() == 0
    assert a.subscribe("alice/inbox", qos=1) == [1]
    assert a.subscribe("bob/inbox", qos=1) == [0x80]
    assert a.subscribe("carol/#", qos=0) == [0x80]
    a.publish("alice/inbox", b"to myself", qos=1)
    assert a.expect() == ("alice/inbox", b"to myself")

    b = node.paho(tls_pki.clients["bob"], "acl-bob")
    assert b.connect() == 0
    assert b.subscribe("alice/inbox", qos=1) == [0x80]
    assert b.subscribe("bob/inbox", qos=1) == [1]
    # bob may not write to alice/#: the publish is dropped (3.1.1 has no negative PUBACK).
    b.publish("alice/inbox", b"from bob", qos=1)
    a.expect_nothing()


def test_no_username_without_peer_cert_as_username(tls_node, tls_pki):
    """Without `peer_cert_as_username` and with anonymous clients off, a client with a good certificate but no
    username is refused at the MQTT level (CONNACK 5, not authorised): the control case for the test above."""
    node = started(tls_node, tls_pki, "1.3", anonymous=False)
    c = node.paho(tls_pki.clients["carol"], "cn-carol")
    # paho 2 reports a 3.1.1 CONNACK code 5 as the MQTT 5 reason code 0x87 (Not authorized).
    assert c.connect() == 0x87


def test_handshake_timeout_closes_silent_connection(tls_node, tls_pki):
    """Case 11 (Gatehouse-specific): a TCP connection that never sends a ClientHello is closed after
    `handshake_timeout = 2s`; one that sends half a record header is too. The listener keeps serving."""
    node = started(tls_node, tls_pki, None, options=["handshake_timeout = 2s"])
    silent = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    partial = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    node.b.sockets += [silent, partial]
    t0 = time.monotonic()
    partial.sendall(b"\x16\x03\x01")  # the start of a handshake record, then nothing
    results = {}
    for name, s in (("silent", silent), ("partial", partial)):
        try:
            data = s.recv(100)
            results[name] = ("closed" if data == b"" else f"data {data!r}", time.monotonic() - t0)
        except ConnectionResetError:
            results[name] = ("reset", time.monotonic() - t0)
        except socket.timeout:
            results[name] = ("still open", time.monotonic() - t0)
    for name, (how, took) in results.items():
        assert how in ("closed", "reset"), f"{name}: {how} after {took:.2f}s"
        assert 1.5 <= took <= 4.0, f"{name}: closed after {took:.2f}s, expected about 2s"
    assert node.s_client(tls_pki.clients["alice"]).accepted
