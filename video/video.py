"""Videos and still images to MediaPipe Holistic landmarks in the Kaggle layout.

    from video import video
    frames = video.read_frames("clip.mp4")              # RGB uint8 (H, W, 3) frames
    points = video.extract_frames(frames)               # float32 (T, 543, 3), Kaggle order
    with video.Holistic(complexity=1) as holistic:      # frame by frame (live, serve)
        points = holistic.landmarks(rgb)                # float32 (543, 3)

The landmarks are those the Kaggle asl-signs data was made with: MediaPipe's legacy Holistic
solution (`mp.solutions.holistic`, mediapipe 0.10.14), 468 face points (no iris refinement),
normalised image coordinates x, y in 0-1 and MediaPipe's relative z, in the order face 0-467,
left hand 468-488, pose 489-521, right hand 522-542, and NaN for every point of a part that was
not detected in a frame. The settings and why:
- model_complexity 1 (MediaPipe's default, the "full" pose model). 0 (lite, faster) and 2
  (heavy, slower) are taken only where their model files are present: the mediapipe wheel
  ships only the full one and MediaPipe would download the others, which islr never does;
- smooth_landmarks on (MediaPipe's default) for videos: the pose is filtered over time, as in
  any Holistic video pipeline; static_image_mode for still images, where there is no "before";
- frames are fed as the camera recorded them, not mirrored. In the Kaggle data the signer's
  left shoulder (pose 11) has the larger x in every frame, and the extraction of
  ../shared/data/videos/signer-selfie.mp4 agrees in all 58 frames (tests/video/test_video.py). That
  check cannot tell mirroring, measured: MediaPipe names the pose sides by image side, so a
  mirrored video passes it too, and mirroring only moves each hand into the other part (the
  selfie's signing hand, the signer's right hand seen palm first, is right_hand as recorded
  and left_hand mirrored). As recorded, "right_hand" is the signer's own right hand. The
  hello/thankyou data has the active hand in right_hand for 9 signers and in left_hand for 9,
  so a model trained on it sees both (the mirror_left option makes them alike).

Needs the optional extra `video` (pip install -e '.[video]'): mediapipe and the OpenCV it
brings (opencv-contrib-python), imported only when a video is read. Nothing is downloaded:
the Holistic models ship inside the mediapipe wheel.
"""

import io
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from landmarks import NUM_LANDMARKS, PART_SIZES, PARTS

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
COMPLEXITIES = (0, 1, 2)
INSTALL_HINT = "pip install -e '.[video]'"
# The --complexity option of the commands that run MediaPipe (extract, live, serve).
Complexity = Annotated[
    int,
    typer.Option(
        min=0,
        max=2,
        help="MediaPipe pose model complexity: 1; 0 and 2 need model files the wheel lacks.",
    ),
]


class VideoError(Exception):
    """A problem with a video, an image, a camera or the video extra; one sentence for the user."""


def is_video_path(path: str | Path) -> bool:
    """True for a name that `read_frames` takes: a video or still-image suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def opencv():
    """The cv2 module that mediapipe brings, or a VideoError saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise VideoError(f"videos need the video extra: {INSTALL_HINT}") from None
    return cv2


_muted: set[int] = set()  # the descriptors quiet_native_output has sent to /dev/null


def quiet_native_output() -> None:
    """From now on, what C++ code prints goes to /dev/null; Python's prints are unchanged.

    MediaPipe's TFLite and absl write a dozen lines per video ("INFO: Created TensorFlow Lite
    XNNPACK delegate", "W0000 ... Feedback manager requires ...") from their own threads
    whenever a part's model starts, between and during frames; no setting of mediapipe 0.10.14
    turns them off. So the process's file descriptors 1 and 2 go to /dev/null, and
    sys.stdout / sys.stderr (which Python code and rich print to) to copies of the originals.
    Streams that are not those descriptors (pytest's or CliRunner's capture, rich's proxy while
    a progress bar runs: call this before one starts) are left alone.
    The commands call this (extract, live, predict, show, serve, bench-video, through
    `extract.run` and `predict.read_recordings` too); a program that keeps references to
    the original sys.stderr (a logging handler made earlier, say) would lose that output, so
    Holistic never calls it by itself.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if fd in _muted:
            continue
        if not isinstance(stream, io.TextIOWrapper):  # a capture, or rich's proxy during a
            continue  # live display (which puts the original back when it ends)
        try:
            if stream.fileno() != fd:
                continue
        except (OSError, ValueError):  # no descriptor: a capture in memory
            continue
        stream.flush()
        _muted.add(fd)
        copy = os.dup(fd)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
        setattr(
            sys,
            name,
            os.fdopen(copy, "w", buffering=1, encoding=stream.encoding, errors=stream.errors),
        )


def _holistic_solution():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mediapipe.python.solutions import holistic
    except ImportError:
        raise VideoError(f"videos need the video extra: {INSTALL_HINT}") from None
    # protobuf 4 warns about a call mediapipe 0.10.14 makes on every frame.
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
    return holistic


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise VideoError(f"{path} is a directory, not a video or image")
    if not path.is_file():
        raise VideoError(f"{path} does not exist")


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames of a video file, or the one frame of a still image.

    A file OpenCV cannot decode, or a video without a frame, raises VideoError (at the first
    `next`, as any generator does).
    """
    path = Path(path)
    cv2 = opencv()
    _check_file(path)
    if is_image_path(path):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies EXIF orientation
        if image is None:
            raise VideoError(f"{path} is not an image OpenCV can decode")
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(
                f"{path} is not a video OpenCV can decode (not a video, or an unsupported codec)"
            )
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise VideoError(f"{path} has no frame OpenCV can decode")
    finally:
        capture.release()


def video_fps(path: str | Path, default: float = 30.0) -> float:
    """The frame rate a video file declares (`default` where it declares none, and for images)."""
    if is_image_path(path):
        return default
    capture = opencv().VideoCapture(str(path))
    try:
        return capture_fps(capture, default)
    finally:
        capture.release()


def capture_fps(capture, default: float = 30.0) -> float:
    """The frame rate an open OpenCV VideoCapture declares (`default` where it declares none)."""
    fps = capture.get(opencv().CAP_PROP_FPS) if capture.isOpened() else 0.0
    return float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else default


def count_frames(path: str | Path) -> int | None:
    """The frame count a video file declares (an estimate for some containers), 1 for an image,
    None when unknown. For progress bars only."""
    if is_image_path(path):
        return 1
    capture = opencv().VideoCapture(str(path))
    try:
        count = capture.get(opencv().CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0
    finally:
        capture.release()
    return int(count) if count and count > 0 else None


def truncation_note(path: str | Path, frames_read: int) -> str | None:
    """ "read 12 of 58 frames: the file may be cut short" when decoding `path` gave fewer
    frames than its container declares (count_frames); None when it gave them all, or the
    container declares none.

    Some containers' counts are estimates from duration and frame rate, so a shortfall of one
    frame, or of 2% of the count, goes without a note.
    """
    expected = count_frames(path)
    if expected is None or frames_read >= expected - max(1, expected // 50):
        return None
    return f"read {frames_read} of {expected} frames: the file may be cut short"


def check_complexity(complexity: int) -> None:
    """A VideoError unless `complexity` is 0, 1 or 2 and its pose model is here."""
    if complexity not in COMPLEXITIES:
        raise VideoError(f"model complexity must be 0, 1 or 2, not {complexity}")
    _holistic_solution()  # the extra is installed
    model = pose_model_path(complexity)
    if not model.is_file():
        raise VideoError(
            f"model complexity {complexity} needs {model.name}, which the mediapipe wheel "
            f"does not ship (MediaPipe would download it; islr downloads nothing): use "
            f"complexity 1, or put the file at {model}"
        )


def pose_model_path(complexity: int) -> Path:
    """Where mediapipe keeps the pose model of a complexity. Only complexity 1's (full) is in
    the mediapipe 0.10.14 wheel; MediaPipe downloads lite (0) and heavy (2) at first use."""
    import mediapipe

    name = ("lite", "full", "heavy")[complexity]
    return (
        Path(mediapipe.__file__).parent
        / "modules"
        / "pose_landmark"
        / f"pose_landmark_{name}.tflite"
    )


class Holistic:
    """MediaPipe's legacy Holistic solution, giving Kaggle-order landmarks frame by frame.

    `complexity`: the pose model, 0 (fastest), 1 (default) or 2 (most accurate). `static`:
    every frame is a separate still image (no tracking or smoothing across frames). One
    instance follows one video: its tracker carries state from frame to frame.

    MediaPipe prints a dozen lines per video to standard error; quiet_native_output() ends that.
    """

    def __init__(self, complexity: int = 1, static: bool = False) -> None:
        holistic = _holistic_solution()
        check_complexity(complexity)
        self.complexity, self.static = complexity, static
        self._solution = holistic.Holistic(
            static_image_mode=static,
            model_complexity=complexity,
            smooth_landmarks=True,  # applies to videos only
            refine_face_landmarks=False,  # 468 face points, as in the Kaggle data
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )

    def __enter__(self) -> "Holistic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray:
        """float32 (543, 3) landmarks of one RGB uint8 (H, W, 3) frame; NaN where not found."""
        if self._solution is None:
            raise ValueError("this Holistic is closed")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {rgb.dtype} {rgb.shape}")
        results = self._solution.process(np.ascontiguousarray(rgb))
        points = np.full((NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
        start = 0
        for name, size in zip(PARTS, PART_SIZES, strict=True):
            found = getattr(results, f"{name}_landmarks")
            if found is not None:
                points[start : start + size] = [(p.x, p.y, p.z) for p in found.landmark]
            start += size
        return points


def extract_frames(
    frames: Iterable[np.ndarray], complexity: int = 1, static: bool = False
) -> np.ndarray:
    """float32 (T, 543, 3) landmarks of a sequence of RGB frames (one Holistic follows them)."""
    with Holistic(complexity, static) as holistic:
        points = [holistic.landmarks(frame) for frame in frames]
    if not points:
        return np.empty((0, NUM_LANDMARKS, 3), dtype=np.float32)
    return np.stack(points)


def extract_path(path: str | Path, complexity: int = 1) -> np.ndarray:
    """float32 (T, 543, 3) landmarks of a video file, or (1, 543, 3) of a still image
    (static_image_mode)."""
    return extract_frames(read_frames(path), complexity, static=is_image_path(path))


def person_found(points: np.ndarray) -> bool:
    """True when any part was detected in any frame of (T, 543, 3) or (543, 3) landmarks."""
    return bool(np.isfinite(points).any())
