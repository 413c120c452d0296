"""Export: the TorchScript / ONNX file computes what the PyTorch model computes, for any T."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import landmarks
import models
import preprocessing
from deploy import export

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning")

SIGNS = {"alpha": 0, "beta": 1, "gamma": 2}


def make_checkpoint(
    tmp_path: Path,
    model_config: models.ModelConfig,
    data_config: preprocessing.DataConfig | None = None,
    **metadata,
) -> Path:
    """A freshly built (untrained, seeded) model saved as a checkpoint."""
    torch.manual_seed(0)
    data_config = data_config or preprocessing.DataConfig()
    model = models.build(model_config, data_config.num_features, len(SIGNS))
    path = tmp_path / "model.safetensors"
    checkpoint.save(
        path,
        model,
        data_config=data_config,
        model_config=model_config,
        vocabulary=SIGNS,
        **metadata,
    )
    return path


def sequences_with_nans() -> list[torch.Tensor]:
    """Raw (T, 543, 3) sequences of lengths unlike the traced one, hands partly missing: the
    left hand seen in more frames in the first two, the right hand in the third."""
    generator = torch.Generator().manual_seed(5)
    result = []
    for frames in (9, 61, 12):
        x = torch.rand(frames, landmarks.NUM_LANDMARKS, 3, generator=generator)
        x[::3, landmarks.LEFT_HAND : landmarks.POSE] = float("nan")
        x[frames // 2 :, landmarks.RIGHT_HAND :] = float("nan")
        if frames == 12:
            x[:, landmarks.LEFT_HAND : landmarks.POSE] = float("nan")
        result.append(x)
    return result


def eager_logits(path: Path, sequence: torch.Tensor) -> torch.Tensor:
    """The PyTorch path: preprocessing.preprocess of one sequence, then the model's forward."""
    loaded = checkpoint.load(path)
    with torch.inference_mode():
        x = preprocessing.preprocess(sequence, torch.tensor([len(sequence)]), loaded.data_config)
        return loaded.model(x[None], torch.ones(1, len(x), dtype=torch.bool))[0]


@pytest.mark.parametrize("mirror_left", [False, True])
def test_torchscript_matches_pytorch_for_other_lengths(tmp_path, mirror_left):
    """A TorchScript export reloads with torch.jit.load and matches preprocess + forward to 1e-5,
    with or without mirroring left-handed clips (a data-dependent choice inside the graph)."""
    data_config = preprocessing.DataConfig(mirror_left=mirror_left)
    path = make_checkpoint(tmp_path, models.ModelConfig(), data_config)
    out = tmp_path / "model.pt"
    report = export.export(path, out, "torchscript")
    assert report["max_abs_difference"] < 1e-5
    assert report["parity_frames"][1] > 1024  # longer than any training clip
    files = {"vocabulary.json": ""}
    module = torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["vocabulary.json"]) == ["alpha", "beta", "gamma"]
    for sequence in sequences_with_nans():
        assert sequence.shape[0] != export.TRACE_FRAMES
        with torch.inference_mode():
            logits = module(sequence)
        assert logits.shape == (len(SIGNS),)
        torch.testing.assert_close(logits, eager_logits(path, sequence), atol=1e-5, rtol=0)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


@pytest.mark.parametrize("name", ["simple", "gru", "conformer"])
def test_torchscript_other_models(tmp_path, name):
    """Other model families export to TorchScript and pass the parity check."""
    path = make_checkpoint(tmp_path, models.ModelConfig(name=name, width=16, depth=1))
    report = export.export(path, tmp_path / "model.pt", "torchscript")
    assert report["max_abs_difference"] < 1e-5


def test_parity_uses_the_checkpoints_data(tmp_path, tiny_data):
    """With the training data directory present, the check runs on real sequences of it."""
    path = make_checkpoint(
        tmp_path, models.ModelConfig(name="simple"), data=str(tiny_data), split={"test": ["16069"]}
    )
    report = export.export(path, tmp_path / "model.pt", "torchscript")
    assert "16069.hdf5" in report["parity_source"]
    assert report["parity_sequences"] == 8 + 2
    assert report["max_abs_difference"] < 1e-5


def test_reference_is_the_predict_path(tmp_path):
    """reference_logits equals the single-sequence eager path (the models are batch-invariant)."""
    path = make_checkpoint(tmp_path, models.ModelConfig())
    sequences = sequences_with_nans()
    expected = torch.stack([eager_logits(path, s) for s in sequences])
    got = export.reference_logits(checkpoint.load(path), sequences)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "source, out, export_format, error, message",
    [
        pytest.param(
            "model.safetensors",
            "model.tflite",
            "tflite",
            ValueError,
            "unknown export format 'tflite'",
            id="unknown-format",
        ),
        pytest.param(
            "model.safetensors",
            "missing/model.pt",
            "torchscript",
            ValueError,
            "does not exist",
            id="missing-folder",
        ),
        pytest.param(
            "nope.safetensors",
            "model.pt",
            "torchscript",
            checkpoint.CheckpointError,
            "does not exist",
            id="missing-checkpoint",
        ),
        pytest.param(
            "model.safetensors",
            "model.onnx",
            "torchscript",
            ValueError,
            "is named .onnx but the format is torchscript",
            id="onnx-name-torchscript-format",
        ),
        pytest.param(
            "model.safetensors",
            "model.pt",
            "onnx",
            ValueError,
            "name it model.onnx",
            id="onnx-format-other-name",
        ),
    ],
)
def test_bad_format_and_paths(tmp_path, source, out, export_format, error, message):
    """User mistakes are ValueErrors (or CheckpointErrors) with one-line messages, and nothing
    is written."""
    make_checkpoint(tmp_path, models.ModelConfig(name="simple"))
    with pytest.raises(error, match=message):
        export.export(tmp_path / source, tmp_path / out, export_format)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize(
    "name, export_format",
    [("m.onnx", "onnx"), ("m.pt", "torchscript"), ("m.bin", "torchscript")],
)
def test_the_format_follows_the_suffix(name, export_format):
    """.onnx is ONNX; any other name is TorchScript."""
    assert export.format_for(name) == export_format


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """torch's writer failing (a full disk, no permission) is an ExportError, not a traceback."""
    path = make_checkpoint(tmp_path, models.ModelConfig(name="simple"))

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:747] . Permission denied\nmore")

    monkeypatch.setattr(torch.jit, "save", full_disk)
    with pytest.raises(export.ExportError, match=r"cannot write .*: \[enforce fail.*denied$"):
        export.export(path, tmp_path / "model.pt", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


HAVE_ONNX = all(importlib.util.find_spec(name) for name in export.ONNX_PACKAGES)


@pytest.mark.skipif(
    not HAVE_ONNX, reason="onnx, onnxruntime and onnxscript not installed: pip install '.[onnx]'"
)
def test_onnx_matches_pytorch_for_other_lengths(tmp_path):
    """An ONNX export runs in onnxruntime with a dynamic T and matches the PyTorch model."""
    import onnxruntime

    path = make_checkpoint(tmp_path, models.ModelConfig(width=32, heads=2))
    out = tmp_path / "model.onnx"
    report = export.export(path, out, "onnx")
    assert report["max_abs_difference"] < 1e-5
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocabulary"]) == ["alpha", "beta", "gamma"]
    for sequence in sequences_with_nans():
        (logits,) = session.run(None, {"landmarks": sequence.numpy()})
        assert logits.shape == (len(SIGNS),)
        expected = eager_logits(path, sequence).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx, onnxruntime and onnxscript not installed")
def test_onnx_refuses_recurrent_models(tmp_path):
    """Recurrent models (packed sequences) are refused for ONNX with a pointer to TorchScript."""
    path = make_checkpoint(tmp_path, models.ModelConfig(name="gru", width=8, depth=1))
    with pytest.raises(ValueError, match="--format torchscript"):
        export.export(path, tmp_path / "model.onnx", "onnx")


def test_missing_onnx_is_one_line(tmp_path, monkeypatch):
    """Without the optional packages, ONNX export names them and the extra to install."""
    path = make_checkpoint(tmp_path, models.ModelConfig(name="simple"))
    monkeypatch.setattr(export, "ONNX_PACKAGES", ("onnx", "no_such_package_islr"))
    with pytest.raises(ValueError, match=r"needs no_such_package_islr: pip install '\.\[onnx\]'"):
        export.export(path, tmp_path / "model.onnx", "onnx")


def test_export_from_the_command_line(tmp_path):
    """`islr.py export CKPT OUT` writes and checks the file; the format follows OUT's suffix."""
    from conftest import run

    path = make_checkpoint(tmp_path, models.ModelConfig(name="simple"))
    result = run("export", path, tmp_path / "model.pt")
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.output and "max |logit difference|" in result.output
    assert torch.jit.load(tmp_path / "model.pt")(sequences_with_nans()[0]).shape == (len(SIGNS),)
    mismatch = run("export", path, tmp_path / "model.onnx", "--format", "torchscript")
    assert mismatch.exit_code == 1 and mismatch.output.startswith("error:"), mismatch.output
    assert "is named .onnx" in mismatch.output and len(mismatch.output.strip().splitlines()) == 1
    assert not (tmp_path / "model.onnx").exists()
    directory = run("export", path, tmp_path, "--format", "torchscript")  # checked before the work
    assert directory.exit_code == 1 and directory.output.startswith("error:"), directory.output
    assert "is a directory: name a file" in directory.output


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx, onnxruntime and onnxscript not installed")
def test_onnx_export_in_a_fresh_process(tmp_path):
    """A user's `islr.py export CKPT model.onnx` works in a process that computed nothing before
    the export (no cached tensor made during tracing is reused)."""
    import subprocess
    import sys

    path = make_checkpoint(
        tmp_path, models.ModelConfig(width=32), preprocessing.DataConfig(mirror_left=True)
    )
    result = subprocess.run(
        [sys.executable, "islr.py", "export", path, tmp_path / "model.onnx"],
        cwd=Path(__file__).resolve().parent.parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "onnx" in result.stdout and (tmp_path / "model.onnx").is_file()
