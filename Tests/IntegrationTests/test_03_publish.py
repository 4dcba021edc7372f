"""03 publish: QoS 0/1/2 end to end with paho and the mosquitto clients (byte-exact payloads, ordering), the exact
QoS 1/2 packet flows, redelivery on reconnect, offline queueing, and the MQTT 5 publish features (message expiry,
topic aliases, receive maximum, maximum packet size, property pass-through). Malformed PUBLISH packets close only
the offending connection.
"""

from __future__ import annotations

import os
import time

import pytest

from mqtt_helpers import (
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    QUIET,
    RC_MALFORMED,
    RC_PACKET_TOO_LARGE,
    RC_PROTOCOL_ERROR,
    RC_TOPIC_ALIAS_INVALID,
    RC_TOPIC_NAME_INVALID,
    WAIT,
    Bystander,
    MosquittoSub,
    Paho,
    RawClient,
    ack_packet,
    connect_packet,
    expect_closed_after_error,
    gatehouse_only,
    mosquitto_pub,
    packet,
    parse_ack,
    parse_publish,
    properties,
    publish_packet,
    string,
    u16,
    unique,
)

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
Q = pytest.mark.parametrize("qos", [0, 1, 2], ids=["qos0", "qos1", "qos2"])

PAYLOADS = [
    b"",
    bytes(range(256)),
    b"\x00" * 17,
    "grüße ✓".encode(),
    os.urandom(100 * 1024),
]


def _persistent(version: int) -> dict:
    return {"clean": False, "props": {"SessionExpiryInterval": 60}} if version == 5 else {"clean": False}


# ------------------------------------------------------------------------------------------------------------
# End to end


@Q
@V
def test_03_paho_end_to_end(mqtt_broker, version, qos):
    """Binary, empty and 100 KB payloads arrive byte-exact at the publish QoS, then 100 messages in order."""
    topic = unique("e2e/")
    sub = Paho(mqtt_broker.port, unique("sub"), version=version)
    sub.connect()
    assert sub.subscribe(topic, qos) == [qos]
    pub = Paho(mqtt_broker.port, unique("pub"), version=version)
    pub.connect()
    seq = [b"n=%03d" % i for i in range(100)]
    for payload in PAYLOADS + seq:
        pub.publish(topic, payload, qos=qos, wait=False)
    got = sub.expect(len(PAYLOADS) + len(seq))
    assert [m.payload for m in got[: len(PAYLOADS)]] == PAYLOADS
    assert [m.payload for m in got[len(PAYLOADS):]] == seq, "messages out of order"
    for m in got:
        assert (m.topic, m.qos, m.retain) == (topic, qos, False), m
    sub.expect_nothing(0.2)
    pub.disconnect()
    sub.disconnect()


@Q
@V
def test_03_mosquitto_clients_end_to_end(mqtt_broker, version, qos, tmp_path):
    topic = unique("mc/")
    payloads = [bytes(range(256)) + b"\x00\x00", b"", os.urandom(100 * 1024)]
    s = MosquittoSub(mqtt_broker.port, [topic], version=version, qos=qos, count=len(payloads))
    try:
        s.wait_subscribed()
        for p in payloads:
            mosquitto_pub(mqtt_broker.port, topic, p, version=version, qos=qos, tmp=tmp_path)
        assert s.expect(len(payloads)) == [(qos, False, topic, p) for p in payloads]
    finally:
        s.close()


@pytest.mark.parametrize("direction", ["paho5-to-mosquitto311", "mosquitto5-to-paho311"])
def test_03_cross_client_and_version(mqtt_broker, direction, tmp_path):
    topic = unique("x/")
    payload = b"\x00cross\xffversion"
    if direction == "paho5-to-mosquitto311":
        s = MosquittoSub(mqtt_broker.port, [topic], version=4, qos=2, count=1)
        try:
            s.wait_subscribed()
            p = Paho(mqtt_broker.port, unique("p5"), version=5)
            p.connect()
            p.publish(topic, payload, qos=2, props={"UserProperty": [("a", "b")]})
            p.disconnect()
            assert s.expect(1) == [(2, False, topic, payload)]
        finally:
            s.close()
    else:
        sub = Paho(mqtt_broker.port, unique("p4"), version=4)
        sub.connect()
        sub.subscribe(topic, 2)
        mosquitto_pub(mqtt_broker.port, topic, payload, version=5, qos=1, tmp=tmp_path)
        (m,) = sub.expect(1)
        assert (m.payload, m.qos) == (payload, 1)
        sub.disconnect()


# ------------------------------------------------------------------------------------------------------------
# Exact QoS flows


@V
def test_03_qos1_flow(mqtt_broker, version):
    topic = unique("q1/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(unique("q1sub"))
    sub.subscribe(topic, 1)
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("q1pub"))
    pub.send(publish_packet(topic, b"hello", qos=1, packet_id=0x1234, version=version))
    ack = pub.expect(PUBACK)
    if version == 4:
        assert ack.raw == b"\x40\x02\x12\x34", ack
    else:
        a = parse_ack(ack, 5)
        assert (a.packet_id, a.reason) == (0x1234, 0), a
    m = sub.expect_publish()
    assert (m.topic, m.payload, m.qos, m.dup, m.retain) == (topic, b"hello", 1, False, False), m
    assert m.packet_id and m.packet_id != 0
    sub.send(ack_packet(PUBACK, m.packet_id, version))
    sub.expect_nothing()
    pub.disconnect()
    sub.disconnect()


@V
def test_03_qos2_flow_exactly_once(mqtt_broker, version):
    """Publisher: PUBLISH -> PUBREC, a DUP re-send -> PUBREC again, PUBREL -> PUBCOMP. Subscriber: exactly one
    PUBLISH, PUBREC -> PUBREL, PUBCOMP. The packet id is then free for a new message."""
    topic = unique("q2/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(unique("q2sub"))
    assert sub.subscribe(topic, 2) == [2]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("q2pub"))

    pub.send(publish_packet(topic, b"exactly once", qos=2, packet_id=7, version=version))
    rec = pub.expect(PUBREC)
    pub.send(publish_packet(topic, b"exactly once", qos=2, packet_id=7, dup=True, version=version))
    rec2 = pub.expect(PUBREC, what="PUBREC for the DUP re-send")
    pub.send(ack_packet(PUBREL, 7, version))
    comp = pub.expect(PUBCOMP)
    if version == 4:
        assert (rec.raw, rec2.raw, comp.raw) == (b"\x50\x02\x00\x07", b"\x50\x02\x00\x07", b"\x70\x02\x00\x07")
    else:
        for p in (rec, rec2, comp):
            a = parse_ack(p, 5)
            assert (a.packet_id, a.reason) == (7, 0), p

    m = sub.expect_publish()
    assert (m.topic, m.payload, m.qos, m.dup) == (topic, b"exactly once", 2, False), m
    sub.send(ack_packet(PUBREC, m.packet_id, version))
    rel = sub.expect(PUBREL)
    if version == 4:
        assert rel.raw == b"\x62\x02" + m.packet_id.to_bytes(2, "big"), rel
    else:
        a = parse_ack(rel, 5)
        assert (a.packet_id, a.reason) == (m.packet_id, 0), rel
    sub.send(ack_packet(PUBCOMP, m.packet_id, version))
    sub.expect_nothing()

    # Packet id 7 was released by PUBCOMP: a new message with it is a new message.
    pub.publish(topic, b"second", qos=2, packet_id=7)
    m = sub.expect_publish()
    assert m.payload == b"second"
    sub.ack(m)
    pub.disconnect()
    sub.disconnect()


@V
def test_03_redelivery_with_dup_on_reconnect(mqtt_broker, version):
    """A persistent-session subscriber gets a QoS 1 message and drops the connection without PUBACK; on reconnect
    the same message is re-sent with DUP set and the same packet id."""
    cid, topic = unique("redo"), unique("redo/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(cid, **_persistent(version))
    assert sub.subscribe(topic, 1) == [1]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("redopub"))
    pub.publish(topic, b"\x00ack me\x00", qos=1)
    first = sub.expect_publish()
    assert (first.payload, first.qos, first.dup) == (b"\x00ack me\x00", 1, False), first
    sub.abort()

    sub = RawClient(mqtt_broker.port, version)
    assert sub.connect(cid, **_persistent(version)).session_present is True
    again = sub.expect_publish(what="re-sent QoS 1 message")
    assert (again.topic, again.payload, again.qos, again.dup) == (topic, b"\x00ack me\x00", 1, True), again
    assert again.packet_id == first.packet_id, (first, again)
    sub.ack(again)
    sub.expect_nothing()
    sub.disconnect()
    pub.disconnect()


@V
def test_03_qos2_redelivery_on_reconnect(mqtt_broker, version):
    """QoS 2 to a persistent subscriber: an un-PUBREC'd PUBLISH is re-sent with DUP; after PUBREC the broker
    re-sends PUBREL (not the PUBLISH) with the same id."""
    cid, topic = unique("redo2"), unique("redo2/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(cid, **_persistent(version))
    assert sub.subscribe(topic, 2) == [2]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("redo2pub"))
    pub.publish(topic, b"q2", qos=2)
    first = sub.expect_publish()
    sub.abort()

    sub = RawClient(mqtt_broker.port, version)
    assert sub.connect(cid, **_persistent(version)).session_present is True
    again = sub.expect_publish(what="re-sent QoS 2 PUBLISH")
    assert (again.payload, again.qos, again.dup, again.packet_id) == (b"q2", 2, True, first.packet_id), again
    sub.send(ack_packet(PUBREC, again.packet_id, version))
    rel = parse_ack(sub.expect(PUBREL), version)
    assert rel.packet_id == first.packet_id
    sub.abort()

    sub = RawClient(mqtt_broker.port, version)
    assert sub.connect(cid, **_persistent(version)).session_present is True
    rel = parse_ack(sub.expect(PUBREL, what="re-sent PUBREL"), version)
    assert rel.packet_id == first.packet_id
    sub.send(ack_packet(PUBCOMP, rel.packet_id, version))
    sub.expect_nothing()
    sub.disconnect()
    pub.disconnect()


# ------------------------------------------------------------------------------------------------------------
# Offline queueing


@V
def test_03_offline_messages_queued(mqtt_broker, version):
    """paho with a persistent session (3.1.1 clean_session False; v5 clean_start False + Session Expiry): QoS 1 and
    2 messages published while it is offline are delivered on reconnect, in order."""
    cid, topic = unique("off"), unique("off/")
    kw = dict(clean=False, session_expiry=60 if version == 5 else None)
    sub = Paho(mqtt_broker.port, cid, version=version, **kw)
    sub.connect()
    sub.subscribe(topic, 2)
    sub.disconnect()

    pub = Paho(mqtt_broker.port, unique("offpub"), version=version)
    pub.connect()
    q1 = [b"q1-%d" % i for i in range(5)]
    q2 = [b"q2-%d" % i for i in range(5)]
    for a, b in zip(q1, q2):
        pub.publish(topic, a, qos=1)
        pub.publish(topic, b, qos=2)

    sub = Paho(mqtt_broker.port, cid, version=version, **kw)
    _, present, _ = sub.connect()
    assert present is True
    got = sub.expect(10)
    assert [m.payload for m in got if m.qos == 1] == q1, got
    assert [m.payload for m in got if m.qos == 2] == q2, got
    sub.expect_nothing(0.3)
    sub.disconnect()
    pub.disconnect()


@gatehouse_only
def test_03_offline_queue_bound_drops_oldest(make_mqtt_broker):
    """`mqtt.max_queued_messages = 5`: 8 messages published while the client is offline -> it gets the newest 5.
    Gatehouse-specific: Mosquitto's max_queued_messages drops the newest instead."""
    b = make_mqtt_broker(max_queued_messages=5)
    cid, topic = unique("bound"), unique("bound/")
    sub = RawClient(b.port, 4)
    sub.connect(cid, clean=False)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = RawClient(b.port, 4)
    pub.connect(unique("boundpub"))
    for i in range(8):
        pub.publish(topic, b"m%d" % i, qos=1, packet_id=i + 1)
    sub = RawClient(b.port, 4)
    assert sub.connect(cid, clean=False).session_present
    got = []
    for _ in range(5):
        m = sub.expect_publish()
        sub.ack(m)
        got.append(m.payload)
    sub.expect_nothing()
    assert got == [b"m3", b"m4", b"m5", b"m6", b"m7"], got
    sub.disconnect()
    pub.disconnect()


# ------------------------------------------------------------------------------------------------------------
# MQTT 5


def test_03_v5_message_expiry(mqtt_broker):
    """Queued for an offline client: a message whose expiry passes is dropped; one still valid is delivered with
    the remaining time; one without expiry carries none. Online delivery carries (about) the full interval."""
    cid, topic = unique("mx"), unique("mx/")
    sub = RawClient(mqtt_broker.port, 5)
    sub.connect(cid, clean=False, props={"SessionExpiryInterval": 60})
    sub.subscribe(topic, 1)
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("mxpub"))

    pub.publish(topic, b"online", qos=1, props={"MessageExpiryInterval": 30})
    m = sub.expect_publish()
    sub.ack(m)
    assert 28 <= m.props.get("MessageExpiryInterval", -1) <= 30, m
    sub.disconnect()

    pub.publish(topic, b"short", qos=1, packet_id=2, props={"MessageExpiryInterval": 1})
    pub.publish(topic, b"long", qos=1, packet_id=3, props={"MessageExpiryInterval": 60})
    pub.publish(topic, b"forever", qos=1, packet_id=4)
    time.sleep(2.5)

    sub = RawClient(mqtt_broker.port, 5)
    assert sub.connect(cid, clean=False, props={"SessionExpiryInterval": 60}).session_present
    got = []
    for _ in range(2):
        m = sub.expect_publish()
        sub.ack(m)
        got.append(m)
    sub.expect_nothing()
    assert [m.payload for m in got] == [b"long", b"forever"], got
    assert 50 <= got[0].props.get("MessageExpiryInterval", -1) <= 58, f"expiry not decremented: {got[0]}"
    assert "MessageExpiryInterval" not in got[1].props, got[1]
    sub.disconnect()
    pub.disconnect()


def test_03_v5_topic_alias_client_to_broker(mqtt_broker):
    """paho publishes with a Topic Alias, then with an empty topic and the alias, then re-maps the alias."""
    topic_a, topic_b = unique("ta/"), unique("ta/")
    sub = Paho(mqtt_broker.port, unique("tasub"), version=5)
    sub.connect()
    sub.subscribe("ta/#", 1)
    pub = Paho(mqtt_broker.port, unique("tapub"), version=5)
    _, _, props = pub.connect()
    assert props.get("TopicAliasMaximum", 0) >= 1, f"broker offers no topic aliases: {props}"
    pub.publish(topic_a, b"1", qos=1, props={"TopicAlias": 1})
    pub.publish("", b"2", qos=1, props={"TopicAlias": 1})
    pub.publish(topic_b, b"3", qos=1, props={"TopicAlias": 1})
    pub.publish("", b"4", qos=1, props={"TopicAlias": 1})
    got = [(m.topic, m.payload) for m in sub.expect(4)]
    assert got == [(topic_a, b"1"), (topic_a, b"2"), (topic_b, b"3"), (topic_b, b"4")], got
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("case", ["above-maximum", "zero", "unknown-alias"])
def test_03_v5_topic_alias_invalid(make_mqtt_broker, case):
    """Topic Alias Maximum 10: alias 11 -> DISCONNECT 0x94; alias 0 -> 0x94 (or protocol error); an empty topic
    with an alias never set -> protocol error. The connection is closed, others are unaffected."""
    b = make_mqtt_broker(max_topic_alias=10)
    by = Bystander(b, 5)
    c = RawClient(b.port, 5)
    ack = c.connect(unique("badalias"))
    assert ack.props.get("TopicAliasMaximum") == 10, ack
    if case == "above-maximum":
        c.send(publish_packet("ta/x", b"x", version=5, props={"TopicAlias": 11}))
        allowed = [RC_TOPIC_ALIAS_INVALID]
    elif case == "zero":
        c.send(publish_packet("ta/x", b"x", version=5, props={"TopicAlias": 0}))
        allowed = [RC_TOPIC_ALIAS_INVALID, RC_PROTOCOL_ERROR, RC_MALFORMED]
    else:
        c.send(publish_packet("", b"x", version=5, props={"TopicAlias": 5}))
        allowed = [RC_PROTOCOL_ERROR, RC_TOPIC_ALIAS_INVALID]
    reason = expect_closed_after_error(c, allowed, what=case)
    if case == "above-maximum":
        assert reason == RC_TOPIC_ALIAS_INVALID, "expected DISCONNECT 0x94 before the close"
    by.check()
    by.close()


def test_03_v5_topic_aliases_broker_to_client(mqtt_broker):
    """Without a Topic Alias Maximum from the client, the broker sends no aliases [MQTT-3.3.2-9]; with one, any
    alias it uses is within the maximum and resolves to the right topic."""
    topics = [unique("tb/") for _ in range(3)]
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("tbpub"))
    for tam in (None, 2):
        sub = RawClient(mqtt_broker.port, 5)
        sub.connect(unique("tbsub"), props={"TopicAliasMaximum": tam} if tam else None)
        sub.subscribe("tb/#", 1)
        n = 0
        for rnd in range(3):
            for t in topics:
                n += 1
                pub.publish(t, b"%d" % n, qos=1, packet_id=n)
                m = sub.expect_publish()
                sub.ack(m)
                assert (m.topic, m.payload) == (t, b"%d" % n), m
                alias = m.props.get("TopicAlias")
                if tam is None:
                    assert alias is None, f"alias sent to a client that allows none: {m}"
                elif alias is not None:
                    assert 1 <= alias <= tam, m
        sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("qos", [1, 2], ids=["qos1", "qos2"])
def test_03_v5_receive_maximum(mqtt_broker, qos):
    """A client with Receive Maximum 1 has at most one unacknowledged QoS 1/2 PUBLISH at a time."""
    topic = unique("rm/")
    sub = RawClient(mqtt_broker.port, 5)
    sub.connect(unique("rmsub"), props={"ReceiveMaximum": 1})
    sub.subscribe(topic, qos)
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("rmpub"))
    for i in range(5):
        pub.publish(topic, b"r%d" % i, qos=qos, packet_id=i + 1)
    for i in range(5):
        m = sub.expect_publish(what=f"message {i}")
        assert (m.payload, m.qos) == (b"r%d" % i, qos), m
        sub.expect_nothing(0.3 if i else QUIET)  # nothing more until this one is acknowledged
        sub.ack(m)
    sub.expect_nothing(0.3)
    sub.disconnect()
    pub.disconnect()


def test_03_v5_client_maximum_packet_size(mqtt_broker):
    """A client announcing Maximum Packet Size 200 never gets a larger packet; such messages are dropped for it
    (and only for it), the connection stays up."""
    topic = unique("mps/")
    small = RawClient(mqtt_broker.port, 5)
    small.connect(unique("small"), props={"MaximumPacketSize": 200})
    small.subscribe(topic, 1)
    big = RawClient(mqtt_broker.port, 5)
    big.connect(unique("big"))
    big.subscribe(topic, 1)
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("mpspub"))
    pub.publish(topic, b"L" * 500, qos=1)
    pub.publish(topic, b"S" * 10, qos=1, packet_id=2)
    m = small.expect_publish()
    assert m.payload == b"S" * 10, f"got {len(m.payload)} bytes"
    small.ack(m)
    small.expect_nothing(0.3)
    small.ping()
    assert [big.expect_publish().payload for _ in range(2)] == [b"L" * 500, b"S" * 10]
    for c in (small, big, pub):
        c.disconnect()


@V
def test_03_packet_larger_than_broker_maximum(make_mqtt_broker, version):
    """Broker maximum 1000 bytes (announced in the v5 CONNACK): a larger PUBLISH closes the connection (v5:
    DISCONNECT 0x95 first); other clients are unaffected."""
    b = make_mqtt_broker(max_packet_size=1000)
    by = Bystander(b, version)
    c = RawClient(b.port, version)
    ack = c.connect(unique("toolarge"))
    if version == 5:
        assert ack.props.get("MaximumPacketSize") == 1000, ack
    c.publish(unique("tl/"), b"x" * 900, qos=1)  # fits
    c.send(publish_packet("tl/x", b"x" * 2000, qos=1, version=version))
    reason = expect_closed_after_error(c, [RC_PACKET_TOO_LARGE], what="oversized PUBLISH")
    if version == 5:
        assert reason == RC_PACKET_TOO_LARGE, "expected DISCONNECT 0x95 before the close"
    by.check()
    by.close()


def test_03_v5_properties_pass_through(mqtt_broker):
    """User properties (order and duplicates kept), response topic, correlation data, payload format indicator
    and content type arrive unchanged."""
    topic = unique("props/")
    props = {
        "PayloadFormatIndicator": 1,
        "ContentType": "application/json; charset=utf-8",
        "ResponseTopic": "reply/" + topic,
        "CorrelationData": b"\x00\x01\xfe\xff",
        "UserProperty": [("b", "2"), ("a", "1"), ("a", "1"), ("ключ", "значение")],
    }
    sub = Paho(mqtt_broker.port, unique("psub"), version=5)
    sub.connect()
    sub.subscribe(topic, 1)
    raw = RawClient(mqtt_broker.port, 5)
    raw.connect(unique("praw"))
    raw.subscribe(topic, 1)
    pub = Paho(mqtt_broker.port, unique("ppub"), version=5)
    pub.connect()
    pub.publish(topic, b'{"x": 1}', qos=1, props=props)
    (m,) = sub.expect(1)
    for k, v in props.items():
        assert m.props.get(k) == v, f"{k}: sent {v!r}, received {m.props.get(k)!r}"
    r = raw.expect_publish()
    for k, v in props.items():
        assert r.props.get(k) == v, f"raw {k}: sent {v!r}, received {r.props.get(k)!r}"
    raw.ack(r)
    for c in (sub, pub, raw):
        c.disconnect()


# ------------------------------------------------------------------------------------------------------------
# Malformed PUBLISH and friends


def _publish_bad(version: int, case: str) -> bytes:
    props = properties() if version == 5 else b""
    if case == "remaining-length-5-bytes":
        return b"\x30\xff\xff\xff\xff\x01"
    if case == "qos-3":
        return packet(3, 0x06, string("a/b") + u16(1) + props + b"x")
    if case == "invalid-utf8-topic":
        return publish_packet(b"a/\xff\xfe", b"x", version=version)
    if case == "utf8-null-in-topic":
        return publish_packet(b"a/\x00b", b"x", version=version)
    if case == "wildcard-in-topic":
        return publish_packet("a/+/b", b"x", version=version)
    if case == "hash-in-topic":
        return publish_packet("a/#", b"x", qos=1, packet_id=3, version=version)
    if case == "packet-id-0":
        return publish_packet("a/b", b"x", qos=1, packet_id=0, version=version)
    if case == "empty-topic":
        return publish_packet("", b"x", version=version)
    if case == "pubrel-bad-flags":
        return packet(6, 0x00, u16(1))
    raise AssertionError(case)


_BAD = {
    "remaining-length-5-bytes": [RC_MALFORMED],
    "qos-3": [RC_MALFORMED, RC_PROTOCOL_ERROR],
    "invalid-utf8-topic": [RC_MALFORMED, RC_TOPIC_NAME_INVALID],
    "utf8-null-in-topic": [RC_MALFORMED, RC_TOPIC_NAME_INVALID],
    "wildcard-in-topic": [RC_TOPIC_NAME_INVALID, RC_PROTOCOL_ERROR, RC_MALFORMED],
    "hash-in-topic": [RC_TOPIC_NAME_INVALID, RC_PROTOCOL_ERROR, RC_MALFORMED],
    "packet-id-0": [RC_MALFORMED, RC_PROTOCOL_ERROR],
    "empty-topic": [RC_PROTOCOL_ERROR, RC_MALFORMED, RC_TOPIC_NAME_INVALID],
    "pubrel-bad-flags": [RC_MALFORMED, RC_PROTOCOL_ERROR],
}


@pytest.mark.parametrize("case", list(_BAD))
@V
def test_03_malformed_publish_closes_only_that_connection(mqtt_broker, version, case):
    """The offending connection is closed (v5: optionally after DISCONNECT with a fitting reason code); a client
    connected before and a new client keep working; the worker did not restart (pid unchanged)."""
    by = Bystander(mqtt_broker, version)
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("bad"))
    c.send(_publish_bad(version, case))
    expect_closed_after_error(c, _BAD[case], what=case)
    by.check()
    by.close()


@V
def test_03_will_published_after_protocol_error(mqtt_broker, version):
    """The server closing the connection because of a malformed packet publishes the will."""
    topic = unique("pwill/")
    w = RawClient(mqtt_broker.port, version)
    w.connect(unique("pwatch"))
    w.subscribe(topic, 1)
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("pbad"), will={"topic": topic, "payload": b"broke the rules"})
    c.send(_publish_bad(version, "qos-3"))
    c.expect_closed()
    m = w.expect_publish()
    assert (m.topic, m.payload) == (topic, b"broke the rules")
    w.disconnect()
