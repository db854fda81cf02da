"""Jellyfin's Sessions API: who is playing what, judged by Jellyfin itself.

The older system asked "is the Jellyfin pod Running?", which is always true, so
auto-sleep never fired. Here activity is ``GET /Sessions`` (SessionInfoDto):
a session is playing when it has a ``NowPlayingItem``. A paused session counts
as playing for ``PAUSED_GRACE`` (15 minutes, someone fetching a drink) after
``LastPausedDate``; after that a paused movie is idle, or it would keep a worker
awake all night. With no pause date at all it counts as playing: when unsure,
stay awake.

Standard library only (urllib): this runs on masternode from the scheduled check.
The API key travels in the ``Authorization: MediaBrowser Token="..."`` header and
never appears in a message, a repr or a URL. It goes only to the configured origin:
redirects are not followed, proxies from the environment (http_proxy, ...) are not
used, and the network guard checks the address of every connection opened.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from vmstation.errors import HostError, InputError

PAUSED_GRACE = timedelta(minutes=15)
_API_KEY = re.compile(r"[A-Za-z0-9._~+/=-]{8,200}")    # a header value: no quotes, spaces or newlines
_ISO_FRACTION = re.compile(r"(\.\d{6})\d+")             # .NET writes 7 fraction digits


@dataclass(frozen=True)
class Session:
    """The parts of one SessionInfoDto the idle policy needs."""

    id: str
    user_name: str
    client: str
    device_name: str
    last_activity: datetime | None
    item: str | None                 # NowPlayingItem, "Series - Episode" for episodes
    item_type: str | None            # "Movie", "Episode", "Audio", ...
    is_paused: bool
    last_paused: datetime | None

    def describe(self) -> str:
        who = f"{self.user_name or 'someone'} on {self.client} ({self.device_name})"
        if self.item is None:
            return f"{who}: nothing playing"
        return f"{who}: {self.item} ({'paused' if self.is_paused else 'playing'})"


def active_playback(sessions: list[Session], now: datetime | None = None,
                    paused_grace: timedelta = PAUSED_GRACE) -> list[Session]:
    """The sessions that count as watching: something playing, or paused for less than ``paused_grace``."""
    moment = now or datetime.now(timezone.utc)
    return [s for s in sessions if s.item is not None and not _paused_too_long(s, moment, paused_grace)]


class JellyfinClient:
    """A small client for one Jellyfin server: ``sessions()`` and ``public_info()``."""

    def __init__(self, url: str, api_key: str, timeout: float = 5.0):
        self.url = _base_url(url)
        if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
            raise InputError(f"Jellyfin API key for {self.url}: expected a token of letters and digits")
        self._api_key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"JellyfinClient(url={self.url!r}, api_key=<hidden>)"

    def sessions(self) -> list[Session]:
        """``GET /Sessions`` parsed; raises HostError (never naming the key) when Jellyfin does not answer."""
        payload = self._get_json("/Sessions", authenticated=True)
        if not isinstance(payload, list):
            raise HostError(self._host, f"Jellyfin at {self.url}: /Sessions did not return a list")
        return parse_sessions(payload)

    def public_info(self) -> dict:
        """``GET /System/Info/Public`` (no key needed): ServerName, Version, Id, ..."""
        payload = self._get_json("/System/Info/Public", authenticated=False)
        if not isinstance(payload, dict):
            raise HostError(self._host, f"Jellyfin at {self.url}: /System/Info/Public did not return an object")
        return payload

    @property
    def _host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or self.url

    def _get_json(self, path: str, authenticated: bool) -> object:
        from vmstation.netguard import refusal

        refused = refusal(self._host)
        if refused:
            raise InputError(f"Jellyfin at {self.url}: {refused}")
        headers = {"Accept": "application/json"}
        if authenticated:
            headers["Authorization"] = f'MediaBrowser Token="{self._api_key}"'
        request = urllib.request.Request(self.url + path, headers=headers, method="GET")
        try:
            with _opener().open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise HostError(self._host, _http_message(self.url, path, exc.code)) from exc
        except (urllib.error.URLError, socket.timeout, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HostError(self._host, f"Jellyfin at {self.url}: {path} unreachable: {reason}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise HostError(self._host, f"Jellyfin at {self.url}: {path} did not return JSON") from exc


def parse_sessions(payload: list) -> list[Session]:
    """A ``/Sessions`` JSON array -> Sessions (fields Jellyfin leaves out become None/empty)."""
    return [_session(entry) for entry in payload if isinstance(entry, dict)]


def _session(entry: dict) -> Session:
    play_state = entry.get("PlayState") or {}
    item = entry.get("NowPlayingItem")
    return Session(
        id=str(entry.get("Id") or ""),
        user_name=str(entry.get("UserName") or ""),
        client=str(entry.get("Client") or ""),
        device_name=str(entry.get("DeviceName") or ""),
        last_activity=parse_date(entry.get("LastActivityDate")),
        item=_item_name(item) if isinstance(item, dict) else None,
        item_type=item.get("Type") if isinstance(item, dict) else None,
        is_paused=bool(play_state.get("IsPaused")),
        last_paused=parse_date(entry.get("LastPausedDate")),
    )


def parse_date(value: object) -> datetime | None:
    """Jellyfin's ``2024-05-01T20:14:03.1234567Z`` -> an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = _ISO_FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _item_name(item: dict) -> str:
    name = str(item.get("Name") or "untitled")
    series = item.get("SeriesName")
    return f"{series} - {name}" if series else name


def _paused_too_long(session: Session, now: datetime, grace: timedelta) -> bool:
    if not session.is_paused:
        return False
    since = session.last_paused or session.last_activity
    return since is not None and now - since >= grace


def _base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"Jellyfin URL {url!r}: expected http(s)://host:port")
    if parts.username or parts.password or parts.query:
        raise InputError(f"Jellyfin URL for {parts.hostname}: no credentials or query in the URL; use the API key")
    return url.rstrip("/")


def _http_message(url: str, path: str, status: int) -> str:
    if 300 <= status < 400:
        return (f"Jellyfin at {url}: {path} answered HTTP {status} (a redirect): not followed, the API key "
                "goes only to the configured URL")
    if status in (401, 403):
        return f"Jellyfin at {url}: {path} refused the API key (HTTP {status})"
    return f"Jellyfin at {url}: {path} answered HTTP {status}"


# --- HTTP: the configured origin only ------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTP error it is: following it would send the key elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _guarded_create_connection(address, timeout=None, source_address=None):
    from vmstation.netguard import guarded_connection

    return guarded_connection(address[0], address[1], timeout)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_create_connection


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_create_connection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


def _opener() -> urllib.request.OpenerDirector:
    """urllib without environment proxies, without redirects, with the guard on every connection."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect(), _GuardedHTTPHandler(),
                                       _GuardedHTTPSHandler())
