"""Synthetic sets in the raw Kaggle layout (vocabularies of any size: lexicon.py).

clips.py makes the signers and their clips; `write_kaggle_signer` and `train_csv` write them in
the raw asl-signs layout that `python islr.py prepare` converts: RAW/train.csv (path,
participant_id, sequence_id, sign), RAW/train_landmark_files/<pid>/<sequence_id>.parquet (one
row per frame and landmark: frame, type, landmark_index, x, y, z; the real files' row_id
column, which nothing reads, is left out), RAW/sign_to_prediction_index_map.json. extract writes
its files through kaggle.write_sequence, row_id included; here the row_id strings would cost
more than the rest of the file at 94k sequences.

    python islr.py synth RAW --signs 250 --per-sign 18 --layout kaggle
"""

import csv
import io
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from landmarks import NUM_LANDMARKS, PARTS
from raw.kaggle import CSV_COLUMNS, LANDMARK_FILES, LANDMARK_INDEX, PART_CODE


def write_kaggle_signer(
    raw_dir: Path, participant: str, parts: Iterable[tuple], names: list[str]
) -> list[tuple[str, str, str, str]]:
    """Write one signer's parquet files, all at once into place (a hidden folder renamed),
    from parts of (sequence ids, clips, labels); return their train.csv rows
    (path, participant_id, sequence_id, sign)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    top = raw_dir / LANDMARK_FILES
    final, partial = top / participant, top / f".{participant}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    dictionary = pa.array(PARTS)
    rows = []
    for ids, clips, labels in parts:
        for sequence_id, clip, label in zip(ids, clips, labels, strict=True):
            T = clip.shape[1]
            columns = {
                "frame": np.repeat(np.arange(T, dtype=np.int16), NUM_LANDMARKS),
                "type": pa.DictionaryArray.from_arrays(np.tile(PART_CODE, T), dictionary),
                "landmark_index": np.tile(LANDMARK_INDEX, T),
            }
            for c, axis in enumerate("xyz"):  # float64 as the real files; NaN where missing
                columns[axis] = clip[c].reshape(-1).astype(np.float64)
            pq.write_table(pa.table(columns), partial / f"{sequence_id}.parquet")
            path = f"{LANDMARK_FILES}/{participant}/{sequence_id}.parquet"
            rows.append((path, participant, str(sequence_id), names[label]))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return rows


def train_csv(rows: list[tuple[str, str, str, str]]) -> str:
    """The text of train.csv for these rows (the caller writes it atomically)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return text.getvalue()
