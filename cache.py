"""Streaming load and the preprocessed cache: a dataset's model input, memory-mapped.

`load(root, config)` reads a GISLR directory one signer file at a time, in chunks of at most
CHUNK_FRAMES raw frames, preprocesses each chunk (data.prepare_arrays, vectorised) and keeps
only the model's input and what evaluation needs (labels, signers, sequence ids, lengths).
The raw (3, T, 543) arrays of a chunk are dropped before the next is read, so memory holds
the features, not the raw data. The features go to a cache entry on disk, which later runs
(train, cv, evaluate) memory-map instead of decoding HDF5 again:

    CACHE/<key>/frames.f32      (F, J*C) little-endian float32, every frame end to end
    CACHE/<key>/lengths.npy     (S,) int64        labels.npy (S,) int64
    CACHE/<key>/signers.npy     (S,) int16 index into the manifest's signer list
    CACHE/<key>/ids.npy         (S,) str sequence ids (a NumPy unicode array, no pickle)
    CACHE/<key>/manifest.json   written last: shapes, sizes and CRC-32 of every file above

CACHE is $ISLR_CACHE_DIR, else $XDG_CACHE_HOME/islr, else ~/.cache/islr (so read-only data
directories work); ISLR_CACHE_DIR=none turns the cache off (the features are then built in
memory on every run). `python islr.py cache` lists the entries, `--clear` removes them.

The key is a SHA-256 of: the format version, the source of preprocessing.py and
landmarks.py, the DataConfig, the resolved data directory, the vocabulary file's contents
and each signer file's name, size and mtime_ns (not a content hash: hashing the files would
cost a large part of decoding them). A changed file or setting is another key; the entry it
replaces (same directory and config) is removed. An entry is built in a temporary directory
and renamed into place whole, under an flock on `<key>.lock`: of two runs that start at once,
one builds and the other waits and then maps its result. Opening an entry checks the manifest
against every file's size and CRC-32; an entry that fails is removed and rebuilt.
"""

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import data
from data import Prepared
from preprocessing import DataConfig, DataError

FORMAT = 1  # bump when the layout of an entry changes
CHUNK_FRAMES = 8_192  # raw frames preprocessed at once: 53 MB raw, ~0.2 GB at the peak
CRC_BLOCK = 1 << 24  # bytes read at a time when checking a file
ARRAYS = ("lengths", "labels", "signers", "ids")
FRAMES_FILE = "frames.f32"
MANIFEST = "manifest.json"
SOURCES = ("preprocessing.py", "landmarks.py")  # the code that makes the features
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter: allocations from this size get a mapping
M_TRIM_THRESHOLD = -1  # glibc mallopt parameter: free heap top past this is given back


@dataclass
class Features:
    """Every sequence of a dataset, preprocessed: the model's input and what evaluation needs."""

    vocabulary: dict[str, int]  # sign -> class index
    prepared: Prepared  # all sequences; frames memory-mapped from the cache where there is one
    signers: np.ndarray  # (S,) str participant id per sequence
    sequence_ids: np.ndarray  # (S,) str HDF5 group names
    cached: bool  # True: read from a cache entry built earlier
    cache_note: str | None = None  # why no cache entry could be written, for the command to say

    def __len__(self) -> int:
        return len(self.prepared)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self)} sequences, {len(set(self.signers))} signers, "
            f"{len(self.vocabulary)} signs)"
        )

    def subset(self, signers: Iterable[str]) -> Prepared:
        """The sequences of these signers, in stored order; they share the frames tensor."""
        keep = torch.from_numpy(np.flatnonzero(np.isin(self.signers, sorted(signers))))
        whole = self.prepared
        return Prepared(whole.frames, whole.offsets[keep], whole.lengths[keep], whole.labels[keep])

    def split(self, train: list[str], val: list[str], test: list[str]) -> dict[str, Prepared]:
        """{"train", "val", and "test" if any test signers}, as data.prepare_split."""
        split = {"train": train, "val": val, "test": test}
        return {name: self.subset(signers) for name, signers in split.items() if signers}


def cache_directory() -> Path | None:
    """Where cache entries live; None when ISLR_CACHE_DIR=none turns the cache off."""
    chosen = os.environ.get("ISLR_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "none", "off") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "islr"


def entry_key(root: Path, files: dict[str, Path], config: DataConfig) -> tuple[str, dict]:
    """(key, description): what a cache entry was made from, and its SHA-256."""
    here = Path(__file__).resolve().parent
    description = {
        "format": FORMAT,
        "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in SOURCES},
        "config": asdict(config),
        "root": str(root.resolve()),
        "vocabulary": (root / data.VOCABULARY_FILE).read_text(),
        "files": [[path.name, *_identity(path)] for path in files.values()],
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32], description


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def load(
    root: Path | str,
    config: DataConfig,
    *,
    signers: set[str] | None = None,
    cache_dir: Path | None | str = "default",
    track=None,
) -> Features:
    """Every sequence of a GISLR directory (or only `signers`), preprocessed with `config`.

    With a cache: the entry for this data and config, built first if there is none (a run
    asking for only some signers builds none: it streams those signers into memory).
    `track(items, total, description)` wraps the signer files for a progress bar.
    """
    root = Path(root)
    files = data.signer_files(root)
    vocabulary = data.read_vocabulary(root)
    missing = sorted(set(signers or ()) - files.keys())
    if missing:
        raise DataError(f"signer {missing[0]} is not in {root} (it has {', '.join(files)})")
    directory = cache_directory() if cache_dir == "default" else cache_dir
    features, cache_note = None, None
    if directory is not None:
        key, description = entry_key(root, files, config)
        entry = Path(directory) / key
        features = _open(entry, vocabulary)
        if features is None and signers is None:
            try:
                features = _build_entry(entry, files, vocabulary, config, description, track)
            except OSError as error:  # a cache we may not write (read-only, full): none
                cache_note = (
                    f"no preprocessed cache ({error}); set ISLR_CACHE_DIR to a writable one"
                )
    if features is None:
        chosen = {s: p for s, p in files.items() if signers is None or s in signers}
        features = _in_memory(chosen, vocabulary, config, track)
    if not len(features):
        raise DataError(f"{root} holds no sequences")
    if signers is not None and features.cached:
        keep = np.flatnonzero(np.isin(features.signers, sorted(signers)))
        features = Features(
            vocabulary,
            features.subset(signers),
            features.signers[keep],
            features.sequence_ids[keep],
            True,
        )
    features.cache_note = cache_note
    return features


@contextmanager
def _heap_given_back():
    """Building features allocates and frees arrays of every size; glibc would keep the freed
    memory fragmented in its heap, held for the rest of the run under the mapped features
    (0.5 GB at 94k sequences). Inside: arrays over 128 KiB get their own mappings, returned
    to the system when freed. After: the threshold glibc's own tuning would reach (32 MiB),
    as training's batches are served fastest from the heap, and the free heap trimmed.
    Nothing happens off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 * 2**20)  # glibc's tuning keeps it at twice the above
        libc.malloc_trim(0)


def _chunks(files: dict[str, Path], num_classes: int, track) -> Iterable[tuple]:
    """(signer, preprocessed Prepared chunk, sequence ids) over every file, chunk by chunk."""
    items = files.items()
    if track is not None:
        items = track(items, len(files), "preprocessing signer files")
    for signer, path in items:
        for features, labels, ids in data.read_signer_chunks(path, num_classes, CHUNK_FRAMES):
            yield signer, features, labels, ids


def _in_memory(
    files: dict[str, Path], vocabulary: dict[str, int], config: DataConfig, track
) -> Features:
    frames, lengths, labels, signers, ids = [], [], [], [], []
    for signer, raw, raw_labels, raw_ids in _chunks(files, len(vocabulary), track):
        prepared = data.prepare_arrays(raw, np.array(raw_labels), config)
        del raw
        frames.append(prepared.frames)
        lengths.append(prepared.lengths)
        labels.append(prepared.labels)
        signers += [signer] * len(raw_ids)
        ids += raw_ids
    if not frames:
        return Features(vocabulary, _empty(config), np.array([]), np.array([]), False)
    lengths = torch.cat(lengths)
    prepared = Prepared(
        torch.cat(frames), torch.cumsum(lengths, 0) - lengths, lengths, torch.cat(labels)
    )
    return Features(vocabulary, prepared, np.array(signers), np.array(ids), False)


def prepare_inputs(inputs: list[Path], read, config: DataConfig) -> tuple[list[str], Prepared]:
    """(names, Prepared) of recordings read file by file with `read(path)` -> [(name, (3, T,
    543) array)], each file preprocessed before the next is read (labels -1)."""
    names, parts = [], []
    for path in inputs:
        recordings = read(path)
        names += [name for name, _ in recordings]
        features = [feature for _, feature in recordings]
        parts.append(data.prepare_arrays(features, np.full(len(features), -1), config))
        del recordings, features
    lengths = torch.cat([part.lengths for part in parts])
    frames = torch.cat([part.frames for part in parts])
    labels = torch.cat([part.labels for part in parts])
    return names, Prepared(frames, torch.cumsum(lengths, 0) - lengths, lengths, labels)


def _empty(config: DataConfig) -> Prepared:
    nothing = torch.zeros(0, dtype=torch.long)
    return Prepared(torch.zeros(0, config.num_features), nothing, nothing, nothing)


def _build_entry(
    entry: Path,
    files: dict[str, Path],
    vocabulary: dict[str, int],
    config: DataConfig,
    description: dict,
    track,
) -> Features:
    """Build the entry (unless a concurrent run just did) under its lock; then open it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(f"{entry.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second run waits here for the first to finish
        try:
            features = _open(entry, vocabulary)
            if features is not None:
                return features
            for stale in entry.parent.glob(f"{entry.name}.tmp-*"):  # from a killed build
                shutil.rmtree(stale, ignore_errors=True)
            temporary = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
            temporary.mkdir()
            try:
                with _heap_given_back():
                    _write(temporary, files, vocabulary, config, description, track)
                os.rename(temporary, entry)  # the whole entry appears at once
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
            _remove_replaced(entry, description)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    features = _open(entry, vocabulary)
    if features is None:
        raise DataError(f"the preprocessed cache {entry} fails its check right after writing")
    features.cached = False  # built by this run
    return features


def _write(
    directory: Path,
    files: dict[str, Path],
    vocabulary: dict[str, int],
    config: DataConfig,
    description: dict,
    track,
) -> None:
    lengths, labels, signers, ids = [], [], [], []
    names = list(files)
    crc, num_frames = 0, 0
    with open(directory / FRAMES_FILE, "wb") as out:
        for signer, raw, raw_labels, raw_ids in _chunks(files, len(vocabulary), track):
            prepared = data.prepare_arrays(raw, np.array(raw_labels), config)
            del raw
            block = prepared.frames.numpy().astype("<f4", copy=False).tobytes()
            out.write(block)
            crc = zlib.crc32(block, crc)
            num_frames += len(prepared.frames)
            lengths.append(prepared.lengths.numpy())
            labels.append(prepared.labels.numpy())
            signers.append(np.full(len(raw_ids), names.index(signer), np.int16))
            ids += raw_ids
        out.flush()
        os.fsync(out.fileno())
    arrays = {
        "lengths": np.concatenate(lengths or [np.zeros(0, np.int64)]),
        "labels": np.concatenate(labels or [np.zeros(0, np.int64)]),
        "signers": np.concatenate(signers or [np.zeros(0, np.int16)]),
        "ids": np.array(ids, dtype=str),
    }
    checks = {FRAMES_FILE: {"size": (directory / FRAMES_FILE).stat().st_size, "crc32": crc}}
    for name, array in arrays.items():
        path = directory / f"{name}.npy"
        np.save(path, array, allow_pickle=False)
        checks[path.name] = {"size": path.stat().st_size, "crc32": _crc(path)}
    manifest = {
        **description,
        "signer_names": names,
        "num_sequences": len(arrays["lengths"]),
        "frames_shape": [num_frames, config.num_features],
        "files_check": checks,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))  # last: marks it whole


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as file:
        while block := file.read(CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def read_manifest(entry: Path) -> dict | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _open(entry: Path, vocabulary: dict[str, int]) -> Features | None:
    """The entry's features, memory-mapped; None (and the entry removed) if it is absent,
    half-written or fails its check."""
    if not entry.exists():
        return None
    features = None
    manifest = read_manifest(entry)
    try:
        if manifest is not None and manifest.get("format") == FORMAT:
            features = _checked(entry, manifest, vocabulary)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        features = None
    if features is None:
        shutil.rmtree(entry, ignore_errors=True)  # never trusted: rebuilt by the caller
    return features


def _checked(entry: Path, manifest: dict, vocabulary: dict[str, int]) -> Features | None:
    for name, check in manifest["files_check"].items():
        path = entry / name
        if path.stat().st_size != check["size"] or _crc(path) != check["crc32"]:
            return None
    if set(manifest["files_check"]) != {FRAMES_FILE, *(f"{name}.npy" for name in ARRAYS)}:
        return None
    arrays = {name: np.load(entry / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
    num_frames, width = manifest["frames_shape"]
    lengths = torch.from_numpy(arrays["lengths"])
    if int(lengths.sum()) != num_frames or any(len(a) != len(lengths) for a in arrays.values()):
        return None
    if num_frames:
        # Copy-on-write: a writable tensor (no torch warning); pages stay shared with the file.
        mapped = np.memmap(entry / FRAMES_FILE, dtype="<f4", mode="c", shape=(num_frames, width))
        frames = torch.from_numpy(mapped)
    else:
        frames = torch.zeros(0, width)
    offsets = torch.cumsum(lengths, 0) - lengths
    prepared = Prepared(frames, offsets, lengths, torch.from_numpy(arrays["labels"]))
    signers = np.array(manifest["signer_names"])[arrays["signers"]]
    return Features(vocabulary, prepared, signers, arrays["ids"], True)


def _remove_replaced(entry: Path, description: dict) -> None:
    """Remove the entries of the same data directory and config made from other files."""
    for other in entry.parent.iterdir():
        if other == entry or not other.is_dir() or ".tmp-" in other.name:
            continue
        manifest = read_manifest(other)
        if manifest is not None and all(
            manifest.get(field) == description[field] for field in ("root", "config")
        ):
            shutil.rmtree(other, ignore_errors=True)
            other.with_name(f"{other.name}.lock").unlink(missing_ok=True)
