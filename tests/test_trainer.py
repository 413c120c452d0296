"""Whole runs: resume equals an uninterrupted run, kills leave loadable files, 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, start

import augment
import checkpoint
import data
import loops
import models
import presets
import trainer
from preprocessing import DataConfig

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _run(prepared, out, *, epochs, resume=False, stop_at=None, select_after=0.0):
    def on_epoch(record, is_best):
        if record["epoch"] == stop_at:
            raise KeyboardInterrupt  # as Ctrl-C would, before this epoch's files are written

    config = loops.TrainConfig(
        epochs=epochs,
        batch_size=8,
        ema=0.9,
        schedule="cosine",
        warmup_epochs=1,
        late_dropout=2,
        select_after=select_after,
    )
    return trainer.train_run(
        prepared,
        out,
        presets.Preset(DataConfig(), models.ModelConfig(), config, augment.AugmentConfig()),
        vocabulary={"alpha": 0, "beta": 1, "gamma": 2},
        resume=resume,
        on_epoch=on_epoch,
    )


def test_a_run_stopped_in_its_first_epoch_leaves_no_folder(tiny_data, tmp_path):
    """The run folder is made when the first epoch is saved (an interrupted cv left an empty
    foldN-seedM behind)."""
    dataset = data.load_dataset(tiny_data)
    prepared = data.prepare_split(dataset, ["202", "303"], ["101"], ["16069"], config=DataConfig())
    with pytest.raises(KeyboardInterrupt):
        _run(prepared, tmp_path / "cut", epochs=2, stop_at=1)
    assert not (tmp_path / "cut").exists()


def test_resumed_run_ends_like_an_uninterrupted_one(tiny_data, tmp_path):
    """Interrupt after epoch 2 of 4, resume: same history, weights and test metrics (1e-6)."""
    dataset = data.load_dataset(tiny_data)
    prepared = data.prepare_split(dataset, ["202", "303"], ["101"], ["16069"], config=DataConfig())
    whole = _run(prepared, tmp_path / "whole", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        _run(prepared, tmp_path / "cut", epochs=4, stop_at=3)
    assert checkpoint.load(tmp_path / "cut" / "last.safetensors").metadata["epoch"] == 2
    resumed = _run(prepared, tmp_path / "cut", epochs=4, resume=True)
    assert resumed["best"]["epoch"] == whole["best"]["epoch"]
    for name in ("model", "last"):
        assert resumed["test"][name]["loss"] == pytest.approx(whole["test"][name]["loss"], abs=1e-6)
        a = checkpoint.load(tmp_path / "whole" / f"{name}.safetensors").model.state_dict()
        b = checkpoint.load(tmp_path / "cut" / f"{name}.safetensors").model.state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    whole_history = json.loads((tmp_path / "whole" / "history.json").read_text())
    cut_history = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [r["val"]["loss"] for r in whole_history] == pytest.approx(
        [r["val"]["loss"] for r in cut_history], abs=1e-6
    )

    # Another number of processes would cut other batches and schedule other steps: refused.
    tensors, saved = checkpoint.read(tmp_path / "cut" / "resume.safetensors")
    assert saved["world"] == 1
    saved["world"] = 2
    checkpoint.write(
        tmp_path / "cut" / "resume.safetensors",
        tensors,
        {k: json.dumps(v) for k, v in saved.items()},
    )
    with pytest.raises(ValueError, match="trained by 2 process"):
        _run(prepared, tmp_path / "cut", epochs=5, resume=True)


def _start(args, env=None):
    return start("train", *args, env=env)


def _wait_for(path: Path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_ties_in_validation_accuracy_go_to_the_lower_loss():
    kept = {"accuracy": 0.9, "loss": 0.5, "samples": 20}
    assert trainer.improves({"accuracy": 0.9, "loss": 0.4, "samples": 20}, kept)
    assert not trainer.improves({"accuracy": 0.9, "loss": 0.6, "samples": 20}, kept)
    assert not trainer.improves({"accuracy": 0.9, "loss": 0.5, "samples": 20}, kept)  # the earlier
    assert trainer.improves({"accuracy": 0.95, "loss": 9.0, "samples": 20}, kept)  # accuracy first
    # An accuracy that went through float32 ties with the same count in float64: 35 of 36 clips
    # against 35 of 36 is decided by the loss.
    old = {"accuracy": float(np.float32(35 / 36)), "loss": 0.1, "samples": 36}
    assert not trainer.improves({"accuracy": 35 / 36, "loss": 0.2, "samples": 36}, old)
    old = {"accuracy": float(np.float32(33 / 36)), "loss": 0.3, "samples": 36}
    assert trainer.improves({"accuracy": 33 / 36, "loss": 0.2, "samples": 36}, old)


def test_the_kept_epoch_is_the_best_of_the_selectable_ones(tiny_data, tmp_path, monkeypatch):
    """With select_after 0.5 of 4 epochs, model.safetensors is the best of epochs 3-4 by
    (validation accuracy, -loss), even where an earlier epoch scored higher: the validation
    metrics are set so that epoch 1 scores best, and epoch 1 is kept without select_after."""
    scores = {1: (1.0, 0.1), 2: (0.9, 0.2), 3: (0.5, 0.9), 4: (0.75, 0.8)}  # accuracy, loss
    real = trainer.epoch_metrics

    def scored(record: dict, device) -> dict:
        accuracy, loss = scores[record["epoch"]]
        return {**real(record, device), "accuracy": accuracy, "loss": loss}

    monkeypatch.setattr(trainer, "epoch_metrics", scored)
    dataset = data.load_dataset(tiny_data)
    prepared = data.prepare_split(dataset, ["202", "303"], ["101"], ["16069"], config=DataConfig())
    result = _run(prepared, tmp_path / "run", epochs=4, select_after=0.5)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["val"]["accuracy"] for r in history] == [1.0, 0.9, 0.5, 0.75]
    assert result["best"]["epoch"] == 4
    assert checkpoint.load(tmp_path / "run" / "model.safetensors").metadata["epoch"] == 4
    assert _run(prepared, tmp_path / "all", epochs=4)["best"]["epoch"] == 1


def test_killed_training_leaves_loadable_checkpoints(tiny_data, tmp_path):
    """SIGTERM stops cleanly with a resume hint; SIGKILL mid-run leaves every file loadable."""
    out = tmp_path / "run"
    process = _start(
        [
            "--data",
            tiny_data,
            "--out",
            out,
            "--epochs",
            "200",
            "--batch-size",
            "4",
            "--select-after",
            "0",
        ]
    )
    _wait_for(out / "resume.safetensors", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert f"--resume {out}" in output and "Traceback" not in output
    epoch = checkpoint.load(out / "last.safetensors").metadata["epoch"]
    assert 1 <= epoch < 200

    process = _start(["--resume", out])
    deadline = time.monotonic() + 300  # generous: a loaded machine is slow
    while checkpoint.load(out / "last.safetensors").metadata["epoch"] < epoch + 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    for name in ("model", "last"):
        checkpoint.load(out / f"{name}.safetensors")
    tensors, saved = trainer.load_resume(out / "resume.safetensors")
    assert saved["epoch"] > epoch


def test_two_processes_train_like_one(tmp_path):
    """torchrun with 2 CPU processes (gloo) writes a valid checkpoint, accuracy in line with 1."""
    from conftest import write_gislr

    root = write_gislr(tmp_path / "d", per_signer=24)
    # Without normalisation the tiny set's class-dependent drift is learnable in a few epochs.
    args = [
        "--data",
        root,
        "--epochs",
        "12",
        "--batch-size",
        "8",
        "--flip",
        "0",
        "--no-normalize",
        "--learning-rate",
        "3e-3",
    ]
    two = subprocess.run(
        [*TORCHRUN, "islr.py", "train", *map(str, args), "--out", tmp_path / "two"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stdout + two.stderr
    one = _start([*args, "--out", tmp_path / "one"])
    output, _ = one.communicate(timeout=300)
    assert one.returncode == 0, output
    a = checkpoint.load(tmp_path / "one" / "model.safetensors").metadata["metrics"]
    b = checkpoint.load(tmp_path / "two" / "model.safetensors").metadata["metrics"]
    assert two.stdout.count("epoch  12") == 1, two.stdout  # only rank 0 prints
    accuracies = (a["test"]["accuracy"], b["test"]["accuracy"])
    assert min(accuracies) > 0.45, accuracies  # chance is 1/3
    assert abs(accuracies[0] - accuracies[1]) <= 0.25, accuracies


def test_hostile_hdf5_declared_size_is_refused(tmp_path):
    """A dataset declaring a billion frames is refused before any data is read."""
    from conftest import write_gislr

    root = write_gislr(tmp_path / "d")
    with h5py.File(root / "101.hdf5", "a") as file:
        group = file.create_group("666")
        group.create_dataset(
            "feature", shape=(3, 10**9, 543), dtype=np.float32, chunks=(3, 16, 543)
        )
        group["token"] = np.array([0])
    with pytest.raises(data.DataError, match="1000000000 frames"):
        data.load_dataset(root)


def test_two_processes_resume_like_an_uninterrupted_run(tmp_path):
    """torchrun: a run stopped in epoch 2 and resumed has the history of an uninterrupted one
    (each process gets its own dropout RNG back; all took rank 0's before)."""
    from conftest import write_gislr

    root = write_gislr(tmp_path / "d", per_signer=24)
    # article10: dropout in every layer, so each process's dropout RNG matters
    args = [
        "--data",
        root,
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--preset",
        "article10",
    ]
    stop_in_2 = tmp_path / "stop_in_2.py"
    stop_in_2.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport islr\nshown = islr.print_epoch\n"
        "def stop(record, is_best):\n    shown(record, is_best)\n"
        "    if record['epoch'] == 2:\n        raise KeyboardInterrupt\n"
        "islr.print_epoch = stop\nislr.app()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(script, *more):
        return subprocess.run(
            [*TORCHRUN, script, "train", *map(str, more)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    whole = launch("islr.py", *args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    cut = launch(stop_in_2, *args, "--out", tmp_path / "cut")
    assert cut.returncode != 0, cut.stdout
    assert checkpoint.load(tmp_path / "cut" / "last.safetensors").metadata["epoch"] == 1
    resumed = launch("islr.py", "--resume", tmp_path / "cut", "--threads", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    def losses(run):
        history = json.loads((tmp_path / run / "history.json").read_text())
        return [(r["train"]["loss"], r["val"]["loss"]) for r in history]

    assert losses("cut") == losses("whole")
