"""The Segmenter: cuts a stream of landmark frames into signs, from hand presence and motion.

    segmenter = Segmenter(fps=30)
    for points in frames:                          # (543, 3) landmarks, video.Holistic's
        segment = segmenter.push(points)           # (T, 543, 3) when a sign ends, else None
    last = segmenter.flush()                       # the sign in progress at the end

The rule (SegmenterParams, all times in seconds):
- a frame is *active* when a hand is present and moving: its centre (the mean of its 21 points)
  moves faster than `min_speed` shoulder widths a second, or it has just come into view. The
  shoulder width (pose 11 to 12) makes the speed independent of how far the signer sits;
- `start` seconds of consecutive active frames start a sign (state "signing");
- a sign ends when no frame has been active for `end` seconds: a pause, hands held still, or
  hands down out of view. The segment runs from `pad` before its first active frame to `pad`
  after its last one; one shorter than `shortest` is dropped as a twitch, one longer than
  `longest` is cut there and recognised.
The defaults fit the clips of the real data (median 20 frames, about 0.7 s; `longest` is
above nearly all of them) and the selfie video, measured: 0.5 to 4 shoulder widths a second
while signing, and gaps in hand detection of up to 5 frames (0.17 s) inside the sign, which
`end` bridges. `live` and `serve` both use it.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

import landmarks

LEFT_HAND = slice(landmarks.LEFT_HAND, landmarks.POSE)
RIGHT_HAND = slice(landmarks.RIGHT_HAND, landmarks.NUM_LANDMARKS)
LEFT_SHOULDER, RIGHT_SHOULDER = landmarks.POSE + 11, landmarks.POSE + 12
FALLBACK_SHOULDER_WIDTH = 0.25  # of the image width, where the pose is not found


@dataclass(frozen=True)
class SegmenterParams:
    min_speed: float = 0.2  # shoulder widths a second: slower hands are "still"
    start: float = 0.1  # seconds of active frames that start a sign
    end: float = 0.5  # seconds without an active frame that end it
    pad: float = 0.1  # seconds kept before the first and after the last active frame
    shortest: float = 0.2  # seconds: shorter segments are dropped
    longest: float = 6.0  # seconds: longer ones are cut and recognised


class Segmenter:
    """Cuts a stream of (543, 3) landmark frames into signs (the rule: module docstring).

    `push(points, time=None)` returns a finished segment (T, 543, 3) when a sign ends, else
    None; `time` is the frame's time in seconds (default: frames so far / fps, for a stream
    that drops nothing). `flush()` returns the sign in progress at the end of a stream.
    `state` is "waiting" or "signing".
    """

    def __init__(self, fps: float = 30.0, **params) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        self.fps = fps
        self.params = SegmenterParams(**params)
        self.state = "waiting"
        self._count = 0
        self._previous: dict[str, np.ndarray] = {}  # hand -> its centre in the last frame
        self._previous_time: float | None = None
        self._recent: deque[tuple[float, np.ndarray]] = deque()  # waiting: the last `pad` s
        self._run_start: float | None = None  # time of the first of the current active run
        self._frames: list[tuple[float, np.ndarray]] = []  # signing: the segment so far
        self._last_active = 0.0

    def active(self, points: np.ndarray, time: float) -> bool:
        """True when a hand is present and moving (or has just come into view)."""
        shoulders = points[LEFT_SHOULDER, :2] - points[RIGHT_SHOULDER, :2]
        width = float(np.hypot(*shoulders)) if np.isfinite(shoulders).all() else 0.0
        width = width if width > 1e-3 else FALLBACK_SHOULDER_WIDTH
        dt = time - self._previous_time if self._previous_time is not None else 1 / self.fps
        moving, centres = False, {}
        for hand, part in (("left", LEFT_HAND), ("right", RIGHT_HAND)):
            xy = points[part, :2]
            if not np.isfinite(xy).all():
                continue
            centres[hand] = xy.mean(axis=0)
            before = self._previous.get(hand)
            if before is None:
                moving = True  # came into view
            else:
                speed = float(np.hypot(*(centres[hand] - before))) / max(dt, 1e-6) / width
                moving |= speed >= self.params.min_speed
        self._previous, self._previous_time = centres, time
        return moving

    def push(self, points: np.ndarray, time: float | None = None) -> np.ndarray | None:
        p = self.params
        time = self._count / self.fps if time is None else time
        self._count += 1
        active = self.active(points, time)
        if self.state == "waiting":
            self._recent.append((time, points))
            while self._recent and self._recent[0][0] < time - p.pad - p.start - 1e-9:
                self._recent.popleft()
            if not active:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = time
            if time - self._run_start + 1 / self.fps >= p.start - 1e-9:
                first = self._run_start - p.pad - 1e-9
                self._frames = [(t, f) for t, f in self._recent if t >= first]
                self._recent.clear()
                self.state, self._last_active = "signing", time
            return None
        self._frames.append((time, points))
        if active:
            self._last_active = time
        if time - self._last_active >= p.end - 1e-9:
            return self._finish()
        if time - self._frames[0][0] >= p.longest - 1e-9:
            return self._finish()
        return None

    def flush(self) -> np.ndarray | None:
        """The sign in progress, if any (at the end of a stream)."""
        return self._finish() if self.state == "signing" else None

    def _finish(self) -> np.ndarray | None:
        p = self.params
        frames = [f for t, f in self._frames if t <= self._last_active + p.pad + 1e-9]
        start = self._frames[0][0]
        self._frames, self.state, self._run_start = [], "waiting", None
        if self._last_active - start + 1 / self.fps < p.shortest:
            return None
        return np.stack(frames)
