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

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import models
from data import DataConfig

FORMAT = "islr-checkpoint/1"
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
    tensors = model.state_dict()  # the plain model: see trainer.unwrap
    metadata = {
        "format": FORMAT,
        "data_config": json.dumps(asdict(data_config)),
        "model_config": json.dumps(asdict(model_config)),
        "vocabulary": json.dumps(vocabulary),
        **{key: json.dumps(value) for key, value in extra.items()},
    }
    write(path, tensors, metadata)


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically: a temporary file first, then a rename over `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(tensors, temporary, metadata=metadata)
    os.replace(temporary, path)


def write_text(path: Path, text: str) -> None:
    """Replace a text file atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata with JSON values decoded) of a safetensors file, header checked first."""
    header = read_header(path)
    try:
        metadata = {k: json.loads(v) for k, v in (header.get("__metadata__") or {}).items()}
        return load_file(path), metadata
    except Exception as error:  # safetensors raises its own error type for corrupt data
        raise CheckpointError(f"{path} could not be read ({error})") from None


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked for size before it is read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as file:
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
    return header


def _config(cls, text: str, path: Path):
    values = json.loads(text)
    known = {f.name for f in fields(cls)}
    if not isinstance(values, dict) or set(values) - known:
        raise CheckpointError(f"{path} has an unknown {cls.__name__}: {text}")
    return cls(**values)


def load(path: Path | str) -> Checkpoint:
    """Rebuild the model, its preprocessing and vocabulary from a checkpoint file alone."""
    path = Path(path)
    header = read_header(path)
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        found = metadata.get("format", "none")
        raise CheckpointError(f"{path} has format {found!r}; this islr reads {FORMAT!r}")
    try:
        data_config = _config(DataConfig, metadata["data_config"], path)
        model_config = _config(models.ModelConfig, metadata["model_config"], path)
        vocabulary = json.loads(metadata["vocabulary"])
        extra = {k: json.loads(v) for k, v in metadata.items() if k not in ("format",)}
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has broken metadata ({error})") from None

    # Build on the meta device first: no memory is spent on a config that asks for too much
    # or that does not match the stored tensors.
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

    model = models.build(*build)
    try:
        model.load_state_dict(load_file(path))
    except Exception as error:  # safetensors raises its own error type for corrupt data
        raise CheckpointError(f"{path} could not be read ({error})") from None
    model.eval()
    extra.pop("data_config"), extra.pop("model_config"), extra.pop("vocabulary")
    return Checkpoint(model, data_config, model_config, vocabulary, extra)
