"""Talking to the scripted stand-ins on a box (tests/standins/README.md): cue what they do next, read what they did.

Shared by the box tests that put the stand-ins on boxes (test_standins.py, test_daytwo.py, test_daytwo_rke2.py).
"""

from __future__ import annotations


def cue(boxes, box: str, action: str, what: str | None) -> None:
    """Tell a box's stand-ins what ``action`` does next: "fail", "hang" (or another cue's value); None: succeed."""
    path = boxes[box].root / "etc/vmstation-standin" / action
    path.parent.mkdir(parents=True, exist_ok=True)
    if what is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(what + "\n")


def calls(boxes, box: str) -> list[str]:
    """What the stand-ins on ``box`` were called to do, in order."""
    path = boxes[box].root / "var/lib/vmstation-standin/calls"
    return path.read_text().splitlines() if path.exists() else []
