"""08 auth: password file (Mosquitto format), `allow_anonymous = false`, ACL file (Mosquitto format, `user`,
`topic read|write|readwrite|deny`, `pattern` with %u/%c), `reload` of both files, and `gatehouse passwd`.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from mqtt_helpers import (
    AGAINST_MOSQUITTO,
    CONNACK,
    QUIET,
    RC_NOT_AUTHORIZED,
    WAIT,
    MosquittoMQTT,
    MosquittoSub,
    Paho,
    RawClient,
    Settings,
    connect_packet,
    gatehouse_only,
    mosquitto_pub,
    parse_connack,
    passwd_file,
    unique,
)

V = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])

USERS = {"alice": "wonder land", "admin": "s3cr3t!", "bob": "hunter2"}

ACL = """\
# Gatehouse integration test ACL (Mosquitto format)
user alice
topic readwrite open/#
topic read ro/#
topic write wo/#
topic deny open/secret
pattern readwrite users/%u/#
pattern readwrite clients/%c/#

user admin
topic readwrite #

user bob
topic read open/#
"""


@pytest.fixture
def auth_files(tmp_path):
    pw = passwd_file(tmp_path / "passwd", USERS)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return pw, acl


@pytest.fixture
def auth_broker(make_mqtt_broker, auth_files):
    pw, acl = auth_files
    return make_mqtt_broker(allow_anonymous=False, password_file=pw, acl_file=acl)


def _login(port: int, version: int, user: str, client_id: str | None = None) -> RawClient:
    c = RawClient(port, version)
    c.connect(client_id or unique(user), username=user, password=USERS[user])
    return c


def _refused(port: int, version: int, **kwargs) -> int:
    """CONNECT with these credentials; returns the refusal code after checking the connection is then closed."""
    c = RawClient(port, version)
    c.send(connect_packet(unique("who"), version=version, **kwargs))
    p = c.expect(CONNACK)
    ack = parse_connack(p, version)
    assert ack.session_present is False, ack
    c.expect_closed()
    return ack.code


# ------------------------------------------------------------------------------------------------------------
# Authentication


@V
def test_08_password_users_connect_paho(auth_broker, version):
    for user, pw in USERS.items():
        c = Paho(auth_broker.port, unique(user), version=version, username=user, password=pw)
        code, _, _ = c.connect()
        assert code == 0
        c.disconnect()


@V
def test_08_password_users_connect_mosquitto_clients(auth_broker, version):
    topic = "open/" + unique("mc")
    s = MosquittoSub(auth_broker.port, [topic], version=version, qos=1, count=1,
                     extra=["-u", "bob", "-P", USERS["bob"]])
    try:
        s.wait_subscribed()
        mosquitto_pub(auth_broker.port, topic, b"hello", version=version, qos=1,
                      extra=["-u", "alice", "-P", USERS["alice"]])
        assert s.expect(1) == [(1, False, topic, b"hello")]
    finally:
        s.close()
    cp = mosquitto_pub(auth_broker.port, topic, b"x", version=version, extra=["-u", "alice", "-P", "nope"],
                       expect_rc=None)
    assert cp.returncode != 0, "mosquitto_pub with a wrong password succeeded"


@pytest.mark.parametrize(
    "creds",
    [("alice", "wrong"), ("nobody", "x"), ("alice", None), ("alice", "")],
    ids=["wrong-password", "unknown-user", "no-password", "empty-password"],
)
@V
def test_08_bad_credentials_refused(auth_broker, version, creds):
    user, pw = creds
    code = _refused(auth_broker.port, version, username=user, password=pw)
    allowed = {0x04, 0x05} if version == 4 else {0x86, 0x87}
    assert code in allowed, f"CONNACK 0x{code:02x}, expected one of {sorted(hex(a) for a in allowed)}"


@V
def test_08_anonymous_refused(auth_broker, version):
    code = _refused(auth_broker.port, version)
    allowed = {0x05, 0x04} if version == 4 else {0x87, 0x86}
    assert code in allowed, f"CONNACK 0x{code:02x}, expected one of {sorted(hex(a) for a in allowed)}"


@gatehouse_only
def test_08_listener_allow_anonymous_overrides_global(make_mqtt_broker, auth_files):
    """Gatehouse config: `listener.tcp.external.allow_anonymous = true` wins over the global `false`."""
    pw, acl = auth_files
    b = make_mqtt_broker(allow_anonymous=False, password_file=pw,
                         gatehouse_extra=["listener.tcp.external.allow_anonymous = true"])
    c = RawClient(b.port, 4)
    c.connect(unique("anon"))
    c.ping()
    c.disconnect()


# ------------------------------------------------------------------------------------------------------------
# Authorization


def _drain(c: RawClient) -> list[str]:
    topics = []
    while True:
        try:
            m = c.expect_publish(timeout=QUIET)
        except AssertionError:
            return topics
        c.ack(m)
        topics.append(m.topic)


@V
def test_08_acl_publish(auth_broker, version):
    """alice's publishes reach subscribers only where she may write; v5 QoS 1 denials get PUBACK 0x87 (3.1.1 has
    no way to say so: a normal PUBACK, the message is dropped)."""
    cid = unique("alicepub")
    admin = _login(auth_broker.port, version, "admin")
    assert admin.subscribe("#", 1) == [1]
    _drain(admin)  # anything retained from elsewhere
    alice = _login(auth_broker.port, version, "alice", client_id=cid)
    cases = [
        ("open/a", True), ("wo/a", True), ("users/alice/x", True), (f"clients/{cid}/x", True),
        ("ro/a", False), ("users/bob/x", False), ("other/x", False), ("open/secret", False),
        (f"clients/{cid}x/y", False),
    ]
    for i, (topic, allowed) in enumerate(cases, start=1):
        ack = alice.publish(topic, b"from alice", qos=1, packet_id=i)
        want = 0 if allowed or version == 4 else RC_NOT_AUTHORIZED
        assert ack.reason == want, f"PUBACK for {topic}: 0x{ack.reason:02x}, expected 0x{want:02x}"
    got = _drain(admin)
    assert got == [t for t, allowed in cases if allowed], f"admin received {got}"
    alice.disconnect()
    admin.disconnect()


@V
def test_08_acl_read_denied_not_delivered(auth_broker, version):
    """Messages on topics alice may not read never reach her (whatever the SUBACK said). Exact filters only: for a
    wildcard filter that covers both readable and unreadable topics (`open/#` with `open/secret` denied),
    Mosquitto grants and filters each message, Gatehouse refuses the subscription."""
    alice = _login(auth_broker.port, version, "alice")
    alice.subscribe([("ro/a", 1), ("wo/a", 1), ("users/bob/x", 1), ("users/alice/x", 1), ("open/a", 1),
                     ("open/secret", 1)])
    admin = _login(auth_broker.port, version, "admin")
    topics = ["ro/a", "wo/a", "users/bob/x", "users/alice/x", "open/a", "open/secret"]
    for i, t in enumerate(topics, start=1):
        admin.publish(t, b"from admin", qos=1, packet_id=i)
    got = _drain(alice)
    assert got == ["ro/a", "users/alice/x", "open/a"], got
    alice.disconnect()
    admin.disconnect()


@V
@gatehouse_only
def test_08_acl_subscribe_denied_suback(auth_broker, version):
    """Gatehouse refuses a subscription whose filter alice may not read: SUBACK 0x80 (3.1.1) / 0x87 (v5).
    Mosquitto's acl_file never refuses a SUBSCRIBE; it only filters deliveries (checked by the test above)."""
    alice = _login(auth_broker.port, version, "alice")
    denied = 0x80 if version == 4 else RC_NOT_AUTHORIZED
    codes = alice.subscribe([("open/a", 1), ("wo/a", 1), ("users/bob/x", 1), ("other/t", 1), ("ro/a", 2)])
    assert codes == [1, denied, denied, denied, 2], codes
    alice.disconnect()


def _wait_for(predicate, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_08_reload_picks_up_acl_change(auth_broker, auth_files):
    _, acl = auth_files
    port = auth_broker.port

    def puback_for(topic: str) -> int:
        """The PUBACK reason code; success is 0x00, or 0x10 (No matching subscribers) as Mosquitto says."""
        c = _login(port, 5, "alice")
        code = c.publish(topic, b"x", qos=1).reason
        c.disconnect()
        return 0 if code == 0x10 else code

    assert puback_for("later/x") == RC_NOT_AUTHORIZED
    acl.write_text(ACL.replace("user alice\n", "user alice\ntopic readwrite later/#\n"))
    auth_broker.reload()
    _wait_for(lambda: puback_for("later/x") == 0, "the new ACL rule to apply")
    # And a rule taken away applies too.
    acl.write_text(ACL.replace("topic readwrite open/#\n", ""))
    auth_broker.reload()
    _wait_for(lambda: puback_for("open/a") == RC_NOT_AUTHORIZED, "the removed ACL rule to stop applying")


def test_08_reload_picks_up_password_change(auth_broker, auth_files):
    pw, _ = auth_files
    port = auth_broker.port
    assert _refused(port, 5, username="carol", password="new one") in (0x86, 0x87)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "carol", "new one"], check=True, capture_output=True,
                   timeout=10)
    subprocess.run(["mosquitto_passwd", "-D", str(pw), "bob"], check=True, capture_output=True, timeout=10)
    auth_broker.reload()

    def carol_ok() -> bool:
        c = RawClient(port, 5)
        c.send(connect_packet(unique("carol"), version=5, username="carol", password="new one"))
        ok = parse_connack(c.expect(CONNACK), 5).code == 0
        c.close()
        return ok

    _wait_for(carol_ok, "carol to be accepted after reload")
    assert _refused(port, 5, username="bob", password=USERS["bob"]) in (0x86, 0x87), "deleted user still accepted"


@gatehouse_only
def test_08_gatehouse_passwd_cli(request, make_mqtt_broker, tmp_path):
    """`gatehouse passwd -c FILE USER PASS` creates, `gatehouse passwd FILE USER PASS` adds; Mosquitto and
    Gatehouse both accept the file (and refuse a wrong password)."""
    binary = request.getfixturevalue("gatehouse_bin")
    pw = tmp_path / "made-by-gatehouse"

    def run(*args: str) -> None:
        cp = subprocess.run([str(binary), "passwd", *args], capture_output=True, text=True, timeout=15,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, f"gatehouse passwd {' '.join(args)} -> {cp.returncode}: {cp.stderr}"

    run("-c", str(pw), "dora", "explorer")
    run(str(pw), "eve", "p@ss:word with spaces")
    run(str(pw), "dora", "explorer2")  # replaces
    lines = pw.read_text().splitlines()
    assert [l.split(":", 1)[0] for l in lines if l.strip()] == ["dora", "eve"], lines

    def check(port: int) -> None:
        for user, password in (("dora", "explorer2"), ("eve", "p@ss:word with spaces")):
            c = RawClient(port, 5)
            c.connect(unique(user), username=user, password=password)
            c.disconnect()
        assert _refused(port, 4, username="dora", password="explorer") in (0x04, 0x05)

    mosq = MosquittoMQTT("mosquitto-check", Settings(allow_anonymous=False, password_file=pw))
    try:
        mosq.start()
        check(mosq.port)
    finally:
        mosq.cleanup()
        mosq.remove_dir()
    check(make_mqtt_broker(allow_anonymous=False, password_file=pw).port)
