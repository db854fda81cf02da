"""A test double of Jellyfin's Sessions API: an HTTP server on 127.0.0.1, ephemeral port.

It serves what ``vmstation.power.jellyfin`` reads, in Jellyfin's documented JSON
shape (SessionInfoDto, PublicSystemInfo):

    GET /Sessions             needs the API key (Authorization: MediaBrowser Token="..."
                              or X-Emby-Token), 401 otherwise
    GET /System/Info/Public   no key needed

Scenarios: ``idle`` (a client connected, nothing playing), ``playing`` (a movie
playing), ``paused`` (an episode paused ``paused_for`` ago). Change ``scenario``
while it runs; every request is recorded (path and whether it was authorised,
never the key itself).

    with JellyfinDouble(api_key="0123456789abcdef0123456789abcdef") as jellyfin:
        JellyfinClient(jellyfin.url, jellyfin.api_key).sessions()
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCENARIOS = ("idle", "paused", "playing")
SERVER_ID = "3f1b2c4d5e6f40718293a4b5c6d7e8f9"
_TOKEN = re.compile(r'(?:^|[ ,])Token="([^"]*)"')


@dataclass(frozen=True)
class SeenRequest:
    path: str
    authorised: bool


class JellyfinDouble:
    """A running stand-in for one Jellyfin server (a context manager)."""

    def __init__(self, api_key: str, scenario: str = "idle", paused_for: timedelta = timedelta(minutes=3)):
        self.api_key = api_key
        self.scenario = scenario
        self.paused_for = paused_for
        self.requests: list[SeenRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="jellyfin-double", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> JellyfinDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def sessions(self, now: datetime | None = None) -> list[dict]:
        """The ``/Sessions`` body for the current scenario."""
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r}: expected one of {', '.join(SCENARIOS)}")
        moment = now or datetime.now(timezone.utc)
        browsing = _session("7a1c", "bob", "Jellyfin Android", "Pixel 7", moment - timedelta(minutes=1))
        if self.scenario == "idle":
            return [browsing]
        if self.scenario == "playing":
            watching = _session("c0ff", "alice", "Jellyfin Web", "Firefox", moment - timedelta(seconds=8))
            return [browsing, {**watching, "NowPlayingItem": _MOVIE, "PlayState": _play_state(paused=False)}]
        paused_at = moment - self.paused_for
        watching = _session("c0ff", "alice", "Jellyfin Web", "Firefox", paused_at)
        return [browsing, {**watching, "NowPlayingItem": _EPISODE, "PlayState": _play_state(paused=True),
                           "LastPausedDate": _jellyfin_date(paused_at)}]

    def authorised(self, headers) -> bool:
        token = headers.get("X-Emby-Token")
        for name in ("Authorization", "X-Emby-Authorization"):
            match = _TOKEN.search(headers.get(name) or "")
            if match and match.group(1).strip():
                token = match.group(1)
        return token == self.api_key


def _handler_for(double: JellyfinDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            authorised = double.authorised(self.headers)
            double.requests.append(SeenRequest(path, authorised))
            if path == "/System/Info/Public":
                self._reply(200, _PUBLIC_INFO)
            elif path == "/Sessions" and not authorised:
                self._reply(401, None)
            elif path == "/Sessions":
                self._reply(200, double.sessions())
            else:
                self._reply(404, None)

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            """Silent: test output stays readable, and no header ever reaches a log."""

    return Handler


def _session(session_id: str, user: str, client: str, device: str, last_activity: datetime) -> dict:
    """A SessionInfoDto with nothing playing, the fields real servers send."""
    return {
        "PlayState": {"CanSeek": False, "IsPaused": False, "IsMuted": False, "RepeatMode": "RepeatNone",
                      "PlaybackOrder": "Default"},
        "AdditionalUsers": [],
        "Capabilities": {"PlayableMediaTypes": ["Audio", "Video"], "SupportedCommands": [],
                         "SupportsMediaControl": True, "SupportsPersistentIdentifier": False},
        "RemoteEndPoint": "127.0.0.1",
        "PlayableMediaTypes": ["Audio", "Video"],
        "Id": session_id * 8,
        "UserId": "5c1e" * 8,
        "UserName": user,
        "Client": client,
        "LastActivityDate": _jellyfin_date(last_activity),
        "LastPlaybackCheckIn": "0001-01-01T00:00:00.0000000Z",
        "DeviceName": device,
        "DeviceId": f"{device.lower().replace(' ', '-')}-0001",
        "ApplicationVersion": "10.9.11",
        "IsActive": True,
        "SupportsMediaControl": True,
        "SupportsRemoteControl": True,
        "NowPlayingQueue": [],
        "NowPlayingQueueFullItems": [],
        "HasCustomDeviceName": False,
        "ServerId": SERVER_ID,
        "SupportedCommands": [],
    }


def _play_state(paused: bool) -> dict:
    return {"PositionTicks": 18_423_000_000, "CanSeek": True, "IsPaused": paused, "IsMuted": False,
            "VolumeLevel": 100, "AudioStreamIndex": 1, "MediaSourceId": "9e8d" * 8, "PlayMethod": "DirectPlay",
            "RepeatMode": "RepeatNone", "PlaybackOrder": "Default"}


def _jellyfin_date(moment: datetime) -> str:
    """.NET's round-trip format: seven fraction digits and a Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


_MOVIE = {"Name": "Big Buck Bunny", "ServerId": SERVER_ID, "Id": "b1gb" * 8, "Type": "Movie",
          "MediaType": "Video", "RunTimeTicks": 5_964_000_000, "ProductionYear": 2008, "IsFolder": False}
_EPISODE = {"Name": "The Pilot", "ServerId": SERVER_ID, "Id": "e9150de" + "0" * 25, "Type": "Episode",
            "MediaType": "Video", "SeriesName": "Open Movie Hour", "SeasonName": "Season 1",
            "IndexNumber": 1, "ParentIndexNumber": 1, "RunTimeTicks": 13_200_000_000, "IsFolder": False}
_PUBLIC_INFO = {"LocalAddress": "http://127.0.0.1:8096", "ServerName": "jellyfin-double", "Version": "10.9.11",
                "ProductName": "Jellyfin Server", "OperatingSystem": "", "Id": SERVER_ID,
                "StartupWizardCompleted": True}
