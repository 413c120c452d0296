"""`bench-video`: the speed of the video path on this machine, as BENCHMARKS.md reports it.

    python islr.py bench-video runs/<name>/model.safetensors

(a) extraction frames/s (`extract`, .npy, whole run from the first frame read to the last
file written, worker start included) for model complexity 0, 1 and 2 with 1 and 2 workers,
over COPIES copies of the selfie video; a complexity whose pose model the mediapipe wheel does
not ship is reported as such (islr never downloads it);
Besides wall-clock figures, the CPU time per frame (all threads of all processes): on a
machine shared with other jobs the wall clock measures the load too, the CPU time much less.
(b) live: milliseconds per frame, from a decoded frame to the updated prediction (Holistic,
segmenter, the model on each finished segment, the view's update), median and 95th percentile,
over the selfie three times with 1 s of stillness between, every frame processed; then the same
video played in real time at its 30 fps, as a camera delivers frames: frames processed and
dropped, signs found; it keeps up when it drops (almost) nothing.
"""

import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from video import extract, extract_jobs, live, segment, video

SELFIE = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "videos"
    / "signer-selfie.mp4"
)


def write_repeated_video(source: Path, out: Path, times: int = 3, still: float = 1.0) -> int:
    """SOURCE `times` times, each followed by `still` seconds of its first frame; frames."""
    cv2 = video.opencv()
    frames = list(video.read_frames(source))
    fps = video.video_fps(source)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    count = 0
    for _ in range(times):
        for rgb in frames + [frames[0]] * round(still * fps):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            count += 1
    writer.release()
    return count


def extraction_speed(source: Path, copies: int, complexity: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        for n in range(copies):
            shutil.copyfile(source, inputs / f"{n}{source.suffix}")
        jobs, _ = extract_jobs.plain_jobs([inputs], Path(folder) / "out", ".npy")
        before = cpu_seconds()
        report = extract.run(jobs, complexity=complexity, workers=workers)
        cpu = cpu_seconds() - before
    return {
        "frames": report.frames,
        "seconds": report.seconds,
        "frames_per_second": report.frames / report.seconds,
        "cpu_ms_per_frame": 1000 * cpu / report.frames,
    }


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the extraction workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def live_speed(ckpt: Path, source: Path, complexity: int, realtime: bool) -> dict:
    recogniser = live.Recogniser(ckpt)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "three.mp4"
        write_repeated_video(source, path)
        reader = live.LatestFrame(str(path)) if realtime else None
        frames = iter(reader.get, None) if reader else live.every_frame(path)
        fps = reader.fps if reader else video.video_fps(path)
        try:
            with video.Holistic(complexity) as holistic:
                stats = live.recognise_stream(frames, recogniser, segment.Segmenter(fps), holistic)
        finally:
            if reader:
                reader.close()
    return {**stats.summary(), "fps": stats.fps(), "source_fps": fps}


def bench_video(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train (for live).")],
    source: Annotated[Path, typer.Option("--video", help="The video to time.")] = SELFIE,
    copies: Annotated[int, typer.Option(min=1, help="Copies of the video per extraction run.")] = 4,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
) -> None:
    """Extraction frames/s (complexity 0, 1, 2; 1 and 2 workers) and live ms per frame."""
    from rich.table import Table

    from cli import console, output_file, user_errors, write_json

    with user_errors(video.VideoError, extract_jobs.ExtractError):
        output_file(json_path, "--json", reading=ckpt)
        if not source.is_file():
            raise ValueError(f"{source} does not exist: name a video with --video")
        live.Recogniser(ckpt)  # a bad checkpoint fails now, not after the extraction runs
        video.quiet_native_output()
        result = {
            "load_average_before": os.getloadavg()[0],
            "cpus": os.cpu_count(),
            "video": str(source),
            "copies": copies,
            "extraction": [],
            "live": {},
        }
        table = Table("figure", "value", title=f"islr bench-video on {source.name}")
        result["extraction"] = extraction_rows(source, copies, table)
        result["live"] = live_rows(ckpt, source, table)
        result["load_average_after"] = os.getloadavg()[0]
        table.add_row(
            "load average before / after, cpus",
            f"{result['load_average_before']:.2f} / {result['load_average_after']:.2f}, {result['cpus']}",
        )
    console.print(table)
    if json_path:
        write_json(json_path, result)


def extraction_rows(source: Path, copies: int, table) -> list[dict]:
    """(a): extraction speed at each complexity whose model is here, with 1 and 2 workers; a
    row of `table` each."""
    rows = []
    for complexity in video.COMPLEXITIES:
        for workers in (1, 2):
            if not video.pose_model_path(complexity).is_file():
                row = {"complexity": complexity, "workers": workers, "frames_per_second": None}
                value = f"- ({video.pose_model_path(complexity).name} not in the wheel)"
            else:
                row = {
                    "complexity": complexity,
                    "workers": workers,
                    **extraction_speed(source, copies, complexity, workers),
                }
                value = (
                    f"{row['frames_per_second']:.1f} ({row['frames']} frames, {row['seconds']:.1f}s; "
                    f"CPU {row['cpu_ms_per_frame']:.0f} ms a frame)"
                )
            rows.append(row)
            table.add_row(
                f"(a) extract, complexity {complexity}, {workers} worker(s), frames/s", value
            )
    return rows


def live_rows(ckpt: Path, source: Path, table) -> dict[str, dict]:
    """(b): live on every frame, then in real time; a row of `table` each."""
    result = {}
    for realtime in (False, True):
        figures = live_speed(ckpt, source, 1, realtime)
        result["realtime" if realtime else "every_frame"] = figures
        if realtime:
            total = figures["frames"] + figures["dropped"]
            table.add_row(
                f"(b) live, real time at {figures['source_fps']:.0f} fps, complexity 1",
                f"processed {figures['frames']}/{total}, dropped {figures['dropped']} "
                f"({figures['dropped'] / total:.0%}), {figures['signs']} sign(s) found",
            )
        else:
            table.add_row(
                "(b) live ms per frame, complexity 1, every frame: median / p95",
                f"{figures['ms_median']:.1f} / {figures['ms_p95']:.1f} ({figures['fps']:.1f} "
                f"frames/s, CPU {figures['cpu_ms_median']:.0f} ms a frame, "
                f"{figures['signs']} sign(s) found)",
            )
    return result
