"""What `extract` reads and where it writes: recordings found below folders, labelled recordings
(a folder SIGN/recording or a CSV of path, sign, signer) and the raw Kaggle data set they make.

Each recording becomes a Job: its source and the landmark file to write. Plain jobs mirror the
input folders under --out; `--dataset` jobs go to the raw Kaggle layout that `prepare` reads
(kaggle.py): train_landmark_files/<signer>/<sequence_id>.parquet, then `write_dataset_index`
writes train.csv (path, participant_id, sequence_id, sign, plus the source recording) and
sign_to_prediction_index_map.json. A recording's sequence id is a hash of its signer, sign and
path as given, so a run again skips what is done and adds what is new.
"""

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from raw import kaggle
from video import video

FORMATS = (".parquet", ".npy")


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


def command_jobs(
    inputs: list[Path], out: Path, dataset: bool, signer: int | None, format: str
) -> tuple[list[Job], bool]:
    """(jobs, folder mode) for the `extract` command's arguments, or an ExtractError naming the
    argument to change."""
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
    return jobs, folder_mode


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
        check_recording(inputs[0])
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
            check_recording(given)
            jobs.append(Job(given, out / (given.stem + suffix), label=str(given)))
    refuse_clashes(jobs)
    return jobs, folder_mode


def check_recording(path: Path) -> None:
    if not path.exists():
        raise ExtractError(f"{path} does not exist")
    if not video.is_video_path(path):
        suffixes = " ".join(video.VIDEO_SUFFIXES + video.IMAGE_SUFFIXES)
        raise ExtractError(f"{path} is not a video or image file (suffixes: {suffixes})")


def refuse_clashes(jobs: list[Job]) -> None:
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
        rows = read_labels_csv(source)
    elif source.exists():
        raise ExtractError(f"--dataset takes a folder SIGN/recording or a CSV, not {source}")
    else:
        raise ExtractError(f"{source} does not exist")
    jobs = []
    for path, sign, pid, label in rows:
        number = sequence_id(pid, sign, label)
        relative = Path(kaggle.LANDMARK_FILES) / str(pid) / f"{number}.parquet"
        jobs.append(Job(path, out / relative, sign, pid, number, label))
    refuse_clashes(jobs)
    return jobs


def read_labels_csv(path: Path) -> list[tuple[Path, str, int, str]]:
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
        check_recording(recording)
        rows.append((recording, sign, pid, given))
    if not rows:
        raise ExtractError(f"{path} lists no recording")
    return rows


def write_dataset_index(out: Path, jobs: list[Job]) -> tuple[int, int]:
    """Write train.csv and the sign map for every job whose landmark file exists, keeping the
    rows of earlier runs (read and written under the folder's index lock); (rows, signs)."""
    with kaggle.index_lock(out):
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
        signs = sorted({row["sign"] for row in rows.values()})
        kaggle.write_index(out, [rows[key] for key in sorted(rows)], signs)
        return len(rows), len(signs)
