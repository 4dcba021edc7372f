"""12 live revocation: a client connected with a certificate that a newly loaded CRL revokes is disconnected within
a second of the load (MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1: the connection closes), logged with the
certificate; other clients stay. `listener.ssl.<name>.disconnect_revoked = false` leaves connected clients alone
(new handshakes are still refused).

Real pieces: the `openssl ca -revoke` / `-gencrl` PKI of pki.py, the CRL published into the cache the way the
fetcher does (temp file, fsync, rename), paho-mqtt clients over TLS with client certificates.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

import pki

DISCONNECTED = "client disconnected: certificate revoked"


class V5Client:
    """A paho-mqtt MQTT 5 client over TLS that records the reason code of a server DISCONNECT."""

    def __init__(self, node: pki.TLSNode, cert: pki.Cert, client_id: str) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(node.cafile))
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        self.c.tls_set_context(ctx)
        self.port = node.port
        self.connack: queue.Queue[int] = queue.Queue()
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.subacks: queue.Queue[int] = queue.Queue()
        self.disconnect_reason: int | None = None
        self.disconnected_at: float | None = None
        self.gone = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc.value)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(mid)
        self.c.on_message = lambda c, u, m: self.messages.put(m.payload)

        def on_disconnect(c, u, flags, rc, props):
            self.disconnect_reason = rc.value
            self.disconnected_at = time.monotonic()
            self.gone.set()

        self.c.on_disconnect = on_disconnect
        self.started = False

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.c.connect("127.0.0.1", self.port, keepalive=30, clean_start=True, properties=props)
        self.c.loop_start()
        self.started = True
        assert self.connack.get(timeout=5) == 0

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, 1)
        self.subacks.get(timeout=5)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.c.publish(topic, payload, 1)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        if self.started:
            self.started = False
            try:
                self.c.disconnect()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self.c.loop_stop()


def _node(tls_node, p: pki.TestPKI, *options: str) -> pki.TLSNode:
    first = p.root.gencrl(p.dir / "first.pem")
    return tls_node(p, crls={"root.pem": first}, options=options).start()


def _revoke_and_publish(node: pki.TLSNode, p: pki.TestPKI, cert: pki.Cert) -> float:
    p.root.revoke(cert)
    crl = p.root.gencrl(p.dir / "second.pem")
    return node.publish_crl("root.pem", crl)


def test_12_connected_v5_client_is_disconnected_with_0x98(tls_node, own_pki):
    p = own_pki
    node = _node(tls_node, p)
    bob, alice = V5Client(node, p.clients["bob"], "live-bob"), V5Client(node, p.clients["alice"], "live-alice")
    try:
        for c in (bob, alice):
            c.connect()
            c.subscribe("live/t")
        alice.publish("live/t", b"before")
        assert bob.messages.get(timeout=5) == b"before"
        assert alice.messages.get(timeout=5) == b"before"

        published = _revoke_and_publish(node, p, p.clients["bob"])
        assert bob.gone.wait(3), "bob stayed connected after his certificate was revoked"
        assert bob.disconnect_reason == 0x98, f"reason {bob.disconnect_reason!r}, expected 0x98 Administrative action"
        assert bob.disconnected_at is not None and bob.disconnected_at - published <= 1.0, (
            f"disconnected {bob.disconnected_at - published:.2f}s after the CRL was published (limit 1 s)")

        # Alice is untouched: still connected, still served.
        assert not alice.gone.is_set(), "alice was disconnected too"
        alice.publish("live/t", b"after")
        assert alice.messages.get(timeout=5) == b"after"

        lines = node.wait_log(DISCONNECTED, tls__serial=p.clients["bob"].serial)
        assert lines[0].fields.get("tls.subject") == "CN=bob", lines[0].raw
        assert not node.lines_with(DISCONNECTED, tls__serial=p.clients["alice"].serial)
        # And bob cannot come back.
        assert node.s_client(p.clients["bob"]).alert == 44
    finally:
        bob.close()
        alice.close()


def test_12_connected_v311_client_is_closed(tls_node, own_pki):
    p = own_pki
    node = _node(tls_node, p)
    bob = node.paho(p.clients["bob"], "live311-bob")
    carol = node.paho(p.clients["carol"], "live311-carol")
    assert bob.connect() == 0 and carol.connect() == 0
    published = _revoke_and_publish(node, p, p.clients["bob"])
    assert bob.disconnected.wait(3), "the 3.1.1 client stayed connected after its certificate was revoked"
    assert time.monotonic() - published <= 1.5
    assert not carol.disconnected.is_set(), "carol was disconnected too"
    assert carol.subscribe("live311/t") == [1]


def test_12_disconnect_revoked_false_keeps_connected_clients(tls_node, own_pki):
    p = own_pki
    node = _node(tls_node, p, "disconnect_revoked = false")
    bob = V5Client(node, p.clients["bob"], "keep-bob")
    try:
        bob.connect()
        bob.subscribe("keep/t")
        _revoke_and_publish(node, p, p.clients["bob"])
        time.sleep(1.5)
        assert not bob.gone.is_set(), f"disconnected (reason {bob.disconnect_reason}) although disconnect_revoked = false"
        bob.publish("keep/t", b"still here")
        assert bob.messages.get(timeout=5) == b"still here"
        assert not node.lines_with(DISCONNECTED)
        # New handshakes are still checked.
        assert node.s_client(p.clients["bob"]).alert == 44
    finally:
        bob.close()


# ----------------------------------------------------------------------------------------------------------------
# crl_fail_policy: closed (default) refuses on an expired CRL; grace keeps using the last good one for a while,
# logging every such handshake.

STALE = "client accepted on a CRL past its nextUpdate (crl_fail_policy = grace)"


def test_12_grace_policy_accepts_on_an_expired_crl_within_the_grace(tls_node, own_pki):
    p = own_pki
    p.root.revoke(p.clients["bob"])
    expired = p.root.expired_crl(p.dir / "expired.pem")  # nextUpdate one hour ago
    node = tls_node(p, crls={"root.pem": expired},
                    options=["crl_fail_policy = grace", "crl_stale_grace = 2h"]).start()
    r = node.s_client(p.clients["alice"])
    assert r.accepted, f"alice refused although the expired CRL is within the grace period\n{r}"
    line = node.wait_log(STALE, tls__serial=p.clients["alice"].serial)[0]
    assert line.level == "warning", line.raw
    assert int(line.fields.get("revocation.stale_seconds", "0")) >= 3600 - 60, line.raw
    # The last good CRL still revokes.
    assert node.s_client(p.clients["bob"]).alert == 44


def test_12_grace_policy_refuses_once_the_grace_is_over(tls_node, own_pki):
    p = own_pki
    expired = p.root.expired_crl(p.dir / "expired.pem")
    node = tls_node(p, crls={"root.pem": expired},
                    options=["crl_fail_policy = grace", "crl_stale_grace = 30m"]).start()
    r = node.s_client(p.clients["alice"])
    assert r.refused, f"alice accepted an hour after nextUpdate with a 30 min grace\n{r}"
    assert node.wait_log(pki.REFUSED, tls__reason="CRL has expired")
    assert not node.lines_with(STALE)


def test_12_closed_policy_refuses_on_an_expired_crl(tls_node, own_pki):
    p = own_pki
    expired = p.root.expired_crl(p.dir / "expired.pem")
    node = tls_node(p, crls={"root.pem": expired}).start()
    r = node.s_client(p.clients["alice"])
    assert r.refused, f"alice accepted on an expired CRL with crl_fail_policy = closed\n{r}"
    assert node.wait_log(pki.REFUSED, tls__reason="CRL has expired")


# ----------------------------------------------------------------------------------------------------------------
# `gatehouse refresh`: the fetcher fetches everything now, whatever the schedule says.


def test_12_refresh_command_fetches_now(tls_node, own_pki):
    import revocation_servers as rs

    p = own_pki
    server = rs.CRLServer()
    try:
        served = p.dir / "served.pem"
        p.root.gencrl(served)
        url = server.serve("/root.crl", served)
        node = tls_node(p, options=[f"crl_cache_urls = {url}"]).start()  # default interval: 15 minutes
        node.wait_log("CRL published", timeout=10, fetch__url=url)
        assert node.s_client(p.clients["bob"]).accepted

        p.root.revoke(p.clients["bob"])
        p.root.gencrl(served)
        before = server.count("/root.crl")
        cp = node.b.cli("refresh")
        assert cp.returncode == 0, cp.stderr
        assert "fetching" in cp.stdout, cp.stdout
        node.wait_log("CRL published", more_than=1, timeout=5, fetch__url=url)
        assert server.count("/root.crl") == before + 1, server.describe()
        node.wait_refused(p.clients["bob"], since=time.monotonic(), within=3)
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------------------------
# Operator view: `status --json` per-worker figures, and the Prometheus endpoint aggregated over the processes.


def _scrape(port: int) -> dict[str, float]:
    """GET /metrics with curl; {'name{labels}': value}."""
    import subprocess

    out = subprocess.run(["curl", "-s", "--max-time", "5", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    samples = {}
    for line in out.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_12_status_and_metrics_show_revocation_figures(tls_node, own_pki):
    import harness

    p = own_pki
    metrics_port = harness.free_port()
    first = p.root.gencrl(p.dir / "first.pem")
    node = tls_node(p, crls={"root.pem": first})
    node.lines = [l if not l.startswith("node.metrics_listener") else f"node.metrics_listener = 127.0.0.1:{metrics_port}"
                  for l in node.lines]
    node.start()
    bob = V5Client(node, p.clients["bob"], "metrics-bob")
    try:
        bob.connect()
        _revoke_and_publish(node, p, p.clients["bob"])
        assert bob.gone.wait(3)
        assert node.s_client(p.clients["bob"]).alert == 44  # one refusal: certificate revoked

        listener = f"ssl:{pki.LISTENER}"
        deadline = time.monotonic() + 5
        while True:
            status = node.b.status()
            workers = [w for w in status["processes"] if w["role"] == "worker" and w.get("statistics")]
            tls = workers[0]["statistics"]["listeners"][0] if workers else {}
            if tls.get("refusals", {}).get("certificate revoked") == 1 and tls.get("revoked_disconnected") == 1:
                break
            assert time.monotonic() < deadline, f"status never showed the refusal and the disconnect: {status}"
            time.sleep(0.2)
        assert tls["listener"] == listener and tls["revocation_generation"] >= 2 and tls["revoked_entries"] == 1, tls

        samples = _scrape(metrics_port)
        assert samples.get("gatehouse_workers") == 1, samples
        key = f'gatehouse_tls_handshakes_refused_total{{listener="{listener}",reason="certificate revoked"}}'
        assert samples.get(key) == 1, f"{key} missing or wrong: {samples}"
        assert samples.get(f'gatehouse_revoked_clients_disconnected_total{{listener="{listener}"}}') == 1, samples
        assert samples.get(f'gatehouse_crl_revoked_entries{{listener="{listener}"}}') == 1, samples
        assert samples.get('gatehouse_child_restarts_total{role="worker"}') == 0, samples
        assert samples.get(f'gatehouse_tls_handshakes_completed_total{{listener="{listener}"}}') == 1, samples
        assert "gatehouse_messages_received_total" in samples and "gatehouse_connections" in samples, samples
    finally:
        bob.close()


def _short_lived_crl_node(tls_node, p: pki.TestPKI, server, *options: str) -> tuple[pki.TLSNode, str, float]:
    """A node fetching a CRL that expires 6 s after it is made; returns (node, url, nextUpdate as epoch)."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    next_update = now + timedelta(seconds=6)
    served = p.dir / f"short-{len(options)}.pem"
    p.root.gencrl(served, last_update=now - timedelta(minutes=1), next_update=next_update)
    url = server.serve(f"/short-{len(options)}.crl", served)
    node = tls_node(p, options=[f"crl_cache_urls = {url}", *options],
                    extra=["node.fetch_refresh_floor = 1s", "crl_cache_http_timeout = 1s"]).start()
    node.wait_log("CRL published", timeout=10, fetch__url=url)
    return node, url, next_update.timestamp()


def test_12_fail_policies_with_the_ca_down_and_an_expiring_crl(tls_node, own_pki):
    """The CA's server stops and the fetched CRL (short validity) passes its nextUpdate: `closed` refuses with
    "CRL has expired", `grace` keeps accepting on it with a warning per handshake. `status --json` shows the cached
    CRL as the fetcher holds it."""
    import revocation_servers as rs

    p = own_pki
    server = rs.CRLServer()
    try:
        closed, closed_url, expires = _short_lived_crl_node(tls_node, p, server)
        grace, grace_url, _ = _short_lived_crl_node(
            tls_node, p, server, "crl_fail_policy = grace", "crl_stale_grace = 1h")
        alice = p.clients["alice"]
        assert closed.s_client(alice).accepted and grace.s_client(alice).accepted

        item = next(i for i in closed.b.status()["cache"] if i["url"] == closed_url)
        assert item["published"] and item["origin"] == "configured", item
        assert item["issuer"] == "CN=Gatehouse Test Root CA,O=Gatehouse Tests", item
        assert item["entries"] == 0 and item["crl_number"] is not None, item
        assert abs(item["next_update"] - expires) < 2 and item["this_update"] < item["next_update"], item

        server.stop()  # the CA is down from now on
        time.sleep(max(0.0, expires - time.time()) + 1.5)
        r = closed.s_client(alice)
        assert r.refused, f"closed policy accepted on an expired CRL\n{r}"
        assert closed.wait_log(pki.REFUSED, tls__reason="CRL has expired")
        r = grace.s_client(alice)
        assert r.accepted, f"grace policy refused within the grace period\n{r}"
        assert grace.wait_log("client accepted on a CRL past its nextUpdate (crl_fail_policy = grace)",
                              tls__serial=alice.serial)
        # The fetcher keeps trying and says so; the last good CRL stays.
        assert closed.wait_log("fetch failed", timeout=10, fetch__url=closed_url)
        # Never silently: the grace acceptance is counted (status, hence the metrics).
        deadline = time.monotonic() + 5
        while True:
            workers = [w for w in grace.b.status()["processes"] if w["role"] == "worker" and w.get("statistics")]
            counted = workers[0]["statistics"]["listeners"][0]["accepted_on_stale_crl"] if workers else 0
            if counted >= 1:
                break
            assert time.monotonic() < deadline, "the grace acceptance was not counted"
            time.sleep(0.2)
    finally:
        server.stop()


def test_12_connected_mosquitto_sub_is_cut_off(tls_node, own_pki):
    """A real `mosquitto_sub` (MQTT 3.1.1) holding a subscription with bob's certificate stops receiving once bob is
    revoked (it is disconnected, and every reconnect is refused with alert 44); alice's keeps receiving."""
    p = own_pki
    node = _node(tls_node, p)
    bob = node.sub(p.clients["bob"], "cut/t", "cut-bob")
    alice = node.sub(p.clients["alice"], "cut/t", "cut-alice")
    bob.wait_subscribed()
    alice.wait_subscribed()
    publisher = V5Client(node, p.clients["carol"], "cut-carol")
    try:
        publisher.connect()
        publisher.publish("cut/t", b"before")
        assert bob.expect()[1] == "before" and alice.expect()[1] == "before"

        published = _revoke_and_publish(node, p, p.clients["bob"])
        line = node.wait_log(DISCONNECTED, timeout=3, tls__serial=p.clients["bob"].serial)[0]
        assert line.fields.get("mqtt.reason", "").startswith("administrative action"), line.raw
        assert time.monotonic() - published <= 1.5

        publisher.publish("cut/t", b"after")
        assert alice.expect()[1] == "after"
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                got = bob.expect(timeout=0.2)
            except AssertionError:
                continue
            raise AssertionError(f"bob still received {got!r} after his certificate was revoked")
    finally:
        publisher.close()
