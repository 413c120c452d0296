"""`extract`: videos and images to landmark files, and labelled recordings to a Kaggle data set.

    python islr.py extract clip.mp4 --out clip.parquet        # one file (or clip.npy)
    python islr.py extract recordings/ --out landmarks/       # every video and image below
    python islr.py extract signs/ --dataset --signer 1 --out raw/   # signs/<sign>/<file>
    python islr.py extract labels.csv --dataset --out raw/    # CSV of path, sign, signer
    python islr.py prepare raw/ data/                         # then train on data/ as usual

A landmark file is one recording in the Kaggle layout: a parquet table with the columns
frame, row_id, type, landmark_index, x, y, z, 543 rows per frame in the order face (468),
left_hand (21), pose (33), right_hand (21), x/y/z null where a part was not detected (as
pandas writes NaN); or a .npy float32 array [T, 543, 3]. `--dataset` writes the raw Kaggle
layout that `prepare` reads (kaggle.py): train.csv (path, participant_id, sequence_id, sign,
plus the source recording), train_landmark_files/<signer>/<sequence_id>.parquet and
sign_to_prediction_index_map.json. A recording's sequence id is a hash of its signer, sign and
path as given, so a run again skips what is done and adds what is new.

Every file is written under a temporary name and renamed when whole: Ctrl-C, a crash or a
kill leaves finished files and no half-written one. Landmarks come from video.py; `--workers`
processes extract files in parallel.
"""

import csv
import hashlib
import io
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import video

FORMATS = (".parquet", ".npy")
PART_SIZES = video.PART_SIZES
LANDMARK_FILES = "train_landmark_files"
MAP_FILE = "sign_to_prediction_index_map.json"
TRAIN_CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign", "source")
PARTIAL = ".partial"  # suffix of a file being written
NUM_EXAMPLES = 5  # problems of each kind shown


class ExtractError(Exception):
    """A problem the user can fix; one sentence naming the thing and the fix."""


@dataclass(frozen=True)
class Job:
    source: Path  # the recording
    out: Path  # the landmark file to write
    sign: str | None = None  # dataset mode: the row of train.csv
    signer: int | None = None
    sequence_id: int | None = None
    label: str = ""  # the source as the user named it (train.csv's "source")


@dataclass
class Report:
    written: list[Job] = field(default_factory=list)
    existing: list[Job] = field(default_factory=list)  # skipped: already extracted
    frames: int = 0  # extracted by this run
    seconds: float = 0.0
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> messages
    interrupted: bool = False

    def add_problem(self, kind: str, message: str) -> None:
        self.problems.setdefault(kind, []).append(message)

    @property
    def num_problems(self) -> int:
        return sum(len(messages) for messages in self.problems.values())


# Landmark files ---------------------------------------------------------------------------


def kaggle_table(points: np.ndarray):
    """A pyarrow table of (T, 543, 3) landmarks in the Kaggle layout (types as Kaggle's)."""
    pa = _pyarrow()
    T = len(points)
    types = np.concatenate([np.full(n, name, dtype=object) for name, n in PART_SIZES])
    index = np.concatenate([np.arange(n, dtype=np.int16) for _, n in PART_SIZES])
    frame = np.repeat(np.arange(T), video.NUM_LANDMARKS)
    frame = frame.astype(np.int16 if T <= np.iinfo(np.int16).max else np.int32)
    type_column = np.tile(types, T)
    index_column = np.tile(index, T)
    row_id = [
        f"{f}-{t}-{i}"
        for f, t, i in zip(frame.tolist(), type_column, index_column.tolist(), strict=True)
    ]
    flat = points.reshape(-1, 3).astype(np.float64)  # float32 values, exactly
    columns = {
        "frame": pa.array(frame),
        "row_id": pa.array(row_id, type=pa.string()),
        "type": pa.array(type_column, type=pa.string()),
        "landmark_index": pa.array(index_column),
        **{name: pa.array(flat[:, c], from_pandas=True) for c, name in enumerate("xyz")},
    }  # from_pandas: NaN is written as null, as pandas wrote the Kaggle files
    return pa.table(columns)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ExtractError("writing parquet needs pyarrow: pip install -e '.[kaggle]'") from None
    return pa


def write_landmarks(path: Path, points: np.ndarray) -> None:
    """Write (T, 543, 3) landmarks as .parquet (Kaggle layout) or .npy, atomically."""
    temporary = partial_path(path)
    try:
        if path.suffix == ".npy":
            with open(temporary, "wb") as file:
                np.save(file, points.astype(np.float32), allow_pickle=False)
        else:
            _pyarrow().parquet.write_table(kaggle_table(points), temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL}")


def write_text_atomically(path: Path, text: str) -> None:
    temporary = partial_path(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# Finding the recordings ---------------------------------------------------------------------


def recordings_below(folder: Path) -> list[Path]:
    """Every video or image file below `folder` (hidden ones left out), sorted."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and video.is_video_path(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def plain_jobs(inputs: list[Path], out: Path, suffix: str) -> tuple[list[Job], bool]:
    """(jobs, folder mode) for files and folders -> landmark files under OUT (or OUT itself
    for one file named like a landmark file)."""
    if len(inputs) == 1 and inputs[0].is_file() and out.suffix in FORMATS:
        _check_recording(inputs[0])
        return [Job(inputs[0], out, label=str(inputs[0]))], False
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} is a file: name a directory for several recordings")
    jobs, folder_mode = [], False
    for given in inputs:
        if given.is_dir():
            folder_mode = True
            found = recordings_below(given)
            if not found:
                raise ExtractError(f"{given} holds no video or image file")
            for path in found:
                relative = path.relative_to(given).with_suffix(suffix)
                jobs.append(Job(path, out / relative, label=str(path)))
        else:
            _check_recording(given)
            jobs.append(Job(given, out / (given.stem + suffix), label=str(given)))
    _refuse_clashes(jobs)
    return jobs, folder_mode


def _check_recording(path: Path) -> None:
    if not path.exists():
        raise ExtractError(f"{path} does not exist")
    if not video.is_video_path(path):
        suffixes = " ".join(video.VIDEO_SUFFIXES + video.IMAGE_SUFFIXES)
        raise ExtractError(f"{path} is not a video or image file (suffixes: {suffixes})")


def _refuse_clashes(jobs: list[Job]) -> None:
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.out in seen:
            raise ExtractError(
                f"{seen[job.out].source} and {job.source} would both be written to {job.out}: "
                "extract them in separate runs"
            )
        seen[job.out] = job


def sequence_id(signer: int, sign: str, label: str) -> int:
    """A stable id for a signer's recording of a sign: the same source, the same id on every
    run, and ids unique across signers, as Kaggle's are."""
    digest = hashlib.sha256(f"{signer}\n{sign}\n{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF  # fits Kaggle's int32 readers


def dataset_jobs(source: Path, out: Path, signer: int | None) -> list[Job]:
    """Jobs for labelled recordings: a folder SOURCE/<sign>/<file> (all of `signer`), or a
    CSV with the columns path, sign, signer (paths relative to the CSV's folder)."""
    if source.is_dir():
        if signer is None:
            raise ExtractError("a folder of signs needs --signer N (a whole number, the signer)")
        rows = []
        for sign_dir in sorted(p for p in source.iterdir() if p.is_dir()):
            if sign_dir.name.startswith("."):
                continue
            for path in recordings_below(sign_dir):
                rows.append((path, sign_dir.name, signer, str(path.relative_to(source))))
        if not rows:
            raise ExtractError(
                f"{source} holds no SIGN/recording files (e.g. {source}/hello/1.mp4)"
            )
    elif source.suffix.lower() == ".csv" and source.is_file():
        if signer is not None:
            raise ExtractError("--signer is for a folder of signs: the CSV names each signer")
        rows = _read_labels_csv(source)
    elif source.exists():
        raise ExtractError(f"--dataset takes a folder SIGN/recording or a CSV, not {source}")
    else:
        raise ExtractError(f"{source} does not exist")
    jobs = []
    for path, sign, pid, label in rows:
        number = sequence_id(pid, sign, label)
        relative = Path(LANDMARK_FILES) / str(pid) / f"{number}.parquet"
        jobs.append(Job(path, out / relative, sign, pid, number, label))
    _refuse_clashes(jobs)
    return jobs


def _read_labels_csv(path: Path) -> list[tuple[Path, str, int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExtractError(f"{path} is not UTF-8 text (byte {error.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if not {"path", "sign", "signer"} <= set(header):
        raise ExtractError(f"{path} has the header {','.join(header)!r}, not 'path,sign,signer'")
    where = [header.index(name) for name in ("path", "sign", "signer")]
    rows = []
    for number, line in enumerate(reader, start=2):
        if not any(cell.strip() for cell in line):
            continue
        try:
            given, sign, signer = (line[i].strip() for i in where)
            pid = int(signer)
        except (IndexError, ValueError):
            raise ExtractError(
                f"{path} line {number} is not path,sign,signer with a whole-number signer: "
                f"{','.join(line)!r}"
            ) from None
        if not given or not sign:
            raise ExtractError(f"{path} line {number} has an empty path or sign")
        recording = Path(given) if Path(given).is_absolute() else path.parent / given
        _check_recording(recording)
        rows.append((recording, sign, pid, given))
    if not rows:
        raise ExtractError(f"{path} lists no recording")
    return rows


def write_dataset_index(out: Path, jobs: list[Job]) -> tuple[int, int]:
    """Write train.csv and the sign map for every job whose landmark file exists, keeping the
    rows of earlier runs; (rows, signs)."""
    rows: dict[tuple[int, int], dict[str, str]] = {}
    csv_path = out / "train.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                if (out / row.get("path", "")).is_file():
                    rows[(int(row["participant_id"]), int(row["sequence_id"]))] = row
    for job in jobs:
        if job.out.is_file():
            rows[(job.signer, job.sequence_id)] = {
                "path": job.out.relative_to(out).as_posix(),
                "participant_id": str(job.signer),
                "sequence_id": str(job.sequence_id),
                "sign": job.sign,
                "source": job.label,
            }
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, TRAIN_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    signs = sorted({row["sign"] for row in rows.values()})
    write_text_atomically(csv_path, text.getvalue())
    mapping = json.dumps({sign: index for index, sign in enumerate(signs)}, indent=4)
    write_text_atomically(out / MAP_FILE, mapping + "\n")
    return len(rows), len(signs)


# Running the jobs ------------------------------------------------------------------------------

_frames_done = None  # a shared counter of frames extracted (multiprocessing.Value)
_on_frame: Callable[[], None] | None = None  # one process: progress after each frame
_stop = threading.Event()  # Ctrl-C in the process that extracts: stop between frames


def _init_worker(counter) -> None:
    global _frames_done
    _frames_done = counter
    video.quiet_native_output()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _count_frames(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        if _stop.is_set():
            raise KeyboardInterrupt
        yield frame
        if _frames_done is not None:
            with _frames_done.get_lock():
                _frames_done.value += 1
        if _on_frame is not None:
            _on_frame()


def extract_one(job: Job, complexity: int, keep_empty: bool) -> tuple[Job, int, str | None, str]:
    """Extract and write one recording: (job, frames, problem kind or None, message)."""
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
    return job, len(points), None, ""


@contextmanager
def _stop_on_interrupt() -> Iterator[None]:
    """Ctrl-C sets `_stop` (checked between frames and between results) instead of raising
    wherever the program is, which could be inside MediaPipe's or pyarrow's callbacks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    jobs: list[Job],
    *,
    complexity: int = 1,
    workers: int = 1,
    keep_empty: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Extract every job whose file is not there yet. `on_progress(frames, files)` is called
    with the totals done so far, about ten times a second. A Ctrl-C stops the run between
    frames (one process) or at once (workers, terminated): finished files stay, no partial one
    does, and the report says `interrupted`."""
    report = Report()
    todo = []
    for job in jobs:
        (report.existing if job.out.is_file() else todo).append(job)
        partial_path(job.out).unlink(missing_ok=True)  # left by a killed run
    if not todo:
        return report
    if any(job.out.suffix == ".parquet" for job in todo):
        _pyarrow()  # fail now, not after the first extraction
    video.check_complexity(complexity)
    video.quiet_native_output()
    global _frames_done, _on_frame
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    started = time.perf_counter()
    shown = [0.0]  # when progress was last reported

    def finished(result) -> None:
        job, frames, kind, message = result
        report.frames += frames
        if kind is None:
            report.written.append(job)
        else:
            report.add_problem(kind, message)

    def progress(now: bool = True) -> None:
        if on_progress and (now or time.perf_counter() - shown[0] > 0.1):
            shown[0] = time.perf_counter()
            on_progress(counter.value, len(report.written) + report.num_problems)

    with _stop_on_interrupt():
        if workers == 1:
            _frames_done, _on_frame = counter, lambda: progress(now=False)
            try:
                for job in todo:
                    if _stop.is_set():
                        raise KeyboardInterrupt
                    finished(extract_one(job, complexity, keep_empty))
                    progress()
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                _frames_done = _on_frame = None
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process with threads
            pool = context.Pool(min(workers, len(todo)), _init_worker, (counter,))
            try:
                results = pool.imap_unordered(
                    _extract_job, [(job, complexity, keep_empty) for job in todo]
                )
                for _ in todo:
                    while True:
                        if _stop.is_set():
                            raise KeyboardInterrupt
                        try:
                            finished(results.next(timeout=0.1))
                            break
                        except multiprocessing.TimeoutError:
                            progress(now=False)
                    progress()
                pool.close()
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                pool.terminate()
                pool.join()
                for job in todo:  # a worker stopped mid-write leaves its temporary file
                    partial_path(job.out).unlink(missing_ok=True)
    report.seconds = time.perf_counter() - started
    return report


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
    complexity: Annotated[
        int,
        typer.Option(
            min=0,
            max=2,
            help="MediaPipe pose model complexity: 1; 0 and 2 need model files the wheel lacks.",
        ),
    ] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes extracting in parallel.")] = 1,
    keep_empty: Annotated[
        bool, typer.Option(help="Write all-NaN files for recordings where no person is found.")
    ] = False,
) -> None:
    """MediaPipe Holistic landmarks of videos and images, in the Kaggle layout (needs
    pip install -e '.\\[video]').

    Files already extracted are skipped, so an interrupted run continues where it stopped.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cli import console, note, say_error, say_interrupted, styled, user_errors

    with user_errors(ExtractError, video.VideoError):
        suffix = f".{format.lower().lstrip('.')}"
        if suffix not in FORMATS:
            raise ExtractError(f"--format {format}: choose parquet or npy")
        if dataset:
            if len(inputs) != 1:
                raise ExtractError("--dataset takes one folder SIGN/recording or one CSV")
            if suffix != ".parquet" or out.suffix in FORMATS:
                raise ExtractError("--dataset writes the Kaggle layout: --out a folder, parquet")
            if out.exists() and not out.is_dir():
                raise ExtractError(f"--out {out} is a file: name a folder")
            jobs, folder_mode = dataset_jobs(inputs[0], out, signer), True
        else:
            if signer is not None:
                raise ExtractError("--signer goes with --dataset")
            if out.suffix in FORMATS:
                suffix = out.suffix
            jobs, folder_mode = plain_jobs(inputs, out, suffix)
            if not folder_mode:
                for job in jobs:
                    if job.out.exists():
                        raise ExtractError(f"{job.out} exists: remove it or choose another --out")
        if not folder_mode:  # a single file goes where the user said: its folder must exist
            parent = jobs[0].out.parent
            if len(jobs) == 1 and jobs[0].out == out and not parent.is_dir():
                raise ExtractError(f"--out {out}: directory {parent} does not exist")
        video.check_complexity(complexity)
        video.quiet_native_output()  # before the progress bar, which swaps sys.stdout meanwhile
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

            report = run(
                jobs,
                complexity=complexity,
                workers=workers,
                keep_empty=keep_empty,
                on_progress=show,
            )
            if dataset and out.is_dir():
                num_rows, num_signs = write_dataset_index(out, jobs)
    for kind, messages in report.problems.items() if folder_mode else ():
        shown = "; ".join(messages[:NUM_EXAMPLES])
        more = f" (and {len(messages) - NUM_EXAMPLES} more)" if len(messages) > NUM_EXAMPLES else ""
        console.print(
            styled(
                f"skipped {len(messages)} ({kind.replace('_', ' ')}):", "yellow", f" {shown}{more}"
            )
        )
    rate = report.frames / report.seconds if report.seconds else 0.0
    where = out if folder_mode else jobs[0].out
    line = (
        f"{len(report.written)} recording(s), {report.frames} frames in {report.seconds:.1f}s "
        f"({rate:.1f} frames/s, complexity {complexity}, {workers} worker(s)) -> {where}"
    )
    if report.existing:
        line += f"; {len(report.existing)} already extracted, skipped"
    if report.interrupted:
        say_interrupted(f": {line}; run the same command again to continue")
        raise typer.Exit(130)
    if not report.written and not report.existing:
        say_error(
            "nothing extracted: " + "; ".join(m for ms in report.problems.values() for m in ms)
            if not folder_mode
            else f"nothing extracted from {len(jobs)} recording(s) (see the skipped lines above)"
        )
        raise typer.Exit(1)
    console.print(line)
    if dataset:
        console.print(
            f"{out}: train.csv has {num_rows} recordings of {num_signs} signs; next: "
            f"python islr.py prepare {out} DATA_DIR"
        )
        if num_signs < 2:
            note("a data set needs at least two signs to train a classifier")
