"""`predict`: the most likely signs for new recordings, with the checkpoint's own preprocessing.

    python islr.py predict runs/<name>/model.safetensors clip.parquet clip.mp4 --top-k 5

`read_recordings` reads the files `predict` and `show` take; the ranked lists come from
recognise.py, which `live` and `serve` use for one track at a time.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

import cache
import checkpoint
import data
import landmarks
import loops
from cli import (
    Device,
    Threads,
    console,
    note,
    output_file,
    pick_device,
    use_threads,
    user_errors,
    write_json,
)
from recognise import landmarks_seen, top_signs


def read_recordings(path: Path) -> list[tuple[str, np.ndarray]]:
    """(name, (3, T, 543) array) for each sequence of one input file of `predict`.

    `.parquet`: one Kaggle sequence file; `.hdf5` (`.h5`): every sequence of a GISLR signer
    file; `.npy`: one array [T, 543, 3] (frames, landmarks, x/y/z), as MediaPipe code produces
    it. Names are the path as given (plus the sequence id within an HDF5 file). A video that
    decodes to fewer frames than it declares gets a note (video.truncation_note).
    """
    path = Path(path)
    if path.is_dir():
        raise data.DataError(f"input {path} is a directory: name the recording files")
    if not path.is_file():
        raise data.DataError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        features, _, ids = data.read_signer(path, None)
        if not features:
            raise data.DataError(f"{path} holds no sequences")
        return [(f"{path}/{i}", f) for i, f in zip(ids, features, strict=True)]
    if suffix == ".parquet":
        from raw import kaggle

        try:
            return [(str(path), kaggle.read_sequence(path))]
        except kaggle.KaggleError as error:
            raise data.DataError(str(error)) from None
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)  # never unpickle a user's file
        except (ValueError, OSError, EOFError) as error:  # EOFError: an empty file
            raise data.DataError(f"{path} is not a readable .npy array ({error})") from None
        if array.dtype.kind not in "fiu":
            raise data.DataError(f"{path} holds {array.dtype} values, expected numbers")
        if (
            array.ndim != 3
            or array.shape[1:] != (landmarks.NUM_LANDMARKS, 3)
            or not 0 < len(array) <= data.MAX_FRAMES
        ):
            raise data.DataError(f"{path} has shape {list(array.shape)}, expected [T, 543, 3]")
        return [(str(path), np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))]
    from video import video

    if video.is_video_path(path):  # a video or image: landmarks extracted in memory (video.py)
        try:
            video.quiet_native_output()  # MediaPipe's start-up lines
            points = video.extract_path(path)  # (T, 543, 3), as `extract` writes them
        except video.VideoError as error:
            raise data.DataError(str(error)) from None
        cut = video.truncation_note(path, len(points))
        if cut:
            note(f"{path}: {cut}")
        return [(str(path), np.ascontiguousarray(points.transpose(2, 0, 1)))]
    raise data.DataError(
        f"{path}: unknown input type {path.suffix!r} (use .parquet, .hdf5, .npy, a video or an "
        "image)"
    )


def predict(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Kaggle .parquet files, GISLR .hdf5 files, .npy arrays [T, 543, 3], videos or "
            "images (landmarks extracted with MediaPipe, pip install -e '.\\[video]')."
        ),
    ],
    top_k: Annotated[int, typer.Option(min=1, help="How many signs to list per sequence.")] = 5,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the predictions to this JSON file.")
    ] = None,
    device: Device = "auto",
    threads: Threads = 0,
) -> None:
    """The most likely signs for new recordings, with the checkpoint's own preprocessing."""
    with user_errors():
        use_threads(threads)
        output_file(json_path, "--json", reading=ckpt)
        device_ = pick_device(device)
        loaded = checkpoint.load(ckpt)
        # one input file at a time: its raw arrays go once preprocessed
        names, prepared = cache.prepare_inputs(inputs, read_recordings, loaded.data_config)
        model = loaded.model.to(device_)
        logits, _, order = loops.predict(model, prepared.batches(loops.EVAL_BATCH), device_)
        probabilities = logits.softmax(-1)[order.argsort()]  # back to input order, (S, K)
        broken = [
            name for name, p in zip(names, probabilities, strict=True) if not p.isfinite().all()
        ]
        if broken:
            raise data.DataError(
                f"{broken[0]}: the model's output is not finite (coordinates far "
                "outside MediaPipe's 0-1 range?)"
            )
    results = [
        {"input": name, "landmarks_seen": seen, "predictions": predictions}
        for name, seen, predictions in zip(
            names,
            landmarks_seen(prepared),
            top_signs(probabilities, loaded.signs, top_k),
            strict=True,
        )
    ]
    columns = min(top_k, len(loaded.signs))
    table = Table("input", "frames", *(f"#{k + 1}" for k in range(columns)))
    for result, length in zip(results, prepared.lengths.tolist(), strict=True):
        cells = [f"{p['sign']} {p['probability']:.1%}" for p in result["predictions"]]
        table.add_row(result["input"], str(length), *cells)
    console.print(table)
    for result in results:
        if not result["landmarks_seen"]:
            note(
                f"{result['input']}: none of the model's landmarks was detected in any frame; "
                "its prediction is a guess"
            )
    if json_path:
        write_json(json_path, results)
