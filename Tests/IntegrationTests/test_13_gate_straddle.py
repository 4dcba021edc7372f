"""13 gate straddle: a handshake that straddles a CRL swap is decided on the CRL in force when it completes.

A connection used to keep the TLS context it got at accept. A client that held back its last flight (Certificate …
Finished) until after a new CRL was in force was verified against the old CRL, registered its certificate after
the live-revocation scan had run, and kept its session until the next CRL change. Here a client built on
`tls_stepper.TLSStepper` sends its handshake record by record and stops at the worst moments:

- (a) after every record of its final flight but the last (Finished): the certificate is revoked and the new CRL
  published (and reloaded by every worker) before Finished goes out. It must never get a CONNACK, the server must
  close the connection, and the refusal is logged as `TLS handshake refused` with its serial and
  `tls.reason="certificate revoked"`. (The server may close without an alert here: OpenSSL cannot send one once
  its own side of the handshake is finished; what the client saw is printed.)
- (b) before the first record of its final flight (connected and accepted while the old CRL was in force): refused
  with the alert certificate_revoked (44) and the same log line.
- (c) control: the same pauses with a certificate that is not revoked (another one is) get CONNACK 0.

Each for TLS 1.2 and 1.3, with one worker and with two (each worker logs its own reload; the publish waits for
both). The first tests check the stepper itself against the broker: a good client gets CONNACK 0 (MQTT 3.1.1 and
5), a revoked one the alert 44, a session resumes.
"""

from __future__ import annotations


import pytest

import pki
from tls_stepper import TLSStepper

VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])
WORKERS = pytest.mark.parametrize("workers", [1, 2])
REVOKED = "certificate revoked"
# How long the server has, after the client sent its last record, to close a connection it refuses.
CLOSE_WITHIN = 3.0


def _node(tls_node, p: pki.TestPKI, version: str | None, workers: int = 1) -> pki.TLSNode:
    first = p.root.gencrl(p.dir / "first.pem")
    return tls_node(p, version, crls={"root.pem": first}, workers=workers).start()


def _stepper(node: pki.TLSNode, cert: pki.Cert, version: str, **kw) -> TLSStepper:
    return TLSStepper(node.port, node.cafile, cert, version, **kw)


def _describe(s: TLSStepper) -> str:
    return f"{s.summary()}\n{s.transcript()}"


# ----------------------------------------------------------------------------------------------------------------
# The stepper itself, against the real broker


@VERSIONS
@pytest.mark.parametrize("mqtt", [4, 5])
def test_13_stepper_good_client_gets_connack_0(tls_node, own_pki, version, mqtt):
    node = _node(tls_node, own_pki, version)
    s = _stepper(node, own_pki.clients["alice"], version)
    try:
        s.run(mqtt={"client_id": f"step-{version}-{mqtt}", "version": mqtt})
        assert s.handshake_done and s.connack is not None and s.connack.code == 0, _describe(s)
        assert s.alert is None and not s.server_closed, _describe(s)
        assert s.obj.version() == f"TLSv{version}", _describe(s)
        assert s.handshake_records == (6 if version == "1.2" else 5), (
            f"expected ClientHello + a final flight of {'5' if version == '1.2' else '4'} records\n{_describe(s)}")
        s.ping()
        assert s.wait(lambda: len(s.pongs) == 1, 3), _describe(s)
    finally:
        s.close()


@VERSIONS
def test_13_stepper_pauses_before_a_record(tls_node, own_pki, version):
    """`run(pause_before=k, pause_for=t)` holds record k (here Finished) for t seconds; the server waits."""
    node = _node(tls_node, own_pki, version)
    s = _stepper(node, own_pki.clients["alice"], version)
    finished = 5 if version == "1.2" else 4
    try:
        s.run(pause_before=finished, pause_for=0.5, mqtt={"client_id": f"step-pause-{version}"})
        assert s.connack is not None and s.connack.code == 0, _describe(s)
        held, before = s.records[finished], s.records[finished - 1]
        assert held.label == "FINISHED", _describe(s)
        assert held.sent_at is not None and before.sent_at is not None and held.sent_at - before.sent_at >= 0.5, (
            _describe(s))
    finally:
        s.close()


@VERSIONS
def test_13_stepper_revoked_client_gets_alert_44(tls_node, own_pki, version):
    p = own_pki
    p.root.revoke(p.clients["bob"])
    node = _node(tls_node, p, version)
    s = _stepper(node, p.clients["bob"], version)
    try:
        s.run(mqtt={"client_id": f"step-revoked-{version}"})
        assert s.alert == 44 and s.alert_name == "certificate_revoked", _describe(s)
        assert s.connack is None and s.server_closed, _describe(s)
        node.wait_log(pki.REFUSED, tls__serial=p.clients["bob"].serial, tls__reason=REVOKED)
    finally:
        s.close()


@VERSIONS
def test_13_stepper_resumes_a_session(tls_node, own_pki, version):
    node = _node(tls_node, own_pki, version)
    alice = own_pki.clients["alice"]
    first = _stepper(node, alice, version)
    try:
        first.run(mqtt={"client_id": f"resume-a-{version}"})
        assert first.connack is not None and first.connack.code == 0, _describe(first)
        session = first.session
        assert session is not None, _describe(first)
    finally:
        first.disconnect()
        first.close()
    second = _stepper(node, alice, version, session=session)
    try:
        second.run(mqtt={"client_id": f"resume-b-{version}"})
        assert second.connack is not None and second.connack.code == 0, _describe(second)
        assert second.session_reused, f"the session was not resumed\n{_describe(second)}"
        assert second.handshake_records == 3, _describe(second)  # ClientHello, ChangeCipherSpec, Finished
    finally:
        second.close()


# ----------------------------------------------------------------------------------------------------------------
# The straddle


def _straddle(node: pki.TLSNode, p: pki.TestPKI, version: str, cert: pki.Cert, revoke: pki.Cert,
              hold_last_only: bool, client_id: str) -> TLSStepper:
    """ClientHello out, the server's flight in; then send the final flight's records but the last
    (`hold_last_only`) or none; revoke `revoke` and publish the new CRL (every worker reloads it); then send the
    rest and an MQTT CONNECT, and wait for a CONNACK or the server's close."""
    s = _stepper(node, cert, version)
    s.connect()
    s.send()
    assert s.await_flight() and s.queue and not s.failed, f"no final flight to hold back\n{_describe(s)}"
    flight = list(s.queue)
    if hold_last_only:
        s.send(len(flight) - 1)
        s.hold(0.2)
        assert not s.failed, f"the server gave up before the last record\n{_describe(s)}"
    p.root.revoke(revoke)
    node.publish_crl("root.pem", p.root.gencrl(p.dir / f"crl-{client_id}.pem"))
    s._event("new CRL in force on every worker")
    s.send()
    s.wait(lambda: s.handshake_done or s.failed, CLOSE_WITHIN)
    if s.handshake_done and not s.failed:
        s.mqtt_connect(client_id)
    s.wait(lambda: s.connack is not None or s.server_closed, CLOSE_WITHIN)
    print(f"\n{client_id} ({'last record held' if hold_last_only else 'whole final flight held'}, "
          f"{len(flight)} records: {flight}):\n{_describe(s)}")
    return s


def _assert_refused(node: pki.TLSNode, s: TLSStepper, cert: pki.Cert, alert: bool) -> None:
    try:
        assert s.connack is None, (
            f"{cert.name}, revoked while the handshake was in flight, got CONNACK {s.connack.code}\n{_describe(s)}")
        closed = s.wait(lambda: s.eof or s.reset or s.close_notify, CLOSE_WITHIN) or s.server_closed
        assert s.connack is None, f"CONNACK {s.connack.code} after all\n{_describe(s)}"
        if alert:
            assert s.alert == 44, f"expected the alert certificate_revoked (44)\n{_describe(s)}"
        assert closed, f"the server did not close the connection\n{_describe(s)}"
        node.wait_log(pki.REFUSED, timeout=3, tls__serial=cert.serial, tls__reason=REVOKED)
    finally:
        s.close()


@VERSIONS
@WORKERS
def test_13a_revoked_while_finished_is_held_never_gets_a_session(tls_node, own_pki, version, workers):
    p = own_pki
    node = _node(tls_node, p, version, workers)
    bob = p.clients["bob"]
    s = _straddle(node, p, version, bob, bob, hold_last_only=True, client_id=f"13a-{version}-{workers}")
    _assert_refused(node, s, bob, alert=False)


@VERSIONS
@WORKERS
def test_13b_revoked_before_the_final_flight_is_refused_with_44(tls_node, own_pki, version, workers):
    p = own_pki
    node = _node(tls_node, p, version, workers)
    bob = p.clients["bob"]
    s = _straddle(node, p, version, bob, bob, hold_last_only=False, client_id=f"13b-{version}-{workers}")
    _assert_refused(node, s, bob, alert=True)


@VERSIONS
@WORKERS
@pytest.mark.parametrize("hold_last_only", [True, False], ids=["last-record-held", "final-flight-held"])
def test_13c_good_client_straddling_a_crl_swap_is_accepted(tls_node, own_pki, version, workers, hold_last_only):
    p = own_pki
    node = _node(tls_node, p, version, workers)
    alice = p.clients["alice"]
    s = _straddle(node, p, version, alice, p.clients["carol"], hold_last_only=hold_last_only,
                  client_id=f"13c-{version}-{workers}-{hold_last_only}")
    try:
        assert s.connack is not None and s.connack.code == 0, (
            f"alice (not revoked) was refused across a CRL swap\n{_describe(s)}")
        assert not node.refusals(tls__serial=alice.serial), "\n".join(l.raw for l in node.refusals())
        s.ping()
        assert s.wait(lambda: len(s.pongs) == 1, 3), _describe(s)
    finally:
        s.close()
