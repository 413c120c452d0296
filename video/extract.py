"""`extract`: videos and images to landmark files, and labelled recordings to a Kaggle data set.

    python islr.py extract clip.mp4 --out clip.parquet        # one file (or clip.npy)
    python islr.py extract recordings/ --out landmarks/       # every video and image below
    python islr.py extract signs/ --dataset --signer 1 --out raw/   # signs/<sign>/<file>
    python islr.py extract labels.csv --dataset --out raw/    # CSV of path, sign, signer
    python islr.py prepare raw/ data/                         # then train on data/ as usual

A landmark file is one recording: a Kaggle-layout parquet table (kaggle.write_sequence) or a
.npy float32 array [T, 543, 3]. Which recordings go to which files, and the train.csv and sign
map of `--dataset`, is extract_jobs.py; landmarks come from video.py.

Every file is written under a temporary name and renamed when whole (safely.replacing): Ctrl-C
(or SIGTERM), a crash or a kill leaves finished files and no half-written one. `--workers`
processes extract files in parallel.
"""

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import safely
from raw import kaggle
from video import extract_jobs, video

NUM_EXAMPLES = 5  # problems of each kind shown


@dataclass
class Report:
    written: list[extract_jobs.Job] = field(default_factory=list)
    existing: list[extract_jobs.Job] = field(default_factory=list)  # skipped: already extracted
    frames: int = 0  # extracted by this run
    seconds: float = 0.0
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> messages
    cut_short: list[str] = field(default_factory=list)  # written, from fewer frames than declared
    interrupted: bool = False

    def add_problem(self, kind: str, message: str) -> None:
        self.problems.setdefault(kind, []).append(message)

    @property
    def num_problems(self) -> int:
        return sum(len(messages) for messages in self.problems.values())


# Landmark files ---------------------------------------------------------------------------


def write_landmarks(path: Path, points: np.ndarray) -> None:
    """Write (T, 543, 3) landmarks as .parquet (kaggle.write_sequence) or .npy, atomically."""
    if path.suffix != ".npy":
        kaggle.write_sequence(path, points)
        return
    with safely.replacing(path) as temporary, open(temporary, "wb") as file:
        np.save(file, points.astype(np.float32), allow_pickle=False)


# Running the jobs ------------------------------------------------------------------------------

_frames_done = None  # a shared counter of frames extracted (multiprocessing.Value)
_on_frame: Callable[[], None] | None = None  # one process: progress after each frame
_stop: threading.Event | None = None  # one process: a stop asked for, checked between frames


def _init_worker(counter) -> None:
    global _frames_done
    _frames_done = counter
    video.quiet_native_output()
    safely.ignore_in_worker()


def _count_frames(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        if _stop is not None:
            safely.check(_stop)
        yield frame
        if _frames_done is not None:
            with _frames_done.get_lock():
                _frames_done.value += 1
        if _on_frame is not None:
            _on_frame()


def extract_one(
    job: extract_jobs.Job, complexity: int, keep_empty: bool
) -> tuple[extract_jobs.Job, int, str | None, str]:
    """Extract and write one recording: (job, frames, problem kind or None, message). A file
    written from fewer frames than its video declares has no problem kind and says so in the
    message (video.truncation_note)."""
    try:
        frames = _count_frames(video.read_frames(job.source))
        points = video.extract_frames(frames, complexity, static=video.is_image_path(job.source))
    except video.VideoError as error:
        return job, 0, "unreadable", str(error)
    if not video.person_found(points) and not keep_empty:
        message = f"{job.source}: no person found in {len(points)} frame(s); nothing written"
        return job, len(points), "no_person", message + " (--keep-empty writes all-NaN files)"
    job.out.parent.mkdir(parents=True, exist_ok=True)
    write_landmarks(job.out, points)
    cut = video.truncation_note(job.source, len(points))
    return job, len(points), None, f"{job.source}: {cut}" if cut else ""


def run(
    jobs: list[extract_jobs.Job],
    *,
    complexity: int = 1,
    workers: int = 1,
    keep_empty: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Extract every job whose file is not there yet. `on_progress(frames, files)` is called
    with the totals done so far, about ten times a second. A Ctrl-C (or SIGTERM) stops the run
    between frames (one process) or at once (workers, terminated): finished files stay, no partial one
    does, and the report says `interrupted`."""
    report = Report()
    todo = []
    for job in jobs:
        (report.existing if job.out.is_file() else todo).append(job)
        safely.temporary_name(job.out).unlink(missing_ok=True)  # left by a killed run
    if not todo:
        return report
    if any(job.out.suffix == ".parquet" for job in todo):
        kaggle.pyarrow_parquet()  # fail now, not after the first extraction
    video.check_complexity(complexity)
    video.quiet_native_output()
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    started = time.perf_counter()
    shown = [0.0]  # when progress was last reported

    def finished(result) -> None:
        job, frames, kind, message = result
        report.frames += frames
        if kind is None:
            report.written.append(job)
            if message:
                report.cut_short.append(message)
        else:
            report.add_problem(kind, message)

    def progress(now: bool = True) -> None:
        if on_progress and (now or time.perf_counter() - shown[0] > 0.1):
            shown[0] = time.perf_counter()
            on_progress(counter.value, len(report.written) + report.num_problems)

    with safely.deferred() as stop:
        arguments = (complexity, keep_empty)
        try:
            if workers == 1:
                _run_here(todo, arguments, counter, stop, finished, progress)
            else:
                _run_in_processes(todo, arguments, workers, counter, stop, finished, progress)
        except KeyboardInterrupt:
            report.interrupted = True
    report.seconds = time.perf_counter() - started
    return report


def _run_here(todo, arguments: tuple, counter, stop, finished, progress) -> None:
    """`run`'s jobs one after another in this process, stopping between frames on `stop`."""
    global _frames_done, _on_frame, _stop
    _frames_done, _on_frame, _stop = counter, lambda: progress(now=False), stop
    try:
        for job in todo:
            safely.check(stop)
            finished(extract_one(job, *arguments))
            progress()
    finally:
        _frames_done = _on_frame = _stop = None


def _run_in_processes(todo, arguments: tuple, workers: int, counter, stop, finished, progress):
    """`run`'s jobs in `workers` spawned processes; on `stop` they are terminated, and the
    temporary file of one stopped mid-write is removed."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with safely.ignored_while_starting_workers():
        pool = context.Pool(min(workers, len(todo)), _init_worker, (counter,))
    try:
        results = pool.imap_unordered(_extract_job, [(job, *arguments) for job in todo])
        for _ in todo:
            while True:
                safely.check(stop)
                try:
                    finished(results.next(timeout=0.1))
                    break
                except multiprocessing.TimeoutError:
                    progress(now=False)
            progress()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        for job in todo:  # a worker stopped mid-write leaves its temporary file
            safely.temporary_name(job.out).unlink(missing_ok=True)


def _extract_job(arguments: tuple) -> tuple:
    return extract_one(*arguments)


# The command ----------------------------------------------------------------------------------


def extract(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Videos, images or folders of them; with --dataset one folder SIGN/recording "
            "or a CSV of path, sign, signer.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="A .parquet or .npy file for one recording, else a folder (--dataset: the "
            "raw Kaggle folder to write or add to).",
            show_default=False,
        ),
    ],
    dataset: Annotated[
        bool,
        typer.Option(help="Labelled recordings -> the raw Kaggle layout that `prepare` reads."),
    ] = False,
    signer: Annotated[
        int | None,
        typer.Option(help="--dataset from a folder: the signer (participant id) of all of it."),
    ] = None,
    format: Annotated[
        str, typer.Option(help="parquet (the Kaggle layout) or npy ([T, 543, 3] float32).")
    ] = "parquet",
    complexity: video.Complexity = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes extracting in parallel.")] = 1,
    keep_empty: Annotated[
        bool, typer.Option(help="Write all-NaN files for recordings where no person is found.")
    ] = False,
) -> None:
    """MediaPipe Holistic landmarks of videos and images, in the Kaggle layout (needs
    pip install -e '.\\[video]').

    Files already extracted are skipped, so an interrupted run continues where it stopped.
    """
    from cli import console, note, user_errors

    with user_errors(extract_jobs.ExtractError, kaggle.KaggleError, video.VideoError):
        jobs, folder_mode = extract_jobs.command_jobs(inputs, out, dataset, signer, format)
        video.check_complexity(complexity)
        video.quiet_native_output()  # before the progress bar, which swaps sys.stdout meanwhile
        report = run_with_progress(
            jobs, complexity=complexity, workers=workers, keep_empty=keep_empty
        )
        if dataset and out.is_dir():
            num_rows, num_signs = extract_jobs.write_dataset_index(out, jobs)
    where = out if folder_mode else jobs[0].out
    settings = f"complexity {complexity}, {workers} worker(s)"
    print_report(report, folder_mode, len(jobs), where, settings)
    if dataset:
        console.print(
            f"{out}: train.csv has {num_rows} recordings of {num_signs} signs; next: "
            f"python islr.py prepare {out} DATA_DIR"
        )
        if num_signs < 2:
            note("a data set needs at least two signs to train a classifier")


def run_with_progress(
    jobs: list[extract_jobs.Job], *, complexity: int, workers: int, keep_empty: bool
) -> Report:
    """`run` under a progress bar of frames and files (with its rate and time left)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cli import console

    todo = [job for job in jobs if not job.out.is_file()]
    total = sum(video.count_frames(job.source) or 1 for job in todo)
    columns = (
        TextColumn("extracting"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} frames, {task.fields[rate]} frames/s, "
            "{task.fields[files]}/{task.fields[num_files]} files, ETA {task.fields[eta]}"
        ),
        TimeElapsedColumn(),
    )
    started = time.perf_counter()
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(
            "extract", total=max(total, 1), rate="-", files=0, num_files=len(todo), eta="-"
        )

        def show(frames: int, files: int) -> None:
            seconds = time.perf_counter() - started
            rate = frames / seconds if seconds > 0 else 0.0
            left = max(total - frames, 0)
            eta = f"{left / rate:.0f}s" if rate > 0 else "-"
            progress.update(
                task, completed=min(frames, total), rate=f"{rate:.1f}", files=files, eta=eta
            )

        return run(
            jobs, complexity=complexity, workers=workers, keep_empty=keep_empty, on_progress=show
        )


def print_report(
    report: Report, folder_mode: bool, num_jobs: int, where: Path, settings: str
) -> None:
    """extract's closing lines: skipped recordings by kind (a folder), files that may be cut
    short, the totals; exit 130 when interrupted, 1 when nothing was extracted."""
    from cli import console, note, say_error, say_interrupted, styled

    for kind, messages in report.problems.items() if folder_mode else ():
        shown = "; ".join(messages[:NUM_EXAMPLES])
        more = f" (and {len(messages) - NUM_EXAMPLES} more)" if len(messages) > NUM_EXAMPLES else ""
        console.print(
            styled(
                f"skipped {len(messages)} ({kind.replace('_', ' ')}):", "yellow", f" {shown}{more}"
            )
        )
    for message in report.cut_short[:NUM_EXAMPLES]:
        note(message)
    if len(report.cut_short) > NUM_EXAMPLES:
        note(f"and {len(report.cut_short) - NUM_EXAMPLES} more recording(s) may be cut short")
    rate = report.frames / report.seconds if report.seconds else 0.0
    line = (
        f"{len(report.written)} recording(s), {report.frames} frames in {report.seconds:.1f}s "
        f"({rate:.1f} frames/s, {settings}) -> {where}"
    )
    if report.existing:
        line += f"; {len(report.existing)} already extracted, skipped"
    if report.cut_short:
        line += f"; {len(report.cut_short)} may be cut short"
    if report.interrupted:
        say_interrupted(f": {line}; run the same command again to continue")
        raise typer.Exit(130)
    if not report.written and not report.existing:
        say_error(
            "nothing extracted: " + "; ".join(m for ms in report.problems.values() for m in ms)
            if not folder_mode
            else f"nothing extracted from {num_jobs} recording(s) (see the skipped lines above)"
        )
        raise typer.Exit(1)
    console.print(line)
