"""A small HTTP proxy on the boxes' bridge, so that boxes reach this machine's package mirrors and nothing else.

Chosen over routing and masquerading the boxes' subnet: it changes nothing on
this machine (no ip_forward, no firewall rules, nothing to undo after a crash),
needs no nftables tools, and cannot carry a box's traffic anywhere but to the
allowed mirrors: by default the hosts named in this machine's own apt sources.
A box uses it as apt's proxy (``Acquire::http::Proxy``), which is also how a
homelab host with ``apt_proxy`` in the inventory is set up. Plain HTTP is
forwarded request by request; HTTPS goes through CONNECT to port 443.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}
UPSTREAM_TIMEOUT = 60


class AptProxy:
    """``with AptProxy("10.77.2.1") as proxy: proxy.url`` -> "http://10.77.2.1:3142"."""

    def __init__(self, address: str, port: int = 3142, allowed_hosts: Iterable[str] | None = None):
        self.allowed = frozenset(allowed_hosts if allowed_hosts is not None else mirror_hosts())
        self.server = ThreadingHTTPServer((address, port), _Handler)
        self.server.daemon_threads = True
        self.server.allowed = self.allowed  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, name="apt-proxy", daemon=True)

    @property
    def url(self) -> str:
        address, port = self.server.server_address[:2]
        return f"http://{address}:{port}"

    def __enter__(self) -> AptProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def mirror_hosts() -> set[str]:
    """Host names of every URI in this machine's apt sources (one-line and deb822 formats)."""
    hosts = set()
    for path in _source_files():
        text = path.read_text(errors="replace")
        for uri in re.findall(r"\bhttps?://[^\s\]]+", text):
            if not _is_comment_line(text, uri):
                hosts.add(urlsplit(uri).hostname or "")
    return {h for h in hosts if h}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._forward()

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward()

    def do_CONNECT(self) -> None:  # noqa: N802
        host, _, port = self.path.rpartition(":")
        if host not in self.server.allowed or port != "443":  # type: ignore[attr-defined]
            self.send_error(403, "host not allowed by the test apt proxy")
            return
        try:
            upstream = socket.create_connection((host, 443), timeout=UPSTREAM_TIMEOUT)
        except OSError:
            self.send_error(502, "upstream unreachable")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        _pipe(self.connection, upstream)

    def _forward(self) -> None:
        url = urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in self.server.allowed:  # type: ignore[attr-defined]
            self.send_error(403, "host not allowed by the test apt proxy")
            return
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), headers=headers)
            self._relay(upstream.getresponse())
        except OSError:
            self.send_error(502, "upstream unreachable")
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if response.getheader("Content-Length") is None:
            self.close_connection = True  # the body ends when the connection does
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            while chunk := response.read(65536):
                self.wfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        """Quiet: apt's requests are not worth a line each on the test output."""


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [client, upstream]
    with upstream:
        while True:
            readable, _, _ = select.select(sockets, [], [], UPSTREAM_TIMEOUT)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)


def _source_files() -> list[Path]:
    files = []
    for path in APT_SOURCES:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
    return files


def _is_comment_line(text: str, uri: str) -> bool:
    return all(line.lstrip().startswith("#") for line in text.splitlines() if uri in line)
