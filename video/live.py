"""`live`: continuous sign recognition from a camera or a video file standing in for one.

    python islr.py live runs/<name>/model.safetensors --camera 0
    python islr.py live runs/<name>/model.safetensors clip.mp4 --jsonl   # one JSON line a sign
    python islr.py bench-video runs/<name>/model.safetensors           # the speed figures

Each frame goes through MediaPipe Holistic (video.py); a Segmenter (segment.py) cuts the
stream into signs from hand presence and motion; each finished segment is predicted with the
checkpoint's own preprocessing (recognise.classify) and shown with its top-k (or "unknown" below
--threshold).

A camera delivers frames at its own rate: a reader thread keeps only the newest frame, so a
pipeline slower than the camera drops frames rather than falling behind, and the view says how
many. A video file plays at its own frame rate the same way, or with --every-frame as fast as
the pipeline goes, dropping nothing (reproducible; what the tests use).
"""

import json
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import checkpoint
import recognise
import safely
from video import video
from video.segment import Segmenter

# Recognising segments ------------------------------------------------------------------------


class Recogniser:
    """A checkpoint that predicts segments (T, 543, 3) with its own preprocessing."""

    def __init__(self, ckpt: Path, device: str = "cpu") -> None:
        self.loaded = checkpoint.load(ckpt)
        self.device = device
        self.loaded.model.to(device)

    def top(self, segment: np.ndarray, k: int) -> list[dict]:
        """The `k` most likely signs of one segment: [{"sign", "probability"}]."""
        return recognise.classify(self.loaded, segment, k, self.device)["predictions"]


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
        self.fps = video.capture_fps(self.capture)
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


# The loop ------------------------------------------------------------------------------------


TIMED_FRAMES = 100_000  # frames whose timings Stats keeps (about an hour at 30 frames/s)


@dataclass
class Stats:
    frames: int = 0  # processed
    dropped: int = 0
    signs: int = 0
    # Per processed frame, the last TIMED_FRAMES: landmarks to updated view, and its CPU time
    # over all the process's threads (bounded, so a camera can run for hours).
    milliseconds: deque = field(default_factory=lambda: deque(maxlen=TIMED_FRAMES))
    cpu_milliseconds: deque = field(default_factory=lambda: deque(maxlen=TIMED_FRAMES))
    seconds: float = 0.0  # from the first frame to the last

    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        ms = sorted(self.milliseconds) or [0.0]
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
    stats = Stats()
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
    complexity: video.Complexity = 1,
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
    from cli import user_errors

    with user_errors(video.VideoError):
        check_source(source, every_frame_, complexity)
        video.quiet_native_output()
        recogniser = Recogniser(ckpt)
        fps = video.video_fps(source) if source is not None else 30.0  # a camera's: below
        name = f"camera {camera}" if source is None else str(source)
        segmenter = Segmenter(fps)
        view = LiveView(name, fps, deque(maxlen=history), segmenter)
        stats, stopped = run_live(
            recogniser,
            segmenter,
            view,
            camera if source is None else source,
            complexity=complexity,
            every_frame_=every_frame_,
            jsonl=jsonl,
            top_k=top_k,
            threshold=threshold,
        )
    print_summary(stats, stopped, jsonl, view.fps)


def check_source(source: Path | None, every_frame_: bool, complexity: int) -> None:
    """live's options that cannot work, as one-line errors."""
    if every_frame_ and source is None:
        raise ValueError("--every-frame is for a video file, not a camera")
    if source is not None and not source.is_file():
        raise ValueError(
            f"{source} does not exist" if not source.exists() else f"{source} is not a file"
        )
    video.check_complexity(complexity)


def run_live(
    recogniser: Recogniser,
    segmenter: Segmenter,
    view: "LiveView",
    source: Path | int,
    *,
    complexity: int,
    every_frame_: bool,
    jsonl: bool,
    top_k: int,
    threshold: float,
) -> tuple[Stats, bool]:
    """Recognise the signs of `source` (a camera number or a video file) until it ends or
    Ctrl-C, showing them in `view` (or one JSON line each); (the stats, whether Ctrl-C ended
    it)."""
    from rich.live import Live

    from cli import console

    reader = None

    def on_sign(record: dict) -> None:
        view.recent.appendleft(record)
        if jsonl:
            print(json.dumps(record), flush=True)

    display = (
        None if jsonl else Live(view.render(Stats(), 0.0), console=console, auto_refresh=False)
    )
    try:
        # MediaPipe starts first, so that the source's first frames are not dropped for it.
        with video.Holistic(complexity) as holistic, safely.deferred() as stop:
            if every_frame_:
                frames = every_frame(source)
            else:
                reader = LatestFrame(source if isinstance(source, int) else str(source))
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
    return stats, stop.is_set()


def print_summary(stats: Stats, stopped: bool, jsonl: bool, fps: float) -> None:
    """live's closing lines: how it stopped, signs and frame times, frames dropped (to stderr
    with --jsonl, whose stdout holds only the signs)."""
    from cli import console, note, styled

    if stopped:
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
            f"({dropped:.0%}): the pipeline is slower than the {fps:.0f} fps source"
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
