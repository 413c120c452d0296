"""Checkpoints: round trip, atomic writes, refusal of broken or foreign files."""

import json
import os
import shutil
import struct
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

import checkpoint
import models
from checkpoint import CheckpointError
from preprocessing import DataConfig


def _save(path, config=None, **extra):
    config = config or models.ModelConfig()
    torch.manual_seed(0)
    model = models.build(config, 260, 3)
    vocabulary = {"a": 0, "b": 1, "c": 2}
    checkpoint.save(
        path,
        model,
        data_config=DataConfig(),
        model_config=config,
        vocabulary=vocabulary,
        epoch=3,
        **extra,
    )
    return model


@pytest.mark.parametrize("name", models.MODELS)
def test_round_trip_rebuilds_the_same_model(tmp_path, name):
    """A loaded checkpoint rebuilds configs, vocabulary and a model with identical outputs."""
    model = _save(tmp_path / "m.safetensors", models.ModelConfig(name=name), metrics={"val": 1})
    loaded = checkpoint.load(tmp_path / "m.safetensors")
    x, valid = torch.randn(2, 9, 260), torch.ones(2, 9, dtype=torch.bool)
    assert torch.equal(model.eval()(x, valid), loaded.model(x, valid))
    assert loaded.model_config.name == name and loaded.data_config == DataConfig()
    assert loaded.signs == ["a", "b", "c"]
    assert loaded.metadata["epoch"] == 3 and loaded.metadata["metrics"] == {"val": 1}


def test_checkpoints_get_the_usual_file_mode(tmp_path):
    """Readable by whoever may read the run's other files (safetensors makes them 0600)."""
    _save(tmp_path / "m.safetensors")
    (tmp_path / "h.json").write_text("{}")
    assert (tmp_path / "m.safetensors").stat().st_mode == (tmp_path / "h.json").stat().st_mode


def test_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    """A save that dies midway leaves the previous checkpoint in place and loadable."""
    path = tmp_path / "m.safetensors"
    _save(path)
    before = path.read_bytes()

    def crash(tensors, filename, metadata):
        open(filename, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(path)
    assert path.read_bytes() == before
    checkpoint.load(path)


def test_a_failed_checkpoint_write_is_an_os_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    """safetensors' own I/O error (a full disk) becomes an OSError, which the CLI prints in one
    line; the temporary file goes, the previous checkpoint stays."""
    from safetensors import SafetensorError

    path = tmp_path / "m.safetensors"
    _save(path)
    before = path.read_bytes()

    def full_disk(tensors, filename, metadata):
        open(filename, "wb").write(b"half a file")
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OSError, match=f"cannot write {path}: .*No space left"):
        _save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_checkpoint_replaced_while_it_loads_is_read_whole(tmp_path):
    """`evaluate last.safetensors` while training rewrites it: old file or new, never a mix."""
    path = tmp_path / "last.safetensors"
    versions = {}
    for epoch in (1, 123456):  # metadata of different lengths: the two files differ in size
        torch.manual_seed(epoch)
        model = models.build(models.ModelConfig(), 260, 3)
        checkpoint.save(
            tmp_path / f"{epoch}.safetensors",
            model,
            data_config=DataConfig(),
            model_config=models.ModelConfig(),
            vocabulary={"a": 0, "b": 1, "c": 2},
            epoch=epoch,
        )
        versions[epoch] = sum(p.sum().item() for p in model.parameters())
    shutil.copyfile(tmp_path / "1.safetensors", path)
    stop = threading.Event()

    def train_rewrites_it():  # as checkpoint.write does: a whole new file renamed over it
        while not stop.is_set():
            for epoch in versions:
                shutil.copyfile(tmp_path / f"{epoch}.safetensors", tmp_path / "next")
                os.replace(tmp_path / "next", path)

    writer = threading.Thread(target=train_rewrites_it)
    writer.start()
    try:
        for _ in range(200):
            loaded = checkpoint.load(path)
            total = sum(p.sum().item() for p in loaded.model.parameters())
            assert total == pytest.approx(versions[loaded.metadata["epoch"]], rel=1e-6)
    finally:
        stop.set()
        writer.join()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda good: b"hello, not a checkpoint", id="text"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: good[:-100], id="truncated"),
        pytest.param(lambda good: struct.pack("<Q", 2**60) + b"{}", id="huge-header"),
    ],
)
def test_refuses_files_that_are_not_checkpoints(tmp_path, content):
    """Non-safetensors, truncated files and absurd headers give CheckpointError."""
    good = tmp_path / "m.safetensors"
    _save(good)
    (tmp_path / "bad.safetensors").write_bytes(content(good.read_bytes()))
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "bad.safetensors")


def test_refuses_other_formats(tmp_path):
    """A safetensors file of another format, or of a later version of this one, is refused by
    name."""
    good = tmp_path / "m.safetensors"
    _save(good)
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"format": "other/9"})
    with pytest.raises(CheckpointError, match="has format 'other/9'"):
        checkpoint.load(tmp_path / "other.safetensors")
    newer = {**load_file(good), "__ignored__": torch.zeros(1)}  # a later version of our own format
    save_file(newer, tmp_path / "v2.safetensors", metadata={"format": "islr-checkpoint/2"})
    with pytest.raises(CheckpointError, match="'islr-checkpoint/2'; this islr reads 'islr-che"):
        checkpoint.load(tmp_path / "v2.safetensors")


def test_refuses_a_header_past_the_cap_before_reading_it(tmp_path, monkeypatch):
    """A header longer than MAX_HEADER_BYTES is refused even when the file is that long."""
    good = tmp_path / "m.safetensors"
    _save(good)
    checkpoint.load(good)
    monkeypatch.setattr(checkpoint, "MAX_HEADER_BYTES", 100)  # a real header is a few kB
    with pytest.raises(CheckpointError, match="bad header length"):
        checkpoint.load(good)


@pytest.mark.parametrize("width", [128, 10**7], ids=["another-model", "absurdly-large"])
def test_refuses_config_that_does_not_match_weights(tmp_path, width):
    """Metadata that describes another model, or an absurdly large one, is refused before building."""
    path = tmp_path / "m.safetensors"
    _save(path)
    header = checkpoint.read_header(path)
    weights = load_file(path)
    metadata = dict(header["__metadata__"])
    metadata["model_config"] = json.dumps({**json.loads(metadata["model_config"]), "width": width})
    save_file(weights, tmp_path / "bad.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoint.load(tmp_path / "bad.safetensors")
