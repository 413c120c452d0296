"""record.py: examples of one sign cut from a video into a raw Kaggle workspace, and refusals."""

import csv
import json

import h5py
import numpy as np
import pytest
from conftest import SELFIE, one_line_error, require_videos, run

from raw import kaggle

pytest.importorskip(
    "mediapipe", reason="the video extra is not installed: pip install -e '.[video]'"
)


def _rows(workspace) -> list[dict]:
    with open(workspace / "train.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_record_adds_the_signs_of_a_video_to_a_workspace(tmp_path):
    """The selfie's one sign becomes one example of --sign beside the rows already there; the
    same video again replaces it instead of adding a copy; prepare reads the workspace."""
    require_videos()
    kaggle.pyarrow_parquet()
    workspace = tmp_path / "raw"
    earlier = workspace / kaggle.LANDMARK_FILES / "3" / "11.parquet"
    earlier.parent.mkdir(parents=True)
    points = np.random.default_rng(0).uniform(0, 1, (9, 543, 3)).astype(np.float32)
    kaggle.write_sequence(earlier, points)
    (workspace / "train.csv").write_text(
        "path,participant_id,sequence_id,sign\ntrain_landmark_files/3/11.parquet,3,11,hello\n"
    )
    for _ in range(2):
        result = run("record", "--sign", "thank you", "--out", workspace, "--video", SELFIE)
        assert result.exit_code == 0, result.output
        printed = " ".join(result.output.split())
        assert "1 example(s) of 'thank you'" in printed
        assert "train.csv has 2 recordings of 2 signs" in printed
    rows = _rows(workspace)
    assert [(r["participant_id"], r["sign"]) for r in rows] == [("1", "thank you"), ("3", "hello")]
    features = kaggle.read_sequence(workspace / rows[0]["path"])  # (3, T, 543)
    assert features.shape[0] == 3 and 20 <= features.shape[1] <= 40
    assert rows[0]["source"] == f"{SELFIE}#1"
    assert json.loads((workspace / kaggle.MAP_FILE).read_text()) == {"hello": 0, "thank you": 1}
    assert not list(workspace.rglob(".*.tmp"))
    result = run("prepare", workspace, tmp_path / "data")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "data" / "1.hdf5") as file:
        assert len(file) == 1


@pytest.mark.parametrize(
    ("sign", "message"),
    [
        ("  ", "--sign: a sign needs a name"),
        ("a/b", "use letters, digits"),
        ("..", "use letters, digits"),
        ("x" * 41, "at most 40 characters"),
        ("tab\there", "use letters, digits"),
    ],
)
def test_record_refuses_bad_sign_names(tmp_path, sign, message):
    """An empty, path-like, control-character or overlong sign name is a one-line error, and
    nothing is written."""
    result = run("record", "--sign", sign, "--out", tmp_path / "raw", "--video", SELFIE)
    one_line_error(result, message)
    assert not (tmp_path / "raw").exists()


def test_record_refuses_bad_places(tmp_path):
    """--out a file, a missing --video and a foreign train.csv are one-line errors."""
    require_videos()
    (tmp_path / "file").write_text("x")
    one_line_error(run("record", "--sign", "a", "--out", tmp_path / "file"), "is a file")
    missing = tmp_path / "none.mp4"
    one_line_error(
        run("record", "--sign", "a", "--out", tmp_path / "raw", "--video", missing),
        "does not exist",
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.csv").write_text("name,value\n")
    one_line_error(
        run("record", "--sign", "a", "--out", tmp_path / "other", "--video", SELFIE),
        "has the header",
    )
