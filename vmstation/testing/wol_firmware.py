"""The boxes' network cards, as far as Wake-on-LAN goes: a stopped box starts when its magic packet arrives.

A real NIC with Wake-on: g keeps listening while the machine is off and powers it on when a
frame carries the sync stream (6 x 0xff) followed by its MAC 16 times, anywhere in the frame:
raw EtherType 0x0842 or a UDP datagram alike. ``WolFirmware`` does that for a ``BoxSet``: it
reads every frame that reaches the boxes' bridge (an AF_PACKET socket on the bridge device,
which receives broadcasts) and starts the box whose MAC it finds, if that box is stopped.

    with WolFirmware(boxes) as firmware:
        ...                                  # something sends a magic packet
        firmware.wait_for_start("storagenodet3500", timeout=60)
        firmware.events                      # what it saw: WakeEvent(seconds, box, sender_mac, outcome)

A packet for a box that is running changes nothing (a NIC only wakes a sleeping machine).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass

from vmstation.testing import HarnessError

ETH_P_ALL = 0x0003
SYNC = b"\xff" * 6


@dataclass(frozen=True)
class WakeEvent:
    seconds: float       # since the firmware started listening
    box: str
    sender_mac: str      # the frame's source: which machine sent the packet
    outcome: str         # "started" | "running" (already on: nothing to do) | "failed: why"


class WolFirmware:
    """Listens on ``boxes``' bridge in a thread; starts a stopped box when its magic packet passes."""

    def __init__(self, boxes, interface: str | None = None):
        self.boxes = boxes
        self.interface = interface or boxes.wiring.bridge
        self.events: list[WakeEvent] = []
        self._patterns = {SYNC + bytes.fromhex(box.mac.replace(":", "")) * 16: box.name for box in boxes}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> WolFirmware:
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self._socket.bind((self.interface, 0))
        except OSError as exc:
            self._socket.close()
            raise HarnessError(f"wol firmware: cannot listen on {self.interface}: {exc.strerror}") from exc
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._listen, name="wol-firmware", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        if self._socket is not None:
            self._socket.close()

    def wait_for_start(self, name: str, timeout: float) -> WakeEvent:
        """The event of ``name`` being started by a magic packet; HarnessError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((e for e in self.events if e.box == name and e.outcome != "running"), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"wol firmware: no magic packet started {name} in {timeout:g} s "
                                       f"(seen: {self.events})")
                self._changed.wait(left)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            if not select.select([self._socket], [], [], 0.2)[0]:
                continue
            frame = self._socket.recv(65535)
            for pattern, name in self._patterns.items():
                if pattern in frame:
                    self._wake(name, frame[6:12].hex(":"))

    def _wake(self, name: str, sender_mac: str) -> None:
        seconds = time.monotonic() - self._started
        if self.boxes.is_running(name):
            outcome = "running"
        else:
            try:
                self.boxes.start(name)
                outcome = "started"
            except HarnessError as exc:
                outcome = f"failed: {exc}"
        with self._changed:
            self.events.append(WakeEvent(round(seconds, 3), name, sender_mac, outcome))
            self._changed.notify_all()
