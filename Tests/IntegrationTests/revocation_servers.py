"""Real revocation servers on loopback for the fetcher tests (09): a CRL distribution point and an OCSP responder.

- `CRLServer`: a threaded HTTP server on 127.0.0.1:<free port> that serves registered paths from files, re-read on
  every request (a test updates the file, e.g. after `openssl ca -revoke` + `-gencrl`). Answers carry an ETag (the
  sha256 of the body) and Last-Modified; conditional requests (If-None-Match, else If-Modified-Since) get 304.
  Every request is logged per path (method, status, request headers, response headers, body bytes sent, whether
  the body was sent completely). Per-path faults: `slow` (seconds before answering), `throttle` (bytes per second
  while sending the body), `status` (e.g. 500), `body` (served instead of the file, e.g. garbage) and `redirect`
  (302 to another path, or to itself for a loop, or to a full URL such as another server's). `host` binds another
  loopback address (e.g. 127.0.0.2, a second host for redirect tests).
- `OCSPResponder`: a threaded HTTP server on 127.0.0.1:<free port> taking RFC 6960 requests by POST
  (application/ocsp-request) or GET (/<url-encoded base64 DER>) and answering each with a response made by the real
  `openssl ocsp -index <CA index.txt> -CA <ca.pem> -rsigner <cert> -rkey <key> -reqin <req> -respout <resp>`
  (`openssl ocsp -port` binds every interface, hence this wrapper). Options choose the signer (the CA itself or a
  delegated responder, with or without id-kp-OCSPSigning), the validity (`-ndays` / `-nmin`), an expired response
  (openssl's response with its times moved into the past and re-signed by the same key with `openssl dgst`), an
  answer about another certificate, or a fixed response (e.g. `TRY_LATER`), extra certificates in the response
  (`-rother`), or a redirect elsewhere.

Both servers run in threads of the test process, bind loopback only and must be stopped (`stop()`); every wait in
them is bounded and interrupted by `stop()`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pki

# --------------------------------------------------------------------------------------------------------------
# CRL server


@dataclass
class Request:
    """One request as the server saw and answered it."""

    method: str
    path: str
    headers: dict[str, str]  # request headers, names lower-cased
    status: int = 0
    sent_headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0  # body bytes written so far (grows while a throttled body is being sent)
    complete: bool = False  # the whole answer was written
    error: str = ""  # why the answer was cut short (client went away, server stopped)
    at: float = field(default_factory=time.monotonic)


@dataclass
class Route:
    file: Path
    slow: float = 0.0
    throttle: int = 0
    status: int | None = None
    body: bytes | None = None
    redirect: str | None = None


class _Stopped(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CRLServer:
    """See the module docstring. `serve(path, file)` registers a path and returns its URL."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._log: dict[str, list[Request]] = {}
        self._stopping = threading.Event()
        self.host = host
        self._httpd = _Server((host, 0), self._handler_class())
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"crl-server-{self.port}", daemon=True)
        self._thread.start()
        self.stopped = False

    # ----- configuration

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def serve(self, path: str, file: Path, **faults) -> str:
        """Serve `file` (re-read per request) at `path`; `faults` as in `fault`. Returns the URL."""
        assert path.startswith("/"), path
        with self._lock:
            self._routes[path] = Route(file=Path(file))
            self._log.setdefault(path, [])
        if faults:
            self.fault(path, **faults)
        return self.url(path)

    def fault(self, path: str, *, slow: float | None = None, throttle: int | None = None,
              status: int | None = None, body: bytes | None = None, redirect: str | None = None) -> None:
        """Set faults of `path` (each given one replaces the previous value; `clear` removes all)."""
        with self._lock:
            r = self._routes[path]
            if slow is not None:
                r.slow = slow
            if throttle is not None:
                r.throttle = throttle
            if status is not None:
                r.status = status
            if body is not None:
                r.body = body
            if redirect is not None:
                r.redirect = redirect

    def clear(self, path: str) -> None:
        with self._lock:
            r = self._routes[path]
            r.slow, r.throttle, r.status, r.body, r.redirect = 0.0, 0, None, None, None

    def put(self, path: str, data: bytes) -> None:
        """Replace the content of the file served at `path` atomically (temp + rename), moving its mtime forward by
        at least a second so that Last-Modified changes too (it has a resolution of one second)."""
        with self._lock:
            file = self._routes[path].file
        old = file.stat().st_mtime if file.exists() else 0.0
        tmp = file.with_name(f".{file.name}.tmp.{os.getpid()}")
        tmp.write_bytes(data)
        t = max(time.time(), old + 1.0)
        os.utime(tmp, (t, t))
        os.rename(tmp, file)

    # ----- what happened

    def requests(self, path: str) -> list[Request]:
        with self._lock:
            return list(self._log.get(path, []))

    def count(self, path: str) -> int:
        return len(self.requests(path))

    def statuses(self, path: str) -> list[int]:
        return [r.status for r in self.requests(path)]

    def describe(self) -> str:
        out = [f"CRLServer {self.host}:{self.port}"]
        with self._lock:
            for path, reqs in self._log.items():
                for r in reqs:
                    cond = {k: v for k, v in r.headers.items() if k.startswith("if-")}
                    out.append(f"  {r.method} {path} -> {r.status} body={r.body_bytes} complete={r.complete} "
                               f"{cond} {r.error}")
        return "\n".join(out)

    def stop(self) -> None:
        """Stop accepting (the port then refuses connections) and cut answers in progress."""
        if self.stopped:
            return
        self.stopped = True
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # ----- the handler

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_HEAD(self):
                self._answer(head=True)

            def do_GET(self):
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                path = urllib.parse.urlsplit(self.path).path
                rec = Request(self.command, path, {k.lower(): v for k, v in self.headers.items()})
                with server._lock:
                    route = server._routes.get(path)
                    route = Route(**vars(route)) if route is not None else None
                    server._log.setdefault(path, []).append(rec)
                self.close_connection = True
                try:
                    self._serve(rec, route, head)
                    rec.complete = True
                except _Stopped:
                    rec.error = "server stopped"
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
                    rec.error = f"client went away: {e!r}"

            def _send(self, rec: Request, status: int, headers: dict[str, str], body: bytes = b"",
                      throttle: int = 0) -> None:
                headers = {**headers, "Date": self.date_time_string(), "Content-Length": str(len(body)),
                           "Connection": "close"}
                self.send_response_only(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                rec.status, rec.sent_headers = status, headers
                if not body:
                    self.wfile.flush()
                    return
                if throttle <= 0:
                    self.wfile.write(body)
                    rec.body_bytes = len(body)
                    self.wfile.flush()
                    return
                tick = 0.05
                chunk = max(1, int(throttle * tick))
                for i in range(0, len(body), chunk):
                    if server._stopping.is_set():
                        raise _Stopped()
                    self.wfile.write(body[i:i + chunk])
                    self.wfile.flush()
                    rec.body_bytes = i + len(body[i:i + chunk])
                    if server._stopping.wait(tick):
                        raise _Stopped()

            def _serve(self, rec: Request, route: Route | None, head: bool) -> None:
                if route is None:
                    self._send(rec, 404, {"Content-Type": "text/plain"}, b"no such path\n")
                    return
                if route.slow > 0 and server._stopping.wait(route.slow):
                    raise _Stopped()
                if route.redirect is not None:
                    target = route.redirect if "://" in route.redirect else server.url(route.redirect)
                    self._send(rec, 302, {"Location": target}, b"")
                    return
                if route.status is not None and route.status != 200:
                    self._send(rec, route.status, {"Content-Type": "text/plain"},
                               f"fault injected: {route.status}\n".encode())
                    return
                if route.body is not None:
                    data, mtime = route.body, time.time()
                else:
                    try:
                        data, mtime = route.file.read_bytes(), route.file.stat().st_mtime
                    except FileNotFoundError:
                        self._send(rec, 404, {"Content-Type": "text/plain"}, b"file gone\n")
                        return
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                headers = {"Content-Type": "application/pkix-crl", "ETag": etag,
                           "Last-Modified": email.utils.formatdate(int(mtime), usegmt=True)}
                if self._not_modified(etag, int(mtime)):
                    self._send(rec, 304, {"ETag": etag, "Last-Modified": headers["Last-Modified"]})
                    return
                self._send(rec, 200, headers, b"" if head else data, route.throttle)

            def _not_modified(self, etag: str, mtime: int) -> bool:
                inm = self.headers.get("If-None-Match")
                if inm is not None:  # RFC 9110 13.2.2: If-None-Match wins, If-Modified-Since is then ignored
                    tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
                    return "*" in tags or etag in tags
                ims = self.headers.get("If-Modified-Since")
                if ims is not None:
                    try:
                        since = email.utils.parsedate_to_datetime(ims).timestamp()
                    except (TypeError, ValueError):
                        return False
                    return mtime <= since
                return False

        return Handler


# --------------------------------------------------------------------------------------------------------------
# DER, just enough to move the times of an OCSP response (tag, length, contents; definite lengths only)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(tag, start of contents, end of contents, end of element) of the element at `pos`."""
    tag = data[pos]
    n = data[pos + 1]
    if n < 0x80:
        start, length = pos + 2, n
    else:
        k = n & 0x7F
        start, length = pos + 2 + k, int.from_bytes(data[pos + 2:pos + 2 + k], "big")
    return tag, start, start + length, start + length


def _children(data: bytes, start: int, end: int) -> list[bytes]:
    out, pos = [], start
    while pos < end:
        _, _, _, nxt = _read_tlv(data, pos)
        out.append(data[pos:nxt])
        pos = nxt
    return out


def _generalized(t: datetime) -> bytes:
    return t.astimezone(timezone.utc).strftime("%Y%m%d%H%M%SZ").encode()


def expire_ocsp_response(der: bytes, signer_key: Path, workdir: Path) -> bytes:
    """`der` with producedAt and thisUpdate two hours ago and nextUpdate one hour ago (see `retime_ocsp_response`)."""
    now = datetime.now(timezone.utc)
    return retime_ocsp_response(der, signer_key, workdir, now - timedelta(hours=2), now - timedelta(hours=1))


def retime_ocsp_response(der: bytes, signer_key: Path, workdir: Path, this_update: datetime,
                         next_update: datetime) -> bytes:
    """`der` (a successful response made by `openssl ocsp`) with producedAt and thisUpdate set to `this_update` and
    nextUpdate to `next_update`, re-signed over the new tbsResponseData with `signer_key` by `openssl dgst -sha256
    -sign` (ECDSA with SHA-256, the signature algorithm openssl ocsp used for an EC key). Everything else (CertID,
    status, nonce, responder id, included certificates) is kept."""
    # OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT SEQUENCE {
    #     responseType OID, response OCTET STRING (BasicOCSPResponse) } }
    _, s, e, _ = _read_tlv(der, 0)
    status, rbytes = _children(der, s, e)
    _, s, e, _ = _read_tlv(rbytes, 0)  # [0]
    _, s, e, _ = _read_tlv(rbytes, s)  # SEQUENCE
    rtype, octets = _children(rbytes, s, e)
    _, s, e, _ = _read_tlv(octets, 0)
    basic = octets[s:e]
    # BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING, [0] certs }
    _, s, e, _ = _read_tlv(basic, 0)
    tbs, alg, _sig, *certs = _children(basic, s, e)
    assert b"\x2a\x86\x48\xce\x3d\x04\x03\x02" in alg, "expected ecdsa-with-SHA256 (an EC signer)"
    # The three GeneralizedTimes of tbsResponseData (producedAt, thisUpdate, nextUpdate) all have 15 characters:
    # replacing them keeps every length.
    times = [_generalized(this_update), _generalized(this_update), _generalized(next_update)]
    out, pos, replaced = bytearray(tbs), 0, 0
    while True:
        i = tbs.find(b"\x18\x0f", pos)
        if i < 0:
            break
        value = tbs[i + 2:i + 17]
        if len(value) == 15 and value[:14].isdigit() and value.endswith(b"Z") and replaced < len(times):
            out[i + 2:i + 17] = times[replaced]
            replaced += 1
        pos = i + 2
    assert replaced == 3, f"expected producedAt, thisUpdate and nextUpdate in the response, replaced {replaced}"
    tbs = bytes(out)
    fd, name = tempfile.mkstemp(dir=workdir, prefix="tbs-", suffix=".der")
    os.close(fd)
    try:
        Path(name).write_bytes(tbs)
        sig = pki.openssl("dgst", "-sha256", "-sign", str(signer_key), name).stdout
    finally:
        os.unlink(name)
    basic = _tlv(0x30, tbs + alg + _tlv(0x03, b"\x00" + sig) + b"".join(certs))
    return _tlv(0x30, status + _tlv(0xA0, _tlv(0x30, rtype + _tlv(0x04, basic))))


# OCSPResponse { responseStatus tryLater (3) } without responseBytes: what a busy responder answers. `openssl ocsp`
# never makes one; `openssl ocsp -respin ... -resp_text` reads it as "OCSP Response Status: tryLater (0x3)".
TRY_LATER = bytes.fromhex("30030a0103")


# --------------------------------------------------------------------------------------------------------------
# OCSP responder


@dataclass
class OCSPRequestRecord:
    method: str
    path: str
    request_bytes: int
    status: int = 0
    response_bytes: int = 0
    error: str = ""


class OCSPResponder:
    """`openssl ocsp` behind a loopback HTTP server (see the module docstring).

    The attributes may be changed while it runs: `signer` (a `pki.Cert`; None = the CA itself), `ndays`/`nmin`
    (validity of the answers; `nmin` wins when set), `expired` (answer with an expired response), `valid_for`
    (seconds: answer with a response whose nextUpdate is that far ahead, shorter than `openssl ocsp` can make), `about` (a
    certificate path: answer about that certificate, whatever was asked), `canned` (these bytes, whatever was
    asked), `index` (the CA database to answer from; default the CA's index.txt), `http_status` (answer that
    HTTP status instead), `allow_post` (False: POST gets 405 Method Not Allowed, only GET is answered), `rother`
    (a PEM file of extra certificates `openssl ocsp -rother` puts into the response next to the signer's),
    `redirect` (a URL: answer every request with 307 Temporary Redirect to it). `host` binds another loopback
    address.
    """

    def __init__(self, ca: pki.CA, workdir: Path, signer: pki.Cert | None = None, ndays: int = 1,
                 nmin: int | None = None, host: str = "127.0.0.1") -> None:
        self.ca = ca
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self.ndays = ndays
        self.nmin = nmin
        self.expired = False
        self.valid_for: float | None = None
        self.about: Path | None = None
        self.canned: bytes | None = None
        self.index: Path | None = None
        self.http_status: int | None = None
        self.allow_post = True
        self.rother: Path | None = None
        self.redirect: str | None = None
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.log: list[OCSPRequestRecord] = []
        self.stopped = False
        self._httpd = _Server((host, 0), self._handler_class())
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ocsp-responder-{self.port}", daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.log)

    def records(self) -> list[OCSPRequestRecord]:
        with self._lock:
            return list(self.log)

    def describe(self) -> str:
        return f"OCSPResponder {self.url}\n" + "\n".join(
            f"  {r.method} {r.path[:40]} req={r.request_bytes} -> {r.status} resp={r.response_bytes} {r.error}"
            for r in self.records())

    def respond(self, request: bytes) -> bytes:
        """The DER response to a DER request, made by `openssl ocsp` as configured now."""
        if self.canned is not None:
            return self.canned
        n = next(self._seq)
        req, resp = self.workdir / f"req-{n}.der", self.workdir / f"resp-{n}.der"
        if self.about is not None:
            pki.ocsp_request(self.ca.cert, self.about, req)
        else:
            req.write_bytes(request)
        signer_cert = self.signer.cert if self.signer is not None else self.ca.cert
        signer_key = self.signer.key if self.signer is not None else self.ca.key
        validity = ["-nmin", str(self.nmin)] if self.nmin is not None else ["-ndays", str(self.ndays)]
        other = ["-rother", str(self.rother)] if self.rother is not None else []
        try:
            pki.openssl("ocsp", "-index", str(self.index or self.ca.dir / "index.txt"), "-CA", str(self.ca.cert),
                        "-rsigner", str(signer_cert), "-rkey", str(signer_key), "-reqin", str(req),
                        "-respout", str(resp), *validity, *other)
            der = resp.read_bytes()
        finally:
            req.unlink(missing_ok=True)
            resp.unlink(missing_ok=True)
        if self.expired:
            der = expire_ocsp_response(der, signer_key, self.workdir)
        elif self.valid_for is not None:
            now = datetime.now(timezone.utc)
            der = retime_ocsp_response(der, signer_key, self.workdir, now - timedelta(seconds=1),
                                       now + timedelta(seconds=self.valid_for))
        return der

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self):
        responder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                self._answer("POST", body)

            def do_GET(self):
                raw = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
                try:
                    body = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
                except ValueError:
                    body = b""
                self._answer("GET", body)

            def _answer(self, method: str, body: bytes) -> None:
                rec = OCSPRequestRecord(method, self.path, len(body))
                with responder._lock:
                    responder.log.append(rec)
                self.close_connection = True
                status, ctype = 200, "application/ocsp-response"
                headers: dict[str, str] = {}
                try:
                    if responder.redirect is not None:
                        status, ctype, out = 307, "text/plain", b"moved\n"
                        headers["Location"] = responder.redirect
                    elif responder.http_status is not None:
                        status, ctype, out = responder.http_status, "text/plain", b"fault injected\n"
                    elif method == "POST" and not responder.allow_post:
                        status, ctype, out = 405, "text/plain", b"POST not allowed here, use GET\n"
                    elif not body:
                        status, ctype, out = 400, "text/plain", b"no OCSP request\n"
                    else:
                        out = responder.respond(body)
                except Exception as e:  # noqa: BLE001 - reported to the client and in the log
                    rec.error = repr(e)
                    status, ctype, out = 500, "text/plain", f"responder failed: {e}\n".encode()
                rec.status, rec.response_bytes = status, len(out)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(out)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError) as e:
                    rec.error = f"client went away: {e!r}"

        return Handler


def ocsp_query(url: str, issuer: Path, cert: Path) -> str:
    """Ask a responder about `cert` with `openssl ocsp -url` (verifying against `issuer`); stdout + stderr."""
    cp = subprocess.run(["openssl", "ocsp", "-issuer", str(issuer), "-cert", str(cert), "-url", url,
                         "-CAfile", str(issuer), "-timeout", "10"], capture_output=True, timeout=20)
    return cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace")
