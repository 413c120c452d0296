"""Conversion speed of convert.py (`islr.py prepare`) against the tutorial way (one pandas DataFrame per file).

Both methods read the same parquet files and write the same HDF5 file, each in a fresh
process so that its peak memory is its own; the timed process imports only numpy, h5py,
pyarrow or pandas (never torch), like a `prepare` worker.

    make bench-prepare RAW=../shared/data/asl-signs-raw
    python -m bench.prepare RAW           # the same: 5 passes, the figures as JSON
"""

import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from raw import convert, kaggle


def _read_with_pandas(path: Path) -> np.ndarray:
    """The tutorial way: one DataFrame per file, then reshape its x, y, z values."""
    import pandas as pd

    df = pd.read_parquet(path)
    return df[["x", "y", "z"]].values.reshape(-1, kaggle.NUM_LANDMARKS, 3).transpose(2, 0, 1)


def _timed_run(paths: list[Path], method: str, write: bool) -> dict:
    """Runs in a fresh process so that its peak memory is its own."""
    read = _read_with_pandas if method == "pandas" else kaggle.read_sequence
    read(paths[0])  # imports and first-call costs are not conversion speed
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as folder:
        with h5py.File(Path(folder) / "out.hdf5", "w") as file:
            start = time.perf_counter()
            for number, path in enumerate(paths):
                feature = np.asarray(read(path), dtype=np.float32)  # (3, T, 543)
                if write:
                    convert.write_sequence(file, number, feature, 0)
            seconds = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "sequences_per_s": len(paths) / seconds,
        "seconds": seconds,
        "peak_rss_mib": rss_peak,
        "rss_before_mib": rss_start,
    }


def benchmark(
    raw_dir: Path, *, limit: int | None = 1000, repeats: int = 1, write: bool = True
) -> dict:
    """Sequences/s and peak memory of kaggle.read_sequence vs pandas.read_parquet per file.

    Both run on the same first `limit` files of train.csv (`repeats` passes over them), each
    in its own fresh process, after one pass that warms the page cache; `write` adds the
    HDF5 writing, the same for both.
    """
    try:
        import pandas  # noqa: F401  (only the baseline needs it)
    except ImportError:
        raise kaggle.KaggleError(
            "the benchmark's baseline needs pandas: pip install pandas"
        ) from None
    rows, _, _ = kaggle.read_train_csv(raw_dir)
    paths = [raw_dir / r.path for r in rows if (raw_dir / r.path).is_file()][:limit]
    if not paths:
        raise kaggle.KaggleError(f"{raw_dir} holds no landmark files listed in train.csv")
    for path in paths:
        path.read_bytes()
    paths = paths * repeats
    result: dict = {"num_sequences": len(paths), "write_hdf5": write}
    for method in ("islr", "pandas"):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result[method] = pool.apply(_timed_run, (paths, method, write))
    result["speedup"] = result["islr"]["sequences_per_s"] / result["pandas"]["sequences_per_s"]
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.prepare RAW_DIR   (a Kaggle asl-signs download)")
    try:
        print(json.dumps(benchmark(Path(sys.argv[1]), repeats=5), indent=1))
    except kaggle.KaggleError as error:  # a wrong RAW: one line, as the CLI says it
        sys.exit(f"error: {error}")
