"""Convert the raw Kaggle asl-signs layout into the GISLR HDF5 layout (REFERENCE.md section 2).

In:  RAW_DIR/train.csv, RAW_DIR/train_landmark_files/<pid>/<sequence_id>.parquet,
     RAW_DIR/sign_to_prediction_index_map.json (optional: the raw vocabulary).
Out: OUT_DIR/<pid>.hdf5 (group "<sequence_id>" -> feature float32 [3, T, 543], token int64 [1]),
     OUT_DIR/sign_to_prediction_index_map.json re-indexed to the chosen signs, OUT_DIR/LICENSE.txt.

Run:  python islr.py prepare RAW_DIR OUT_DIR --top 10 --workers 2
Speed: make bench-prepare RAW=RAW_DIR (bench/prepare.py: against one pandas DataFrame per file)

Reading the raw layout is kaggle.py (parquet needs the optional extra, `pip install
'.[kaggle]'`); this file chooses the signs and writes the HDF5 files. One sequence is in memory at a time;
each signer file is written under a temporary name and renamed when complete, so a re-run
skips finished signers and an interrupted run never leaves a half-written `<pid>.hdf5`.
"""

import hashlib
import json
import multiprocessing
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h5py
import numpy as np

import safely
from raw.kaggle import (
    DUPLICATE_SEQUENCE,
    MAP_FILE,
    UNKNOWN_SIGN,
    BadSequenceError,
    KaggleError,
    TrainRow,
    pyarrow_parquet,
    read_sequence,
    read_train_csv,
    write_sign_map,
)

# The published GISLR files use exactly these settings (chunks: h5py's automatic guess).
COMPRESSION = {"compression": "gzip", "compression_opts": 9, "shuffle": True}
NUM_EXAMPLES = 5  # problems of each kind kept as examples in the report
VOCABULARY_ATTR = "islr_vocabulary"  # JSON of the vocabulary a signer file was made for
SOURCES_ATTR = "islr_sources"  # digest of the train.csv rows it was made from
LICENSE_TEXT = """GISLR-layout conversion of the asl-signs data
Source: Google - Isolated Sign Language Recognition (asl-signs) competition data,
licensed CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)
by the Deaf Professional Arts Network and the Georgia Institute of Technology.
Modification: only {num_signs} signs, re-indexed from 0 in the order of
sign_to_prediction_index_map.json; packed one HDF5 file per signer
(feature float32 [3, T, 543], token int64 [1]).
"""  # the attribution CC-BY 4.0 asks for, as in the published GISLR folders


class ConvertError(KaggleError):
    """A conversion the user asked for cannot be done; one sentence naming the fix."""


@dataclass
class ConvertReport:
    vocabulary: dict[str, int]  # sign -> index, as written to the index map
    num_sequences: int = 0  # written by this run
    num_signers: int = 0  # signer files written by this run
    num_signers_reused: int = 0  # complete from an earlier run for the same vocabulary and rows
    num_sequences_reused: int = 0  # sequences in those files
    num_stale_removed: int = 0  # signer files in OUT that train.csv does not list, removed
    replaced_vocabulary: dict[str, int] | None = None  # the map of an earlier run, if another
    skipped: dict[str, int] = field(default_factory=dict)  # problem kind -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> first few messages

    def add_problem(self, error: BadSequenceError, strict: bool) -> None:
        if strict:
            raise ConvertError(f"{error} (run without --strict to skip such input)")
        self.skipped[error.kind] = self.skipped.get(error.kind, 0) + 1
        examples = self.examples.setdefault(error.kind, [])
        if len(examples) < NUM_EXAMPLES:
            examples.append(str(error))

    def merge(self, other: "ConvertReport") -> None:
        self.num_sequences += other.num_sequences
        self.num_signers += other.num_signers
        for kind, count in other.skipped.items():
            self.skipped[kind] = self.skipped.get(kind, 0) + count
            self.examples.setdefault(kind, []).extend(other.examples[kind])
            del self.examples[kind][NUM_EXAMPLES:]


def choose_signs(
    rows: Sequence[TrainRow],
    *,
    top: int | None = None,
    signs: Sequence[str] | None = None,
    known: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The vocabulary sign -> index to convert.

    `signs` keeps the given order; `top` takes the N most frequent signs of `rows` (all of them
    if fewer), ordered by count descending, ties by name (the order of the GISLR top-10 map);
    neither takes every sign in the raw index order of `known`. `known` (the raw map) says
    which signs exist; without it, the signs of `rows` do.
    """
    ordered = sorted(known, key=known.__getitem__) if known else sorted({r.sign for r in rows})
    if top is not None and signs is not None:
        raise ConvertError("give either --top or --signs, not both")
    if signs is not None:
        chosen = list(dict.fromkeys(signs))  # drop repeats, keep order
        unknown = [sign for sign in chosen if sign not in set(ordered)]
        if not chosen or unknown:
            names = ", ".join(unknown) or "nothing"
            raise ConvertError(f"--signs names {names}: not a sign of the raw vocabulary")
        present = {r.sign for r in rows}
        absent = [sign for sign in chosen if sign not in present]
        if absent:  # a class without one sequence
            raise ConvertError(f"--signs names {', '.join(absent)}: train.csv has no row of it")
    elif top is not None:
        if top < 1:
            raise ConvertError(f"--top must be at least 1, not {top}")
        counts = Counter(r.sign for r in rows if r.sign in set(ordered))
        chosen = sorted(counts, key=lambda sign: (-counts[sign], sign))[:top]
    else:
        chosen = ordered
    return {sign: index for index, sign in enumerate(chosen)}


@dataclass(frozen=True)
class _SignerJob:
    raw_dir: Path
    out_path: Path
    items: tuple[tuple[str, int, int], ...]  # (path, sequence_id, token)
    vocabulary_json: str
    sources: str


_progress_queue = None  # set in worker processes: where they report files done


def _init_worker(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    safely.ignore_in_worker()  # the parent terminates the workers, removes their temporaries


def write_sequence(file: h5py.File, sequence_id: int, feature: np.ndarray, token: int) -> None:
    group = file.create_group(str(sequence_id))
    group.create_dataset("feature", data=feature, **COMPRESSION)
    group.create_dataset("token", data=np.array([token], dtype=np.int64))


def _convert_signer(
    job: _SignerJob,
    strict: bool,
    on_file: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
):
    """Write one signer file via a temporary name; returns this signer's ConvertReport.
    `stop` (safely.deferred, in the main process) is checked between files."""
    report = ConvertReport(vocabulary={})
    temporary = job.out_path.with_suffix(".partial")  # no ".hdf5" in it: loaders glob for that
    try:
        with h5py.File(temporary, "w") as file:
            for path, sequence_id, token in job.items:
                if stop is not None:
                    safely.check(stop)
                try:
                    write_sequence(file, sequence_id, read_sequence(job.raw_dir / path), token)
                    report.num_sequences += 1
                except BadSequenceError as error:
                    report.add_problem(error, strict)
                if on_file is not None:
                    on_file(1)
                elif _progress_queue is not None:
                    _progress_queue.put(1)
            file.attrs[VOCABULARY_ATTR] = job.vocabulary_json
            file.attrs[SOURCES_ATTR] = job.sources
        if report.num_sequences:
            with open(temporary, "rb+") as raw:  # on disk before the rename makes it "complete"
                os.fsync(raw.fileno())
            os.replace(temporary, job.out_path)
            report.num_signers = 1
        else:  # nothing usable: no file, and no stale one from another vocabulary either
            temporary.unlink()
            job.out_path.unlink(missing_ok=True)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return report


def _made_for(path: Path) -> tuple[str, str] | None:
    """(vocabulary JSON, sources digest) a signer file was made for, None if not made here."""
    try:
        with h5py.File(path, "r") as file:
            return str(file.attrs[VOCABULARY_ATTR]), str(file.attrs[SOURCES_ATTR])
    except (OSError, KeyError):
        return None


def refuse_raw_dir(raw_dir: Path, out_dir: Path) -> None:
    """OUT_DIR must not be a Kaggle download (RAW_DIR itself, say): its map would be replaced."""
    if out_dir.is_dir() and (
        out_dir.resolve() == raw_dir.resolve() or (out_dir / "train.csv").exists()
    ):
        raise ConvertError(f"{out_dir} is a Kaggle download: convert into a new or empty directory")


def earlier_output(raw_dir: Path, out_dir: Path) -> dict[str, tuple[str, str]]:
    """The signer files an earlier prepare run left in OUT_DIR: name -> (vocabulary JSON,
    sources digest). Refuses, before anything is written, an OUT_DIR holding files prepare
    did not write: they would be overwritten (a raw download's map and LICENSE.txt), or kept
    with labels that the new map no longer means (a downloaded GISLR set's signer files)."""
    refuse_raw_dir(raw_dir, out_dir)
    if not out_dir.is_dir():
        return {}
    earlier = {}
    for path in sorted(out_dir.glob("*.hdf5")):
        earlier[path.name] = _made_for(path)
        if earlier[path.name] is None:
            raise ConvertError(
                f"{out_dir} holds {path.name}, which prepare did not write (or "
                "is damaged): convert into a new or empty directory"
            )
    license_path = out_dir / "LICENSE.txt"
    our_license = license_path.exists() and license_path.read_text(errors="replace").startswith(
        LICENSE_TEXT.splitlines()[0]
    )
    theirs = []
    if license_path.exists() and not our_license:
        theirs.append(license_path.name)
    if (out_dir / MAP_FILE).exists() and not (earlier or our_license):
        theirs.append(MAP_FILE)
    if theirs:
        raise ConvertError(
            f"{out_dir} holds {theirs[0]}, which prepare did not write: "
            "convert into a new or empty directory"
        )
    return earlier


def _read_json(path: Path) -> object:
    """The JSON in a file, or None where it does not hold JSON."""
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError):
        return None


def convert(
    raw_dir: Path,
    out_dir: Path,
    *,
    top: int | None = None,
    signs: Sequence[str] | None = None,
    workers: int = 1,
    strict: bool = False,
    on_file: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert RAW_DIR (Kaggle layout) into OUT_DIR (GISLR HDF5 layout); see `choose_signs`.

    Bad input (see the kinds above) is counted in the report and skipped, or raises
    ConvertError at the first one with `strict`. For a progress bar: `on_total(n)` is called
    once, before any work, with the number of train.csv rows of the chosen signs, and
    `on_file(n)` as n more of them are done (rows of reused signers count as done at once).
    `workers` > 1 converts signers in parallel processes.
    """
    rows, known, bad_rows = read_train_csv(raw_dir)
    report = ConvertReport(vocabulary={})
    for error in bad_rows:
        report.add_problem(error, strict)
    pyarrow_parquet()  # fail now, not in every worker, when the extra is missing
    vocabulary = choose_signs(rows, top=top, signs=signs, known=known)
    report.vocabulary = vocabulary
    by_signer = _rows_by_signer(rows, known, vocabulary, report, strict)
    if not by_signer:
        raise ConvertError(f"{raw_dir / 'train.csv'} lists no sequence of the chosen signs")
    earlier = earlier_output(raw_dir, out_dir)
    if on_total is not None:
        on_total(sum(len(signer_rows) for signer_rows in by_signer.values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in out_dir.glob("*.partial"):  # left by a killed worker of an earlier run
        path.unlink()
    map_path = out_dir / MAP_FILE
    if map_path.exists() and _read_json(map_path) != vocabulary:
        report.replaced_vocabulary = _read_json(map_path)
        map_path.unlink()  # until every signer file matches the new vocabulary, no map claims it
    jobs = _signer_jobs(raw_dir, out_dir, by_signer, vocabulary, earlier, report, on_file)
    jobs.sort(key=lambda job: -len(job.items))  # largest first balances the workers
    with safely.deferred() as stop:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                report.merge(_convert_signer(job, strict, on_file, stop))
        else:
            _convert_in_processes(jobs, min(workers, len(jobs)), strict, on_file, report, stop)
    if report.num_sequences + report.num_sequences_reused == 0:
        kind = max(report.skipped, key=report.skipped.get)
        raise ConvertError(
            f"no sequence could be converted: {report.skipped[kind]} {kind}, "
            f"e.g. {report.examples[kind][0]}"
        )

    safely.write_text(out_dir / "LICENSE.txt", LICENSE_TEXT.format(num_signs=len(vocabulary)))
    write_sign_map(out_dir, vocabulary)
    return report


def _rows_by_signer(
    rows: Sequence[TrainRow],
    known: Mapping[str, int] | None,
    vocabulary: dict[str, int],
    report: ConvertReport,
    strict: bool,
) -> dict[int, dict[int, TrainRow]]:
    """participant id -> sequence id -> row, for the rows of the chosen signs; a sign the raw
    map lacks and a repeated sequence are problems in `report`."""
    by_signer: dict[int, dict[int, TrainRow]] = defaultdict(dict)
    for row in rows:
        if known is not None and row.sign not in known:
            message = f"train.csv row {row.path} has the sign {row.sign!r}, not in the raw map"
            report.add_problem(BadSequenceError(UNKNOWN_SIGN, message), strict)
        elif row.sign not in vocabulary:
            continue  # not chosen: simply not converted
        elif row.sequence_id in by_signer[row.participant_id]:
            message = f"train.csv lists sequence {row.sequence_id} twice ({row.path})"
            report.add_problem(BadSequenceError(DUPLICATE_SEQUENCE, message), strict)
        else:
            by_signer[row.participant_id][row.sequence_id] = row
    return by_signer


def _signer_jobs(
    raw_dir: Path,
    out_dir: Path,
    by_signer: dict[int, dict[int, TrainRow]],
    vocabulary: dict[str, int],
    earlier: dict[str, tuple[str, str]],
    report: ConvertReport,
    on_file: Callable[[int], None] | None,
) -> list[_SignerJob]:
    """The signer files to write. A file an earlier run made from the same rows for the same
    vocabulary is reused (counted in `report`, its rows reported done); one of a signer absent from
    train.csv is removed."""
    vocabulary_json = json.dumps(vocabulary)
    jobs = []
    for pid, signer_rows in by_signer.items():
        items = tuple((r.path, r.sequence_id, vocabulary[r.sign]) for r in signer_rows.values())
        sources = hashlib.sha256(repr(sorted(items)).encode()).hexdigest()
        out_path = out_dir / f"{pid}.hdf5"
        if earlier.get(out_path.name) == (vocabulary_json, sources):
            with h5py.File(out_path, "r") as file:
                report.num_sequences_reused += len(file)
            report.num_signers_reused += 1
            if on_file is not None:
                on_file(len(items))
        elif items:
            jobs.append(_SignerJob(raw_dir, out_path, items, vocabulary_json, sources))
    for name in earlier:  # an earlier run's files, for signers train.csv now lacks
        if Path(name).stem not in {str(pid) for pid in by_signer}:
            (out_dir / name).unlink()
            report.num_stale_removed += 1
    return jobs


def _convert_in_processes(jobs, workers, strict, on_file, report: ConvertReport, stop) -> None:
    # spawn, not fork: the CLI process may hold threads (torch, rich) that fork copies unsafely.
    context = multiprocessing.get_context("spawn")
    progress = context.Queue() if on_file is not None else None  # undrained, it would fill up
    num_reported = num_done = 0
    # Leaving the block terminates the workers (Ctrl-C, strict error) instead of waiting for
    # the signers they are on; their .partial files are removed below.
    try:
        with safely.ignored_while_starting_workers():
            pool = context.Pool(workers, _init_worker, (progress,))
        with pool:
            results = pool.imap_unordered(partial(_convert_signer, strict=strict), jobs)
            for _ in jobs:
                while True:
                    safely.check(stop)
                    try:
                        signer_report = results.next(timeout=0.2)  # re-raises a worker's error
                        break
                    except multiprocessing.TimeoutError:
                        pass
                    finally:
                        while progress is not None and not progress.empty():
                            num_files = progress.get()
                            num_reported += num_files
                            on_file(num_files)
                report.merge(signer_report)
                num_done += signer_report.num_sequences + sum(signer_report.skipped.values())
    except BaseException:
        for job in jobs:  # the workers are gone now; remove what they were writing
            job.out_path.with_suffix(".partial").unlink(missing_ok=True)
        raise
    if on_file is not None and num_done > num_reported:  # messages still in flight at the end
        on_file(num_done - num_reported)
