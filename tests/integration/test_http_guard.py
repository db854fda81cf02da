"""The Jellyfin API key goes only to the configured origin: no redirect followed, no proxy from the
environment, the network guard checked on every connection. Loopback only (no namespaces, no lock needed).

Besides the Jellyfin double, the tests run plain HTTP servers on 127.0.0.1 that record every request
they get with its headers: a redirector (Jellyfin's address answering 302 to another server) and a
would-be proxy named by ``http_proxy``. The key must never reach either.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vmstation.errors import HostError, InputError
from vmstation.power.jellyfin import JellyfinClient
from vmstation.testing.jellyfin_double import JellyfinDouble

KEY = "4f0c1b2a9e8d7c6b5a4f3e2d1c0b9a8f"


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records (path, headers) of each request and answers ``status``."""

    def __init__(self, status: int = 200, location: str | None = None):
        self.requests: list[tuple[str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.requests.append((self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def saw_key(self) -> bool:
        return any(KEY in value for _, headers in self.requests for value in headers.values())


def test_a_redirect_is_not_followed_and_the_key_never_reaches_its_target():
    with RecordingServer() as elsewhere:
        with RecordingServer(302, location=elsewhere.url + "/Sessions") as origin:
            with pytest.raises(HostError, match="HTTP 302 \\(a redirect\\): not followed") as raised:
                JellyfinClient(origin.url, KEY).sessions()
        assert len(origin.requests) == 1
        assert elsewhere.requests == []
        assert KEY not in str(raised.value)


def test_proxies_from_the_environment_are_not_used(monkeypatch):
    with RecordingServer() as proxy, JellyfinDouble(api_key=KEY) as jellyfin:
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        JellyfinClient(jellyfin.url, KEY).sessions()
        assert proxy.requests == [] and not proxy.saw_key()
        assert [r.path for r in jellyfin.requests] == ["/Sessions"]


def test_the_guard_refuses_the_origin_before_any_connection(monkeypatch):
    with JellyfinDouble(api_key=KEY) as jellyfin:
        monkeypatch.setenv("VMSTATION_ALLOWED_NETWORKS", "10.77.0.0/16")
        with pytest.raises(InputError, match="outside VMSTATION_ALLOWED_NETWORKS"):
            JellyfinClient(jellyfin.url, KEY).sessions()
        assert jellyfin.requests == []


def test_the_guard_checks_the_address_a_name_resolves_to(monkeypatch):
    """The per-connection check: 'localhost' resolves to loopback, which the guard here does not allow."""
    from vmstation.netguard import guarded_connection

    with JellyfinDouble(api_key=KEY) as jellyfin:
        port = int(jellyfin.url.rsplit(":", 1)[1])
        monkeypatch.setenv("VMSTATION_ALLOWED_NETWORKS", "10.77.0.0/16")
        with pytest.raises(InputError, match="localhost:.*outside"):
            guarded_connection("localhost", port, 2.0)
        monkeypatch.setenv("VMSTATION_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        guarded_connection("localhost", port, 2.0).close()
