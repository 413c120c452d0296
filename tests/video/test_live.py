"""live.py: `live` end to end on the selfie video and on refusals."""

import json

import pytest
from conftest import SELFIE, one_line_error, require_videos, run

from bench import video_path


def test_live_cuts_the_selfie_video_into_one_sign_unknown_under_threshold_1(trained):
    """live --every-frame --jsonl on the selfie: one segment, one JSON line with its top-k
    ranked; with --threshold 1 (above any top probability) its sign is "unknown"."""
    require_videos()
    _, out, _ = trained
    ckpt = out / "model.safetensors"
    result = run(
        "live", ckpt, SELFIE, "--every-frame", "--jsonl", "--top-k", "2", "--threshold", "1"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    record = lines[0]
    assert record["sign"] == "unknown" and len(record["predictions"]) == 2
    assert 20 <= record["frames"] <= 40
    probabilities = [p["probability"] for p in record["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] < 1


def test_live_refusals(trained, tmp_path):
    """A camera that cannot be opened, a missing file, and a file that is not a video are
    one-line errors."""
    _, out, _ = trained
    ckpt = out / "model.safetensors"
    one_line_error(run("live", ckpt, "--camera", "97"), "camera 97 cannot be opened")
    one_line_error(run("live", ckpt, tmp_path / "none.mp4"), "does not exist")
    (tmp_path / "text.mp4").write_text("not a video")
    one_line_error(run("live", ckpt, tmp_path / "text.mp4"), "not a video OpenCV can decode")


@pytest.mark.slow
def test_live_on_a_video_of_three_signs(trained, tmp_path):
    """The selfie video three times with 1 s of stillness between, as a camera would deliver
    it (frames dropped when slower): live finds three signs."""
    require_videos()
    path = tmp_path / "three.mp4"
    video_path.write_repeated_video(SELFIE, path)
    _, out, _ = trained
    for flag in ("--every-frame", "--threshold=0"):
        result = run("live", out / "model.safetensors", path, "--jsonl", flag)
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 3, result.output
