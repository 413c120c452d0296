"""Landmark tables: parts, selections, mirror pairs (plain Python, no torch)."""

import sys

import pytest

import landmarks


def test_part_of_fullbody():
    """The 130 fullbody points split into face 76, left hand 21, pose 12, right hand 21."""
    parts = landmarks.part_of(landmarks.SELECTIONS["fullbody"])
    assert [parts.count(i) for i in range(4)] == [76, 21, 12, 21]
    assert parts == (0,) * 76 + (1,) * 21 + (2,) * 12 + (3,) * 21


@pytest.mark.parametrize("selection", ["fullbody", "fullbody-head"])
def test_mirror_permutation_is_an_involution(selection):
    points = landmarks.SELECTIONS[selection]
    permutation = landmarks.mirror_permutation(points)
    assert sorted(permutation) == list(range(len(points)))
    assert all(permutation[permutation[i]] == i for i in range(len(points)))


def test_the_face_mesh_has_no_mirror_table():
    with pytest.raises(ValueError, match="no mirror pair"):
        landmarks.mirror_permutation(landmarks.SELECTIONS["all"])


def test_part_sizes_add_up_to_the_kaggle_frame():
    assert sum(landmarks.PART_SIZES) == landmarks.NUM_LANDMARKS == 543
    assert [start for start, _ in landmarks.PART_RANGES] == [0, 468, 489, 522]


def test_importable_without_torch():
    """synth.py and kaggle.py use these tables; importing them loads no torch."""
    import subprocess

    code = "import sys, landmarks; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
