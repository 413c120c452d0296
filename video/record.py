"""`record`: examples of one sign from a camera or a video, added to a raw Kaggle workspace.

    python islr.py record --sign hello --out raw/ --camera 0 --signer 1   # sign, pause, again
    python islr.py record --sign hello --out raw/ --video hello.mp4       # every sign in it
    python islr.py train --data raw/ --preset personal --out runs/mine      # then train on it

The segmenter of `live` (segment.py) cuts the stream into signs; each one is written as an
example of --sign: train_landmark_files/<signer>/<sequence_id>.parquet (kaggle.write_sequence),
then train.csv and sign_to_prediction_index_map.json are rewritten with the rows already there
kept (extract_jobs.write_dataset_index, as `extract --dataset` does). Every file is replaced
whole (safely.py), after each example: Ctrl-C leaves a workspace that `train` reads. An
example's sequence id is a hash of its signer, sign and source (the video and the example's
place in it), so recording the same video again replaces its examples instead of adding
copies.
"""

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import safely
from raw import kaggle
from video import extract_jobs, live, video
from video.segment import Segmenter


def check_out(out: Path) -> None:
    """The workspace is a folder (made if missing) whose train.csv, if any, is Kaggle's."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: name a folder")
    if (out / "train.csv").is_file():
        kaggle.read_train_csv(out)  # a KaggleError now for a foreign train.csv


class Workspace:
    """A raw Kaggle folder that examples of one sign by one signer are added to."""

    def __init__(self, out: Path, sign: str, signer: int, source: str) -> None:
        self.out, self.sign, self.signer, self.source = out, sign, signer, source
        self.jobs: list[extract_jobs.Job] = []  # the examples written by this run
        self.rows, self.signs = 0, 0  # train.csv once the last example is in

    def add(self, points: np.ndarray) -> Path:
        """Write one example (T, 543, 3), then train.csv and the sign map; its parquet path."""
        label = f"{self.source}#{len(self.jobs) + 1}"
        number = extract_jobs.sequence_id(self.signer, self.sign, label)
        path = self.out / kaggle.LANDMARK_FILES / str(self.signer) / f"{number}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        kaggle.write_sequence(path, points)
        job = extract_jobs.Job(Path(self.source), path, self.sign, self.signer, number, label)
        self.jobs.append(job)
        self.rows, self.signs = extract_jobs.write_dataset_index(self.out, self.jobs)
        return path


def record(
    sign: Annotated[str, typer.Option(help="The sign performed: the label of every example.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The raw Kaggle folder to write or add to.")
    ],
    video_path: Annotated[
        Path | None,
        typer.Option("--video", help="A video file to cut into examples (default: --camera)."),
    ] = None,
    camera: Annotated[int, typer.Option(min=0, help="Camera number (OpenCV's).")] = 0,
    signer: Annotated[
        int, typer.Option(min=0, help="Who signs: the participant id of the examples.")
    ] = 1,
    complexity: video.Complexity = 1,
) -> None:
    """Record examples of one sign (needs pip install -e '.\\[video]'): each sign the
    segmenter cuts from the camera or the video is added to a raw Kaggle folder for `prepare`.
    """
    from cli import console, say_error, styled, user_errors

    with user_errors(video.VideoError, kaggle.KaggleError):
        try:
            name = kaggle.check_sign_name(sign)
        except kaggle.KaggleError as problem:
            raise kaggle.KaggleError(f"--sign: {problem}") from None
        check_out(out)
        live.check_source(video_path, False, complexity)
        kaggle.pyarrow_parquet()  # fail now, not at the first example
        video.quiet_native_output()
        source = str(video_path) if video_path is not None else f"camera {camera}"
        if video_path is None:
            source += time.strftime(" %Y-%m-%d %H:%M:%S")  # each session's examples are new
        workspace = Workspace(out, name, signer, source)
        stopped = record_stream(workspace, video_path, camera, complexity, console)
    if stopped:
        console.print(styled("stopped", "yellow", " (Ctrl-C)"))
    if not workspace.jobs:
        say_error(f"no sign found in {source}: nothing written (a hand must move into view)")
        raise typer.Exit(1)
    console.print(
        f"{len(workspace.jobs)} example(s) of {name!r} -> {out}: train.csv has "
        f"{workspace.rows} recordings of {workspace.signs} signs; next: "
        f"python islr.py train --data {out} --preset personal"
    )


def record_stream(
    workspace: Workspace, video_path: Path | None, camera: int, complexity: int, console
) -> bool:
    """Cut the camera's or the video's frames into signs and add each to `workspace`, a line
    printed each; whether Ctrl-C (or SIGTERM) ended it (the sign in progress is still added)."""
    reader = None
    try:
        with video.Holistic(complexity) as holistic, safely.deferred() as stop:
            if video_path is not None:
                segmenter = Segmenter(video.video_fps(video_path))
                frames = live.every_frame(video_path)
            else:
                reader = live.LatestFrame(camera)
                segmenter = Segmenter(reader.fps)
                frames = iter(reader.get, None)
            console.print(
                f"recording {workspace.sign!r} (signer {workspace.signer}) from "
                f"{workspace.source} into {workspace.out}"
                + ("" if video_path else ": sign, pause, sign again; Ctrl-C ends")
            )

            def keep(segment: np.ndarray | None, at: float) -> None:
                if segment is not None:
                    path = workspace.add(segment)
                    console.print(
                        f"  example {len(workspace.jobs)}: {len(segment)} frames, "
                        f"ending at {at:.1f}s -> {path.relative_to(workspace.out)}"
                    )

            at = 0.0
            for frame, at, _ in frames:
                if stop.is_set():
                    break
                keep(segmenter.push(holistic.landmarks(frame), at), at)
            keep(segmenter.flush(), at)
    finally:
        if reader is not None:
            reader.close()
    return stop.is_set()
