"""09 fetcher, transport: CRLs over https verified against `crl_cache_https_cacertfile`, the usual proxy
environment variables, and the CRL distribution points of the listener's CA certificates (origin "ca").

Real servers on loopback: an https server (Python http.server wrapped in TLS with a certificate issued by the
test CA), a forward proxy (a plain HTTP server that receives absolute-URI requests), and `openssl ca -gencrl`.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path

import pytest

import pki
from test_09_fetcher import (
    FAILED, check_crl_meta, crl_file, dump, fetch_lines, wait_failed, wait_published, assert_worker_uses_crl_revoking,
)


class _Server:
    """A threaded HTTP(S) server on 127.0.0.1 answering every GET with one file; records the request lines."""

    def __init__(self, body_file: Path, context: ssl.SSLContext | None = None) -> None:
        self.body_file = body_file
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.body_file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    started: list[_Server] = []

    def factory(body_file: Path, context: ssl.SSLContext | None = None) -> _Server:
        s = _Server(body_file, context)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


def _https_context(p: pki.TestPKI) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(p.server.cert), str(p.server.key))  # issued by the test root for 127.0.0.1
    return context


def test_https_crl_verified_against_the_configured_bundle(tls_node, own_pki, servers):
    """An https CRL URL is fetched when `crl_cache_https_cacertfile` names the CA of the server's certificate."""
    p = own_pki
    p.root.revoke(p.clients["bob"])
    served = p.root.gencrl(p.dir / "served.pem")
    server = servers(served, _https_context(p))
    url = f"https://127.0.0.1:{server.port}/root.crl"
    node = tls_node(p, options=[f"crl_cache_urls = {url}"],
                    extra=[f"crl_cache_https_cacertfile = {p.root.cert}"]).start()
    wait_published(node, url)
    assert crl_file(node, url).read_bytes() == pki.crl_to_der(served)
    assert server.requests == ["/root.crl"], server.requests
    assert_worker_uses_crl_revoking(node, p.clients["bob"], p.clients["alice"])


def test_https_crl_with_an_unknown_server_certificate_is_refused(tls_node, own_pki, servers):
    """Without the bundle, the test CA is not trusted (the system bundle does not know it): the TLS handshake
    fails, nothing is published and the failure names the URL and curl's verification error."""
    p = own_pki
    served = p.root.gencrl(p.dir / "served.pem")
    server = servers(served, _https_context(p))
    url = f"https://127.0.0.1:{server.port}/root.crl"
    node = tls_node(p, options=[f"crl_cache_urls = {url}"], extra=["crl_cache_http_timeout = 2s"]).start()
    line = wait_failed(node, url, "crl")
    error = line.fields.get("fetch.error", "")
    assert "curl error 60" in error or "certificate" in error.lower(), line.raw
    assert line.fields.get("fetch.kept") == "false", line.raw
    assert not crl_file(node, url).exists()
    assert server.requests == [], f"the request went through an unverified connection: {server.requests}"


def test_proxy_environment_variable_is_honoured(tls_node, own_pki, servers, monkeypatch):
    """With `http_proxy` set, the fetcher asks the proxy for the absolute URL (the CA host does not even
    resolve): the proxy answers and the CRL is published."""
    p = own_pki
    served = p.root.gencrl(p.dir / "served.pem")
    proxy = servers(served)
    url = "http://crl.gatehouse-test.invalid/root.crl"
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    node = tls_node(p, options=[f"crl_cache_urls = {url}"]).start()
    wait_published(node, url)
    assert proxy.requests == [url], f"the proxy did not see the absolute URL: {proxy.requests}"
    assert crl_file(node, url).read_bytes() == pki.crl_to_der(served)


def test_ca_certificate_distribution_point_is_fetched(tls_node, own_pki, servers):
    """A CA certificate in `cacertfile` with a CRL distribution point: the fetcher fetches it without any
    `crl_cache_urls` (origin "ca"), and the worker enforces it."""
    p = own_pki
    served_path = p.dir / "ca-dp.pem"
    server = servers(served_path)
    url = f"http://127.0.0.1:{server.port}/root-from-ca.crl"
    # The same root (key, subject) re-issued with a crlDistributionPoints extension.
    with_dp = p.dir / "root-with-dp.pem"
    pki.openssl("req", "-config", str(p.root.cnf), "-x509", "-new", "-key", str(p.root.key), "-subj",
                pki.ROOT_SUBJECT, "-days", "2", "-extensions", "v3_ca", "-addext", f"crlDistributionPoints=URI:{url}",
                "-out", str(with_dp))
    p.root.revoke(p.clients["bob"])
    p.root.gencrl(served_path)
    node = tls_node(p, cacertfile=with_dp).start()
    wait_published(node, url)
    check_crl_meta(node, url, "ca", pki.crl_to_der(served_path))
    assert server.requests == ["/root-from-ca.crl"], server.requests
    assert_worker_uses_crl_revoking(node, p.clients["bob"], p.clients["alice"])
    assert not node.lines_with(FAILED), dump(node.lines_with(FAILED)) + fetch_lines(node)
