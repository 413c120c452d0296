"""What the browser tests of tests/web share: `islr.py serve` started as a user starts it, and
a clip turned into a fake camera for Chromium."""

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@contextmanager
def serving(*arguments: str, stop_within: float = 30) -> Iterator[str]:
    """`islr.py serve ARGUMENTS --port 0` in its own process; yields the address it prints."""
    process = subprocess.Popen(
        [sys.executable, "islr.py", "serve", *map(str, arguments), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:  # the address, after whatever native libraries print first
        lines.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found:
            break
    else:
        process.kill()
        pytest.fail(f"serve did not print its address: {''.join(lines)}")
    try:
        yield found.group(0)
    finally:
        process.terminate()
        process.wait(timeout=stop_within)


def write_camera(frames: list[np.ndarray], still: np.ndarray, out: Path, held: int = 45) -> Path:
    """BGR frames as a YUV4MPEG2 file for Chromium's fake camera, after `held` frames of `still`
    (hands down), so that each loop of the file holds one sign with an end."""
    import cv2

    height, width = still.shape[:2]
    with out.open("wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for frame in [still] * held + frames:
            file.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return out
