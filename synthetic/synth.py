"""Synthetic GISLR top-10: a stand-in dataset in exactly the layout of the series' data.

The real top-10 files cannot be shipped, so a fresh clone trains on this instead. `generate()`
writes one `<participant_id>.hdf5` per signer (a group per sequence: `feature` float32
[3, T, 543], `token` int64 [1]), `sign_to_prediction_index_map.json`, README.txt, LICENSE.txt:

    python islr.py synth datasets/synthetic-top10 --seed 0

Each word is a made-up sign (ASL-like; the names are only labels, lexicon.py). Three pairs
differ only in the direction of time (look/pretend, uncle/donkey, shhh/mouse), so a model that
averages frames without regard to order cannot tell them apart; listen/hear share place and
path and differ in handshape. How a signer performs them, clip by clip: clips.py. This
module writes the files, a process per core, each signer from its own seeded generator, so the
same seed gives byte-identical files.
"""

import os
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import h5py
import numpy as np

import safely
from landmarks import MAP_FILE
from raw import kaggle
from synthetic import clips, lexicon, raw_sets

# The 21 participant ids of the Kaggle data (names only, no values); 16069, the series'
# test signer, comes first so that a smaller set still has it.
PARTICIPANTS = (
    "16069",
    "2044",
    "4718",
    "18796",
    "22343",
    "25571",
    "26734",
    "27610",
    "28656",
    "29302",
    "30680",
    "32319",
    "34503",
    "36257",
    "37055",
    "37779",
    "49445",
    "53618",
    "55372",
    "61333",
    "62590",
)
COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True)  # real: 9, 3x slower


CLIPS_AT_ONCE = 1_000  # a signer with more clips is made in parts of this many (memory)


def _signer_file(
    path: Path,
    seed: int,
    index: int,
    left_handed: bool,
    ids: np.ndarray,
    num_signs: int = 10,
    layout: str = "gislr",
    lengths: str = "top10",
) -> int | list:
    """Generate and write one signer; their own generator makes them independent of the rest.

    The gislr layout returns the number of sequences; the kaggle layout their train.csv rows.
    """
    rng = np.random.default_rng([seed, index])
    signer = clips.make_signer(rng, path.stem, left_handed, num_signs)
    labels = rng.permutation(np.arange(len(ids)) % num_signs)  # balanced classes
    names, signs = lexicon.vocabulary(num_signs)
    pieces = (  # (ids, clips, labels) of CLIPS_AT_ONCE sequences at a time, made as written
        (
            ids[i : i + CLIPS_AT_ONCE],
            clips.signer_clips(rng, signer, labels[i : i + CLIPS_AT_ONCE], signs, lengths),
            labels[i : i + CLIPS_AT_ONCE],
        )
        for i in range(0, len(ids), CLIPS_AT_ONCE)
    )
    if layout == "kaggle":
        return raw_sets.write_kaggle_signer(path.parent, path.stem, pieces, list(names))

    with safely.replacing(path) as temporary, h5py.File(temporary, "w") as file:
        for some in pieces:
            for sequence_id, feature, label in zip(*some, strict=True):
                group = file.create_group(str(sequence_id))
                # No timestamps: the same seed gives byte-identical files.
                group.create_dataset("feature", data=feature, track_times=False, **COMPRESSION)
                token = np.array([label], np.int64)
                group.create_dataset("token", data=token, track_times=False)

    return len(ids)


def generate(
    out_dir: Path,
    *,
    seed: int = 0,
    num_signers: int = 21,
    sequences_per_signer: int = 190,
    num_signs: int = 10,
    layout: str = "gislr",
    lengths: str = "top10",
) -> int:
    """Write the dataset; return the number of sequences written.

    `num_signs` past the ten: made-up signs (lexicon.vocabulary); layout "kaggle": the raw
    asl-signs layout (train.csv and parquet files, raw_sets.write_kaggle_signer); `lengths`
    "real": clip lengths with the real data's longer tail (clips.LENGTHS).
    """
    _check_options(num_signers, sequences_per_signer, layout, lengths)
    vocabulary, _ = lexicon.vocabulary(num_signs)
    out_dir = Path(out_dir)
    participants = [
        *PARTICIPANTS,
        *(str(90001 + i) for i in range(num_signers - len(PARTICIPANTS))),
    ][:num_signers]
    _clear(out_dir, participants)
    left, ids = _draw_signers(seed, num_signers, sequences_per_signer)
    lefties = ", ".join(np.array(participants)[left]) or "none"
    made = _description(
        out_dir, seed, num_signers, sequences_per_signer, num_signs, layout, lengths, lefties
    )
    # The README first: it marks the directory as ours, so an interrupted run can be redone.
    # The map last: until it is there, the directory is not a dataset (see `unfinished`).
    safely.write_text(out_dir / "README.txt", README.format(**made))
    safely.write_text(out_dir / "LICENSE.txt", LICENSE.format(**made))
    jobs = [
        (out_dir / f"{p}.hdf5", seed, i, left[i], ids[i], num_signs, layout, lengths)
        for i, p in enumerate(participants)
    ]
    workers = min(os.cpu_count() or 1, num_signers)
    if workers > 1:  # compression takes most of the time: a process per core
        results = _in_processes(jobs, workers)
    else:
        results = [_signer_file(*job) for job in jobs]
    if layout == "kaggle":
        rows = [row for signer_rows in results for row in signer_rows]
        safely.write_text(out_dir / "train.csv", raw_sets.train_csv(rows))
        results = [len(rows)]
    kaggle.write_sign_map(out_dir, vocabulary)
    return sum(results)


def _check_options(num_signers: int, sequences_per_signer: int, layout: str, lengths: str) -> None:
    if num_signers < 1 or sequences_per_signer < 1:
        raise ValueError("num_signers and sequences_per_signer must be at least 1")
    if layout not in ("gislr", "kaggle"):
        raise ValueError(f"unknown layout {layout!r}: choose gislr or kaggle")
    if lengths not in clips.LENGTHS:
        raise ValueError(f"unknown lengths {lengths!r}: choose {' or '.join(clips.LENGTHS)}")


def _clear(out_dir: Path, participants: list[str]) -> None:
    """Make `out_dir` ready for the set: refuse a folder of other .hdf5 files, and remove the
    map, train.csv, signers past `participants` and temporary files of an earlier set."""
    if any(out_dir.glob("*.hdf5")) and not _ours(out_dir):
        raise FileExistsError(f"{out_dir} holds other .hdf5 files: choose an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MAP_FILE).unlink(missing_ok=True)  # written last, once the set is whole again
    (out_dir / "train.csv").unlink(missing_ok=True)  # the kaggle layout's: written last too
    for stale in set(out_dir.glob("*.hdf5")) - {out_dir / f"{p}.hdf5" for p in participants}:
        stale.unlink()  # from an earlier synthetic set with more signers
    for stale in out_dir.glob(".*.tmp"):
        stale.unlink()  # from a worker stopped while writing


def _draw_signers(
    seed: int, num_signers: int, sequences_per_signer: int
) -> tuple[np.ndarray, np.ndarray]:
    """(which signers are left-handed (S,), sequence ids (S, sequences_per_signer)), unique."""
    rng = np.random.default_rng(seed)
    # About one signer in five is left-handed, never 16069: the default test then measures
    # recognition rather than transfer to the rarer handedness.
    left = np.zeros(num_signers, bool)
    num_left = min(num_signers - 1, max(1, num_signers // 5))
    left[1 + rng.permutation(num_signers - 1)[:num_left]] = True
    ids = 1_000_000 + rng.choice(4_290_000_000, (num_signers, sequences_per_signer), replace=False)
    return left, ids


def _description(
    out_dir: Path,
    seed: int,
    num_signers: int,
    sequences_per_signer: int,
    num_signs: int,
    layout: str,
    lengths: str,
    lefties: str,
) -> dict[str, str]:
    """The fields of README and LICENSE: the command and call that made the set, its size."""
    made = dict(
        command=f"python islr.py synth {out_dir} --seed {seed}",
        left=lefties,
        count=num_signers * sequences_per_signer,
        call=f"{seed=}, {num_signers=}, {sequences_per_signer=}",
    )
    if (num_signs, layout) != (10, "gislr"):  # the default set's command names only the seed
        per_sign = sequences_per_signer // num_signs
        made["command"] += (
            f" --signs {num_signs} --signers {num_signers} --per-sign {per_sign} --layout {layout}"
        )
        made["call"] += f", {num_signs=}, {layout=}"
    if lengths != "top10":
        made["command"] += f" --lengths {lengths}"
        made["call"] += f", {lengths=}"
    return made


def _in_processes(jobs: list[tuple], workers: int) -> list:
    """_signer_file for every job in `workers` processes; their results, in job order.

    Ctrl-C is the parent's to handle (safely.deferred): it cancels the signers not started
    and waits for the few being written. A worker that dies raises BrokenProcessPool.
    """
    with (
        safely.deferred() as stop,
        ProcessPoolExecutor(workers, initializer=safely.ignore_in_worker) as pool,
    ):
        futures = [pool.submit(_signer_file, *job) for job in jobs]
        try:
            pending = futures
            while pending:
                safely.check(stop)
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                if any(future.exception() for future in done):
                    break  # result() below raises it
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def unfinished(out_dir: Path) -> bool:
    """A synthetic set whose generation was interrupted: ours, but without its map yet."""
    return _ours(Path(out_dir)) and not (Path(out_dir) / MAP_FILE).exists()


def ensure_default_data(path: Path) -> None:
    """The embedded default: generate the synthetic set the first time it is needed.

    Also when a first generation was interrupted: the set is complete once its map is there.
    Imports the command line's console here, not at the top: the writing processes need none.
    """
    from cli import DEFAULT_DATA, console
    from preprocessing import DataError

    if path.resolve() != DEFAULT_DATA.resolve() or (path / MAP_FILE).exists():
        return
    console.print(f"Generating the synthetic top-10 set into {path} (once) ...")
    start = time.perf_counter()
    try:
        count = generate(path, seed=0)
    except OSError as error:  # e.g. a read-only folder, or `datasets` a dangling link
        raise DataError(
            f"cannot write the default data to {path} ({error}): pass --data DIR"
        ) from None
    console.print(f"  {count} sequences in {time.perf_counter() - start:.1f}s")


def _ours(out_dir: Path) -> bool:
    """The directory holds a synthetic set (whole or not), which generate may write over."""
    readme = out_dir / "README.txt"
    return readme.is_file() and readme.read_text().startswith(MARKER)


README = """Synthetic GISLR top-10 stand-in -- NOT the real GISLR data.

Made by islr's synth.py: `{command}` (synth.generate({call})), {count} sequences.
The layout is that of GISLR top-10: one <participant_id>.hdf5 per signer, one group per
sequence id with `feature` float32 [3, T, 543] (x, y, z; NaN where missing; face 0-467, left
hand 468-488, pose 489-521, right hand 522-542) and `token` int64 [1]. Left-handed signers
(their movements mirrored): {left}.

Every value comes from a hand-made model of a body, two hands and ten movements, none from a
recording. The sign names and participant ids are borrowed from the Kaggle asl-signs data as
labels only; the movements are not ASL. Accuracy on this set says how well a pipeline learns,
not how well it recognises sign language.
"""
MARKER = README.split(" --")[0]  # how README.txt starts: a directory we may write over
LICENSE = """Synthetic data made by islr's synth.py (`{command}`).

It is not the real GISLR top-10 data and holds no part of the Kaggle "Google - Isolated Sign
Language Recognition" recordings (CC-BY 4.0, Deaf Professional Arts Network and Georgia
Institute of Technology); only the ten sign names and the participant ids are borrowed, as
labels. Use, copy and change it freely under the same MIT terms as islr itself.
"""
