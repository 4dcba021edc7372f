"""A TLS client that sends its handshake one TLS record at a time and can stop before any record (13 gate straddle,
15 adversarial).

`TLSStepper` runs Python's `ssl.SSLObject` over two `ssl.MemoryBIO`s and a plain loopback socket. Everything the
TLS engine wants to send is cut at record boundaries (5-byte header: type, version, length) and queued; the test
decides when each record goes out: `send_next()` / `send(n)` by hand, or `run(pause_before=k, pause_for=t)`, which
holds record number k (0 = the first ClientHello record, counted over the whole connection) for t seconds, or
calls `on_pause` there, e.g. to revoke the client's certificate while its last flight waits.

It works for TLS 1.2 and 1.3, with a client certificate, optionally resuming a session (`session=` an earlier
stepper's `session`; in TLS 1.3 that is only usable after the server's NewSessionTicket was read, which `run`
does before it returns a CONNACK; a session belongs to the `ssl.SSLContext` it came from, so `client_context`
hands out one context per certificate and version, kept until `release_contexts`). After the handshake it speaks MQTT 3.1.1 or 5 with the packet
builders and parsers of `mqtt_helpers`.

It reports what happened, each with the monotonic time it happened: whether the handshake completed on the client
side (TLS 1.3: the client is done as soon as it has written its Finished, before the server checked its
certificate), the TLS alert received (number and name, e.g. 44 certificate_revoked, from OpenSSL's message callback
and, as a fallback, the `SSLError` reason), whether a CONNACK arrived and its code, whether the server sent
close_notify or closed the TCP connection, the server's handshake messages (a TLS 1.3 NewSessionTicket comes only
after the client certificate passed). Every wait is bounded.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mqtt_helpers as mh
import pki

WAIT = 5.0
HEADER = 5
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
    120: "no_application_protocol",
}
_ALERT_BY_NAME = {name.upper(): number for number, name in ALERTS.items()}
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def split_records(buffer: bytearray) -> list[bytes]:
    """Take every complete TLS record off the front of `buffer`; an incomplete one stays."""
    records = []
    while len(buffer) >= HEADER:
        length = int.from_bytes(buffer[3:5], "big")
        if len(buffer) < HEADER + length:
            break
        records.append(bytes(buffer[: HEADER + length]))
        del buffer[: HEADER + length]
    return records


def alert_number(error: ssl.SSLError) -> int | None:
    """The alert number in an SSLError's reason (SSLV3_ALERT_CERTIFICATE_REVOKED → 44), if it names one."""
    reason = (getattr(error, "reason", None) or "").upper()
    for prefix in ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_", "TLSV1_"):
        if reason.startswith(prefix):
            return _ALERT_BY_NAME.get(reason[len(prefix):])
    return None


_contexts: dict[tuple[str, str, str | None], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def client_context(cafile: Path, cert: pki.Cert | None, version: str | None) -> ssl.SSLContext:
    """One client context per (CA file, certificate, version), so that sessions can be resumed (Python refuses a
    session from another context). The message callback reports to the stepper that owns each connection."""
    key = (str(cafile), str(cert.cert) if cert else "", version)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(str(cafile))
            if cert is not None:
                ctx.load_cert_chain(str(cert.cert), str(cert.key))
            if version is not None:
                ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
            ctx._msg_callback = _message_callback  # noqa: SLF001 - the only way to see alerts as they arrive
            _contexts[key] = ctx
        return ctx


def release_contexts(cert: pki.Cert) -> None:
    """Forget the contexts of a certificate no longer used (connections and sessions made with them keep theirs)."""
    with _contexts_lock:
        for key in [k for k in _contexts if k[1] == str(cert.cert)]:
            del _contexts[key]


def _message_callback(conn, direction, version, content_type, msg_type, data) -> None:
    stepper = getattr(conn, "_stepper", None)
    if stepper is not None:
        stepper._on_message(direction, int(content_type), msg_type, data)


@dataclass
class Record:
    index: int
    kind: str  # "handshake" (produced while driving the handshake) or "app"
    data: bytes
    label: str = ""  # the TLS message(s) it carries, when known (e.g. "Certificate", "Finished")
    sent_at: float | None = None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.data[0], str(self.data[0]))

    def __repr__(self) -> str:
        return f"#{self.index} {self.kind} {self.content_type} {len(self.data)}B {self.label}".rstrip()


@dataclass
class Event:
    at: float
    what: str


class TLSStepper:
    """See the module docstring. Not thread-safe: one thread drives one stepper."""

    def __init__(self, port: int, cafile: Path, cert: pki.Cert | None, version: str | None, *,
                 session: ssl.SSLSession | None = None, host: str = "127.0.0.1", server_hostname: str = "localhost",
                 name: str = "") -> None:
        self.port = port
        self.host = host
        self.version = version
        self.cert = cert
        self.name = name or (cert.name if cert else "anonymous")
        self.context = client_context(cafile, cert, version)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = self.context.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                         server_hostname=server_hostname, session=session)
        self.obj._stepper = self  # for the message callback
        self.offered_session = session is not None
        self.sock: socket.socket | None = None
        self.local_port: int | None = None
        self._out = bytearray()
        self.queue: list[Record] = []
        self.records: list[Record] = []  # every record, sent or queued
        self.sent = 0  # records sent
        self._pending_app: list[bytes] = []
        self._written: list[str] = []  # messages OpenSSL wrote since the last drain
        self.events: list[Event] = []
        self.t0 = time.monotonic()
        # Outcome
        self.handshake_done = False
        self.handshake_done_at: float | None = None
        self.alert: int | None = None
        self.alert_name: str | None = None
        self.alert_at: float | None = None
        self.error: str | None = None
        self.close_notify = False
        self.eof = False
        self.reset = False
        self.send_failed: str | None = None
        self.closed_at: float | None = None
        self.server_messages: list[str] = []
        self.plaintext = 0
        self.packets: list[tuple[float, mh.Packet]] = []
        self.connack: mh.Connack | None = None
        self.connack_at: float | None = None
        self.mqtt_version = 4
        self.disconnect_reason: int | None = None
        self.pings_sent: list[float] = []
        self.pongs: list[float] = []
        self._mqtt = _PacketBuffer()

    # ----- what happened

    @property
    def server_closed(self) -> bool:
        """The server ended the connection: close_notify, EOF, reset, or a send refused by the kernel (EPIPE)."""
        return self.close_notify or self.eof or self.reset or self.send_failed is not None

    @property
    def failed(self) -> bool:
        return self.alert is not None or self.error is not None or self.server_closed

    @property
    def handshake_records(self) -> int:
        return sum(1 for r in self.records if r.kind == "handshake")

    @property
    def last_handshake_record_sent_at(self) -> float | None:
        sent = [r.sent_at for r in self.records if r.kind == "handshake" and r.sent_at is not None]
        return max(sent) if sent else None

    @property
    def all_handshake_records_sent(self) -> bool:
        return self.handshake_done and all(r.sent_at is not None for r in self.records if r.kind == "handshake")

    @property
    def session(self) -> ssl.SSLSession | None:
        try:
            return self.obj.session
        except (ValueError, ssl.SSLError):
            return None

    @property
    def session_reused(self) -> bool:
        try:
            return bool(self.obj.session_reused)
        except (ValueError, ssl.SSLError):
            return False

    @property
    def ticket_received(self) -> bool:
        return "NEWSESSION_TICKET" in self.server_messages

    def summary(self) -> dict:
        return {
            "name": self.name, "version": self.version, "handshake_done": self.handshake_done,
            "resumed": self.session_reused, "alert": self.alert, "alert_name": self.alert_name, "error": self.error,
            "connack": None if self.connack is None else self.connack.code, "close_notify": self.close_notify,
            "eof": self.eof, "reset": self.reset, "send_failed": self.send_failed,
            "records": [repr(r) for r in self.records],
            "ticket": self.ticket_received,
        }

    def transcript(self) -> str:
        return "\n".join(f"  +{e.at - self.t0:7.3f}s {e.what}" for e in self.events)

    def __repr__(self) -> str:
        return f"TLSStepper({self.summary()})"

    def _event(self, what: str) -> None:
        self.events.append(Event(time.monotonic(), what))

    # ----- driving

    def connect(self, timeout: float = WAIT) -> "TLSStepper":
        """TCP connect, then let the TLS engine write its ClientHello (queued, not sent)."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.local_port = self.sock.getsockname()[1]
        self._event(f"tcp connected {self.sock.getsockname()} -> {self.port}")
        self._drive()
        return self

    def send_next(self) -> Record | None:
        """Send the next queued record (None if nothing is queued or the connection is gone)."""
        if not self.queue or self.sock is None or self.send_failed:
            return None
        record = self.queue.pop(0)
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(WAIT)
            self.sock.sendall(record.data)
        except OSError as e:
            # The server closed or reset the connection; what it sent before (an alert) is still read by poll.
            self.send_failed = repr(e)
            self.closed_at = self.closed_at or time.monotonic()
            self.queue.clear()
            self._event(f"send of {record!r} failed: {e!r}")
            return None
        finally:
            if self.sock is not None:
                self.sock.setblocking(False)
        record.sent_at = time.monotonic()
        self.sent += 1
        self._event(f"sent {record!r}")
        return record

    def send(self, n: int | None = None) -> list[Record]:
        """Send `n` queued records (all when None)."""
        out = []
        while self.queue and (n is None or len(out) < n):
            r = self.send_next()
            if r is None:
                break
            out.append(r)
        return out

    def poll(self, timeout: float) -> int:
        """Wait up to `timeout` for bytes from the server, feed them to the TLS engine and handle what they
        mean; returns how many bytes arrived (0 on timeout or when the connection is already gone)."""
        if self.sock is None or self.eof or self.reset:
            return 0
        try:
            readable, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return 0
        if not readable:
            return 0
        total = 0
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except (ConnectionResetError, OSError) as e:
                self._closed(f"recv failed: {e!r}", reset=True)
                break
            if not chunk:
                self._closed("EOF from the server")
                self.incoming.write_eof()
                break
            total += len(chunk)
            self.incoming.write(chunk)
        self._drive()
        return total

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        """Poll until `predicate()` holds, the connection is gone, or `timeout` passes; return `predicate()`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof or self.reset:
                break
            self.poll(min(left, 0.05))
        return predicate()

    def await_flight(self, timeout: float = WAIT) -> bool:
        """Read until the client has records to send (its next flight), its handshake completed, or it failed."""
        return self.wait(lambda: bool(self.queue) or self.handshake_done or self.failed, timeout)

    def hold(self, seconds: float) -> None:
        """Keep reading (nothing sent) for `seconds`: a pause that still notices the server closing."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.eof or self.reset:
                time.sleep(min(left, 0.05))
            else:
                self.poll(min(left, 0.05))

    def run(self, *, pause_before: int | None = None, pause_for: float = 0.0,
            on_pause: Callable[["TLSStepper"], None] | None = None, mqtt: dict | None = None,
            timeout: float = WAIT) -> "TLSStepper":
        """Connect and do the whole handshake record by record, pausing before record `pause_before` (counted
        from 0 over the connection) for `pause_for` seconds, or calling `on_pause(self)` there instead; then, with
        `mqtt` (keyword arguments of `mqtt_connect`), send CONNECT and wait for a CONNACK or the end.
        Returns self; read the outcome from its attributes."""
        if self.sock is None:
            self.connect(timeout)
        paused = False
        deadline = time.monotonic() + timeout + pause_for
        mqtt_sent = False
        while time.monotonic() < deadline:
            if self.queue:
                if not paused and pause_before is not None and self.sent == pause_before:
                    paused = True
                    self._event(f"pause before record #{self.sent}")
                    if on_pause is not None:
                        on_pause(self)
                        deadline = time.monotonic() + timeout
                    else:
                        self.hold(pause_for)
                    self._event("resume")
                self.send_next()
                continue
            if mqtt is not None and not mqtt_sent and self.handshake_done:
                mqtt_sent = True
                self.mqtt_connect(**mqtt)
                continue
            if self.failed:
                break
            if mqtt is not None and mqtt_sent and (self.connack is not None and self._session_settled()):
                break
            if mqtt is None and self.all_handshake_records_sent and self._session_settled():
                break
            self.poll(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.failed and not (self.eof or self.reset):
            self.wait(lambda: self.eof or self.reset, 1.0)  # an alert is followed by the close: record it too
        return self

    def _session_settled(self) -> bool:
        """TLS 1.2: the handshake is over. TLS 1.3: the server's ticket arrived (it is sent once the client
        certificate passed) — or a resumed session, where OpenSSL may send none."""
        if self.obj.version() != "TLSv1.3":
            return self.handshake_done
        return self.ticket_received or self.connack is not None

    # ----- MQTT

    def write_app(self, data: bytes) -> None:
        """Encrypt application data (queued behind the handshake in TLS 1.2 until it completes) and queue its
        records."""
        if not self.handshake_done:
            self._pending_app.append(data)
            return
        try:
            self.obj.write(data)
        except ssl.SSLError as e:
            self._failed(e)
        self._drain("app")

    def mqtt_connect(self, client_id: str, version: int = 4, keepalive: int = 30, clean: bool = True,
                     props: dict | None = None, send: bool = True) -> None:
        """Queue an MQTT CONNECT (MQTT 5: session expiry 0 unless `props` say otherwise); with `send`, send every
        queued record now."""
        self.mqtt_version = version
        if version == 5 and props is None:
            props = {"SessionExpiryInterval": 0}
        self.write_app(mh.connect_packet(client_id, version=version, clean=clean, keepalive=keepalive, props=props))
        self._event(f"CONNECT queued (MQTT {'5' if version == 5 else '3.1.1'}, client id {client_id})")
        if send:
            self.send()

    def ping(self) -> None:
        self.write_app(mh.PINGREQ_BYTES)
        self.pings_sent.append(time.monotonic())
        self.send()

    def wait_connack(self, timeout: float = WAIT) -> mh.Connack | None:
        self.wait(lambda: self.connack is not None or self.failed, timeout)
        return self.connack

    def disconnect(self) -> None:
        if self.handshake_done and not self.server_closed:
            self.write_app(mh.disconnect_packet(self.mqtt_version))
            self.send()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # ----- internals

    def _drive(self) -> None:
        if not self.handshake_done and self.error is None:
            try:
                self.obj.do_handshake()
                self.handshake_done = True
                self.handshake_done_at = time.monotonic()
                self._event(f"client handshake complete ({self.obj.version()}, resumed={self.session_reused})")
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                self._failed(e)
            self._drain("handshake")
            if self.handshake_done:
                pending, self._pending_app = self._pending_app, []
                for data in pending:
                    self.write_app(data)
        if self.handshake_done and not self.close_notify:
            while True:
                try:
                    data = self.obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.close_notify = True
                    self.closed_at = self.closed_at or time.monotonic()
                    self._event("close_notify from the server")
                    break
                except ssl.SSLError as e:
                    self._failed(e)
                    break
                if not data:
                    break
                self.plaintext += len(data)
                self._mqtt.buf += data
                self._take_packets()
            self._drain("app")

    def _drain(self, kind: str) -> None:
        pending = self.outgoing.pending
        if pending:
            self._out += self.outgoing.read(pending)
        new = split_records(self._out)
        labels = self._written if len(self._written) == len(new) else []
        self._written = []
        for i, data in enumerate(new):
            record = Record(len(self.records), kind, data, labels[i] if labels else "")
            self.records.append(record)
            self.queue.append(record)

    def _on_message(self, direction: str, content_type: int, msg_type, data: bytes) -> None:
        if content_type > 255:  # pseudo-types: record header, TLS 1.3 inner content type
            return
        name = getattr(msg_type, "name", str(msg_type))
        if content_type == 20:
            name = "ChangeCipherSpec"
        if direction == "write":
            if content_type in (20, 21, 22):
                self._written.append(name)
            return
        if content_type == 21 and len(data) >= 2:
            self.alert = data[1]
            self.alert_name = ALERTS.get(data[1], str(data[1]))
            self.alert_at = time.monotonic()
            self._event(f"alert received: {self.alert} {self.alert_name} (level {data[0]})")
        elif content_type == 22:
            self.server_messages.append(name)
            self._event(f"server handshake message {name}")

    def _failed(self, e: ssl.SSLError) -> None:
        if self.error is None:
            self.error = f"{type(e).__name__}: {e}"
            self._event(f"TLS error: {self.error}")
        if self.alert is None:
            number = alert_number(e)
            if number is not None:
                self.alert = number
                self.alert_name = ALERTS.get(number)
                self.alert_at = time.monotonic()

    def _closed(self, what: str, reset: bool = False) -> None:
        if reset:
            self.reset = True
        else:
            self.eof = True
        self.closed_at = self.closed_at or time.monotonic()
        self._event(what)

    def _take_packets(self) -> None:
        while True:
            p = mh.RawClient._parse_one(self._mqtt)  # noqa: SLF001 - the one MQTT framer, on our buffer
            if p is None:
                return
            now = time.monotonic()
            self.packets.append((now, p))
            if p.type == mh.CONNACK and self.connack is None:
                self.connack = mh.parse_connack(p, self.mqtt_version)
                self.connack_at = now
                self._event(f"CONNACK code {self.connack.code}")
            elif p.type == mh.PINGRESP:
                self.pongs.append(now)
            elif p.type == mh.DISCONNECT:
                self.disconnect_reason = mh.parse_disconnect(p).reason if self.mqtt_version == 5 else 0
                self._event(f"DISCONNECT from the server, reason 0x{self.disconnect_reason:02x}")
            else:
                self._event(f"MQTT {p.name}")


@dataclass
class _PacketBuffer:
    """What `mqtt_helpers.RawClient._parse_one` reads from: the decrypted bytes not yet framed."""

    buf: bytearray = field(default_factory=bytearray)
