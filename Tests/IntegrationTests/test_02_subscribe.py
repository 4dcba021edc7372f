"""02 subscribe: topic filters (`+`, `#`, the `$` rule), SUBACK codes and QoS downgrade, UNSUBSCRIBE, PINGREQ,
DISCONNECT, malformed SUBSCRIBE packets, and the MQTT 5 subscription options (no local, subscription identifiers,
shared subscriptions). Retain-related options are in 04.
"""

from __future__ import annotations

import pytest

from mqtt_helpers import (
    PINGRESP,
    QUIET,
    RC_MALFORMED,
    RC_PROTOCOL_ERROR,
    RC_TOPIC_FILTER_INVALID,
    SUBACK,
    UNSUBACK,
    WAIT,
    Bystander,
    MosquittoSub,
    Paho,
    RawClient,
    expect_closed_after_error,
    mosquitto_pub,
    packet,
    parse_suback,
    properties,
    string,
    subscribe_packet,
    topic_matches,
    u16,
    unique,
    unsubscribe_packet,
)

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


@V
def test_02_wildcards_and_dollar_topics(mqtt_broker, version):
    """Each filter receives exactly the topics the spec says it matches; `#` and `+` never match a topic that
    starts with `$` (e.g. `$foo/bar`, `$SYS/...`) unless the filter names the `$` level."""
    p = unique("w")
    filters = [f"{p}/+/c", f"{p}/#", "#", f"+/+/c", f"{p}/b/c", f"{p}/+", "+", f"+/bar", f"$foo{p}/#",
               f"$foo{p}/+", f"{p}//c", f"{p}/+/+/#"]
    topics = [f"{p}/b/c", f"{p}/x/c", p, f"{p}/b", f"{p}/b/c/d", f"$foo{p}/bar", f"$SYS{p}/bar", f"{p}//c",
              f"{p}/", f"{p}x/bar", "bar"]
    subs = []
    for f in filters:
        c = RawClient(mqtt_broker.port, version)
        c.connect(unique("wsub"))
        assert c.subscribe(f, 1) == [1], f
        subs.append(c)
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("wpub"))
    for i, t in enumerate(topics, start=1):
        pub.publish(t, t.encode(), qos=1, packet_id=i)
    for f, c in zip(filters, subs):
        want = [t for t in topics if topic_matches(f, t)]
        got: list[str] = []
        while True:
            # Read until everything expected is there, then briefly for anything extra.
            try:
                m = c.expect_publish(timeout=WAIT if len(got) < len(want) else 0.2)
            except AssertionError:
                break
            c.ack(m)
            assert not (f[0] in "#+" and m.topic.startswith("$")), f"{f!r} received {m.topic!r}"
            if m.topic in topics:  # '#', '+', '+/bar' may also see unrelated traffic
                got.append(m.topic)
        assert got == want, f"filter {f!r}: got {got}, want {want}"
    for c in subs + [pub]:
        c.disconnect()


@V
def test_02_suback_codes_and_qos_downgrade(mqtt_broker, version):
    """One SUBSCRIBE with three filters at QoS 0/1/2 -> SUBACK [0,1,2]; each message arrives at
    min(publish QoS, granted QoS)."""
    p = unique("dg")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(unique("dgsub"))
    assert sub.subscribe([(f"{p}/0/+", 0), (f"{p}/1/+", 1), (f"{p}/2/+", 2)], packet_id=0x4242) == [0, 1, 2]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("dgpub"))
    n = 0
    for sq in (0, 1, 2):
        for pq in (0, 1, 2):
            n += 1
            pub.publish(f"{p}/{sq}/{pq}", b"%d%d" % (sq, pq), qos=pq, packet_id=n)
            m = sub.expect_publish(what=f"sub QoS {sq}, pub QoS {pq}")
            assert m.topic == f"{p}/{sq}/{pq}" and m.payload == b"%d%d" % (sq, pq), m
            assert m.qos == min(sq, pq), f"sub QoS {sq}, pub QoS {pq}: delivered at QoS {m.qos}"
            assert (m.packet_id is None) == (m.qos == 0) and m.packet_id != 0, m
            sub.ack(m)
    sub.disconnect()
    pub.disconnect()


@V
def test_02_paho_subscribe_granted_qos(mqtt_broker, version):
    c = Paho(mqtt_broker.port, unique("psub"), version=version)
    c.connect()
    assert c.subscribe([(unique("pq/"), 0), (unique("pq/"), 1), (unique("pq/"), 2)]) == [0, 1, 2]
    c.disconnect()


@V
def test_02_unsubscribe_stops_delivery(mqtt_broker, version):
    topic = unique("uns/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(unique("usub"))
    assert sub.subscribe(topic, 1) == [1]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("upub"))
    pub.publish(topic, b"before", qos=1)
    m = sub.expect_publish()
    assert m.payload == b"before"
    sub.ack(m)

    sub.send(unsubscribe_packet(0x0102, [topic], version))
    ack = sub.expect(UNSUBACK)
    if version == 4:
        assert ack.raw == b"\xb0\x02\x01\x02", ack
    else:
        u = parse_suback(ack, 5)
        assert u.packet_id == 0x0102 and u.codes == [0x00], u
    pub.publish(topic, b"after", qos=1, packet_id=2)
    sub.expect_nothing()

    if version == 5:
        # Unsubscribing from something not subscribed: 0x11 No subscription existed.
        sub.send(unsubscribe_packet(7, [topic], 5))
        u = parse_suback(sub.expect(UNSUBACK), 5)
        assert u.packet_id == 7 and u.codes == [0x11], u
    sub.disconnect()
    pub.disconnect()


@V
def test_02_paho_unsubscribe(mqtt_broker, version):
    topic = unique("puns/")
    c = Paho(mqtt_broker.port, unique("puns"), version=version)
    c.connect()
    c.subscribe(topic, 1)
    c.publish(topic, b"1", qos=1)
    assert [m.payload for m in c.expect(1)] == [b"1"]
    c.unsubscribe(topic)
    c.publish(topic, b"2", qos=1)
    c.expect_nothing()
    c.disconnect()


@V
def test_02_resubscribe_replaces_subscription(mqtt_broker, version):
    """Subscribing again to the same filter replaces the subscription (new QoS); one copy per message."""
    topic = unique("re/")
    sub = RawClient(mqtt_broker.port, version)
    sub.connect(unique("resub"))
    assert sub.subscribe(topic, 0) == [0]
    assert sub.subscribe(topic, 2, packet_id=2) == [2]
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("repub"))
    pub.publish(topic, b"once", qos=2)
    m = sub.expect_publish()
    assert (m.payload, m.qos) == (b"once", 2), m
    sub.ack(m)
    sub.expect_nothing()
    sub.disconnect()
    pub.disconnect()


@V
def test_02_pingreq_pingresp(mqtt_broker, version):
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("ping"))
    for _ in range(3):
        c.ping()
    c.disconnect()


@V
def test_02_disconnect_closes_connection(mqtt_broker, version):
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("bye"))
    c.send(b"\xe0\x00")
    assert c.expect_closed() == []


def test_02_mosquitto_sub_wildcard(mqtt_broker):
    p = unique("ms")
    s = MosquittoSub(mqtt_broker.port, [f"{p}/+/x"], version=5, qos=1, count=1)
    try:
        s.wait_subscribed()
        mosquitto_pub(mqtt_broker.port, f"{p}/y/z", b"no", version=4)
        mosquitto_pub(mqtt_broker.port, f"{p}/y/x", b"yes", version=4, qos=1)
        assert s.expect(1) == [(1, False, f"{p}/y/x", b"yes")]
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------------------
# Malformed SUBSCRIBE / UNSUBSCRIBE


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a+", "#/a", "a/b#"], ids=["hash-middle", "plus-in-level",
                                                                              "hash-first", "hash-in-level"])
@V
def test_02_invalid_topic_filter(mqtt_broker, version, topic_filter):
    """An invalid filter gets a failure code in SUBACK (0x80; v5 0x8F) or the connection is closed (v5: DISCONNECT
    0x81/0x82/0x8F). Either way, other clients are unaffected."""
    by = Bystander(mqtt_broker, version)
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("badf"))
    c.send(subscribe_packet(3, [(topic_filter, 0)], version))
    try:
        p = c.recv()
    except Exception:  # closed (or, wrongly, silent: then expect_closed below reports it)
        p = None
    if p is not None and p.type == SUBACK:
        ack = parse_suback(p, version)
        assert ack.codes == [0x80 if version == 4 else RC_TOPIC_FILTER_INVALID] or (
            version == 5 and ack.codes[0] >= 0x80
        ), ack
    elif not c.closed:
        if p is not None:
            c.buf[:0] = p.raw  # let expect_closed see it
        expect_closed_after_error(c, [RC_MALFORMED, RC_PROTOCOL_ERROR, RC_TOPIC_FILTER_INVALID], what=topic_filter)
    by.check()
    by.close()


_SUB_CASES = {
    "reserved-flags": lambda v: packet(8, 0x00, u16(1) + (properties() if v == 5 else b"") + string("a") + b"\x00"),
    "no-filters": lambda v: packet(8, 0x02, u16(1) + (properties() if v == 5 else b"")),
    "packet-id-0": lambda v: subscribe_packet(0, [("a", 0)], v),
    "qos-3": lambda v: subscribe_packet(1, [("a", 3)], v),
    "unsubscribe-reserved-flags": lambda v: packet(10, 0x00, u16(1) + (properties() if v == 5 else b"") + string("a")),
}


@pytest.mark.parametrize("case", list(_SUB_CASES))
@V
def test_02_malformed_subscribe_closes_only_that_connection(mqtt_broker, version, case):
    by = Bystander(mqtt_broker, version)
    c = RawClient(mqtt_broker.port, version)
    c.connect(unique("malsub"))
    c.send(_SUB_CASES[case](version))
    expect_closed_after_error(c, [RC_MALFORMED, RC_PROTOCOL_ERROR], what=case)
    by.check()
    by.close()


# ------------------------------------------------------------------------------------------------------------
# MQTT 5 subscription options


def test_02_v5_no_local(mqtt_broker):
    topic = unique("nl/")
    me = Paho(mqtt_broker.port, unique("nlme"), version=5)
    me.connect()
    me.subscribe(topic, 1, no_local=True)
    other = Paho(mqtt_broker.port, unique("nlother"), version=5)
    other.connect()
    other.subscribe(topic, 1)
    me.publish(topic, b"mine", qos=1)
    assert [m.payload for m in other.expect(1)] == [b"mine"]
    me.expect_nothing()
    # Messages from others still arrive.
    other.publish(topic, b"theirs", qos=1)
    assert [m.payload for m in me.expect(1)] == [b"theirs"]
    me.disconnect()
    other.disconnect()


def test_02_v5_subscription_identifiers(mqtt_broker):
    p = unique("si")
    sub = RawClient(mqtt_broker.port, 5)
    ack = sub.connect(unique("sisub"))
    assert ack.props.get("SubscriptionIdentifierAvailable", 1) == 1, "this test needs subscription identifiers"
    assert sub.subscribe(f"{p}/#", 1, packet_id=1, props={"SubscriptionIdentifier": 7}) == [1]
    assert sub.subscribe(f"{p}/+/x", 1, packet_id=2, props={"SubscriptionIdentifier": 268_435_455}) == [1]
    assert sub.subscribe(f"{p}/plain", 1, packet_id=3) == [1]
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("sipub"))

    pub.publish(f"{p}/a/x", b"both", qos=1)
    # One copy with both identifiers, or one copy per subscription with its own identifier [MQTT-3.3.4-4/5].
    m = sub.expect_publish()
    sub.ack(m)
    ids = list(m.props.get("SubscriptionIdentifier", []))
    if sorted(ids) != [7, 268_435_455]:
        m2 = sub.expect_publish(what="second copy")
        sub.ack(m2)
        ids2 = m2.props.get("SubscriptionIdentifier", [])
        assert sorted([*ids, *ids2]) == [7, 268_435_455] and len(ids) == len(ids2) == 1, (m, m2)
    sub.expect_nothing(0.3)

    pub.publish(f"{p}/only", b"one", qos=1, packet_id=2)
    m = sub.expect_publish()
    sub.ack(m)
    assert m.props.get("SubscriptionIdentifier") == [7], m

    pub.publish(f"{p}/plain", b"none", qos=1, packet_id=3)
    # Matches '#' (id 7) and 'plain' (no id): one copy carrying [7], or two copies, [7] and none.
    got = [sub.expect_publish()]
    sub.ack(got[0])
    try:
        got.append(sub.expect_publish(timeout=QUIET))
        sub.ack(got[1])
    except AssertionError:
        pass
    assert sorted(tuple(m.props.get("SubscriptionIdentifier", [])) for m in got) in ([(7,)], [(), (7,)]), got
    sub.disconnect()
    pub.disconnect()


def test_02_v5_subscription_identifier_paho(mqtt_broker):
    topic = unique("sip/")
    c = Paho(mqtt_broker.port, unique("sip"), version=5)
    c.connect()
    c.subscribe(topic, 1, props={"SubscriptionIdentifier": 42})
    c.publish(topic, b"x", qos=1)
    (m,) = c.expect(1)
    assert m.props.get("SubscriptionIdentifier") == [42], m
    c.disconnect()


def test_02_v5_shared_subscription(mqtt_broker):
    """Two members of `$share/g/...` split 20 messages between them (each gets some, none twice, none lost); a
    normal subscriber and a member of another group each get all 20."""
    topic = unique("sh/")
    members = []
    for _ in range(2):
        m = Paho(mqtt_broker.port, unique("member"), version=5)
        ack = m.connect()
        assert ack[2].get("SharedSubscriptionAvailable", 1) == 1, "this test needs shared subscriptions"
        assert m.subscribe(f"$share/g1/{topic}", 1) == [1]
        members.append(m)
    loner = Paho(mqtt_broker.port, unique("g2"), version=5)
    loner.connect()
    loner.subscribe(f"$share/g2/{topic}", 1)
    plain = Paho(mqtt_broker.port, unique("plain"), version=5)
    plain.connect()
    plain.subscribe(topic, 1)
    pub = Paho(mqtt_broker.port, unique("shpub"), version=5)
    pub.connect()
    want = [b"m%02d" % i for i in range(20)]
    for payload in want:
        pub.publish(topic, payload, qos=1)

    assert [m.payload for m in plain.expect(20)] == want
    assert [m.payload for m in loner.expect(20)] == want
    got = [members[0].drain(), members[1].drain()]
    payloads = [[m.payload for m in g] for g in got]
    assert sorted(payloads[0] + payloads[1]) == want, f"shared group lost or duplicated messages: {payloads}"
    assert payloads[0] and payloads[1], f"one member got everything: {[len(p) for p in payloads]}"
    for m in got[0] + got[1]:
        assert m.topic == topic, m
    for c in members + [loner, plain, pub]:
        c.disconnect()
