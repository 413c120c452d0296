"""video.py and extract: frames from files, Holistic landmarks in Kaggle order, the conventions
of the data, landmark files and data sets from recordings, predict on a video."""

import json
import os
import signal
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SHARED_DATA, one_line_error, require_real_data, run

import extract
import extract_jobs
import kaggle
import video

pytest.importorskip(
    "mediapipe", reason="the video extra is not installed: pip install -e '.[video]'"
)

VIDEOS = SHARED_DATA / "videos"
SELFIE = VIDEOS / "signer-selfie.mp4"
PERSON = VIDEOS / "person.png"
LEFT_SHOULDER, RIGHT_SHOULDER = 489 + 11, 489 + 12  # pose 11 and 12 in Kaggle order
PARTS = {"face": (0, 468), "left_hand": (468, 489), "pose": (489, 522), "right_hand": (522, 543)}


def require_videos() -> Path:
    if not SELFIE.is_file():
        pytest.skip(
            f"real videos not found at {VIDEOS} (they live in ../shared/data beside the repo)"
        )
    return VIDEOS


def found(points: np.ndarray, part: str) -> np.ndarray:
    """Per frame: True where every point of `part` is present.  # (T,)"""
    start, end = PARTS[part]
    return np.isfinite(points[:, start:end]).all(axis=(1, 2))


@pytest.fixture(scope="module")
def selfie() -> np.ndarray:
    require_videos()
    return video.extract_path(SELFIE)


def test_is_video_path():
    """Video and image suffixes, any case; landmark files and others are not."""
    for name in ("a.mp4", "b.MOV", "c.webm", "d.avi", "e.mkv", "f.m4v", "g.png", "h.JPG", "i.jpeg"):
        assert video.is_video_path(name), name
    for name in ("a.parquet", "b.npy", "c.hdf5", "d", "e.txt", "mp4"):
        assert not video.is_video_path(name), name


def test_read_frames_of_the_selfie_video():
    """58 RGB uint8 frames of 720 x 540 (height x width)."""
    require_videos()
    frames = list(video.read_frames(SELFIE))
    assert len(frames) == 58
    assert all(f.shape == (720, 540, 3) and f.dtype == np.uint8 for f in frames)


def test_selfie_extraction_shape_and_parts(selfie):
    """(58, 543, 3) float32; face and pose in every frame, a hand in some; parts whole or NaN."""
    assert selfie.shape == (58, 543, 3) and selfie.dtype == np.float32
    assert found(selfie, "face").all() and found(selfie, "pose").all()
    hands = found(selfie, "left_hand") | found(selfie, "right_hand")
    assert 5 <= hands.sum() < 58
    for start, end in PARTS.values():  # a part is all there or all NaN in each frame
        present = np.isfinite(selfie[:, start:end]).all(axis=(1, 2))
        absent = np.isnan(selfie[:, start:end]).all(axis=(1, 2))
        assert (present | absent).all()
    xy = selfie[found(selfie, "pose"), 489:522, :2]
    assert np.nanmedian(xy) > 0 and np.nanmedian(xy) < 1  # normalised image coordinates


def test_real_data_has_the_left_shoulder_at_larger_x():
    """In the Kaggle recordings, pose 11 (left shoulder) has a larger x than pose 12 in every
    frame where both are present: the convention the extraction must follow."""
    root = require_real_data()
    frames = 0
    for path in sorted(root.glob("*.hdf5"))[:6]:
        with h5py.File(path) as file:
            for group in file.values():
                x = group["feature"][0]  # (T, 543)
                both = np.isfinite(x[:, LEFT_SHOULDER]) & np.isfinite(x[:, RIGHT_SHOULDER])
                assert (x[both, LEFT_SHOULDER] > x[both, RIGHT_SHOULDER]).all(), path
                frames += int(both.sum())
    assert frames > 1000


def test_selfie_extraction_follows_the_data_convention(selfie):
    """Pose 11 x > pose 12 x in all 58 frames, as in the data; the signing hand (the signer's
    right, seen palm first) is right_hand. Mirrored frames keep the pose order (MediaPipe names
    the pose sides by image side) but move the hand into left_hand: the frames are fed as
    recorded, and mirroring is not something the pose check can tell."""
    assert (selfie[:, LEFT_SHOULDER, 0] > selfie[:, RIGHT_SHOULDER, 0]).all()
    assert found(selfie, "right_hand").sum() >= 10 and not found(selfie, "left_hand").any()
    frames = list(video.read_frames(SELFIE))[28:34]  # the hand is up here
    mirrored = video.extract_frames(np.ascontiguousarray(f[:, ::-1]) for f in frames)
    assert (mirrored[:, LEFT_SHOULDER, 0] > mirrored[:, RIGHT_SHOULDER, 0]).all()
    assert found(mirrored, "left_hand").any() and not found(mirrored, "right_hand").any()


def test_still_image_finds_every_part():
    """person.png (static_image_mode): face, both hands and pose in its one frame."""
    require_videos()
    points = video.extract_path(PERSON)
    assert points.shape == (1, 543, 3)
    for part in PARTS:
        assert found(points, part).all(), part


def test_blank_frame_is_all_nan():
    """A frame without a person: every point NaN, and person_found says so."""
    with video.Holistic(complexity=1, static=True) as holistic:
        points = holistic.landmarks(np.zeros((240, 320, 3), dtype=np.uint8))
    assert points.shape == (543, 3) and points.dtype == np.float32
    assert np.isnan(points).all() and not video.person_found(points)


def test_extract_frames_of_nothing_is_empty():
    """No frames in: (0, 543, 3) out."""
    assert video.extract_frames([], complexity=1).shape == (0, 543, 3)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.mp4", b"this is text, not a video", "not a video OpenCV can decode"),
        ("empty.mp4", b"", "not a video OpenCV can decode"),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really", "not an image OpenCV can decode"),
    ],
)
def test_read_frames_refuses_undecodable_files(tmp_path, name, content, message):
    """A file OpenCV cannot decode is a VideoError naming it."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(video.VideoError, match=message):
        list(video.read_frames(path))


def test_read_frames_refuses_missing_files_and_folders(tmp_path):
    """A path that does not exist, or a folder, is a VideoError."""
    with pytest.raises(video.VideoError, match="does not exist"):
        list(video.read_frames(tmp_path / "absent.mp4"))
    with pytest.raises(video.VideoError, match="is a directory"):
        list(video.read_frames(tmp_path))


def test_holistic_refuses_a_bad_complexity():
    """Model complexity is 0, 1 or 2."""
    with pytest.raises(video.VideoError, match="complexity"):
        video.Holistic(complexity=3)


@pytest.mark.parametrize("complexity", [0, 2])
def test_holistic_never_downloads_a_model(complexity):
    """Complexities whose pose model the wheel lacks are refused, not downloaded."""
    if video.pose_model_path(complexity).is_file():
        pytest.skip(f"{video.pose_model_path(complexity)} is present here")
    with pytest.raises(video.VideoError, match="downloads nothing"):
        video.Holistic(complexity=complexity)


# extract and predict ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def selfie_parquet(tmp_path_factory) -> Path:
    """signer-selfie.mp4 extracted by the command line into a Kaggle parquet file."""
    require_videos()
    out = tmp_path_factory.mktemp("extract") / "selfie.parquet"
    result = run("extract", SELFIE, "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 recording(s), 58 frames" in result.output
    return out


def test_extracted_parquet_is_the_kaggle_layout(selfie_parquet, selfie):
    """The parquet file has Kaggle's columns and types, 543 rows a frame in Kaggle order,
    nulls where a part is missing, and exactly the landmarks of the in-memory extraction."""
    import pyarrow.parquet as pq

    table = pq.read_table(selfie_parquet)
    assert table.column_names == ["frame", "row_id", "type", "landmark_index", "x", "y", "z"]
    assert [str(t) for t in table.schema.types] == [
        "int16",
        "string",
        "string",
        "int16",
        "double",
        "double",
        "double",
    ]
    assert table.num_rows == 58 * 543
    rows = table.slice(543 + 468, 2).to_pylist()  # frame 1, the left hand (never found)
    assert rows[0]["row_id"] == "1-left_hand-0" and rows[0]["x"] is None
    assert table.column("x").null_count == int(np.isnan(selfie[..., 0]).sum())
    features = kaggle.read_sequence(selfie_parquet)  # (3, T, 543), as prepare reads it
    np.testing.assert_array_equal(features, selfie.transpose(2, 0, 1))


def test_predict_on_a_video_equals_predict_on_its_parquet(trained, selfie_parquet, tmp_path):
    """predict on the video (extraction in memory) prints and saves the same top-k, to the
    last digit, as predict on the parquet file `extract` wrote."""
    _, out, _ = trained
    ckpt = out / "model.safetensors"
    results = []
    for source in (SELFIE, selfie_parquet):
        json_path = tmp_path / f"{source.suffix[1:]}.json"
        result = run("predict", ckpt, source, "--json", json_path, "--top-k", "3")
        assert result.exit_code == 0, result.output
        assert "58" in result.output  # frames
        (record,) = json.loads(json_path.read_text())
        assert record["input"] == str(source)
        results.append((record["predictions"], record["landmarks_seen"]))
    assert results[0] == results[1]
    assert len(results[0][0]) == 3 and results[0][1]
    (tmp_path / "text.mp4").write_text("not a video")
    one_line_error(run("predict", ckpt, tmp_path / "text.mp4"), "not a video OpenCV can decode")


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


def test_quiet_native_output_keeps_python_output():
    """After quiet_native_output, what is written to descriptors 1 and 2 directly (as
    MediaPipe's C++ code does) is gone, and Python's prints still arrive."""
    import subprocess

    code = (
        "import os, sys, video\n"
        "video.quiet_native_output()\n"
        "os.write(1, b'native out\\n'); os.write(2, b'native err\\n')\n"
        "print('python out'); print('python err', file=sys.stderr)\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python out\n" and result.stderr == "python err\n"
