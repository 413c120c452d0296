"""Landmark sequences as animations: `python islr.py show` (and, through evaluation.py, the
error animations of `evaluate --errors`).

Hands, arms and shoulders are drawn as a skeleton, the face as its outline (oval, eyes,
lips); a part MediaPipe did not detect in a frame (NaN) is simply absent there, and the
caption names it. GIF through Pillow; MP4 through ffmpeg where it is installed.

    python islr.py show ../shared/data/gislr-hello-thankyou/16069.hdf5 1004614005
    python islr.py show clip.parquet --ckpt runs/<name>/model.safetensors --out clip.gif
    python islr.py show landmarks.npy --out clip.mp4
    python islr.py show video.mp4              # the video's frames under the skeleton (video.py)
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import h5py
import numpy as np
import typer

import checkpoint
import data
import recognise
from cli import console, output_file, user_errors
from landmarks import FACE_OVAL, LEFT_HAND, NUM_LANDMARKS, POSE, RIGHT_HAND
from pictures import plots
from video import predict, video

FPS = 15  # GISLR clips were recorded at about 30 frames/s: half speed is easier to follow
SIZE = (4.0, 4.5)  # inches; at plots.DPI (100) an animation is 400 x 450 pixels
VIDEO_SIZE = 480  # pixels: video frames are shrunk to this longer side under the skeleton

# Hand: MediaPipe's 21 points (wrist 0, four per finger from the thumb); bones of each finger
# from the wrist, and the palm across the finger bases.
HAND_EDGES = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (9, 10),
    (10, 11),
    (11, 12),
    (13, 14),
    (14, 15),
    (15, 16),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
    (5, 9),
    (9, 13),
    (13, 17),
]
# Pose: shoulders (11, 12), elbows (13, 14), wrists (15, 16).
ARM_EDGES = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16)]
# Face mesh contours, each a closed loop: the oval, the outer lips, the right and left eye.
FACE_LOOPS = [
    list(FACE_OVAL),
    [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185],
    [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246],
    [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466],
]
PARTS = {  # caption name -> the points whose absence means the part is missing
    "face": [10, 152],
    "left hand": [LEFT_HAND],
    "right hand": [RIGHT_HAND],
    "arms": [POSE + 11, POSE + 12],
}
COLORS = {"left hand": "tab:orange", "right hand": "tab:blue", "arms": "0.35", "face": "0.5"}


def edges_of(offset: int, edges: list[tuple[int, int]]) -> np.ndarray:
    return np.array(edges) + offset


def loop_edges(loop: list[int]) -> list[tuple[int, int]]:
    return list(zip(loop, loop[1:] + loop[:1], strict=True))


SKELETON = {  # part -> (E, 2) landmark pairs (Kaggle order) drawn as lines
    "face": np.array([edge for loop in FACE_LOOPS for edge in loop_edges(loop)]),
    "arms": edges_of(POSE, ARM_EDGES),
    "left hand": edges_of(LEFT_HAND, HAND_EDGES),
    "right hand": edges_of(RIGHT_HAND, HAND_EDGES),
}
DRAWN = np.unique(np.concatenate([edges.ravel() for edges in SKELETON.values()]))


def missing_parts(frame: np.ndarray) -> list[str]:
    """The parts not detected in one (543, 3) frame."""
    return [name for name, points in PARTS.items() if np.isnan(frame[points, :2]).any()]


def view_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) around every drawn point of the sequence, square, y down."""
    present = points[:, DRAWN, :2].reshape(-1, 2)
    present = present[~np.isnan(present).any(1)]
    if not len(present):
        return 0.0, 1.0, 1.0, 0.0  # nothing detected: MediaPipe's whole image
    low, high = present.min(0), present.max(0)
    center, half = (low + high) / 2, max((high - low).max() / 2, 0.05) * 1.1
    return center[0] - half, center[0] + half, center[1] + half, center[1] - half


def animation(points: np.ndarray, title: str, background: list[np.ndarray] | None = None):
    """(figure, FuncAnimation) of a (T, 543, 3) sequence, one animation frame per frame.

    With `background` (T video frames, RGB) coordinates are the video's (x, y in 0-1 of the
    image) and each frame is shown under its landmarks.
    """
    plots.require()
    from matplotlib.animation import FuncAnimation
    from matplotlib.collections import LineCollection

    T = len(points)
    figure = plots.new_figure(*SIZE)
    figure.set_layout_engine("none")
    axes = figure.add_axes((0.02, 0.08, 0.96, 0.82))
    axes.set_xticks([]), axes.set_yticks([])
    image = None
    if background is not None:
        height, width = background[0].shape[:2]
        image = axes.imshow(background[0], extent=(0, 1, 1, 0), aspect=height / width)
        axes.set(xlim=(0, 1), ylim=(1, 0))
    else:
        left, right, bottom, top = view_box(points)
        axes.set(xlim=(left, right), ylim=(bottom, top), aspect="equal")
    # Over video frames the grey face and arms would vanish into skin and clothes.
    colors = COLORS if background is None else {**COLORS, "face": "white", "arms": "0.9"}
    lines = {}
    for part in SKELETON:
        width = 1.0 if part == "face" else 2.2
        lines[part] = axes.add_collection(
            LineCollection([], colors=colors[part], linewidths=width, label=part)
        )
    joints = {
        part: axes.plot([], [], "o", ms=2.5, color=colors[part])[0]
        for part in ("left hand", "right hand", "arms")
    }
    figure.suptitle(title, fontsize="medium", y=0.97)
    caption = figure.text(0.5, 0.025, "", ha="center", fontsize="small")
    axes.legend(
        handles=[lines["left hand"], lines["right hand"]],
        loc="upper right",
        fontsize="x-small",
        framealpha=0.6,
    )

    def draw(t: int):
        frame = points[t, :, :2]
        for part, edges in SKELETON.items():
            segments = frame[edges]  # (E, 2, 2)
            lines[part].set_segments(segments[~np.isnan(segments).any((1, 2))])
        for part, line in joints.items():
            used = np.unique(SKELETON[part])
            line.set_data(frame[used, 0], frame[used, 1])
        if image is not None:
            image.set_data(background[t])
        missing = missing_parts(points[t])
        caption.set_text(
            f"frame {t + 1}/{T}" + (f" · missing: {', '.join(missing)}" if missing else "")
        )
        return []

    return figure, FuncAnimation(figure, draw, frames=T, interval=1000 / FPS, blit=False)


def check_animation_path(path: Path) -> Path:
    """A .gif, or an .mp4 where ffmpeg is installed; anything else is a one-line error."""
    from matplotlib.animation import writers

    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"{path}: name a .gif or .mp4 file")
    if path.suffix.lower() == ".mp4" and not writers.is_available("ffmpeg"):
        raise ValueError(
            f"{path}: MP4 needs ffmpeg on the PATH (apt-get install ffmpeg); write a .gif instead"
        )
    return path


def write_animation(path: Path, points: np.ndarray, title: str, background=None) -> None:
    """Write the animation of a (T, 543, 3) sequence to a .gif (Pillow) or .mp4 (ffmpeg)."""
    plots.require()
    from matplotlib.animation import FFMpegWriter, PillowWriter

    path = check_animation_path(path)
    writer = FFMpegWriter(fps=FPS) if path.suffix.lower() == ".mp4" else PillowWriter(fps=FPS)
    figure, animated = animation(points, title, background)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    animated.save(temporary, writer=writer, dpi=plots.DPI)
    temporary.replace(path)


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Clip:
    points: np.ndarray  # (T, 543, 3) float32, NaN where a point was not detected
    name: str
    sign: str | None = None
    background: list[np.ndarray] | None = None  # video frames, RGB


def read_clip(path: Path, sequence_id: str | None) -> Clip:
    """The sequence to show: an HDF5 signer file and a sequence id, a Kaggle .parquet, a .npy
    [T, 543, 3] or a video (landmarks extracted by video.py)."""
    suffix = path.suffix.lower()
    if video.is_video_path(path):
        return read_video(path)
    if suffix in (".hdf5", ".h5"):
        return read_hdf5(path, sequence_id)
    if suffix not in (".parquet", ".npy"):
        raise ValueError(
            f"{path}: unknown input type {path.suffix!r} (use .hdf5 with a sequence "
            "id, .parquet, .npy or a video)"
        )
    if sequence_id is not None:
        raise ValueError(f"a sequence id goes with an .hdf5 file, not {path.name}")
    [(_, features)] = predict.read_recordings(path)
    return Clip(features.transpose(1, 2, 0), path.stem, kaggle_sign(path))


def kaggle_sign(path: Path) -> str | None:
    """The sign of a parquet file in the Kaggle layout, from the train.csv above it
    (ROOT/train_landmark_files/PARTICIPANT/SEQUENCE.parquet); None elsewhere."""
    table = path.resolve().parents[2] / "train.csv" if len(path.resolve().parents) > 2 else None
    if path.suffix.lower() != ".parquet" or table is None or not table.is_file():
        return None
    with open(table, newline="") as file:
        for row in csv.DictReader(file):
            if row.get("sequence_id") == path.stem:
                return row.get("sign")
    return None


def read_hdf5(path: Path, sequence_id: str | None) -> Clip:
    """One sequence of a GISLR signer file, with its sign when the folder's vocabulary is there."""
    if not path.is_file():
        raise data.DataError(f"input {path} does not exist")
    try:
        with h5py.File(path, "r") as file:
            ids = list(file)
            if sequence_id not in ids:
                some = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
                what = "name one" if sequence_id is None else f"it has no {sequence_id}"
                raise data.DataError(f"{path} holds {len(ids)} sequences ({some}): {what}")
            group = file[sequence_id]
            if (
                not isinstance(group, h5py.Group)
                or "feature" not in group
                or group["feature"].shape[::2] != (3, NUM_LANDMARKS)
            ):
                raise data.DataError(f"{path}/{sequence_id} has no feature [3, T, 543]")
            features = np.asarray(group["feature"][()], dtype=np.float32)
            token = group["token"] if "token" in group else None
            sign = None
            if token is not None and (path.parent / data.VOCABULARY_FILE).is_file():
                vocabulary = data.read_vocabulary(path.parent)
                index = data.read_token(token, len(vocabulary), f"{path.name}/{sequence_id}")
                sign = {i: s for s, i in vocabulary.items()}[index]
    except OSError as error:
        raise data.DataError(f"{path} is not a readable HDF5 file ({error})") from None
    return Clip(features.transpose(1, 2, 0), f"{path.stem}-{sequence_id}", sign)


def read_video(path: Path) -> Clip:
    """Landmarks of a video (or still image) through video.py, with its frames, shrunk, to
    draw under them."""
    from PIL import Image

    shrunk = []

    def frames():  # streamed: only the shrunk copies stay in memory
        for frame in video.read_frames(path):
            image = Image.fromarray(frame)
            image.thumbnail((VIDEO_SIZE, VIDEO_SIZE))
            shrunk.append(np.asarray(image))
            yield frame

    try:
        points = video.extract_frames(frames(), static=video.is_image_path(path))
    except video.VideoError as error:
        raise ValueError(str(error)) from None
    if not len(points):
        raise ValueError(f"{path} has no frames")
    return Clip(np.asarray(points, dtype=np.float32), path.stem, None, shrunk)


def predicted(ckpt: Path, points: np.ndarray) -> tuple[str, float]:
    """(sign, probability) a checkpoint gives a (T, 543, 3) sequence."""
    [top] = recognise.classify(checkpoint.load(ckpt), points, top_k=1)["predictions"]
    return top["sign"], top["probability"]


def title_of(sign: str | None, prediction: tuple[str, float] | None) -> str:
    parts = [f"sign: {sign}"] if sign else []
    if prediction:
        mark = "" if sign is None else (" ✓" if prediction[0] == sign else " ✗")
        parts.append(f"predicted: {prediction[0]} ({prediction[1]:.0%}){mark}")
    return " · ".join(parts) or "sign unknown"


def show(
    input: Annotated[
        Path, typer.Argument(help=".hdf5 + sequence id, .parquet, .npy [T, 543, 3], or a video.")
    ],
    sequence_id: Annotated[
        str | None, typer.Argument(help="The sequence in an .hdf5 signer file.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="A .gif or .mp4 (default: NAME.gif here).")
    ] = None,
    ckpt: Annotated[
        Path | None, typer.Option(help="A model.safetensors: show its prediction too.")
    ] = None,
    sign: Annotated[str | None, typer.Option(help="The sign, when the input does not say.")] = None,
) -> None:
    """Animate a landmark sequence: skeleton of hands and arms, face outline, frame number."""
    with user_errors():
        plots.require()
        if out is not None:
            check_animation_path(output_file(out, "--out", reading=input))
        clip = read_clip(input, sequence_id)
        out = output_file(out or Path(f"{clip.name}.gif"), "--out", reading=input)
        prediction = predicted(ckpt, clip.points) if ckpt else None
        console.print(f"{clip.name}: {len(clip.points)} frames -> {out}")
        write_animation(out, clip.points, title_of(sign or clip.sign, prediction), clip.background)
