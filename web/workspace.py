"""The teaching workspace: a person's examples of their own signs, kept in the raw Kaggle layout.

    WORKSPACE/train.csv                                     path, participant_id, sequence_id, sign
    WORKSPACE/train_landmark_files/<SIGNER>/<id>.parquet    one example's landmarks
    WORKSPACE/sign_to_prediction_index_map.json             the signs, in the order they came
    WORKSPACE/runs/<name>/                                  the models trained on it (training.py)

So the folder `serve --workspace` fills trains from the command line as well
(`python islr.py train --data WORKSPACE --preset personal`). Each example is written as it
arrives: its parquet file first, then train.csv and the map replaced whole (safely.py), so a
crash loses at most the example being written and a restart finds every other one.
Every refusal is a ServeError with a one-line message for the page.
"""

import csv
import io
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import landmarks
from landmarks import MAP_FILE
from raw import kaggle
from web.limits import ServeError

SIGNER = 1  # participant_id of every example: the workspace is one person's
FIRST_ID = 1_000_001  # sequence ids count up from here
HANDS = np.r_[landmarks.LEFT_HAND : landmarks.POSE, landmarks.RIGHT_HAND : landmarks.NUM_LANDMARKS]
SHOWN = slice(landmarks.LEFT_HAND, landmarks.NUM_LANDMARKS)  # hands and pose: the replay's points


@dataclass(frozen=True)
class TeachLimits:
    signs: int = 50  # signs in a workspace
    examples: int = 1_000  # examples in a workspace, all signs together
    workspace_bytes: int = 500_000_000  # the examples' files together
    free_bytes: int = 200_000_000  # disk space an example or a run must leave free


@dataclass(frozen=True)
class Example:
    id: int  # train.csv's sequence_id
    sign: str
    path: str  # relative to the workspace, as train.csv holds it
    signer: int = SIGNER  # participant_id: `record --signer` may add others
    source: str = ""  # where it came from (train.csv's extra column, as `extract` writes it)


class Workspace:
    """The examples on disk and their index in memory; safe to call from several threads."""

    def __init__(self, root: Path, limits: TeachLimits = TeachLimits()) -> None:
        self.root, self.limits = root, limits
        self.lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self.signs, self.examples = self.read()

    def read(self) -> tuple[list[str], dict[int, Example]]:
        """The signs and examples on disk: train.csv's rows whose file exists, and the map."""
        if not (self.root / "train.csv").exists():  # signs added, no example yet
            map_path = self.root / MAP_FILE
            return (list(json.loads(map_path.read_text())) if map_path.exists() else []), {}
        try:
            rows, known, _ = kaggle.read_train_csv(self.root)
        except kaggle.KaggleError as problem:
            raise ServeError(f"the workspace cannot be read: {problem}") from None
        with open(self.root / "train.csv", newline="", encoding="utf-8-sig") as file:
            sources = {
                row.get("sequence_id"): row.get("source") or "" for row in csv.DictReader(file)
            }
        examples = {
            row.sequence_id: Example(
                row.sequence_id,
                row.sign,
                row.path,
                row.participant_id,
                sources.get(str(row.sequence_id), ""),
            )  # fmt: skip
            for row in rows
            if (self.root / row.path).is_file()
        }
        signs = sorted(known or {}, key=(known or {}).get)
        signs += [e.sign for e in examples.values() if e.sign not in signs]
        return list(dict.fromkeys(signs)), examples

    @contextmanager
    def changing(self) -> Iterator[None]:
        """This process's threads and other processes (`record`) kept out, the disk caught up
        with: the block may read and rewrite the index."""
        with self.lock, kaggle.index_lock(self.root):
            self.reload()
            yield

    def reload(self) -> None:
        """Catch up with the disk, which `record` may have added to: its examples are the
        truth; signs added here without examples yet are kept."""
        signs, self.examples = self.read()
        self.signs += [sign for sign in signs if sign not in self.signs]

    # -- what is there ----------------------------------------------------------------------

    def describe(self) -> list[dict]:
        """Each sign with the ids of its examples, in the order the signs came."""
        with self.lock:
            self.reload()
        return [
            {
                "name": sign,
                "examples": sorted(e.id for e in self.examples.values() if e.sign == sign),
            }
            for sign in self.signs
        ]

    def counts(self) -> dict[str, int]:
        return {sign: sum(e.sign == sign for e in self.examples.values()) for sign in self.signs}

    def check_known(self, sign: str) -> None:
        if sign not in self.signs:
            raise ServeError(f"no sign named {sign!r}: add it first", 404)

    def example(self, example_id: int) -> Example:
        if example_id not in self.examples:
            raise ServeError(f"no example {example_id}", 404)
        return self.examples[example_id]

    def points(self, example_id: int) -> dict:
        """An example's hands and pose for the page's replay: frames of (x, y) or None."""
        track = kaggle.read_sequence(self.root / self.example(example_id).path)  # (3, T, 543)
        xy = np.round(track[:2, :, SHOWN].transpose(1, 2, 0).astype(np.float64), 3)  # (T, 75, 2)
        frames = [[None if np.isnan(x) else [x, y] for x, y in frame] for frame in xy.tolist()]
        return {"id": example_id, "first": SHOWN.start, "frames": frames}

    def size(self) -> int:
        files = (self.root / kaggle.LANDMARK_FILES).rglob("*.parquet")
        return sum(path.stat().st_size for path in files)

    # -- changes -----------------------------------------------------------------------------

    def add_sign(self, name: object) -> str:
        """A new sign; its name must be short, new, and free of path characters."""
        try:
            name = kaggle.check_sign_name(name)
        except kaggle.KaggleError as problem:
            raise ServeError(str(problem)) from None
        with self.changing():
            if name.casefold() in {sign.casefold() for sign in self.signs}:
                raise ServeError(f"there is a sign named {name!r} already", 409)
            if len(self.signs) >= self.limits.signs:
                raise ServeError(f"at most {self.limits.signs} signs (serve --max-signs)", 413)
            self.signs.append(name)
            kaggle.write_sign_map(self.root, {sign: i for i, sign in enumerate(self.signs)})
        return name

    def add_example(self, sign: str, track: np.ndarray, source: str = "serve") -> dict:
        """Keep landmarks (T, 543, 3) as an example of `sign`; refused without a hand in it."""
        if not np.isfinite(track[:, HANDS, :2]).any():  # no point of either hand, ever
            raise ServeError("no hand was seen in this example: sign with your hands in view")
        self.check_room()
        with self.changing():
            self.check_known(sign)
            example_id = max(self.examples, default=FIRST_ID - 1) + 1
            path = f"{kaggle.LANDMARK_FILES}/{SIGNER}/{example_id}.parquet"
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            kaggle.write_sequence(self.root / path, track.astype(np.float32))
            self.examples[example_id] = Example(example_id, sign, path, SIGNER, source)
            self.write_index()
        return {"id": example_id, "sign": sign, "frames": int(track.shape[0])}

    def check_room(self) -> None:
        """Refuse another example over the limits or where the disk is nearly full."""
        most = self.limits
        if len(self.examples) >= most.examples:
            raise ServeError(f"at most {most.examples} examples (serve --max-examples)", 413)
        if self.size() >= most.workspace_bytes:
            megabytes = most.workspace_bytes // 1_000_000
            raise ServeError(f"the examples fill {megabytes} MB (serve --max-workspace-mb)", 413)
        check_disk(self.root, most.free_bytes)

    def delete_example(self, example_id: int) -> None:
        with self.changing():
            example = self.example(example_id)
            del self.examples[example_id]
            self.write_index()  # first: a crash now leaves an unlisted file, never a lost row
            (self.root / example.path).unlink(missing_ok=True)

    def delete_sign(self, name: str) -> None:
        """The sign and every example of it."""
        with self.changing():
            self.check_known(name)
            doomed = [e for e in self.examples.values() if e.sign == name]
            for example in doomed:
                del self.examples[example.id]
            self.signs.remove(name)
            self.write_index()
            for example in doomed:
                (self.root / example.path).unlink(missing_ok=True)

    def write_index(self) -> None:
        """train.csv and the sign map, each replaced whole."""
        examples = sorted(self.examples.values(), key=lambda e: (e.signer, e.id))
        rows = [
            {"path": e.path, "participant_id": e.signer, "sequence_id": e.id}
            | {"sign": e.sign, "source": e.source}
            for e in examples
        ]
        kaggle.write_index(self.root, rows, self.signs)

    def zipped(self) -> bytes:
        """The examples as a zip of the raw Kaggle layout (train.csv, the map, the parquets)."""
        with self.changing():
            self.write_index()
            names = ["train.csv", MAP_FILE] + [e.path for e in self.examples.values()]
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for name in names:
                    archive.write(self.root / name, f"{self.root.name}/{name}")
        return buffer.getvalue()


def check_disk(folder: Path, free_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < free_bytes:
        raise ServeError(
            f"the disk holding {folder} has {free // 1_000_000} MB free: "
            f"at least {free_bytes // 1_000_000} MB are needed",
            507,
        )
