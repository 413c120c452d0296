"""prepare.py: the converter's speed against one pandas DataFrame per file."""

from pathlib import Path

import pytest

from bench import prepare

RAW = Path(__file__).resolve().parent.parent.parent.parent / "shared" / "data" / "asl-signs-raw"


@pytest.mark.skipif(not RAW.is_dir(), reason=f"real data not found at {RAW}")
def test_benchmark_reports_both_methods():
    """benchmark measures read_sequence and the pandas-per-file baseline on the same files."""
    pytest.importorskip("pyarrow.parquet", reason="needs the [kaggle] extra (pyarrow)")
    pytest.importorskip("pandas", reason="the baseline needs the [bench] extra (pandas)")
    result = prepare.benchmark(RAW, limit=3, write=False)
    assert result["num_sequences"] == 3
    assert result["islr"]["sequences_per_s"] > 0 and result["pandas"]["sequences_per_s"] > 0
