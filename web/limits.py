"""What `serve` accepts from a browser: its limits, and the checks that hold requests to them.

A camera frame is a JPEG of at most MAX_FRAME_BYTES and MAX_FRAME_PIXELS, its size read from
the header before any pixel is decoded; an upload is a video of a known media type, at most
`Limits.upload_bytes` and UPLOAD_FRAMES frames; a request from a page of another site is
refused. Each refusal is a ServeError carrying its HTTP status and a sentence for the page.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from video import video

# Upload media types and the suffix the temporary file gets (OpenCV picks its demuxer by it).
VIDEO_TYPES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/x-matroska": ".mkv",
    "video/x-m4v": ".m4v",
}
MAX_FRAME_BYTES = 2_000_000  # one JPEG frame; a 1280x720 camera frame is ~100 kB
MAX_FRAME_PIXELS = 1920 * 1080  # larger frames cost MediaPipe time and gain nothing
UPLOAD_FRAMES = 1_800  # a minute at 30 fps: extraction takes about as long again on 2 cores
FOREIGN = "only this server's own page may use its API"


class ServeError(Exception):
    """A request the server refuses; `status` is its HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    sessions: int = 2  # live camera sessions at once: each holds a MediaPipe graph
    fps: float = 15.0  # frames a second one session may send
    upload_bytes: int = 50_000_000  # the largest upload taken
    uploads: int = 1  # uploads decoded at once (each keeps a core busy)


def video_track(path: Path, complexity: int) -> np.ndarray:
    """Landmarks (T, 543, 3) of a video file, extracted as `predict` extracts them; a video
    longer than UPLOAD_FRAMES is refused."""
    max_frames = UPLOAD_FRAMES

    def bounded(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for count, frame in enumerate(frames, 1):
            if count > max_frames:
                raise ServeError(
                    f"the video is longer than {max_frames} frames: cut it to the sign", 413
                )
            yield frame

    return video.extract_frames(bounded(video.read_frames(path)), complexity=complexity)


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, read before any pixel is decoded."""
    if jpeg[:2] != b"\xff\xd8":
        raise ServeError("a frame must be a JPEG image")
    at = 2
    while at + 9 <= len(jpeg):
        if jpeg[at] != 0xFF:
            break
        marker, length = jpeg[at + 1], int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height = int.from_bytes(jpeg[at + 5 : at + 7], "big")
            width = int.from_bytes(jpeg[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    raise ServeError("the frame is not a readable JPEG image")


def decode_frame(jpeg: bytes) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame from a JPEG the browser sent, within the frame limits."""
    cv2 = video.opencv()
    if len(jpeg) > MAX_FRAME_BYTES:
        raise ServeError(f"a frame is at most {MAX_FRAME_BYTES:,} bytes")
    width, height = jpeg_size(jpeg)
    if not 0 < width * height <= MAX_FRAME_PIXELS:
        raise ServeError(f"a frame of {width}x{height} pixels: at most {MAX_FRAME_PIXELS:,}")
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ServeError("the frame is not a readable JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def foreign(headers) -> bool:
    """True for a request a page of another site sent (its Origin is not this server): a
    WebSocket or a POST from any open tab could otherwise use the camera API and the uploads."""
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != headers.get("host")
