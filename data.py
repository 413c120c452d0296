"""Data: read the GISLR layout, split by signer, preprocess once, and merge padded batches.

A dataset directory in the GISLR layout (see README) holds one `<participant_id>.hdf5` per
signer and `sign_to_prediction_index_map.json`. Each HDF5 group is one sequence: `feature`
float32 [3, T, 543] (x, y, z; channel first; NaN where MediaPipe saw nothing) and `token`
int64 [1].

From disk to model input (train, cv and evaluate; cache.py):
    read_signer_chunks(path, ...)  one signer file, a chunk of sequences at a time  (3, T, 543)
    prepare_arrays(...)            preprocessing.preprocess: select landmarks, NaN -> 0,
                                   parts-based norm, all frames of a chunk at once (sum T, J*C)
    Prepared.batches(...)          padded merge by index arithmetic                 (N, T, J*C)

Preprocessing is vectorised over all frames (preprocessing.py), so there is no per-sample
Python on the training path; cache.load keeps the preprocessed frames in a memory-mapped cache,
so memory holds the features, not the raw data. `load_dataset` reads every raw sequence into
memory at once, for bench and for the tests that compare against it.

With one signer there is no signer to hold out: `split_clips` holds out clips of that signer.

    python -c "import data; print(data.load_dataset('datasets/synthetic-top10'))"
"""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from landmarks import MAP_FILE, NUM_LANDMARKS
from preprocessing import DataConfig, DataError, preprocess

MAX_FRAMES = 100_000  # a declared length past this is a broken or hostile file, not a sign
LENGTH_JITTER = 0.2  # training batches: log-length noise, so batch-mates change between epochs
VOCABULARY_FILE = MAP_FILE  # sign -> class index, JSON


# ---------------------------------------------------------------------------------------------
# Reading the GISLR layout


@dataclass
class Dataset:
    """Every sequence of a GISLR directory, as stored on disk."""

    vocabulary: dict[str, int]  # sign -> class index, from the dictionary JSON
    features: list[np.ndarray]  # one float32 (3, T, 543) array per sequence, NaN kept
    labels: np.ndarray  # (S,) int64 class index per sequence
    signers: np.ndarray  # (S,) str participant id per sequence (from the file name)
    sequence_ids: list[str]  # the HDF5 group names

    def __len__(self) -> int:
        return len(self.features)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self)} sequences, {len(set(self.signers))} signers, "
            f"{len(self.vocabulary)} signs)"
        )

    def subset(self, signers: set[str]) -> "Dataset":
        keep = np.flatnonzero(np.isin(self.signers, sorted(signers)))
        return Dataset(
            self.vocabulary,
            [self.features[i] for i in keep],
            self.labels[keep],
            self.signers[keep],
            [self.sequence_ids[i] for i in keep],
        )


def require_directory(root: Path) -> None:
    if root.is_file():
        raise DataError(f"{root} is a file: name the dataset directory")
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist")


def read_vocabulary(root: Path) -> dict[str, int]:
    path = root / VOCABULARY_FILE
    require_directory(root)
    if not path.is_file():
        raise DataError(f"{root} has no {VOCABULARY_FILE}: is it a GISLR dataset directory?")
    try:
        vocabulary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise DataError(f"{path} must be a JSON object mapping each sign to an index")
    indices = vocabulary.values()
    # bool is an int in Python, and 1.0 == 1: only plain integers are indices
    if any(type(index) is not int for index in indices) or sorted(indices) != [
        *range(len(indices))
    ]:
        raise DataError(f"{path} must map each sign to a distinct integer index 0..K-1")
    if len(vocabulary) < 2:
        raise DataError(f"{path} holds one sign: a classifier needs at least two")
    return vocabulary


def signer_files(root: Path) -> dict[str, Path]:
    """The `<participant_id>.hdf5` files of a dataset directory, by participant id."""
    root = Path(root)
    require_directory(root)
    files = {path.stem: path for path in sorted(root.glob("*.hdf5"))}
    if not files and (root / "train.csv").is_file():
        raise DataError(
            f"{root} looks like the Kaggle parquet layout: convert it first with "
            f"python islr.py prepare {root} OUT_DIR"
        )
    if not files:
        raise DataError(f"{root} holds no <participant_id>.hdf5 files")
    return files


def read_signer(
    path: Path, num_classes: int | None
) -> tuple[list[np.ndarray], list[int], list[str]]:
    """All sequences of one signer file, validated, in one pass over the open file.

    num_classes=None reads recordings to predict on: any vocabulary, and a group needs no
    `token` (its label is then -1; a token there is not read).
    """
    features, labels, ids = [], [], []
    for chunk_features, chunk_labels, chunk_ids in read_signer_chunks(path, num_classes, None):
        features += chunk_features
        labels += chunk_labels
        ids += chunk_ids
    return features, labels, ids


def read_signer_chunks(
    path: Path, num_classes: int | None, max_frames: int | None
) -> Iterator[tuple[list[np.ndarray], list[int], list[str]]]:
    """The sequences of one signer file in chunks of at most `max_frames` frames (a longer
    sequence is a chunk of its own; None: the whole file in one chunk), validated as read."""
    labelled = num_classes is not None
    fields = ("feature", "token") if labelled else ("feature",)
    features, labels, ids, frames = [], [], [], 0
    try:
        with h5py.File(path, "r") as file:
            for sequence_id, group in file.items():
                where = f"{path.name}/{sequence_id}"
                if not isinstance(group, h5py.Group) or set(fields) - group.keys():
                    names = " and ".join(f"`{field}`" for field in fields)
                    raise DataError(f"{where} is not a group with {names}")
                feature = group["feature"]
                shape = feature.shape
                # Check the declared shape before reading, so a hostile file cannot make
                # us allocate more than a real sequence needs.
                if len(shape) != 3 or shape[0] != 3 or shape[2] != NUM_LANDMARKS:
                    raise DataError(f"{where}: feature has shape {shape}, expected [3, T, 543]")
                if not 0 < shape[1] <= MAX_FRAMES:
                    raise DataError(
                        f"{where}: feature has {shape[1]} frames (T must be 1..{MAX_FRAMES})"
                    )
                if max_frames is not None and features and frames + shape[1] > max_frames:
                    yield features, labels, ids
                    features, labels, ids, frames = [], [], [], 0
                label = read_token(group["token"], num_classes, where) if labelled else -1
                features.append(np.asarray(feature[()], dtype=np.float32))
                labels.append(label)
                ids.append(sequence_id)
                frames += shape[1]
    except OSError as error:
        raise DataError(f"{path} is not a readable HDF5 file ({error})") from None
    if features:
        yield features, labels, ids


def read_token(token: h5py.Dataset, num_classes: int, where: str) -> int:
    """A sequence's class index, checked: an integer [1] inside the vocabulary."""
    if token.shape != (1,):
        raise DataError(f"{where}: token has shape {token.shape}, expected [1]")
    if token.dtype.kind not in "iu":
        raise DataError(f"{where}: token has type {token.dtype}, expected an integer")
    label = int(token[0])
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: token {label} is outside the vocabulary")
    return label


def load_dataset(root: Path | str, signers: set[str] | None = None) -> Dataset:
    """Read a GISLR directory (or only the given signers) into memory, one pass per file."""
    root = Path(root)
    files = signer_files(root)
    vocabulary = read_vocabulary(root)
    missing = sorted(set(signers or ()) - files.keys())
    if missing:
        raise DataError(f"signer {missing[0]} is not in {root} (it has {', '.join(files)})")
    features, labels, signer_ids, ids = [], [], [], []
    for signer, path in files.items():
        if signers is not None and signer not in signers:
            continue
        more, more_labels, more_ids = read_signer(path, len(vocabulary))
        features += more
        labels += more_labels
        ids += more_ids
        signer_ids += [signer] * len(more)
    if not features:
        raise DataError(f"{root} holds no sequences")
    return Dataset(vocabulary, features, np.array(labels), np.array(signer_ids), ids)


def split_signers(
    available: list[str], test_signer: str | None, val_signers: list[str] | int = 1
) -> tuple[list[str], list[str], str | None]:
    """(train signers, validation signers, test signer or None).

    The validation signers pick the epoch; the test signer is never used to choose anything.
    `val_signers` names them, or counts them: that many other signers in numeric order.
    """
    available = sorted(available, key=lambda s: (len(s), s))
    named = [] if isinstance(val_signers, int) else list(val_signers)
    for role, signer in [("test", test_signer)] + [("validation", s) for s in named]:
        if signer is not None and signer not in available:
            raise DataError(f"{role} signer {signer} is not in the data ({', '.join(available)})")
    if test_signer in named:
        raise DataError(f"the validation signers must not include the test signer {test_signer}")
    others = [s for s in available if s != test_signer]
    val = named or others[:val_signers]
    train = [s for s in others if s not in val]
    if len(available) < (3 if test_signer else 2):
        raise DataError("need at least 3 signers (train, validation, test) or --test-signer none")
    if not train:
        raise DataError(
            f"no signer is left to train on ({', '.join(available)}: test "
            f"{test_signer or 'none'}, validation {', '.join(val)})"
        )
    return train, val, test_signer


def signer_folds(
    available: list[str], folds: int, val_signers: int = 1
) -> list[tuple[list[str], list[str], list[str]]]:
    """Signer-independent cross-validation: (train, validation, test signers) per fold.

    Test groups are disjoint and cover every signer (round robin over the sorted ids); each
    fold's validation signers are the first `val_signers` of the next fold's group, so they
    are never test signers of their own fold.
    """
    available = sorted(available, key=lambda s: (len(s), s))
    if not 2 <= folds <= len(available) - 1:
        raise DataError(f"--folds must be 2..{len(available) - 1} for {len(available)} signers")
    groups = [available[i::folds] for i in range(folds)]
    smallest = min(len(g) for g in groups)
    if not 1 <= val_signers <= smallest:
        raise DataError(f"--val-signers must be 1..{smallest} with {folds} folds")

    def trains_in_every_fold(k: int) -> bool:  # a test group and validation signers leave some
        groups = [available[i::k] for i in range(k)]
        return all(
            len(available) - len(groups[i]) - min(val_signers, len(groups[(i + 1) % k]))
            for i in range(k)
        )

    if not trains_in_every_fold(folds):
        possible = [k for k in range(2, len(available)) if trains_in_every_fold(k)]
        choices = f"--folds {', '.join(map(str, possible))}" if possible else "more signers"
        raise DataError(f"--folds {folds} leaves a fold no training signer: {choices}")
    result = []
    for i, test in enumerate(groups):
        val = groups[(i + 1) % folds][:val_signers]
        train = [s for s in available if s not in test and s not in val]
        result.append((train, val, test))
    return result


def prepare_split(
    dataset: Dataset, train: list[str], val: list[str], test: list[str], *, config: DataConfig
) -> dict[str, "Prepared"]:
    """{"train", "val", and "test" if any test signers}: each preprocessed once."""
    split = {"train": train, "val": val, "test": test}
    return {name: prepare(dataset.subset(set(s)), config) for name, s in split.items() if s}


# ---------------------------------------------------------------------------------------------
# Preprocessed storage and the padded merge


@dataclass
class Batch:
    """A padded batch: N sequences, padded to T = the longest of them, J*C features per frame
    (J landmarks, C coordinates; see models.py for the shape letters)."""

    features: Tensor  # (N, T, J*C) float32, exactly 0 at padded frames
    valid: Tensor  # (N, T) bool, True = a real frame (built from lengths, never from values)
    lengths: Tensor  # (N,) int64 number of real frames
    labels: Tensor  # (N,) int64 class index
    indices: Tensor  # (N,) int64 position of each sequence in its Prepared set

    def to(self, device: torch.device | str) -> "Batch":
        move = {name: getattr(self, name).to(device, non_blocking=True) for name in FIELDS}
        return Batch(**move)


FIELDS = ("features", "valid", "lengths", "labels", "indices")


@dataclass
class Prepared:
    """Preprocessed sequences kept as one tensor of frames, cut by offsets and lengths."""

    frames: Tensor  # (F, J*C) every frame of every sequence, end to end
    offsets: Tensor  # (S,) int64 index of each sequence's first frame
    lengths: Tensor  # (S,) int64
    labels: Tensor  # (S,) int64

    def __len__(self) -> int:
        return len(self.lengths)

    def merge(self, indices: Tensor) -> Batch:
        """The padded merge: gather the frames of `indices` into (N, T, J*C), no Python loop."""
        lengths = self.lengths[indices]  # (N,)
        T = int(lengths.max())
        steps = torch.arange(T)  # (T,)
        valid = steps[None] < lengths[:, None]  # (N, T)
        rows = self.offsets[indices, None] + torch.minimum(steps[None], lengths[:, None] - 1)
        features = self.frames[rows] * valid[..., None]  # (N, T, J*C)
        return Batch(features, valid, lengths, self.labels[indices], indices)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[Batch]:
        """Length-bucketed batches: sequences of similar length share a batch, so padding is small.

        With shuffle, sequences are sorted by their length jittered by a random factor in
        [0.82, 1.22] (log-length + U(-0.2, 0.2)), drawn afresh each epoch, then cut into
        batches whose order is shuffled. So batch-mates change from epoch to epoch: on the real
        572-sequence training set 31% of the pairs of batch-mates meet again in the next epoch,
        against 72% for a plain length sort and 5% for random batches, for about 18% more
        padded frames than the plain sort. Without shuffle, sequences go in order of length (a
        model's output does not depend on its batch-mates, so evaluation order does not
        matter). With several processes, each takes batches rank, rank + world, ... of the
        same order (all draw it from the same seed), wrapping around so that every process
        gets the same number.
        """
        if shuffle:
            order = torch.randperm(len(self), generator=generator)
            jitter = (2 * torch.rand(len(self), generator=generator) - 1) * LENGTH_JITTER
            key = self.lengths[order].log() + jitter
            batches = list(order[key.argsort(stable=True)].split(batch_size))
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        else:
            batches = list(self.lengths.argsort(stable=True).split(batch_size))
        if world > 1:
            # Pad to a multiple of the world size, wrapping round (even past the end of a list
            # shorter than the world).
            missing = -len(batches) % world
            batches += (batches * world)[:missing]
            batches = batches[rank::world]
        for indices in batches:
            yield self.merge(indices)

    def num_batches(self, batch_size: int, world: int = 1) -> int:
        return math.ceil(math.ceil(len(self) / batch_size) / world)


def prepare(dataset: Dataset, config: DataConfig) -> Prepared:
    """Preprocess every sequence of a dataset once, in one vectorised pass."""
    return prepare_arrays(dataset.features, dataset.labels, config)


def prepare_arrays(features: list[np.ndarray], labels: np.ndarray, config: DataConfig) -> Prepared:
    """Preprocess (3, T, 543) arrays (as stored in the GISLR layout) with their labels."""
    lengths = torch.tensor([f.shape[1] for f in features], dtype=torch.long)
    # Concatenate in the stored (3, T, 543) layout (a plain copy), then view it as (F, 543, 3).
    frames = torch.from_numpy(np.concatenate(features, axis=1)).float().permute(1, 2, 0)
    offsets = torch.cumsum(lengths, 0) - lengths
    frames = preprocess(frames, lengths, config)
    return Prepared(
        frames.contiguous(), offsets, lengths, torch.as_tensor(labels, dtype=torch.long)
    )


# ---------------------------------------------------------------------------------------------
# One signer: held-out clips instead of a held-out signer

HELD_OUT_CLIPS = 0.2  # the share of each sign's clips held out for validation, and as much for test


def split_clips(labels: Tensor, seed: int = 0) -> dict[str, Tensor]:
    """Clip indices of each part, per sign: HELD_OUT_CLIPS for test and for validation where a sign
    has enough clips (3: one each), the rest (at least one a sign) to train."""
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for sign in labels.unique():
        clips = torch.nonzero(labels == sign).flatten()
        clips = clips[torch.randperm(len(clips), generator=generator)]
        held = round(HELD_OUT_CLIPS * len(clips)) or (1 if len(clips) >= 3 else 0)
        parts["test"].append(clips[:held])
        parts["val"].append(clips[held : 2 * held])
        parts["train"].append(clips[2 * held :])
    return {name: torch.cat(chosen).sort().values for name, chosen in parts.items()}


def subset(prepared: Prepared, indices: Tensor) -> Prepared:
    """The sequences at `indices`, sharing the frames tensor."""
    return Prepared(
        prepared.frames,
        prepared.offsets[indices],
        prepared.lengths[indices],
        prepared.labels[indices],
    )
