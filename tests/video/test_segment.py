"""segment.py: the segmentation rule on made-up and real landmarks."""

import numpy as np
import pytest
from conftest import SELFIE, require_videos

from video import segment, video

FPS = 30.0


def frame(hand_x: float | None) -> np.ndarray:
    """(543, 3) landmarks: shoulders 0.2 apart, the right hand centred at hand_x (None: out of
    view), everything else NaN."""
    points = np.full((543, 3), np.nan, dtype=np.float32)
    points[segment.LEFT_SHOULDER] = (0.6, 0.5, 0)
    points[segment.RIGHT_SHOULDER] = (0.4, 0.5, 0)
    if hand_x is not None:
        points[segment.RIGHT_HAND] = np.stack(
            [np.full(21, hand_x), np.linspace(0.3, 0.4, 21), np.zeros(21)], axis=1
        )
    return points


def segments(stream: list[np.ndarray], **params) -> tuple[list[np.ndarray], list[str]]:
    segmenter = segment.Segmenter(FPS, **params)
    found, states = [], []
    for points in stream:
        piece = segmenter.push(points)
        states.append(segmenter.state)
        if piece is not None:
            found.append(piece)
    last = segmenter.flush()
    return found + ([last] if last is not None else []), states


def moving(seconds: float) -> list[np.ndarray]:
    """A hand moving 0.01 a frame (0.3 a second = 1.5 shoulder widths a second)."""
    return [frame(0.3 + 0.01 * i) for i in range(int(seconds * FPS))]


def test_one_sign_between_pauses_is_one_segment():
    """1 s without hands, 1 s of a moving hand, 1 s without: one segment of the moving frames
    plus `pad` on each side (3 frames each), ending `end` s after the hand left."""
    stream = [frame(None)] * 30 + moving(1.0) + [frame(None)] * 30
    found, states = segments(stream)
    assert len(found) == 1
    assert len(found[0]) == 3 + 30 + 3
    hands = np.isfinite(found[0][:, 522, 0])
    assert hands[3:33].all() and not hands[:3].any() and not hands[33:].any()
    assert states[29] == "waiting" and states[35] == "signing"
    assert states[59 + 15] == "waiting"  # end = 0.5 s = 15 frames after the last active one


def test_still_hands_end_a_sign_and_twitches_are_ignored():
    """A hand that stops (held still in view) ends the sign after `end`; a hand seen for two
    frames is shorter than `shortest` and no sign; three signs with pauses are three."""
    still = [frame(0.6)] * 30
    found, _ = segments(moving(1.0) + still)
    # The first still frame is still a move (from 0.59 to 0.6), then the pad: 3 still frames.
    assert len(found) == 1 and len(found[0]) == 30 + 1 + 3
    found, _ = segments([frame(None)] * 10 + [frame(0.5), frame(0.52)] + [frame(None)] * 30)
    assert found == []
    found, _ = segments(([frame(None)] * 20 + moving(0.8)) * 3 + [frame(None)] * 20)
    assert len(found) == 3


def test_longest_cuts_a_long_segment():
    """A hand moving for 3 s with longest=1 gives segments of at most 1 s."""
    found, _ = segments(moving(3.0), longest=1.0)
    assert len(found) >= 2 and all(len(s) <= 31 for s in found)


def test_segmenter_refuses_bad_parameters():
    """fps must be positive; unknown parameters are refused."""
    with pytest.raises(ValueError):
        segment.Segmenter(0)
    with pytest.raises(TypeError):
        segment.Segmenter(30, nonsense=1)


@pytest.fixture(scope="module")
def selfie_points() -> np.ndarray:
    require_videos()
    return video.extract_path(SELFIE)


def test_selfie_three_times_with_stillness_is_three_signs(selfie_points):
    """The selfie clip's landmarks three times, with 1 s of its first frame (no hand) between:
    three segments, each around the 20 frames where the hand is seen."""
    still = [selfie_points[0]] * 30
    stream = (list(selfie_points) + still) * 3
    found, _ = segments(stream)
    assert len(found) == 3
    for piece in found:
        hands = np.isfinite(piece[:, 522:543]).all(axis=(1, 2))
        assert 20 <= len(piece) <= 40 and hands.sum() >= 15
