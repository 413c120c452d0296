"""Tests of kaggle.py and convert.py: Kaggle parquet layout -> GISLR HDF5 layout.

Run: pytest tests/raw/test_convert.py   (tests reading parquet skip without the [kaggle] extra)
"""

import csv
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from raw import convert, kaggle
from raw.convert import choose_signs
from raw.kaggle import KaggleError, TrainRow, read_sequence

DATA = Path(__file__).resolve().parent.parent.parent.parent / "shared" / "data"
RAW = DATA / "asl-signs-raw"
GISLR = DATA / "gislr-hello-thankyou"
needs_data = pytest.mark.skipif(
    not RAW.is_dir() or not GISLR.is_dir(), reason=f"real data not found at {DATA}"
)


@pytest.fixture
def pq():
    """pyarrow.parquet, or skip: reading parquet is the optional [kaggle] extra."""
    return pytest.importorskip("pyarrow.parquet", reason="needs the [kaggle] extra (pyarrow)")


def raw_rows() -> list[dict[str, str]]:
    with open(RAW / "train.csv", newline="") as file:
        return list(csv.DictReader(file))


def make_raw(folder: Path, rows: list[dict[str, str]], *, copy: bool = True) -> Path:
    """A fake Kaggle folder holding `rows` (copies of their real parquet files)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(kaggle.CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(RAW / "sign_to_prediction_index_map.json", folder)
    for row in rows:
        if copy and (RAW / row["path"]).is_file():
            (folder / row["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(RAW / row["path"], folder / row["path"])
    return folder


def few_rows(per_signer: int = 2) -> list[dict[str, str]]:
    """The first rows of each signer, both signs present."""
    taken: Counter = Counter()
    rows = []
    for row in raw_rows():
        if taken[row["participant_id"], row["sign"]] < per_signer:
            taken[row["participant_id"], row["sign"]] += 1
            rows.append(row)
    return rows


@needs_data
@pytest.mark.parametrize("workers", [1, 2])
def test_convert_equals_published_hdf5(pq, tmp_path, workers):
    """The two raw signers convert to the published HDF5 files value for value, NaNs too."""
    done, total = [], []
    report = convert.convert(
        RAW,
        tmp_path,
        signs=["hello", "thankyou"],
        workers=workers,
        on_file=done.append,
        on_total=total.append,
    )
    assert (report.num_sequences, report.num_signers, report.skipped) == (73, 2, {})
    assert total == [73] and sum(done) == 73
    for pid in ("37779", "2044"):
        with h5py.File(tmp_path / f"{pid}.hdf5") as ours, h5py.File(GISLR / f"{pid}.hdf5") as real:
            assert sorted(ours) == sorted(real)
            for name in real:
                a, b = ours[name]["feature"], real[name]["feature"]
                assert (a.dtype, a.shape, a.chunks) == (b.dtype, b.shape, b.chunks)
                assert (a.compression, a.compression_opts, a.shuffle) == ("gzip", 9, True)
                assert (b.compression, b.compression_opts, b.shuffle) == ("gzip", 9, True)
                assert np.array_equal(a[()], b[()], equal_nan=True)
                assert ours[name]["token"].dtype == real[name]["token"].dtype == np.int64
                assert np.array_equal(ours[name]["token"][()], real[name]["token"][()])
    mapping = json.loads((tmp_path / "sign_to_prediction_index_map.json").read_text())
    assert mapping == json.loads((GISLR / "sign_to_prediction_index_map.json").read_text())
    license_text = (tmp_path / "LICENSE.txt").read_text()
    assert "CC-BY 4.0" in license_text and "Deaf Professional Arts Network" in license_text
    assert not list(tmp_path.glob("*.partial"))


@needs_data
def test_read_sequence_shape_and_nans(pq):
    """read_sequence gives float32 [3, T, 543] with NaN where a hand was not detected."""
    row = raw_rows()[0]
    feature = read_sequence(RAW / row["path"])
    assert feature.dtype == np.float32 and feature.shape[0] == 3 and feature.shape[2] == 543
    with h5py.File(GISLR / f"{row['participant_id']}.hdf5") as real:
        assert np.array_equal(feature, real[row["sequence_id"]]["feature"][()], equal_nan=True)
    assert np.isnan(feature).any()


def test_choose_signs_top_orders_by_count_then_name():
    """--top takes the most frequent signs, count descending, ties by name; --signs keeps order."""
    counts = {"b": 3, "c": 2, "a": 2, "d": 1, "e": 5}
    rows = [TrainRow(f"{s}{i}", 1, i, s) for s, n in counts.items() for i in range(n)]
    known = {"e": 0, "a": 1, "b": 2, "c": 3, "d": 4, "f": 5}
    assert choose_signs(rows, top=3, known=known) == {"e": 0, "b": 1, "a": 2}
    assert choose_signs(rows, top=4, known=known) == {"e": 0, "b": 1, "a": 2, "c": 3}
    assert choose_signs(rows, top=99, known=known) == {"e": 0, "b": 1, "a": 2, "c": 3, "d": 4}
    assert choose_signs(rows, signs=["d", "a", "d"], known=known) == {"d": 0, "a": 1}
    assert choose_signs(rows, known=known) == known  # neither: the raw order
    assert choose_signs(rows) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}  # no raw map: by name
    for bad in ({"signs": ["a", "nope"]}, {"signs": []}, {"top": 0}, {"top": 2, "signs": ["a"]}):
        with pytest.raises(KaggleError):
            choose_signs(rows, known=known, **bad)
    with pytest.raises(KaggleError, match="--signs names f: train.csv has no row of it"):
        choose_signs(rows, signs=["a", "f"], known=known)  # f is a sign, but without sequences


@needs_data
def test_rerun_skips_complete_signers_and_redoes_other_vocabulary(pq, tmp_path):
    """A re-run reuses complete signer files; another vocabulary rewrites or removes them."""
    rows = few_rows()
    rows.append(dict(rows[0], participant_id="99", sequence_id="1"))  # a signer with one "hello"
    raw = make_raw(tmp_path / "raw", rows)
    out = tmp_path / "out"
    first = convert.convert(raw, out, signs=["hello", "thankyou"])
    assert (first.num_signers, first.num_sequences) == (3, 9)
    before = {path.name: path.stat().st_ino for path in out.glob("*.hdf5")}

    done = []
    again = convert.convert(raw, out, signs=["hello", "thankyou"], on_file=done.append)
    assert (again.num_signers, again.num_signers_reused, again.num_sequences_reused) == (0, 3, 9)
    assert sum(done) == 9
    assert {path.name: path.stat().st_ino for path in out.glob("*.hdf5")} == before
    assert again.replaced_vocabulary is None

    swapped = convert.convert(raw, out, signs=["thankyou"])  # signer 99 has no "thankyou": removed
    assert (swapped.num_signers, swapped.num_signers_reused, swapped.num_stale_removed) == (2, 0, 1)
    assert swapped.replaced_vocabulary == {"hello": 0, "thankyou": 1}  # the CLI says so
    assert sorted(path.name for path in out.glob("*.hdf5")) == ["2044.hdf5", "37779.hdf5"]
    assert json.loads((out / "sign_to_prediction_index_map.json").read_text()) == {"thankyou": 0}
    with h5py.File(out / "2044.hdf5") as file:
        assert len(file) == 2 and all(file[name]["token"][0] == 0 for name in file)


@needs_data
def test_interrupted_write_leaves_no_final_file(pq, tmp_path, monkeypatch):
    """A run that dies midway leaves only complete signer files, and no temporary one."""
    raw = make_raw(tmp_path / "raw", few_rows())  # 2 signers, 4 sequences each
    out = tmp_path / "out"
    write = convert.write_sequence
    calls = []

    def failing_write(*args):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # as a Ctrl-C midway through the second signer
        write(*args)

    monkeypatch.setattr(convert, "write_sequence", failing_write)
    with pytest.raises(KeyboardInterrupt):
        convert.convert(raw, out)
    (finished,) = out.iterdir()  # no index map either: the folder is visibly unfinished
    with h5py.File(finished) as file:
        assert len(file) == 4
    monkeypatch.setattr(convert, "write_sequence", write)
    report = convert.convert(raw, out)
    assert (report.num_signers, report.num_signers_reused) == (1, 1)


def write_bad_inputs(pq, raw: Path) -> dict[str, tuple[list[str], str]]:
    """Bad parquet files of each kind in `raw`: kind -> (its train.csv lines, text it reports)."""
    good_line = (raw / "train.csv").read_text().splitlines()[1]
    real = pq.read_table(RAW / good_line.split(",")[0])
    folder = raw / "train_landmark_files" / "2044"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(real.slice(0, real.num_rows - 1), folder / "1.parquet")
    order = np.arange(real.num_rows)
    order[468:489], order[522:543] = order[522:543].copy(), order[468:489].copy()  # swap hands
    pq.write_table(real.take(order), folder / "2.parquet")
    (folder / "3.parquet").write_text("not parquet")
    bad = {}
    for kind, number, sign in [
        (kaggle.BAD_ROW_COUNT, 1, "hello"),
        (kaggle.BAD_ROW_ORDER, 2, "hello"),
        (kaggle.UNREADABLE_FILE, 3, "hello"),
        (kaggle.MISSING_FILE, 4, "hello"),
        (kaggle.UNKNOWN_SIGN, 5, "goodbye"),
    ]:
        path = f"train_landmark_files/2044/{number}.parquet"
        bad[kind] = ([f"{path},2044,{number},{sign}"], path)
    bad[kaggle.BAD_CSV_ROW] = (["train_landmark_files/2044/6.parquet,2044,six,hello"], "six")
    bad[kaggle.DUPLICATE_SEQUENCE] = ([good_line], good_line.split(",")[0])
    return bad


def append_lines(raw: Path, lines: list[str]) -> None:
    with open(raw / "train.csv", "a") as file:
        file.writelines(line + "\n" for line in lines)


@needs_data
def test_bad_inputs_are_reported_and_skipped(pq, tmp_path):
    """Each kind of bad input is counted once, named in an example, and not converted."""
    good = few_rows(1)
    raw = make_raw(tmp_path / "raw", good)
    bad = write_bad_inputs(pq, raw)
    append_lines(raw, [line for lines, _ in bad.values() for line in lines])
    report = convert.convert(raw, tmp_path / "out")
    assert report.skipped == {kind: 1 for kind in bad}
    for kind, (_, text) in bad.items():
        assert text in report.examples[kind][0]
    assert report.num_sequences == len(good)
    with h5py.File(tmp_path / "out" / "2044.hdf5") as file:
        assert sorted(file) == sorted(
            r["sequence_id"] for r in good if r["participant_id"] == "2044"
        )


@needs_data
@pytest.mark.parametrize(
    "kind",
    [
        kaggle.BAD_ROW_COUNT,
        kaggle.BAD_ROW_ORDER,
        kaggle.UNREADABLE_FILE,
        kaggle.MISSING_FILE,
        kaggle.UNKNOWN_SIGN,
        kaggle.BAD_CSV_ROW,
        kaggle.DUPLICATE_SEQUENCE,
    ],
)
def test_strict_raises_on_bad_input(pq, tmp_path, kind):
    """With strict, a bad input of any kind raises KaggleError naming it; no partial file stays."""
    raw = make_raw(tmp_path / "raw", few_rows(1))
    lines, text = write_bad_inputs(pq, raw)[kind]
    append_lines(raw, lines)
    assert convert.convert(raw, tmp_path / "lenient").skipped == {kind: 1}
    with pytest.raises(KaggleError, match=text):
        convert.convert(raw, tmp_path / "out", strict=True)
    assert not list((tmp_path / "out").glob("*.partial"))


@needs_data
def test_read_sequence_rejects_bad_files(pq, tmp_path):
    """read_sequence raises KaggleError of the right kind on a missing or malformed file."""
    raw = make_raw(tmp_path / "raw", few_rows(1))
    bad = write_bad_inputs(pq, raw)
    for kind in (kaggle.BAD_ROW_COUNT, kaggle.BAD_ROW_ORDER, kaggle.UNREADABLE_FILE):
        with pytest.raises(kaggle.BadSequenceError) as caught:
            read_sequence(raw / bad[kind][1])
        assert caught.value.kind == kind and "\n" not in str(caught.value)
    with pytest.raises(KaggleError, match="does not exist"):
        read_sequence(raw / bad[kaggle.MISSING_FILE][1])
    import pyarrow as pa

    table = pq.read_table(raw / bad[kaggle.BAD_ROW_ORDER][1])
    text = table.column("landmark_index").cast(pa.string())
    where = table.column_names.index("landmark_index")
    pq.write_table(table.set_column(where, "landmark_index", text), tmp_path / "text.parquet")
    with pytest.raises(kaggle.BadSequenceError, match="landmark_index holds object values"):
        read_sequence(tmp_path / "text.parquet")


def test_bad_raw_dir_is_a_user_error(tmp_path):
    """A missing folder, missing train.csv or wrong train.csv header raises KaggleError."""
    with pytest.raises(KaggleError, match="does not exist"):
        convert.convert(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(KaggleError, match="train.csv is missing"):
        convert.convert(tmp_path, tmp_path / "out")
    (tmp_path / "train.csv").write_text("file,pid,sequence,label\n")
    with pytest.raises(KaggleError, match="header"):
        convert.convert(tmp_path, tmp_path / "out")
    (tmp_path / "train.csv").write_bytes(b"path,participant_id,sequence_id,sign\na,1,2,caf\xe9\n")
    with pytest.raises(KaggleError, match=r"train.csv is not UTF-8 text \(byte 46\)"):
        convert.convert(tmp_path, tmp_path / "out")
    # A byte-order mark (Excel's UTF-8) is not part of the header: the row is read.
    (tmp_path / "train.csv").write_text("\ufeffpath,participant_id,sequence_id,sign\na,1,2,hello\n")
    with pytest.raises(KaggleError, match="no sequence could be converted: 1 missing_file"):
        convert.convert(tmp_path, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_missing_extra_is_one_line_error(tmp_path, monkeypatch):
    """Without pyarrow, reading parquet fails with one line naming the [kaggle] extra."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(KaggleError) as caught:
        read_sequence(tmp_path / "x.parquet")
    assert "pip install '.[kaggle]'" in str(caught.value) and "\n" not in str(caught.value)
    (tmp_path / "train.csv").write_text("path,participant_id,sequence_id,sign\n")
    with pytest.raises(KaggleError, match="kaggle"):
        convert.convert(tmp_path, tmp_path / "out")


@needs_data
def test_prepare_from_the_command_line(pq, tmp_path):
    """`islr.py prepare RAW OUT --signs ...` writes a dataset train can read; mistakes are one line."""
    from conftest import run

    import data

    raw = make_raw(tmp_path / "raw", few_rows(per_signer=1))
    result = run("prepare", raw, tmp_path / "out", "--signs", "thankyou,hello")
    assert result.exit_code == 0, result.output
    before = sorted(path.name for path in raw.iterdir())
    refused = run("prepare", raw, raw)
    assert refused.exit_code == 1 and "is a Kaggle download" in refused.output, refused.output
    assert sorted(path.name for path in raw.iterdir()) == before  # not even a lock file
    dataset = data.load_dataset(tmp_path / "out")
    signers = len(set(dataset.signers))
    assert dataset.vocabulary == {"thankyou": 0, "hello": 1} and len(dataset) == 2 * signers
    assert f"{len(dataset)} sequences of {signers} signers written" in result.output
    (tmp_path / "a-file").write_text("")
    for args, message in (
        ((raw, tmp_path / "a-file"), "OUT"),
        ((tmp_path / "nope", tmp_path / "out2"), "does not exist"),
        ((raw, tmp_path / "out3", "--signs", "hello,nosuch"), "names nosuch"),
    ):
        result = run("prepare", *args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), lines
        assert message in lines[0], lines


@needs_data
def test_folder_with_other_signer_files_is_refused_untouched(pq, tmp_path):
    """Converting into a folder that holds GISLR files prepare did not write changes nothing:
    they would be overwritten, or kept with labels the new map no longer means."""
    out = shutil.copytree(GISLR, tmp_path / "out")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    raw = make_raw(tmp_path / "raw", few_rows(1))
    with pytest.raises(KaggleError, match="holds 16069.hdf5, which prepare did not write"):
        convert.convert(raw, out, signs=["thankyou", "hello"])
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


@needs_data
def test_frames_out_of_order_are_refused(pq, tmp_path):
    """A parquet file whose frames do not rise is a bad row order, not silently reordered."""
    real = pq.read_table(RAW / raw_rows()[0]["path"])
    blocks = np.arange(real.num_rows).reshape(-1, kaggle.NUM_LANDMARKS)
    pq.write_table(
        real.take(blocks[[1, 0, *range(2, len(blocks))]].ravel()), tmp_path / "x.parquet"
    )
    with pytest.raises(kaggle.BadSequenceError, match="frame 1 is out of order") as caught:
        read_sequence(tmp_path / "x.parquet")
    assert caught.value.kind == kaggle.BAD_ROW_ORDER


@needs_data
def test_nothing_to_convert_and_a_broken_map_in_out(pq, tmp_path):
    """A train.csv without rows of the chosen signs is an error, and so is one whose files all
    fail (with no map written); a broken map in an earlier prepare output is redone."""
    raw = make_raw(tmp_path / "raw", [])
    with pytest.raises(KaggleError, match="lists no sequence of the chosen signs"):
        convert.convert(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    missing = [dict(row, path="nowhere/" + row["path"]) for row in few_rows(1)]
    with pytest.raises(KaggleError, match=r"no sequence could be converted: 4 missing_file"):
        convert.convert(make_raw(tmp_path / "raw-missing", missing), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    raw = make_raw(tmp_path / "raw2", few_rows(1))
    convert.convert(raw, tmp_path / "out", signs=["hello"])
    (tmp_path / "out" / "sign_to_prediction_index_map.json").write_text("{broken")
    convert.convert(raw, tmp_path / "out", signs=["hello"])
    mapping = json.loads((tmp_path / "out" / "sign_to_prediction_index_map.json").read_text())
    assert mapping == {"hello": 0}


@needs_data
@pytest.mark.parametrize("what", ["raw itself", "raw map", "raw license", "a map", "a license"])
def test_files_prepare_did_not_write_are_refused_untouched(pq, tmp_path, what):
    """OUT = RAW_DIR, or an OUT holding a map or LICENSE.txt that prepare did not write, is
    refused before anything is written: a raw download's map would be cut to the chosen signs."""
    raw = make_raw(tmp_path / "raw", few_rows(1))
    (raw / "LICENSE.txt").write_text("the download's own licence\n")
    out = {"raw itself": raw, "raw map": raw, "raw license": raw}.get(what, tmp_path / "out")
    out.mkdir(exist_ok=True)
    if what == "raw map":
        (raw / "LICENSE.txt").unlink()
    if what == "a map":
        (out / "sign_to_prediction_index_map.json").write_text('{"a": 0}')
    if what == "a license":
        (out / "LICENSE.txt").write_text("my notes\n")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(KaggleError, match="convert into a new or empty directory"):
        convert.convert(raw, out, signs=["hello"])
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


@needs_data
def test_signers_gone_from_train_csv_are_removed(pq, tmp_path):
    """A re-run after rows were taken out of train.csv leaves no file of a signer it lost."""
    rows = few_rows(1)
    raw = make_raw(tmp_path / "raw", rows)
    out = tmp_path / "out"
    convert.convert(raw, out)
    gone = rows[0]["participant_id"]
    make_raw(raw, [row for row in rows if row["participant_id"] != gone])
    report = convert.convert(raw, out)
    assert (report.num_signers_reused, report.num_stale_removed) == (1, 1)
    assert not (out / f"{gone}.hdf5").exists()


@needs_data
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_the_conversion(pq, tmp_path, workers):
    """SIGINT stops the run with KeyboardInterrupt even when it arrives inside a weakref
    callback (as in h5py's clean-up), where Python drops exceptions; no temporary file is left
    and the SIGINT handler is the one the caller had."""
    import os
    import signal
    import weakref

    def interrupt_in_a_callback(n: int) -> None:
        def callback(reference: weakref.ref) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # the handler runs here, inside the callback

        target = type("Target", (), {})()
        reference = weakref.ref(target, callback)
        del target  # runs the callback
        assert reference() is None

    raw = make_raw(tmp_path / "raw", few_rows(3))  # 2 signers, 6 sequences each
    out = tmp_path / "out"
    handler = signal.getsignal(signal.SIGINT)  # ignored where the tests run in the background
    with pytest.raises(KeyboardInterrupt):
        convert.convert(raw, out, workers=workers, on_file=interrupt_in_a_callback)
    assert (
        not list(out.glob("*.partial")) and not (out / "sign_to_prediction_index_map.json").exists()
    )
    assert signal.getsignal(signal.SIGINT) is handler
