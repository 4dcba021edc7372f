"""EMQX's "CRL/OCSP Stapling" page (EMQX 4.4 docs, security/crl-ocsp-stapling), followed step by step against the
real binaries, the way an EMQX user would:

1. `openssl.cnf` with `[ ca ]` / `[ myca ]` and an empty `index.txt`; a self-signed CA; server and client
   certificates signed with `openssl x509 -req -CA ...` (the page's "Enable SSL/TLS" prerequisite).
2. `openssl ca -gencrl ... -config openssl.cnf`, the CRL served by `python3 -m http.server` (on loopback).
3. The page's config lines pasted as they are (`EMQX_CRL_LINES`, `EMQX_OCSP_LINES`); only the URLs and paths
   point at this test's files, and `crl_cache_refresh_interval` is short where the test waits for a refresh.
4. `mosquitto_sub` / `mosquitto_pub` with `--cafile --cert --key` get through.
5. `openssl ca -revoke client.crt`, `openssl ca -gencrl` again: within one refresh, without a restart, the client is
   refused in the handshake with the TLS alert certificate_revoked, and the log names the certificate and why.
6. OCSP stapling checked with `openssl s_client -connect ... -status`, as the page does (the responder is
   `openssl ocsp` answering from the same `index.txt`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness
import pki
from revocation_servers import OCSPResponder

OPENSSL_CNF = """\
[ ca ]
default_ca = myca

[ myca ]
dir = .
database = $dir/index.txt
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_days = 365
default_md = sha256

default_crl_days = 365
"""

# The page's CRL block, with its comments; {crl_url} and {refresh} are the only substitutions.
EMQX_CRL_LINES = """\
## Enable CRL check
listener.ssl.external.enable_crl_check = true

## Comma-separated URL list for CRL servers
listener.ssl.external.crl_cache_urls = {crl_url}

## CRL Request timeout, global for all listeners
crl_cache_http_timeout = 15s

## The period to refresh the CRLs from the servers, global for all listeners
crl_cache_refresh_interval = {refresh}
"""

# The page's five OCSP lines; the responder URL and the issuer path are this test's.
EMQX_OCSP_LINES = """\
listener.ssl.external.enable_ocsp_stapling = true
listener.ssl.external.ocsp_responder_url = {responder_url}
listener.ssl.external.ocsp_issuer_pem = {issuer_pem}
listener.ssl.external.ocsp_refresh_interval = 5m
listener.ssl.external.ocsp_refresh_http_timeout = 15s
"""

REVOKED_ALERT = 44  # TLS alert certificate_revoked


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cp = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, f"$ {' '.join(args)}\n{cp.stdout}\n{cp.stderr}"
    return cp


class Walkthrough:
    """The page's CA directory and files, made with the commands the page shows."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "openssl.cnf").write_text(OPENSSL_CNF)
        (directory / "index.txt").touch()
        sh("openssl", "genrsa", "-out", "ca.key", "2048", cwd=directory)
        sh("openssl", "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "3650",
           "-out", "ca.crt", "-subj", "/C=SE/O=Gatehouse walkthrough/CN=RootCA", cwd=directory)
        (directory / "server.ext").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
        for name in ("server", "client", "client2"):
            sh("openssl", "genrsa", "-out", f"{name}.key", "2048", cwd=directory)
            sh("openssl", "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
               "-subj", f"/C=SE/O=Gatehouse walkthrough/CN={name}", cwd=directory)
            extra = ["-extfile", "server.ext"] if name == "server" else []
            sh("openssl", "x509", "-req", "-days", "365", "-sha256", "-in", f"{name}.csr", "-CA", "ca.crt",
               "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.crt", *extra, cwd=directory)
        # The OCSP responder answers from index.txt: the server certificate goes in as valid.
        sh("openssl", "ca", "-valid", "server.crt", "-config", "openssl.cnf", cwd=directory)
        self.gencrl()
        self.client = self.cert("client")
        self.client2 = self.cert("client2")

    def cert(self, name: str) -> pki.Cert:
        path = self.dir / f"{name}.crt"
        return pki.Cert(name, path, self.dir / f"{name}.key", f"CN={name}", pki.cert_serial(path))

    def gencrl(self) -> None:
        sh("openssl", "ca", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.crt", "-out", "crl.pem",
           "-config", "openssl.cnf", cwd=self.dir)

    def revoke(self, name: str) -> None:
        sh("openssl", "ca", "-revoke", f"{name}.crt", "-config", "openssl.cnf", cwd=self.dir)

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"


class HTTPServer:
    """`python3 -m http.server` serving the CA directory on loopback, as the page serves its CRL."""

    def __init__(self, directory: Path) -> None:
        self.port = harness.free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        harness.wait_until(self._listening, 10, message="python3 -m http.server listening")

    def _listening(self) -> bool:
        try:
            harness.connect(self.port, timeout=0.5).close()
            return True
        except OSError:
            return False

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)


class PageCA(pki.CA):
    """The page's CA directory for the `openssl ocsp` responder: its certificate is `ca.crt`."""

    @property
    def cert(self) -> Path:
        return self.dir / "ca.crt"


@pytest.fixture
def walkthrough(tmp_path: Path):
    w = Walkthrough(tmp_path / "ca")
    server = HTTPServer(w.dir)
    responder = OCSPResponder(PageCA(w.dir, "/CN=RootCA"), tmp_path / "ocsp", ndays=1)
    yield w, server, responder
    responder.stop()
    server.stop()


def emqx_config(broker: harness.Broker, w: Walkthrough, server: HTTPServer, responder: OCSPResponder,
                refresh: str) -> list[str]:
    broker.ssl_port = harness.free_port()
    lines = broker.config_lines(workers=2, extra=[
        f"node.cache_dir = {broker.dir / 'cache'}",
        "node.fetch_refresh_floor = 1s",
        f"listener.ssl.external = 127.0.0.1:{broker.ssl_port}",
        f"listener.ssl.external.keyfile = {w.dir / 'server.key'}",
        f"listener.ssl.external.certfile = {w.dir / 'server.crt'}",
        f"listener.ssl.external.cacertfile = {w.ca}",
        "listener.ssl.external.verify = verify_peer",
        "listener.ssl.external.fail_if_no_peer_cert = true",
        "listener.ssl.external.allow_anonymous = true",
        "",
    ])
    lines += EMQX_CRL_LINES.format(crl_url=server.url("crl.pem"), refresh=refresh).splitlines()
    lines += [""] + EMQX_OCSP_LINES.format(responder_url=responder.url, issuer_pem=w.ca).splitlines()
    broker.write_config(lines=lines)
    return lines


def wait_crl_in_force(broker: harness.Broker, url: str, w: "Walkthrough") -> None:
    """The fetcher published the CRL from `url` and the workers loaded it (until then every client is refused)."""
    harness.wait_until(lambda: pki.log_lines(broker.stderr(), "CRL published", fetch__url=url), 15,
                       message=f"the CRL from {url} to be published")
    port = broker.ssl_port
    assert port is not None
    harness.wait_until(lambda: all(pki.s_client(port, w.ca, w.client).accepted for _ in range(4)), 5,
                       message="the workers to have loaded the CRL")


def tls(w: Walkthrough, cert: pki.Cert) -> list[str]:
    return ["--cafile", str(w.ca), "--cert", str(cert.cert), "--key", str(cert.key)]


def pub_sub_round_trip(port: int, w: Walkthrough, cert: pki.Cert, tag: str) -> None:
    sub = pki.MosquittoSub(port, f"walkthrough/{tag}", tls(w, cert), client_id=f"sub-{tag}")
    try:
        sub.wait_subscribed()
        r = pki.mosquitto_pub(port, f"walkthrough/{tag}", f"hello {tag}", tls(w, cert), client_id=f"pub-{tag}")
        assert r.returncode == 0, f"mosquitto_pub failed: {r.stdout}{r.stderr}"
        assert sub.expect() == (f"walkthrough/{tag}", f"hello {tag}")
    finally:
        sub.close()


def revoked_log_lines(broker: harness.Broker, cert: pki.Cert) -> list[pki.LogLine]:
    """The refusals of `cert` as revoked. The broker logs serials as whole bytes of hex (`02E4…`); `openssl x509
    -serial` may drop the leading zero."""
    return [l for l in pki.log_lines(broker.stderr(), pki.REFUSED, tls__reason="certificate revoked")
            if l.fields.get("tls.serial", "").lstrip("0") == cert.serial.lstrip("0")]


def revoke_and_check(broker: harness.Broker, w: Walkthrough, sub: pki.MosquittoSub, port: int) -> None:
    """`openssl ca -revoke client.crt`, `openssl ca -gencrl`: the client is refused within a refresh, with the alert
    and a log line; the other client keeps publishing and receiving."""
    sub.wait_subscribed()
    w.revoke("client")
    w.gencrl()
    revoked_at = time.monotonic()

    def refused() -> pki.SClientResult | None:
        r = pki.s_client(port, w.ca, w.client)
        return r if r.refused else None

    r = harness.wait_until(refused, 20, message="the revoked client to be refused after the CRL was regenerated")
    took = time.monotonic() - revoked_at
    assert r.alert == REVOKED_ALERT, f"expected the TLS alert certificate_revoked (44):\n{r}"
    assert "certificate revoked" in r.output, r.output
    lines = harness.wait_until(lambda: revoked_log_lines(broker, w.client), 3,
                               message="a log line naming the revoked certificate and why")
    assert lines[0].fields.get("tls.subject", "").startswith("CN=client,"), lines[0].raw
    print(f"walkthrough: revoked client refused {took:.1f}s after `openssl ca -gencrl` (refresh interval 2s)")

    # mosquitto_pub with the revoked certificate fails; the other client still publishes and receives.
    r = pki.mosquitto_pub(port, "walkthrough/kept", "from revoked", tls(w, w.client), client_id="revoked")
    assert r.returncode != 0, "mosquitto_pub with a revoked certificate succeeded"
    r = pki.mosquitto_pub(port, "walkthrough/kept", "still here", tls(w, w.client2), client_id="pub-kept")
    assert r.returncode == 0, r.stderr
    assert sub.expect() == ("walkthrough/kept", "still here")


def start_node(make_broker, walkthrough, refresh: str) -> tuple[harness.Broker, int]:
    """A node with the page's config lines; returned once the CRL it fetched from the page's HTTP server is in
    force and the client got through both ways."""
    w, server, responder = walkthrough
    broker = make_broker(f"walkthrough-{refresh}")
    emqx_config(broker, w, server, responder, refresh=refresh)
    broker.start_foreground()
    port = broker.ssl_port
    assert port is not None
    wait_crl_in_force(broker, server.url("crl.pem"), w)
    pub_sub_round_trip(port, w, w.client, f"before-{refresh}")
    return broker, port


def test_emqx_crl_and_ocsp_walkthrough(make_broker, walkthrough) -> None:
    w = walkthrough[0]
    broker, port = start_node(make_broker, walkthrough, refresh="2s")
    pids_before = harness.child_pids(broker.status()) | {broker.supervisor_pid}

    # OCSP stapling, checked as the page does: openssl s_client -connect ... -status
    def stapled() -> pki.SClientResult | None:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-status", "-CAfile", str(w.ca),
                            "-cert", str(w.client.cert), "-key", str(w.client.key)],
                           input="", capture_output=True, text=True, timeout=10)
        return r.stdout if "OCSP Response Status: successful" in r.stdout else None

    out = harness.wait_until(stapled, 15, message="an OCSP staple in openssl s_client -status")
    assert "Cert Status: good" in out, out
    assert "Verify return code: 0 (ok)" in out, out

    # Revoke the client certificate and regenerate the CRL, as the page does; nothing else is touched.
    sub = pki.MosquittoSub(port, "walkthrough/kept", tls(w, w.client2), client_id="kept")
    try:
        revoke_and_check(broker, w, sub, port)
    finally:
        sub.close()

    # No restart: the same supervisor and children served all of it.
    assert harness.child_pids(broker.status()) | {broker.supervisor_pid} == pids_before


def test_documented_refresh_interval_with_refresh_on_demand(make_broker, walkthrough) -> None:
    """The page's lines exactly as written (`crl_cache_refresh_interval = 15m`): the CRL is fetched at start and an
    operator who just revoked a certificate need not wait 15 minutes: `gatehouse refresh` applies it now."""
    w = walkthrough[0]
    broker, port = start_node(make_broker, walkthrough, refresh="15m")

    w.revoke("client")
    w.gencrl()
    # Within the 15 minutes nothing is refetched on its own...
    time.sleep(2)
    assert pki.s_client(port, w.ca, w.client).accepted
    # ...and `refresh` fetches it at once.
    cp = broker.cli("refresh")
    assert cp.returncode == 0, cp.stderr
    r = harness.wait_until(lambda: (x := pki.s_client(port, w.ca, w.client)).refused and x, 15,
                           message="the revoked client to be refused after `gatehouse refresh`")
    assert r.alert == REVOKED_ALERT, str(r)
    harness.wait_until(lambda: revoked_log_lines(broker, w.client), 3,
                       message="a log line naming the revoked certificate and why")
    pub_sub_round_trip(port, w, w.client2, "doc2")
