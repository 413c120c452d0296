"""`live`: continuous sign recognition from a camera or a video file standing in for one.

    python islr.py live runs/<name>/model.safetensors --camera 0
    python islr.py live runs/<name>/model.safetensors clip.mp4 --jsonl   # one JSON line a sign
    python islr.py bench-video runs/<name>/model.safetensors           # the speed figures

Each frame goes through MediaPipe Holistic (video.py); a Segmenter cuts the stream into signs
from hand presence and motion; each finished segment is predicted with the checkpoint's own
preprocessing, as `predict` does, and shown with its top-k (or "unknown" below --threshold).

The segmentation rule (SegmenterParams, all times in seconds):
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
`end` bridges.

A camera delivers frames at its own rate: a reader thread keeps only the newest frame, so a
pipeline slower than the camera drops frames rather than falling behind, and the view says how
many. A video file plays at its own frame rate the same way, or with --every-frame as fast as
the pipeline goes, dropping nothing (reproducible; what the tests use).
"""

import json
import signal
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import video

LEFT_HAND, POSE, RIGHT_HAND = slice(468, 489), 489, slice(522, 543)
LEFT_SHOULDER, RIGHT_SHOULDER = POSE + 11, POSE + 12
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


# Recognising segments ------------------------------------------------------------------------


class Recogniser:
    """A checkpoint that predicts segments (T, 543, 3) with its own preprocessing."""

    def __init__(self, ckpt: Path, device: str = "cpu") -> None:
        import checkpoint

        self.loaded = checkpoint.load(ckpt)
        self.device = device
        self.model = self.loaded.model.to(device)

    def probabilities(self, segment: np.ndarray) -> np.ndarray:
        """(K,) sign probabilities of one segment, as `predict` computes them."""
        import data
        import loops

        feature = np.ascontiguousarray(segment.transpose(2, 0, 1), dtype=np.float32)
        prepared = data.prepare_arrays([feature], [0], self.loaded.data_config)
        logits, _, _ = loops.predict(self.model, prepared.batches(loops.EVAL_BATCH), self.device)
        return logits.softmax(-1)[0].numpy()

    def top(self, segment: np.ndarray, k: int) -> list[dict]:
        probabilities = self.probabilities(segment)
        order = np.argsort(-probabilities, kind="stable")[:k]
        signs = self.loaded.signs
        return [{"sign": signs[i], "probability": float(probabilities[i])} for i in order]


# Frame sources -------------------------------------------------------------------------------


class LatestFrame:
    """Reads a camera (or a video file in real time) in a thread and keeps only the newest
    frame: `get()` waits for a frame newer than the last one taken and says how many frames
    were dropped since. `fps` is the source's frame rate."""

    def __init__(self, source: str | int, realtime: bool = True) -> None:
        cv2 = video.opencv()
        self.name = f"camera {source}" if isinstance(source, int) else str(source)
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            self.capture.release()
            raise video.VideoError(
                f"camera {source} cannot be opened (is one connected, and free?)"
                if isinstance(source, int)
                else f"{source} is not a video OpenCV can decode"
            )
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 30.0
        self.pace = realtime and not isinstance(source, int)  # a file plays at its frame rate
        self._condition = threading.Condition()
        self._frame: np.ndarray | None = None
        self._number = 0  # frames read so far
        self._taken = 0  # the number of the last frame taken
        self._ended = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        cv2 = video.opencv()
        started = time.perf_counter()
        while not self._ended:
            ok, frame = self.capture.read()
            if not ok:
                break
            if self.pace:  # as a camera would deliver it
                delay = started + self._number / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            with self._condition:
                self._frame, self._number = rgb, self._number + 1
                self._condition.notify()
        with self._condition:
            self._ended = True
            self._condition.notify()

    def get(self) -> tuple[np.ndarray, float, int] | None:
        """(frame, its time in seconds, frames dropped before it), or None at the end."""
        with self._condition:
            while self._number == self._taken and not self._ended:
                self._condition.wait()
            if self._number == self._taken:
                return None
            dropped = self._number - self._taken - 1
            self._taken = self._number
            return self._frame, (self._number - 1) / self.fps, dropped

    def close(self) -> None:
        self._ended = True
        self._thread.join(timeout=2)
        self.capture.release()


def every_frame(path: Path) -> Iterator[tuple[np.ndarray, float, int]]:
    """Every frame of a video file, (frame, time, 0 dropped), as fast as they are asked for."""
    fps = video.video_fps(path)
    for number, frame in enumerate(video.read_frames(path)):
        yield frame, number / fps, 0


@contextmanager
def stopped_by_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (and SIGTERM) set `stop` instead of raising: a live stream ends by Ctrl-C, and
    ends cleanly, between frames (an exception raised inside MediaPipe's callbacks could be
    lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    handlers = {
        s: signal.signal(s, lambda signum, frame: stop.set())
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)


# The loop ------------------------------------------------------------------------------------


@dataclass
class Stats:
    frames: int = 0  # processed
    dropped: int = 0
    signs: int = 0
    milliseconds: list[float] | None = None  # per processed frame: landmarks to updated view
    cpu_milliseconds: list[float] | None = None  # the same, CPU time of all the process's threads
    seconds: float = 0.0  # from the first frame to the last

    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        ms = sorted(self.milliseconds or [0.0])
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "signs": self.signs,
            "ms_median": statistics.median(ms),
            "ms_p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
            "cpu_ms_median": statistics.median(self.cpu_milliseconds or [0.0]),
        }


def recognise_stream(
    frames,
    recogniser: Recogniser | None,
    segmenter: Segmenter,
    holistic: video.Holistic,
    *,
    top_k: int = 3,
    threshold: float = 0.5,
    on_frame=None,
    on_sign=None,
    stop: threading.Event | None = None,
) -> Stats:
    """Run frames through Holistic, the segmenter and the recogniser. `on_sign(record)` gets
    each recognised sign; `on_frame(stats, fps)` is called after each frame. `stop` set ends
    the stream after the current frame (the sign in progress is still recognised)."""
    stats = Stats(milliseconds=[], cpu_milliseconds=[])
    window: deque[float] = deque(maxlen=30)

    def finish(segment: np.ndarray | None, at: float) -> None:
        if segment is None or recogniser is None:
            return
        predictions = recogniser.top(segment, top_k)
        best = predictions[0]
        sign = best["sign"] if best["probability"] >= threshold else "unknown"
        stats.signs += 1
        record = {
            "time": round(at, 3),
            "frames": len(segment),
            "sign": sign,
            "predictions": predictions,
        }
        if on_sign:
            on_sign(record)

    first, at = time.perf_counter(), 0.0
    for frame, at, dropped in frames:
        if stop is not None and stop.is_set():
            break
        started, cpu = time.perf_counter(), time.process_time()
        stats.dropped += dropped
        points = holistic.landmarks(frame)
        finish(segmenter.push(points, at), at)
        stats.frames += 1
        window.append(time.perf_counter())
        fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
        if on_frame:
            on_frame(stats, fps)
        stats.milliseconds.append((time.perf_counter() - started) * 1000)
        stats.cpu_milliseconds.append((time.process_time() - cpu) * 1000)
        stats.seconds = time.perf_counter() - first
    finish(segmenter.flush(), at)
    return stats


def live(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train.")],
    source: Annotated[
        Path | None,
        typer.Argument(
            help="A video file standing in for a camera (default: --camera).", show_default=False
        ),
    ] = None,
    camera: Annotated[
        int, typer.Option(min=0, help="Camera number (OpenCV's), without SOURCE.")
    ] = 0,
    top_k: Annotated[int, typer.Option(min=1, help="Signs shown per recognised segment.")] = 3,
    threshold: Annotated[
        float, typer.Option(min=0, max=1, help='Below this top probability: "unknown".')
    ] = 0.5,
    complexity: Annotated[
        int,
        typer.Option(
            min=0,
            max=2,
            help="MediaPipe pose model complexity: 1; 0 and 2 need model files the wheel lacks.",
        ),
    ] = 1,
    every_frame_: Annotated[
        bool,
        typer.Option(
            "--every-frame", help="A video file: every frame, as fast as possible (no drops)."
        ),
    ] = False,
    jsonl: Annotated[
        bool, typer.Option(help="Print one JSON object per sign, no live view.")
    ] = False,
    history: Annotated[int, typer.Option(min=1, help="Recognised signs kept in the view.")] = 8,
) -> None:
    """Recognise signs continuously from a camera or a video (needs pip install -e '.\\[video]')."""
    from rich.live import Live

    from cli import console, note, styled, user_errors

    with user_errors(video.VideoError):
        if every_frame_ and source is None:
            raise ValueError("--every-frame is for a video file, not a camera")
        if source is not None and not source.is_file():
            raise ValueError(
                f"{source} does not exist" if not source.exists() else f"{source} is not a file"
            )
        video.check_complexity(complexity)
        video.quiet_native_output()
        recogniser = Recogniser(ckpt)
        fps = video.video_fps(source) if source is not None else 30.0  # a camera's: below
        name = f"camera {camera}" if source is None else str(source)
        segmenter = Segmenter(fps)
        recent: deque[dict] = deque(maxlen=history)
        view = LiveView(name, fps, recent, segmenter)
        reader, stop = None, threading.Event()

        def on_sign(record: dict) -> None:
            recent.appendleft(record)
            if jsonl:
                print(json.dumps(record), flush=True)

        display = (
            None if jsonl else Live(view.render(Stats(), 0.0), console=console, auto_refresh=False)
        )
        try:
            # MediaPipe starts first, so that the source's first frames are not dropped for it.
            with video.Holistic(complexity) as holistic, stopped_by_ctrl_c(stop):
                if every_frame_:
                    frames = every_frame(source)
                else:
                    reader = LatestFrame(camera if source is None else str(source))
                    frames = iter(reader.get, None)
                    segmenter.fps = view.fps = reader.fps
                shown = [0.0]

                def on_frame(stats: Stats, rate: float) -> None:
                    if display and time.perf_counter() - shown[0] > 0.1:
                        shown[0] = time.perf_counter()
                        display.update(view.render(stats, rate), refresh=True)

                with display or nullcontext():
                    stats = recognise_stream(
                        frames,
                        recogniser,
                        segmenter,
                        holistic,
                        top_k=top_k,
                        threshold=threshold,
                        on_frame=on_frame,
                        on_sign=on_sign,
                        stop=stop,
                    )
                    if display:
                        display.update(view.render(stats, stats.fps()), refresh=True)
        finally:
            if reader is not None:
                reader.close()
    if stop.is_set():
        if jsonl:
            print("stopped (Ctrl-C)", file=sys.stderr)
        else:
            console.print(styled("stopped", "yellow", " (Ctrl-C)"))
    summary = stats.summary()
    line = (
        f"{summary['signs']} sign(s) in {summary['frames']} frames; {summary['ms_median']:.1f} ms "
        f"a frame (median), {summary['ms_p95']:.1f} ms (p95)"
    )
    if jsonl:
        print(line, file=sys.stderr)
    else:
        console.print(line)
    if summary["dropped"]:
        dropped = summary["dropped"] / (summary["dropped"] + summary["frames"])
        message = (
            f"dropped {summary['dropped']} of {summary['dropped'] + summary['frames']} frames "
            f"({dropped:.0%}): the pipeline is slower than the {view.fps:.0f} fps source"
        )
        if jsonl:
            print(f"note: {message}", file=sys.stderr)
        else:
            note(message)


class LiveView:
    """What `live` shows: the source, frame rate, state, dropped frames, the last signs."""

    def __init__(self, name: str, fps: float, recent: deque, segmenter: Segmenter) -> None:
        self.name, self.fps, self.recent, self.segmenter = name, fps, recent, segmenter

    def render(self, stats: Stats, rate: float):
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        state = self.segmenter.state
        header = Text.assemble(
            (f"{self.name}", "bold"),
            f"  source {self.fps:.0f} fps, processing {rate:.1f} fps\nstate ",
            (state, "green" if state == "signing" else "dim"),
            f"  frames {stats.frames}, dropped {stats.dropped}",
            (" (slower than the source)", "yellow") if stats.dropped else "",
        )
        table = Table("time", "sign", "top-k", box=None, show_edge=False)
        for record in self.recent:
            top = ", ".join(f"{p['sign']} {p['probability']:.0%}" for p in record["predictions"])
            sign = Text(record["sign"], "dim" if record["sign"] == "unknown" else "bold")
            table.add_row(f"{record['time']:.1f}s", sign, top)
        if not self.recent:
            table.add_row("", Text("no sign yet", "dim"), "")
        from rich.console import Group

        return Panel(Group(header, table), title="islr live")
