"""04 retain: set, replace and delete retained messages; retained delivery on subscribe (retain flag set, QoS
downgraded, wildcards, not to shared subscriptions); the retain flag on live deliveries; MQTT 5 retain handling and
retain-as-published; `mqtt.retain_available = false`.
"""

from __future__ import annotations

import pytest

from mqtt_helpers import (
    QUIET,
    RC_RETAIN_NOT_SUPPORTED,
    MosquittoSub,
    Paho,
    RawClient,
    expect_closed_after_error,
    mosquitto_deviates,
    mosquitto_pub,
    publish_packet,
    sub_options,
    unique,
)

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def _fresh_subscriber(port: int, version: int, topic_filter: str, qos: int = 1, options: int | None = None) -> RawClient:
    c = RawClient(port, version)
    c.connect(unique("rsub"))
    opts = qos if options is None else options
    assert c.subscribe([(topic_filter, opts)]) == [qos]
    return c


@V
def test_04_retained_set_replace_delete(mqtt_broker, version):
    topic = unique("ret/")
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("rpub"))
    live = _fresh_subscriber(mqtt_broker.port, version, topic)

    pub.publish(topic, b"\x00first\x00", qos=1, retain=True)
    m = live.expect_publish()
    live.ack(m)
    assert (m.payload, m.retain) == (b"\x00first\x00", False), "live delivery of a retained publish: retain 0"

    s = _fresh_subscriber(mqtt_broker.port, version, topic)
    m = s.expect_publish(what="retained message on subscribe")
    s.ack(m)
    assert (m.topic, m.payload, m.retain) == (topic, b"\x00first\x00", True), m
    s.expect_nothing(0.3)
    s.disconnect()

    pub.publish(topic, b"second", qos=1, retain=True, packet_id=2)
    live.ack(live.expect_publish())
    s = _fresh_subscriber(mqtt_broker.port, version, topic)
    m = s.expect_publish()
    s.ack(m)
    assert (m.payload, m.retain) == (b"second", True), "the retained message was not replaced"
    s.expect_nothing(0.3)
    s.disconnect()

    # An empty retained publish deletes it, and is itself delivered to current subscribers [MQTT-3.3.1-10].
    pub.publish(topic, b"", qos=1, retain=True, packet_id=3)
    m = live.expect_publish(what="the empty retained publish, to the existing subscriber")
    live.ack(m)
    assert m.payload == b"", m
    s = _fresh_subscriber(mqtt_broker.port, version, topic)
    s.expect_nothing()
    for c in (s, live, pub):
        c.disconnect()


@V
def test_04_retained_qos_is_downgraded(mqtt_broker, version):
    t2, t0 = unique("rq/"), unique("rq/")
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("rqpub"))
    pub.publish(t2, b"two", qos=2, retain=True)
    pub.publish(t0, b"zero", qos=0, retain=True)
    pub.ping()  # the QoS 0 publish has been processed
    s = _fresh_subscriber(mqtt_broker.port, version, t2, qos=1)
    m = s.expect_publish()
    assert (m.payload, m.qos, m.retain) == (b"two", 1, True), m
    s.ack(m)
    s = _fresh_subscriber(mqtt_broker.port, version, t0, qos=2)
    m = s.expect_publish()
    assert (m.payload, m.qos, m.retain) == (b"zero", 0, True), m
    for c in (s, pub):
        c.disconnect()


@V
def test_04_retained_with_wildcards(mqtt_broker, version):
    p = unique("rw")
    pub = RawClient(mqtt_broker.port, version)
    pub.connect(unique("rwpub"))
    retained = {f"{p}/a": b"A", f"{p}/b/c": b"BC", f"{p}/d": b"D"}
    for i, (t, payload) in enumerate(retained.items(), start=1):
        pub.publish(t, payload, qos=1, retain=True, packet_id=i)
    pub.publish(f"{p}/e", b"not retained", qos=1, packet_id=9)

    def collect(c: RawClient) -> dict[str, bytes]:
        got = {}
        while True:
            try:
                m = c.expect_publish(timeout=QUIET)
            except AssertionError:
                return got
            c.ack(m)
            assert m.retain, m
            got[m.topic] = m.payload

    s = _fresh_subscriber(mqtt_broker.port, version, f"{p}/#")
    assert collect(s) == retained
    s2 = _fresh_subscriber(mqtt_broker.port, version, f"{p}/+")
    assert collect(s2) == {f"{p}/a": b"A", f"{p}/d": b"D"}
    s3 = _fresh_subscriber(mqtt_broker.port, version, "#")
    assert {t: v for t, v in collect(s3).items() if t.startswith(p)} == retained
    for c in (s, s2, s3, pub):
        c.disconnect()


def test_04_dollar_topics_retained_not_matched_by_hash(mqtt_broker):
    t = f"$r{unique('x')}/a"
    pub = RawClient(mqtt_broker.port, 4)
    pub.connect(unique("dpub"))
    pub.publish(t, b"dollar", qos=1, retain=True)
    s = _fresh_subscriber(mqtt_broker.port, 4, "#")
    while True:
        try:
            m = s.expect_publish(timeout=QUIET)
        except AssertionError:
            break
        s.ack(m)
        assert not m.topic.startswith("$"), f"'#' got retained {m.topic}"
    s2 = _fresh_subscriber(mqtt_broker.port, 4, t.split("/")[0] + "/#")
    m = s2.expect_publish()
    assert (m.topic, m.payload, m.retain) == (t, b"dollar", True)
    for c in (s, s2, pub):
        c.disconnect()


@V
def test_04_paho_retained(mqtt_broker, version):
    topic = unique("pret/")
    pub = Paho(mqtt_broker.port, unique("prp"), version=version)
    pub.connect()
    pub.publish(topic, b"\x00\xffretained", qos=1, retain=True)
    sub = Paho(mqtt_broker.port, unique("prs"), version=version)
    sub.connect()
    sub.subscribe(topic, 1)
    (m,) = sub.expect(1)
    assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"\x00\xffretained", True, 1), m
    pub.publish(topic, b"", qos=1, retain=True)
    (m,) = sub.expect(1)
    assert (m.payload, m.retain) == (b"", False), m
    sub.disconnect()
    pub.disconnect()


@V
def test_04_mosquitto_clients_retained(mqtt_broker, version, tmp_path):
    topic = unique("mret/")
    payload = bytes(range(200)) + b"\x00"
    mosquitto_pub(mqtt_broker.port, topic, payload, version=version, qos=1, retain=True, tmp=tmp_path)
    s = MosquittoSub(mqtt_broker.port, [topic], version=version, qos=1, count=1)
    try:
        assert s.expect(1) == [(1, True, topic, payload)]
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------------------
# MQTT 5


def test_04_v5_retain_handling(mqtt_broker):
    """0: retained messages on every SUBSCRIBE; 1: only if the subscription did not exist; 2: never."""
    topic = unique("rh/")
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("rhpub"))
    pub.publish(topic, b"kept", qos=1, retain=True)
    for rh, want_first, want_again in ((0, True, True), (1, True, False), (2, False, False)):
        c = RawClient(mqtt_broker.port, 5)
        c.connect(unique(f"rh{rh}"))
        for attempt, want in (("first", want_first), ("again", want_again)):
            assert c.subscribe([(topic, sub_options(1, rh=rh))], packet_id=1 if attempt == "first" else 2) == [1]
            if want:
                m = c.expect_publish(what=f"retain handling {rh}, {attempt} subscribe")
                c.ack(m)
                assert (m.payload, m.retain) == (b"kept", True), m
            else:
                c.expect_nothing(0.4)
        c.disconnect()
    pub.disconnect()


def test_04_v5_retain_as_published(mqtt_broker):
    """Live deliveries keep the publisher's retain flag only with Retain As Published; retained messages sent on
    subscribe always carry retain 1."""
    topic = unique("rap/")
    rap = RawClient(mqtt_broker.port, 5)
    rap.connect(unique("rap1"))
    assert rap.subscribe([(topic, sub_options(1, rap=True))]) == [1]
    plain = RawClient(mqtt_broker.port, 5)
    plain.connect(unique("rap0"))
    assert plain.subscribe([(topic, sub_options(1))]) == [1]
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("rappub"))
    pub.publish(topic, b"r", qos=1, retain=True)
    pub.publish(topic, b"n", qos=1, retain=False, packet_id=2)
    got_rap = [rap.expect_publish(), rap.expect_publish()]
    got_plain = [plain.expect_publish(), plain.expect_publish()]
    assert [(m.payload, m.retain) for m in got_rap] == [(b"r", True), (b"n", False)], got_rap
    assert [(m.payload, m.retain) for m in got_plain] == [(b"r", False), (b"n", False)], got_plain
    for m in got_rap:
        rap.ack(m)
    for m in got_plain:
        plain.ack(m)
    late = RawClient(mqtt_broker.port, 5)
    late.connect(unique("raplate"))
    late.subscribe([(topic, sub_options(1, rap=False))])
    m = late.expect_publish()
    assert (m.payload, m.retain) == (b"r", True), m
    for c in (rap, plain, pub, late):
        c.disconnect()


def test_04_v5_paho_retain_options(mqtt_broker):
    topic = unique("prh/")
    pub = Paho(mqtt_broker.port, unique("prhp"), version=5)
    pub.connect()
    pub.publish(topic, b"kept", qos=1, retain=True)
    never = Paho(mqtt_broker.port, unique("prh2"), version=5)
    never.connect()
    never.subscribe(topic, 1, rh=2, rap=True)
    never.expect_nothing(0.4)
    pub.publish(topic, b"live", qos=1, retain=True)
    (m,) = never.expect(1)
    assert (m.payload, m.retain) == (b"live", True), m
    never.disconnect()
    pub.disconnect()


@mosquitto_deviates("it sends retained messages when a shared subscription is made")
def test_04_v5_no_retained_for_shared_subscriptions(mqtt_broker):
    """MQTT 5 section 4.8.2: "Retained messages are not sent to the Session when it establishes a new Shared
    Subscription"."""
    topic = unique("rsh/")
    pub = RawClient(mqtt_broker.port, 5)
    pub.connect(unique("rshpub"))
    pub.publish(topic, b"kept", qos=1, retain=True)
    c = RawClient(mqtt_broker.port, 5)
    c.connect(unique("rshsub"))
    assert c.subscribe(f"$share/g/{topic}", 1) == [1]
    c.expect_nothing()
    pub.publish(topic, b"live", qos=1, packet_id=2)
    m = c.expect_publish()
    assert m.payload == b"live"
    c.ack(m)
    c.disconnect()
    pub.disconnect()


def test_04_v5_retain_not_available(make_mqtt_broker):
    """`mqtt.retain_available = false`: CONNACK says Retain Available 0; a retained PUBLISH gets DISCONNECT 0x9A
    (MQTT 5 section 3.2.2.3.5); non-retained publishing works."""
    b = make_mqtt_broker(retain_available=False)
    c = RawClient(b.port, 5)
    ack = c.connect(unique("noret"))
    assert ack.props.get("RetainAvailable") == 0, ack
    c.publish(unique("nr/"), b"fine", qos=1)
    c.send(publish_packet("nr/x", b"retained", qos=1, retain=True, version=5))
    reason = expect_closed_after_error(c, [RC_RETAIN_NOT_SUPPORTED], what="retained publish")
    assert reason == RC_RETAIN_NOT_SUPPORTED, "expected DISCONNECT 0x9A before the close"
