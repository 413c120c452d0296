"""The raw Kaggle asl-signs layout: read train.csv and one sequence's landmark parquet file.

    RAW_DIR/train.csv                                   path, participant_id, sequence_id, sign
    RAW_DIR/train_landmark_files/<pid>/<sequence_id>.parquet   one row per frame and landmark
    RAW_DIR/sign_to_prediction_index_map.json           the raw vocabulary (optional)

`write_sequence` writes one recording's landmarks in the same layout (extract.py).

Bad input is a BadSequenceError of one of the kinds below; `convert.convert` counts and
skips it (ConvertReport), and `predict` reads single parquet files with `read_sequence`.
Parquet files need the optional extra (`pip install '.[kaggle]'`, pyarrow); it is imported
lazily so the core (training on HDF5) never needs it.
"""

import csv
import fcntl
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import safely
from landmarks import MAP_FILE, NUM_LANDMARKS, PART_SIZES, PARTS

PART_CODE = np.repeat(np.arange(len(PARTS), dtype=np.int8), PART_SIZES)  # (543,)
LANDMARK_INDEX = np.concatenate([np.arange(n, dtype=np.int16) for n in PART_SIZES])  # (543,)
_PART_OF = {name: code for code, name in enumerate(PARTS)}
_COLUMNS = ["frame", "type", "landmark_index", "x", "y", "z"]  # row_id is redundant, never read
CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
LANDMARK_FILES = "train_landmark_files"  # RAW_DIR/<this>/<pid>/<sequence_id>.parquet
INDEX_LOCK = ".index.lock"  # held while a process rewrites train.csv and the sign map

# Kinds of bad input, each reported with a count and examples, and skipped.
MISSING_FILE = "missing_file"
UNREADABLE_FILE = "unreadable_file"
BAD_ROW_COUNT = "bad_row_count"
BAD_ROW_ORDER = "bad_row_order"
UNKNOWN_SIGN = "unknown_sign"
BAD_CSV_ROW = "bad_csv_row"
DUPLICATE_SEQUENCE = "duplicate_sequence"


class KaggleError(Exception):
    """A problem the user can fix; the message is one sentence naming the thing and the fix."""


MAX_SIGN_NAME = 40  # characters of a sign name that `record` and the page's teach panel accept
SIGN_NAME = re.compile(r"\w[\w '-]*")  # letters, digits, _, space, ' and -: no path characters


def check_sign_name(name: object) -> str:
    """A new sign's name, stripped; a KaggleError for one that is empty, too long, or holds a
    character other than letters, digits, spaces, ', - and _ (a path or control character)."""
    if not isinstance(name, str) or not name.strip():
        raise KaggleError("a sign needs a name")
    name = name.strip()
    if len(name) > MAX_SIGN_NAME:
        raise KaggleError(f"a sign's name is at most {MAX_SIGN_NAME} characters")
    if not SIGN_NAME.fullmatch(name):
        raise KaggleError(f"{name!r}: use letters, digits, spaces, ' - and _ only")
    return name


class BadSequenceError(KaggleError):
    """One landmark file or train.csv row is unusable; `kind` is one of the kinds above."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # so strict mode's error survives the trip back from a worker process
        return (type(self), (self.kind, str(self)))


@dataclass(frozen=True)
class TrainRow:
    path: str  # relative to RAW_DIR
    participant_id: int
    sequence_id: int
    sign: str


def pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise KaggleError("parquet files need pyarrow: pip install '.[kaggle]'") from None
    return pq


def read_sequence(path: Path) -> np.ndarray:
    """Read one Kaggle landmark parquet file as float32 [3, T, 543] (x, y, z; NaN = not detected).

    Checks that the rows come in whole frames of 543 in the order face, left_hand, pose,
    right_hand with landmark indices 0.. in each part; raises BadSequenceError otherwise.
    """
    pq = pyarrow_parquet()
    try:
        # Dictionary-decoding "type" makes the order check integer compares; no pre-buffering
        # and no pandas metadata measured ~10% faster on these small files.
        file = pq.ParquetFile(path, read_dictionary=["type"], pre_buffer=False)
        table = file.read(_COLUMNS, use_threads=False, use_pandas_metadata=False)
    except FileNotFoundError:
        raise BadSequenceError(MISSING_FILE, f"{path} does not exist") from None
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        raise BadSequenceError(UNREADABLE_FILE, f"{path} is not a parquet file ({error})") from None
    missing = set(_COLUMNS) - set(table.column_names)  # read() skips absent columns silently
    if missing:
        message = f"{path} lacks the column(s) {', '.join(sorted(missing))}"
        raise BadSequenceError(UNREADABLE_FILE, message)
    num_rows = table.num_rows
    if num_rows == 0 or num_rows % NUM_LANDMARKS:
        message = f"{path} has {num_rows} rows, not a positive multiple of {NUM_LANDMARKS}"
        raise BadSequenceError(BAD_ROW_COUNT, message)
    T = num_rows // NUM_LANDMARKS
    try:
        ok = _rows_in_order(table, T)  # (T,)
        xyz = np.empty((3, num_rows), dtype=np.float32)  # float64 -> float32, nulls -> NaN
        for channel, name in enumerate("xyz"):
            xyz[channel] = table.column(name).to_numpy()
    except (AttributeError, TypeError, ValueError) as error:  # e.g. a column of the wrong type
        message = f"{path} has columns of unexpected types ({error})"
        raise BadSequenceError(UNREADABLE_FILE, message) from None
    if not ok.all():
        message = (
            f"{path} frame {np.argmin(ok)} is out of order (frames must rise, each in "
            f"the order {', '.join(_PART_OF)})"
        )
        raise BadSequenceError(BAD_ROW_ORDER, message)
    return xyz.reshape(3, T, NUM_LANDMARKS)  # (3, T, 543)


def _rows_in_order(table, T: int) -> np.ndarray:
    """Per frame: True where type, landmark_index and frame follow the Kaggle layout.  # (T,)"""
    types = []
    for chunk in table.column("type").chunks:  # each chunk carries its own dictionary
        names = chunk.dictionary.to_pylist()
        codes = np.array([_PART_OF.get(name, -1) for name in names] + [-1])  # last: null
        indices = chunk.indices.fill_null(len(names)) if chunk.null_count else chunk.indices
        types.append(codes[indices.to_numpy()])
    types = np.concatenate(types).reshape(T, NUM_LANDMARKS)
    # Integer columns with nulls come out as float with NaN, which fails the compares.
    index = table.column("landmark_index").to_numpy().reshape(T, NUM_LANDMARKS)
    frame = table.column("frame").to_numpy().reshape(T, NUM_LANDMARKS)
    for name, column in (("landmark_index", index), ("frame", frame)):
        if column.dtype.kind not in "iuf":  # text compares unequal: not an order problem
            raise TypeError(f"{name} holds {column.dtype} values, not numbers")
    rising = np.diff(frame[:, 0], prepend=-np.inf) > 0  # (T,) frame numbers only go up
    return (
        (types == PART_CODE).all(axis=1)
        & (index == LANDMARK_INDEX).all(axis=1)
        & (frame == frame[:, :1]).all(axis=1)
        & rising
    )


def read_train_csv(
    raw_dir: Path,
) -> tuple[list[TrainRow], dict[str, int] | None, list[BadSequenceError]]:
    """Parse train.csv and the raw index map; returns the rows, the map and the bad rows."""
    if not raw_dir.is_dir():
        raise KaggleError(f"the raw data folder {raw_dir} does not exist")
    csv_path = raw_dir / "train.csv"
    if not csv_path.is_file():
        raise KaggleError(f"{csv_path} is missing: RAW_DIR must be the Kaggle asl-signs folder")
    known, map_path = None, raw_dir / MAP_FILE
    try:
        if map_path.is_file():
            known = {str(s): int(i) for s, i in json.loads(map_path.read_text()).items()}
    except (ValueError, AttributeError, TypeError):
        raise KaggleError(f"{map_path} is not a JSON object of sign -> index") from None
    try:  # the whole file is small: decode it at once, so a bad byte is one clear error
        text = csv_path.read_text(encoding="utf-8-sig")  # a BOM, as Excel writes, is no header
    except UnicodeDecodeError as error:
        raise KaggleError(f"{csv_path} is not UTF-8 text (byte {error.start})") from None
    rows, bad_rows = [], []
    with io.StringIO(text, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        if not set(CSV_COLUMNS) <= set(header):
            expected = ",".join(CSV_COLUMNS)
            raise KaggleError(f"{csv_path} has the header {','.join(header)!r}, not {expected!r}")
        where = [header.index(name) for name in CSV_COLUMNS]
        for line_number, line in enumerate(reader, start=2):
            try:
                path, pid, sequence_id, sign = (line[i] for i in where)
                rows.append(TrainRow(path, int(pid), int(sequence_id), sign))
            except (IndexError, ValueError):
                message = f"{csv_path} line {line_number} is malformed: {','.join(line)!r}"
                bad_rows.append(BadSequenceError(BAD_CSV_ROW, message))
    return rows, known, bad_rows


def sequence_table(points: np.ndarray):
    """A pyarrow table of float32 (T, 543, 3) landmarks in the Kaggle layout, with Kaggle's
    column types; `read_sequence` reads it back."""
    pyarrow_parquet()  # the extra is installed
    import pyarrow as pa

    T = len(points)
    types = np.repeat(np.array(PARTS, dtype=object), PART_SIZES)
    frame = np.repeat(np.arange(T), NUM_LANDMARKS)
    frame = frame.astype(np.int16 if T <= np.iinfo(np.int16).max else np.int32)
    type_column = np.tile(types, T)
    index_column = np.tile(LANDMARK_INDEX, T)
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


@contextmanager
def index_lock(directory: Path) -> Iterator[None]:
    """One process at a time between reading a folder's train.csv and sign map and writing them
    again: `record`, `extract --dataset` and the page's teach panel may share a folder, and two
    read-modify-writes at once would lose the first one's rows. An advisory lock (flock) on
    INDEX_LOCK in the folder, released when the block ends or the process dies."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / INDEX_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_index(directory: Path, rows: list[dict[str, str]], signs: list[str]) -> None:
    """Write train.csv (CSV_COLUMNS and the source, one row a dict) and the sign map (`signs`
    in order) into `directory`, each replaced whole."""
    text = io.StringIO(newline="")
    columns = (*CSV_COLUMNS, "source")  # where an example came from: extract, record, the page
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    safely.write_text(directory / "train.csv", text.getvalue())
    write_sign_map(directory, {sign: index for index, sign in enumerate(signs)})


def write_sign_map(directory: Path, vocabulary: dict[str, int]) -> None:
    """Write sign_to_prediction_index_map.json (sign -> class index) into `directory`, whole."""
    safely.write_text(directory / MAP_FILE, json.dumps(vocabulary, indent=4) + "\n")


def write_sequence(path: Path, points: np.ndarray) -> None:
    """Write float32 (T, 543, 3) landmarks as one Kaggle landmark parquet file, atomically."""
    table, pq = sequence_table(points), pyarrow_parquet()
    with safely.replacing(path) as temporary:
        pq.write_table(table, temporary)
