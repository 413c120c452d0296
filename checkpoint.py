"""Checkpoints: one `.safetensors` file holding the weights and everything to rebuild the model.

The header metadata (strings only, as safetensors requires) carries a format version, the
data and model configs as JSON, the vocabulary, the metrics, the epoch and the command that
trained it. `load` rebuilds the exact preprocessing and model from that alone. Nothing in a
checkpoint is ever executed: no pickle, and the header is checked before any large read.

    python -c "import checkpoint; print(checkpoint.load('runs/x/model.safetensors').metadata)"
"""

import json
import os
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file
from torch import nn

import models
import safely
from preprocessing import DataConfig

FORMAT = "islr-checkpoint/1"
CHECKPOINTS = ("model.safetensors", "last.safetensors")  # in a run directory: best, last
MAX_HEADER_BYTES = 10_000_000  # a real header is a few kB; refuse before reading more
MAX_PARAMETERS = 500_000_000  # far above any model here; a bigger request is a broken file


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class Checkpoint:
    model: nn.Module  # rebuilt and loaded, in eval mode, on the CPU
    data_config: DataConfig
    model_config: models.ModelConfig
    vocabulary: dict[str, int]
    metadata: dict  # everything else in the header, JSON-decoded where it is JSON

    @property
    def signs(self) -> list[str]:
        """Sign names in class-index order."""
        return sorted(self.vocabulary, key=self.vocabulary.get)


def save(
    path: Path,
    model: nn.Module,
    *,
    data_config: DataConfig,
    model_config: models.ModelConfig,
    vocabulary: dict[str, int],
    **extra,
) -> None:
    """Write the checkpoint atomically: a temporary file first, then a rename over `path`."""
    tensors = model.state_dict()  # the plain model: see loops.unwrap
    metadata = {
        "format": FORMAT,
        "data_config": json.dumps(asdict(data_config)),
        "model_config": json.dumps(asdict(model_config)),
        "vocabulary": json.dumps(vocabulary),
        **{key: json.dumps(value) for key, value in extra.items()},
    }
    write(path, tensors, metadata)


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (`safely.replacing`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        with safely.replacing(path) as temporary:
            save_file(tensors, temporary, metadata=metadata)
            umask = os.umask(0)  # safetensors creates the file owner-only; give the usual mode
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
    except SafetensorError as error:  # its writer's I/O errors: a full disk, say
        raise OSError(f"cannot write {path}: {error}") from None


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a safetensors file whose metadata values are all JSON, as in a
    resume state; header checked first. Model checkpoints are read with `load`."""
    path = Path(path)
    with _open(path) as file:
        header, size = _read_header(file, path)
        try:
            metadata = {k: json.loads(v) for k, v in (header.get("__metadata__") or {}).items()}
        except (json.JSONDecodeError, TypeError) as error:
            raise CheckpointError(f"{path} could not be read ({error})") from None
        return _read_tensors(file, size, path), metadata


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked for size before it is read."""
    path = Path(path)
    with _open(path) as file:
        return _read_header(file, path)[0]


def _open(path: Path) -> BinaryIO:
    """Open a checkpoint for reading, or a one-line error when there is none.

    Header and tensors are then read through this one handle, so a file that training
    replaces (os.replace) meanwhile is read whole, old or new: never the header of one and
    the tensors of the other.
    """
    if path.is_dir():
        inside = [name for name in CHECKPOINTS if (path / name).is_file()] or CHECKPOINTS[:1]
        raise CheckpointError(
            f"{path} is a directory: pass a checkpoint in it, such as {path / inside[0]}"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path.open("rb")


def _read_header(file: BinaryIO, path: Path) -> tuple[dict, int]:
    """(header, bytes the header says the file holds) from the start of an open file."""
    size = os.fstat(file.fileno()).st_size
    prefix = file.read(8)
    if len(prefix) < 8:
        raise CheckpointError(f"{path} is not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise CheckpointError(f"{path} is not a safetensors file (bad header length)")
    try:
        header = json.loads(file.read(length))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not a table)")
    try:
        tensors = [info for name, info in header.items() if name != "__metadata__"]
        end = max((int(info["data_offsets"][1]) for info in tensors), default=0)
    except (KeyError, TypeError, IndexError, ValueError):
        raise CheckpointError(f"{path} is not a safetensors file (malformed header)") from None
    if 8 + length + end > size:
        raise CheckpointError(f"{path} is truncated: the header promises more data than it holds")
    return header, 8 + length + end


def _read_tensors(file: BinaryIO, size: int, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an open file whose header `_read_header` has checked."""
    file.seek(0)
    try:
        return load_bytes(file.read(size))
    except Exception as error:  # safetensors raises its own error type for corrupt data
        raise CheckpointError(f"{path} could not be read ({error})") from None


def _config(cls, text: str, path: Path):
    """A config dataclass from its JSON; a field it does not know is refused."""
    values = json.loads(text)
    known = {f.name for f in fields(cls)}
    if not isinstance(values, dict) or set(values) - known:
        raise CheckpointError(f"{path} has an unknown {cls.__name__}: {text}")
    return cls(**values)


def load(path: Path | str) -> Checkpoint:
    """Rebuild the model, its preprocessing and vocabulary from a checkpoint file alone."""
    path = Path(path)
    with _open(path) as file:
        header, size = _read_header(file, path)
        data_config, model_config, vocabulary, extra = _describe(header, path)
        state = _read_tensors(file, size, path)
    model = models.build(model_config, data_config.num_features, len(vocabulary))
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(model, data_config, model_config, vocabulary, extra)


def _describe(header: dict, path: Path) -> tuple[DataConfig, models.ModelConfig, dict, dict]:
    """(data config, model config, vocabulary, other metadata) of a checkpoint's header.

    The model is built on the meta device first and its shapes compared with the stored
    tensors, so a config that does not match them, or asks for too much, is refused before
    any tensor is read or any memory spent.
    """
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        found = metadata.get("format", "none").strip('"')  # a resume state's is JSON-quoted
        if found.startswith("islr-resume/"):
            raise CheckpointError(
                f"{path} is a resume state (for train --resume), not a model: "
                f"use {path.with_name(CHECKPOINTS[0])} or {CHECKPOINTS[1]}"
            )
        raise CheckpointError(f"{path} has format {found!r}; this islr reads {FORMAT!r}")
    try:
        data_config = _config(DataConfig, metadata["data_config"], path)
        model_config = _config(models.ModelConfig, metadata["model_config"], path)
        vocabulary = json.loads(metadata["vocabulary"])
        described = ("format", "data_config", "model_config", "vocabulary")
        extra = {k: json.loads(v) for k, v in metadata.items() if k not in described}
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has broken metadata ({error})") from None

    build = (model_config, data_config.num_features, len(vocabulary))
    try:
        with torch.device("meta"):
            shapes = {k: list(v.shape) for k, v in models.build(*build).state_dict().items()}
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} describes a model that cannot be built ({error})") from None
    stored = {k: info["shape"] for k, info in header.items() if k != "__metadata__"}
    if shapes != stored:
        wrong = sorted(set(shapes) ^ set(stored)) or [k for k in shapes if shapes[k] != stored[k]]
        raise CheckpointError(
            f"{path} does not match its model config (first mismatch: {wrong[0]})"
        )
    if sum(torch.Size(s).numel() for s in shapes.values()) > MAX_PARAMETERS:
        raise CheckpointError(f"{path} asks for a model larger than {MAX_PARAMETERS:,} parameters")
    return data_config, model_config, vocabulary, extra
