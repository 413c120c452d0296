"""Export: a checkpoint as one self-contained model file for deployment (TorchScript or ONNX).

The exported graph takes one raw MediaPipe sequence, `landmarks` float32 [T, 543, 3] for
any T >= 1 (x, y, z in the Kaggle landmark order, NaN where nothing was detected; refuse
T = 0 before calling, as `predict` does), and returns `logits` [K] (softmax them for
probabilities). The checkpoint's preprocessing (landmark selection, NaN -> 0, parts-based
normalisation: `preprocessing.preprocess`) is inside the graph, so a deployment needs no
islr code, only torch (TorchScript) or onnxruntime (ONNX). The sign names in class-index
order travel inside the file: `vocabulary.json` among TorchScript's extra files,
`vocabulary` in the ONNX metadata_props (both a JSON list).

The file is written to a temporary name, loaded back and compared with the PyTorch path of
`islr.py predict` on real sequences (from the checkpoint's data directory, when it exists)
plus edge cases (1 frame; 1,100 frames, longer than any training clip), and renamed to
`out` only if they agree.

    python islr.py export runs/<name>/model.safetensors --format torchscript model.pt
    python -c "from deploy import export; print(export.export('runs/x/model.safetensors', 'm.onnx', 'onnx'))"

Using an export (no islr code needed):
    files = {"vocabulary.json": ""}
    module = torch.jit.load("model.pt", _extra_files=files)  # fills files
    signs = json.loads(files["vocabulary.json"])
    logits = module(torch.from_numpy(landmarks))  # (K,)

    session = onnxruntime.InferenceSession("model.onnx")
    signs = json.loads(session.get_modelmeta().custom_metadata_map["vocabulary"])
    logits = session.run(None, {"landmarks": landmarks})[0]  # (K,)
"""

import copy
import importlib.util
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import checkpoint
import data
import landmarks
import loops
import models
import preprocessing
import safely
from preprocessing import DataConfig

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}  # format -> the file suffix it goes with
TOLERANCE = 1e-4  # float32 graphs may reorder sums (~1e-6); a real mismatch is far larger
TRACE_FRAMES = 23  # the example length traced; the parity check uses other lengths
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # torch's ONNX exporter needs onnxscript


class ExportError(ValueError):
    """An export that cannot be made; the message is one sentence naming the cause and the fix."""


class Deployable(nn.Module):
    """Raw landmarks of one sequence -> logits: the checkpoint's preprocessing and model in one.

    forward(landmarks (T, 543, 3) float32 with NaN) -> (K,). With one sequence, lengths is
    [T] and every frame is valid. The model is copied, never changed in place.
    """

    def __init__(self, model: nn.Module, data_config: DataConfig):
        super().__init__()
        self.data_config = data_config
        self.model = copy.deepcopy(model).eval()

    def forward(self, landmarks: Tensor) -> Tensor:
        # lengths = [T] computed from the tensor, not read as a Python int, so a traced
        # graph keeps T as a variable instead of baking in the example's length.
        lengths = torch.ones_like(landmarks[:, 0, 0], dtype=torch.long).sum().reshape(1)  # (1,)
        x = preprocessing.preprocess(landmarks, lengths, self.data_config)  # (T, J*C)
        valid = torch.ones_like(x[None, :, 0], dtype=torch.bool)  # (1, T) all real frames
        return self.model(x[None], valid)[0]  # (K,)


def format_for(out: Path | str) -> str:
    """The format a file name asks for: onnx for .onnx, torchscript for anything else."""
    return "onnx" if Path(out).suffix == FORMATS["onnx"] else "torchscript"


def export(ckpt_path: Path | str, out: Path | str, format: str) -> dict:
    """Write the checkpoint as a deployable `format` file at `out`; returns what was checked.

    Returns {"path", "format", "bytes", "num_classes", "max_abs_difference" (logits, export
    vs PyTorch), "parity_sequences", "parity_frames" [min, max], "parity_source", "seconds"}.
    """
    started = time.perf_counter()
    out = Path(out)
    check_target(out, format)
    loaded = checkpoint.load(ckpt_path)
    if format == "onnx" and isinstance(loaded.model, models.RecurrentISLR):
        raise ExportError(
            f"{ckpt_path} holds a recurrent model ({loaded.model_config.name}), whose packed "
            "sequences torch cannot export to ONNX: use --format torchscript"
        )
    deployable = Deployable(loaded.model, loaded.data_config)
    sequences, source = parity_sequences(loaded)
    metadata = file_metadata(loaded, ckpt_path)
    example = random_sequence(torch.Generator().manual_seed(1), TRACE_FRAMES)
    with safely.replacing(out) as temporary:  # renamed to `out` only if parity holds
        save = save_torchscript if format == "torchscript" else save_onnx
        save(deployable, temporary, example, metadata)
        run, signs = (load_torchscript if format == "torchscript" else load_onnx)(temporary)
        if signs != loaded.signs:
            raise ExportError(f"the exported {format} file lost the vocabulary: not written")
        expected = reference_logits(loaded, sequences)  # (S, K)
        with torch.inference_mode():
            got = torch.stack([torch.as_tensor(run(sequence)) for sequence in sequences])
        difference = (got - expected).abs().max().item()
        if not difference <= TOLERANCE:  # also catches NaN
            raise ExportError(
                f"the exported {format} model differs from the PyTorch model by {difference:.3g} "
                f"(more than {TOLERANCE:g}) on {source}: not written"
            )
    lengths = [len(sequence) for sequence in sequences]
    return {
        "path": str(out),
        "format": format,
        "bytes": out.stat().st_size,
        "num_classes": len(loaded.signs),
        "max_abs_difference": difference,
        "parity_sequences": len(sequences),
        "parity_frames": [min(lengths), max(lengths)],
        "parity_source": source,
        "seconds": time.perf_counter() - started,
    }


def check_target(out: Path, format: str) -> None:
    """Refuse, before any work, an unknown format, a name with the other format's suffix, a
    missing output directory, and ONNX without its packages."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: choose torchscript or onnx")
    suffix = FORMATS[format]
    if out.suffix in FORMATS.values() and out.suffix != suffix:
        raise ValueError(
            f"{out} is named {out.suffix} but the format is {format}: name it "
            f"{out.with_suffix(suffix).name} or choose the other format"
        )
    if not out.parent.is_dir():
        raise ValueError(f"output directory {out.parent} does not exist: create it first")
    if format == "onnx":
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise ExportError(
                f"export to ONNX needs {', '.join(missing)}: pip install '.[onnx]' "
                "(or use --format torchscript)"
            )


def file_metadata(loaded: checkpoint.Checkpoint, ckpt_path: Path | str) -> dict[str, str]:
    """What the exported file carries besides the model: the vocabulary and how to feed it."""
    return {
        "vocabulary": json.dumps(loaded.signs),
        "islr": json.dumps(
            {
                "input": "landmarks float32 [T, 543, 3], Kaggle landmark order, NaN = missing",
                "output": "logits float32 [K], in vocabulary order",
                "checkpoint": str(ckpt_path),
                "data_config": asdict(loaded.data_config),
                "model_config": asdict(loaded.model_config),
            }
        ),
    }


# ---------------------------------------------------------------------------------------------
# The two formats: write, and load back as a function of one (T, 543, 3) tensor + the signs


def save_torchscript(deployable: nn.Module, path: Path, example: Tensor, metadata: dict) -> None:
    # Tracing (not scripting): preprocessing.preprocess and the models are plain tensor code, and
    # the trace warnings about Python ints are about constants (the landmark lists), not T.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(deployable, (example,), check_trace=False)
    files = {f"{key}.json": value for key, value in metadata.items()}
    try:
        torch.jit.save(traced, str(path), _extra_files=files)
    except RuntimeError as error:  # how torch reports a failed write (no space, no permission)
        raise ExportError(f"cannot write {path}: {str(error).splitlines()[0]}") from None


def load_torchscript(path: Path) -> tuple[Callable[[Tensor], Tensor], list[str]]:
    files = {"vocabulary.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return module, json.loads(files["vocabulary.json"])


def save_onnx(deployable: nn.Module, path: Path, example: Tensor, metadata: dict) -> None:
    frames = torch.export.Dim("frames", min=1, max=data.MAX_FRAMES)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about torchvision ops we do not use
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                deployable,
                (example,),
                input_names=["landmarks"],
                output_names=["logits"],
                dynamic_shapes={"landmarks": {0: frames}},
                dynamo=True,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    program.model.metadata_props.update(metadata)
    program.save(path, external_data=False)  # one file: the weights inside, not beside it


def load_onnx(path: Path) -> tuple[Callable[[Tensor], np.ndarray], list[str]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    signs = json.loads(session.get_modelmeta().custom_metadata_map["vocabulary"])
    return lambda landmarks: session.run(None, {"landmarks": landmarks.numpy()})[0], signs


# ---------------------------------------------------------------------------------------------
# Parity: the export against what `islr.py predict` computes


def random_sequence(generator: torch.Generator, frames: int) -> Tensor:
    """A (T, 543, 3) float32 track with MediaPipe's gaps: a hand missing in some frames."""
    track = 0.3 + 0.4 * torch.rand(frames, landmarks.NUM_LANDMARKS, 3, generator=generator)
    gone = torch.rand(frames, generator=generator) < 0.3
    track[gone, landmarks.LEFT_HAND : landmarks.POSE] = float("nan")
    track[frames // 2 :, landmarks.RIGHT_HAND :] = float("nan")
    return track


def parity_sequences(loaded: checkpoint.Checkpoint, count: int = 8) -> tuple[list[Tensor], str]:
    """(T, 543, 3) sequences to compare on, and a phrase saying where they come from.

    Real ones of the checkpoint's test signer (else the first signer) when its data directory
    exists here, from shortest to longest; else random ones. Always also 1 frame and more
    frames than any training clip (1,100), the edges a traced graph could get wrong.
    """
    generator = torch.Generator().manual_seed(0)
    edges = [random_sequence(generator, frames) for frames in (1, 1100)]
    root = Path(str(loaded.metadata.get("data", "")))
    if "data" in loaded.metadata and root.is_dir():
        try:
            files = data.signer_files(root)
            test = (loaded.metadata.get("split") or {}).get("test") or []
            path = files.get(test[0] if test else "", next(iter(files.values())))
            features, _, _ = data.read_signer(path, None)
            by_length = sorted(features, key=lambda f: f.shape[1])
            picks = np.linspace(0, len(by_length) - 1, min(count, len(by_length))).round()
            real = [torch.from_numpy(by_length[int(i)].transpose(1, 2, 0).copy()) for i in picks]
            return real + edges, f"{len(real)} sequences of {path} and 2 random ones"
        except data.DataError:
            pass  # unreadable data is not this command's business: fall back to random
    lengths = (2, 7, 16, 40, 64, 130, 301, 517)[:count]
    randoms = [random_sequence(generator, frames) for frames in lengths]
    return randoms + edges, f"{len(randoms) + 2} random sequences with missing hands"


def reference_logits(loaded: checkpoint.Checkpoint, sequences: list[Tensor]) -> Tensor:
    """(S, K) logits of the eager model through the padded-batch path of `islr.py predict`."""
    arrays = [sequence.numpy().transpose(2, 0, 1) for sequence in sequences]  # (3, T, 543)
    prepared = data.prepare_arrays(arrays, np.zeros(len(arrays)), loaded.data_config)
    logits, _, order = loops.predict(loaded.model, prepared.batches(loops.EVAL_BATCH))
    return logits[order.argsort()]  # back to input order
