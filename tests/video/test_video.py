"""video.py: frames from files, Holistic landmarks in Kaggle order, the conventions of the data;
the parquet file `extract` writes of a video, and predict on a video."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PERSON, SELFIE, one_line_error, require_real_data, require_videos, run

from raw import kaggle
from video import video

pytest.importorskip(
    "mediapipe", reason="the video extra is not installed: pip install -e '.[video]'"
)

LEFT_SHOULDER, RIGHT_SHOULDER = 489 + 11, 489 + 12  # pose 11 and 12 in Kaggle order
PARTS = {"face": (0, 468), "left_hand": (468, 489), "pose": (489, 522), "right_hand": (522, 543)}


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
    assert "cut short" not in result.output
    (tmp_path / "text.mp4").write_text("not a video")
    one_line_error(run("predict", ckpt, tmp_path / "text.mp4"), "not a video OpenCV can decode")


def cut_selfie(folder: Path) -> Path:
    """The first 100,000 bytes of the selfie video: OpenCV decodes 12 of the 58 frames its
    container declares."""
    require_videos()
    path = folder / "cut.mp4"
    path.write_bytes(SELFIE.read_bytes()[:100_000])
    return path


def test_truncation_note_names_frames_read_of_frames_declared(tmp_path):
    """A video cut short: "read 12 of 58 frames"; the whole video, a frame short of it (an
    estimated count) and an image: no note."""
    cut = cut_selfie(tmp_path)
    frames = sum(1 for _ in video.read_frames(cut))
    assert frames == 12
    assert video.truncation_note(cut, frames) == "read 12 of 58 frames: the file may be cut short"
    assert video.truncation_note(SELFIE, 58) is None
    assert video.truncation_note(SELFIE, 57) is None
    assert video.truncation_note(PERSON, 1) is None


def test_predict_and_extract_say_a_video_is_cut_short(trained, tmp_path):
    """predict and extract of a cut video still give their result, with a note of frames read
    of frames declared; extract of a folder counts the recordings that may be cut short."""
    cut = cut_selfie(tmp_path)
    _, out, _ = trained
    result = run("predict", out / "model.safetensors", cut)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert f"note: {cut}: read 12 of 58 frames: the file may be cut short" in printed
    result = run("extract", cut, "--out", tmp_path / "cut.parquet")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert f"note: {cut}: read 12 of 58 frames" in printed
    assert "1 recording(s), 12 frames" in printed and "1 may be cut short" in printed
    assert kaggle.read_sequence(tmp_path / "cut.parquet").shape == (3, 12, 543)
    folder = tmp_path / "recordings"
    folder.mkdir()
    cut.rename(folder / "cut.mp4")
    (folder / "person.png").write_bytes(PERSON.read_bytes())
    result = run("extract", folder, "--out", tmp_path / "landmarks")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "2 recording(s), 13 frames" in printed and "; 1 may be cut short" in printed


def test_quiet_native_output_keeps_python_output():
    """After quiet_native_output, what is written to descriptors 1 and 2 directly (as
    MediaPipe's C++ code does) is gone, and Python's prints still arrive."""
    import subprocess

    code = (
        "import os, sys\nfrom video import video\n"
        "video.quiet_native_output()\n"
        "os.write(1, b'native out\\n'); os.write(2, b'native err\\n')\n"
        "print('python out'); print('python err', file=sys.stderr)\n"
    )
    root = Path(__file__).resolve().parent.parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python out\n" and result.stderr == "python err\n"
