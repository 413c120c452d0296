"""extract.py and extract_jobs.py: landmark files from images and folders, resumable and
interruptible runs, and data sets in the Kaggle layout from labelled recordings."""

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PERSON, one_line_error, require_videos, run

from raw import kaggle
from video import extract, extract_jobs, video

pytest.importorskip(
    "mediapipe", reason="the video extra is not installed: pip install -e '.[video]'"
)


def test_extract_npy_and_refusals(tmp_path):
    """An image to .npy [1, 543, 3]; the same output again is refused; a text file, an image
    without a person (nothing written, or an all-NaN file with --keep-empty) are one-line
    errors."""
    require_videos()
    out = tmp_path / "person.npy"
    result = run("extract", PERSON, "--out", out)
    assert result.exit_code == 0, result.output
    points = np.load(out)
    assert points.shape == (1, 543, 3) and points.dtype == np.float32
    assert np.isfinite(points).all()
    one_line_error(run("extract", PERSON, "--out", out), "exists")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(
        run("extract", tmp_path / "notes.txt", "--out", tmp_path / "n.npy"),
        "not a video or image file",
    )
    blank = tmp_path / "blank.png"
    video.opencv().imwrite(str(blank), np.zeros((120, 160, 3), dtype=np.uint8))
    one_line_error(run("extract", blank, "--out", tmp_path / "blank.npy"), "no person found")
    assert not (tmp_path / "blank.npy").exists()
    result = run("extract", blank, "--out", tmp_path / "blank.npy", "--keep-empty")
    assert result.exit_code == 0 and np.isnan(np.load(tmp_path / "blank.npy")).all()
    one_line_error(
        run("extract", PERSON, "--out", tmp_path / "p.npy", "--complexity", "1", "--format", "gif"),
        "--format gif",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "blank.npy",
        "blank.png",
        "notes.txt",
        "person.npy",
    ]


def test_extract_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    """No mediapipe: one line naming pip install -e '.[video]'."""
    require_videos()
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    result = run("extract", PERSON, "--out", tmp_path / "p.npy")
    one_line_error(result, "pip install -e '.[video]'")


def _recordings(root: Path, names: list[str]) -> Path:
    """A folder of copies of person.png (fast: one frame each)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PERSON.read_bytes())
    return root


def test_extract_folder_is_resumable_and_skips_bad_files(tmp_path):
    """A folder: every image and video below it, relative paths kept; a file that is not a
    video is skipped and named; a second run skips what is there; no partial file is left."""
    require_videos()
    source = _recordings(tmp_path / "in", ["a.png", "sub/b.png"])
    (source / "broken.mp4").write_text("not a video")
    (source / "readme.txt").write_text("not a recording either, and not one by name")
    out = tmp_path / "out"
    result = run("extract", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "skipped 1 (unreadable)" in result.output and "broken.mp4" in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.parquet",
        "sub",
        "sub/b.parquet",
    ]
    result = run("extract", source, "--out", out)
    assert result.exit_code == 0 and "2 already extracted, skipped" in result.output


def test_interrupted_run_keeps_whole_files_only(tmp_path):
    """A Ctrl-C (SIGINT) after the first file: that file is whole, the others are not started,
    and no partial file is left; the report says interrupted."""
    require_videos()
    source = _recordings(tmp_path / "in", ["a.png", "b.png", "c.png"])
    jobs, _ = extract_jobs.plain_jobs([source], tmp_path / "out", ".npy")

    def ctrl_c(frames: int, files: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    report = extract.run(jobs, on_progress=ctrl_c)
    assert report.interrupted and [job.source.name for job in report.written] == ["a.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npy"]
    assert np.load(tmp_path / "out" / "a.npy").shape == (1, 543, 3)


def test_dataset_from_csv_is_what_prepare_reads(tmp_path):
    """A CSV of path, sign, signer -> train.csv, train_landmark_files/<signer>/<id>.parquet
    and the sign map; `prepare` converts it with every row; a second run adds nothing."""
    require_videos()
    source = _recordings(tmp_path / "in", ["x.png", "y.png"])
    rows = [
        "path,sign,signer",
        "x.png,hello,7",
        "y.png,thanks,7",
        "x.png,hello,8",
        "y.png,thanks,8",
    ]
    (source / "labels.csv").write_text("\n".join(rows) + "\n")
    raw = tmp_path / "raw"
    result = run("extract", source / "labels.csv", "--dataset", "--out", raw)
    assert result.exit_code == 0, result.output
    assert "train.csv has 4 recordings of 2 signs" in result.output
    train_rows, known, bad_rows = kaggle.read_train_csv(raw)
    assert known == {"hello": 0, "thanks": 1} and not bad_rows
    assert sorted((r.participant_id, r.sign) for r in train_rows) == [
        (7, "hello"),
        (7, "thanks"),
        (8, "hello"),
        (8, "thanks"),
    ]
    assert len({r.sequence_id for r in train_rows}) == 4
    for row in train_rows:
        assert row.path == f"train_landmark_files/{row.participant_id}/{row.sequence_id}.parquet"
        assert kaggle.read_sequence(raw / row.path).shape == (3, 1, 543)
    result = run("extract", source / "labels.csv", "--dataset", "--out", raw)
    assert "4 already extracted" in result.output
    result = run("prepare", raw, tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "4 sequences of 2 signers" in result.output


def test_dataset_refusals(tmp_path):
    """A folder of signs without --signer, a CSV without the columns or with a signer that is
    not a number, and a path that is not there are one-line errors."""
    require_videos()
    source = _recordings(tmp_path / "signs", ["hello/1.png"])
    one_line_error(run("extract", source, "--dataset", "--out", tmp_path / "raw"), "--signer")
    (tmp_path / "a.csv").write_text("file,label\nx.png,hello\n")
    one_line_error(
        run("extract", tmp_path / "a.csv", "--dataset", "--out", tmp_path / "raw"),
        "path,sign,signer",
    )
    (tmp_path / "b.csv").write_text("path,sign,signer\nsigns/hello/1.png,hello,anna\n")
    one_line_error(
        run("extract", tmp_path / "b.csv", "--dataset", "--out", tmp_path / "raw"),
        "whole-number signer",
    )
    (tmp_path / "c.csv").write_text("path,sign,signer\nnope.mp4,hello,1\n")
    one_line_error(
        run("extract", tmp_path / "c.csv", "--dataset", "--out", tmp_path / "raw"), "does not exist"
    )
    assert not (tmp_path / "raw").exists()


@pytest.mark.slow
def test_dataset_folder_trains_and_evaluates(tmp_path):
    """SIGN/recording folders of three signers -> extract -> prepare -> train -> evaluate."""
    require_videos()
    source = _recordings(tmp_path / "signs", ["hello/1.png", "thanks/1.png", "thanks/2.png"])
    raw = tmp_path / "raw"
    for signer in ("1", "2", "3"):
        result = run("extract", source, "--dataset", "--signer", signer, "--out", raw)
        assert result.exit_code == 0, result.output
    assert run("prepare", raw, tmp_path / "data").exit_code == 0
    result = run(
        "train",
        "--data",
        tmp_path / "data",
        "--test-signer",
        "3",
        "--val-signer",
        "2",
        "--epochs",
        "2",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    result = run("evaluate", tmp_path / "run" / "model.safetensors")
    assert result.exit_code == 0 and "3 sequences" in result.output, result.output
