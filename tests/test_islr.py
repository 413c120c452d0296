"""islr.py: train, evaluate and resume end to end, their one-line errors, and the script."""

import dataclasses
import json
import shlex
import sys
from pathlib import Path

import pytest
from conftest import one_line_error, require_real_data, run, start, words, write_gislr
from safetensors.torch import load_file

import checkpoint
import loops
import presets


def test_train_writes_best_and_last_checkpoints(trained):
    """train prints epoch lines and the test accuracy, and writes loadable checkpoints."""
    data_dir, out, output = trained
    assert "epoch   2" in output and "test signer 16069" in output
    for name in ("model", "last"):
        loaded = checkpoint.load(out / f"{name}.safetensors")
        assert set(loaded.metadata["metrics"]) == {"val", "test"}
        assert loaded.metadata["split"] == {
            "train": ["202", "303"],
            "val": ["101"],
            "test": ["16069"],
        }
        assert loaded.metadata["command"]  # how the run was started, for the record
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    printed = " ".join(output.split())  # rich wraps long lines
    configs = {
        "data": loaded.data_config,
        "model": loaded.model_config,
        "train": loops.TrainConfig(**loaded.metadata["train_config"]),
    }
    for name, config in configs.items():  # the resolved configuration, as used
        assert " ".join(f"{name}: {dataclasses.asdict(config)}".split()) in printed


def test_evaluate_reads_the_checkpoint_back(trained, tmp_path):
    """evaluate rebuilds everything from the checkpoint and reports what train reported."""
    data_dir, out, _ = trained
    report = tmp_path / "m.json"
    result = run("evaluate", out / "model.safetensors", "--json", report)
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())
    test = checkpoint.load(out / "model.safetensors").metadata["metrics"]["test"]
    # The test signer is left-handed: the loss matches only with the checkpoint's mirroring.
    assert metrics["accuracy"] == pytest.approx(test["accuracy"])
    assert metrics["loss"] == pytest.approx(test["loss"], rel=1e-5)
    assert f"accuracy {metrics['accuracy']:.2%}" in result.output
    signs = ["alpha", "beta", "gamma"]
    expected = [
        [sign, str(n), "-" if a is None else f"{a:.1%}"]
        for sign, n, a in zip(
            signs, metrics["class_counts"], metrics["per_class_accuracy"], strict=True
        )
    ]
    assert _table(result.output, "per-class accuracy") == expected
    expected = [
        [f"{t} {sign}", *(str(n) if n or p == t else "·" for p, n in enumerate(row))]
        for t, (sign, row) in enumerate(zip(signs, metrics["confusion"], strict=True))
    ]
    assert _table(result.output, "confusion matrix") == expected  # rows: true sign
    assert metrics["samples"] == 12 and metrics["signers"] == ["16069"]
    assert metrics["seen_in_training"] == [] and "not held-out" not in result.output
    other = run("evaluate", out / "model.safetensors", "--signer", "101", "--signer", "202")
    assert other.exit_code == 0 and "24 sequences" in other.output
    assert "signer(s) 101, 202 trained or validated this model" in other.output
    listed = run("evaluate", out / "model.safetensors", "--signer", "101,202")  # as --val-signer
    assert listed.exit_code == 0 and "signer(s) 101, 202: 24 sequences" in listed.output


def _table(output: str, title: str) -> list[list[str]]:
    """The cells of the body rows of the rich table printed under `title`."""
    rows = []
    for line in output[output.index(title) :].splitlines()[1:]:
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
        elif rows:
            break
    return rows


def test_interrupted_json_report_leaves_the_old_one(trained, tmp_path, monkeypatch):
    """evaluate --json killed while writing: the previous report stays whole."""
    _, out, _ = trained
    report = tmp_path / "m.json"
    report.write_text('{"old": true}')

    def dies_halfway(self, text, *args, **kwargs):
        open(self, "w").write(text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", dies_halfway)
    result = run("evaluate", out / "model.safetensors", "--json", report)
    assert result.exit_code == 130  # as for Ctrl-C
    assert json.loads(report.read_text()) == {"old": True}


def test_islr_py_runs_through_cli_main():
    """The script itself: a usage error is one line, exit 2 (typer's own display is a box)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "islr.py", "train", "--epochs", "0"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and not result.stdout, result
    assert result.stderr.startswith("error: Invalid value for '--epochs'"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_ctrl_c_while_pytorch_loads_is_quiet(tmp_path):
    """Ctrl-C in the first second or two, while `import torch` runs, ends with one line and
    exit 130, not a KeyboardInterrupt traceback from inside torch."""
    import signal
    import time

    process = start("synth", tmp_path / "set")
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while "libtorch" not in maps.read_text():  # torch's library is loaded: its import is under way
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert (process.returncode, output.strip()) == (130, "interrupted"), output


# A command line with a mistake, with {name} for the paths of the mistake_paths fixture, and
# what its one-line error must say.
MISTAKES = [
    pytest.param("train --data {tmp}/none", "does not exist", id="data-missing"),
    pytest.param("train --data {tmp}/empty", "no <participant_id>.hdf5", id="data-empty"),
    pytest.param("train --data {ckpt}", "is a file: name the dataset directory", id="data-a-file"),
    pytest.param("train --data {data} --test-signer 42", "test signer 42", id="test-signer"),
    pytest.param("train --data {data} --val-signer 42", "validation signer 42", id="val-signer"),
    pytest.param(
        "train --data {data} --val-signer 101,42", "validation signer 42", id="val-signers"
    ),
    pytest.param("train --data {data} --val-signer 16069", "the test signer", id="val-is-test"),
    pytest.param("train --data {data} --val-signer ' '", "names no signer", id="val-blank"),
    pytest.param(
        "train --data {data} --out {out}", "already holds a trained model", id="out-trained"
    ),
    pytest.param("train --data {data} --out {half}", "already holds", id="out-last-only"),
    pytest.param("train --data {data} --landmarks feet", "unknown landmarks", id="landmarks"),
    pytest.param(
        "train --data {data} --crop-min 0", "crop_min=0 must be above", id="crop-min-zero"
    ),
    pytest.param("train --data {data} --model foo", "unknown model 'foo'", id="model"),
    pytest.param("train --data {data} --width 63 --heads 3", "even", id="odd-head-width"),
    pytest.param(
        "train --data {data} --landmarks all",
        "--no-mirror-left (and --flip 0)",
        id="all-landmarks-mirrored",
    ),
    pytest.param(
        "train --data {data} --landmarks all --no-mirror-left",
        "--flip 0",
        id="all-landmarks-flipped",
    ),
    pytest.param("train --data {data} --select-after 1", "select_after", id="select-after-one"),
    pytest.param("train --data {data} --device cuda:7", "no such CUDA GPU", id="no-such-gpu"),
    pytest.param(
        "train --resume {out} --epochs 9 --data {data} --no-amp",
        "--resume continues {out} with its own settings: drop --epochs --no-amp",
        id="resume-with-settings",
    ),
    pytest.param("train --resume {out}/resume.safetensors", "--resume {out}", id="resume-a-file"),
    pytest.param("evaluate {ckpt} --device tpu", "unknown device 'tpu'", id="device"),
    pytest.param("evaluate {tmp}/x.safetensors", "not a safetensors file", id="not-safetensors"),
    pytest.param("evaluate {tmp}/cut.safetensors", "truncated", id="truncated"),
    pytest.param("evaluate {out}", "is a directory: pass a checkpoint in it", id="run-folder"),
    pytest.param(
        "evaluate {half}", "such as {half}/last.safetensors", id="run-folder-without-model"
    ),
    pytest.param(
        "evaluate {out}/resume.safetensors", "is a resume state (for train", id="resume-state"
    ),
    pytest.param("evaluate {ckpt} --data {tmp}/other", "different vocabulary", id="vocabulary"),
    pytest.param(
        "evaluate {ckpt} --data {tmp}/swapped", "different vocabulary", id="vocabulary-order"
    ),
    pytest.param("evaluate {ckpt} --data {tmp}/nowhere", "does not exist", id="evaluate-data"),
    pytest.param("evaluate {ckpt} --signer 42", "signer 42 is not in", id="signer"),
    pytest.param("evaluate {ckpt} --signer ,", "--signer ',' names no signer", id="signer-none"),
]


@pytest.mark.parametrize("command, message", MISTAKES)
def test_user_mistakes_are_one_line_errors(mistake_paths, command, message):
    """Bad paths, signers, flags, checkpoints and vocabularies exit 1 with one line and no
    traceback, and leave the trained run's checkpoints as they were."""
    paths = mistake_paths
    before = paths["ckpt"].read_bytes(), paths["last"].read_bytes()
    one_line_error(run(*words(command, **paths)), message.format(**paths))
    assert (paths["ckpt"].read_bytes(), paths["last"].read_bytes()) == before


def test_real_data_trains_and_evaluates(tmp_path):
    """On the real recordings (../shared/data/gislr-hello-thankyou; test signer 16069,
    validation 2044) train learns, and evaluate reads the checkpoint back."""
    real = require_real_data()
    out = tmp_path / "run"
    result = run("train", "--data", real, "--out", out, "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "validation 2044" in result.output and "test 16069" in result.output
    report = tmp_path / "m.json"
    evaluated = run("evaluate", out / "model.safetensors", "--json", report)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(report.read_text())
    test = checkpoint.load(out / "model.safetensors").metadata["metrics"]["test"]
    assert metrics["signers"] == ["16069"] and metrics["samples"] == 36
    assert metrics["accuracy"] == pytest.approx(test["accuracy"]) and metrics["accuracy"] > 0.8


def test_training_without_a_test_signer(tiny_data, tmp_path, monkeypatch):
    """--test-signer none trains on every other signer; evaluate then needs --signer. The
    checkpoint records the command as typed."""
    out = tmp_path / "run"
    argv = ["islr.py", "train", "--data", str(tiny_data), "--out", str(out)]
    argv += "--epochs 1 --test-signer none".split()
    monkeypatch.setattr(sys, "argv", argv)
    result = run(*argv[1:])
    assert result.exit_code == 0, result.output
    assert "test none" in result.output and "test signer" not in result.output
    assert "the warm-up (3 epochs) lasts all 1: the learning rate never" in result.output
    loaded = checkpoint.load(out / "model.safetensors")
    assert loaded.metadata["split"] == {
        "train": ["202", "303", "16069"],
        "val": ["101"],
        "test": [],
    }
    assert loaded.metadata["command"] == shlex.join(argv)
    ckpt = out / "model.safetensors"
    one_line_error(run("evaluate", ckpt), "trained without a test signer: name one with --signer")
    named = run("evaluate", ckpt, "--signer", "16069")
    assert named.exit_code == 0 and "signer(s) 16069 trained or validated" in named.output


def test_recipe_flags_reach_the_checkpoint(tmp_path, tiny_data, monkeypatch):
    """Augmentation probabilities, the crop's shortest span and the epoch rule given as flags
    are what training used: with --select-after 0.5 of 2 epochs, epoch 2 is kept although
    epoch 1 scores higher on validation (its metrics set so)."""
    import trainer

    real = trainer.epoch_metrics

    def epoch_1_scores_best(record: dict, device) -> dict:
        val = real(record, device)
        return {**val, "accuracy": 1.0 if record["epoch"] == 1 else 0.0}

    monkeypatch.setattr(trainer, "epoch_metrics", epoch_1_scores_best)
    out = tmp_path / "run"
    recipe = "--epochs 2 --crop 1 --crop-min 0.25 --resample 0.5 --select-after 0.5"
    result = run("train", "--data", tiny_data, "--out", out, *recipe.split())
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(out / "model.safetensors")
    saved = loaded.metadata["augment_config"]
    assert (saved["crop"], saved["crop_min"], saved["resample"]) == (1.0, 0.25, 0.5)
    assert loaded.metadata["train_config"]["select_after"] == 0.5
    assert loaded.metadata["epoch"] == 2  # epoch 1 was not a candidate
    assert loaded.metadata["metrics"]["val"]["accuracy"] == 0.0  # the lower score was kept
    assert "(picks the epoch from 2-2)" in result.output


@pytest.mark.parametrize("preset", list(presets.PRESETS))
def test_every_preset_trains_and_round_trips(preset, tmp_path, tiny_data):
    """Each preset trains one epoch from the CLI, and its checkpoint evaluates to the same accuracy."""
    out = tmp_path / preset
    flags = f"--preset {preset} --epochs 1 --batch-size 8"
    result = run("train", "--data", tiny_data, "--out", out, *flags.split())
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(out / "model.safetensors")
    stored = dataclasses.replace(loaded.model_config, examples=0)  # templates: the clips kept
    assert stored == presets.PRESETS[preset].model
    report = tmp_path / "m.json"
    assert run("evaluate", out / "model.safetensors", "--json", report).exit_code == 0
    test = loaded.metadata["metrics"]["test"]
    assert json.loads(report.read_text())["accuracy"] == pytest.approx(test["accuracy"])


def test_train_notes_signs_without_training_sequences(tmp_path):
    """A sign of the vocabulary that no training signer has is named before training."""
    root = write_gislr(tmp_path / "d")
    (root / "sign_to_prediction_index_map.json").write_text(
        json.dumps({"alpha": 0, "beta": 1, "gamma": 2, "delta": 3})
    )
    result = run("train", "--data", root, "--out", tmp_path / "run", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "note: no training sequence of delta: the model cannot learn them" in result.output


@pytest.fixture(scope="module")
def train_help() -> dict[str, str]:
    """The lines of `train --help` that describe an option, by the option's name."""
    result = run("train", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    return {line.split()[1]: line for line in result.output.splitlines() if "│ --" in line}


@pytest.mark.parametrize(
    "flag, shown",
    [
        ("--optimizer", "adamw"),
        ("--learning-rate", "0.001"),
        ("--ema", "0.999"),
        ("--select-after", "0.5"),
        ("--attention-dropout", "0.0"),
        ("--mirror-left", "mirror-left"),
    ],
)
def test_train_help_shows_the_default_presets_values(train_help, flag, shown):
    """The defaults `train --help` shows are the ones a plain `train` uses: the default
    preset's, not the config classes' own."""
    assert f"[default: {shown}]" in train_help[flag], train_help[flag]


def test_confusion_matrix_of_ten_signs_fits_80_columns(tmp_path):
    """Ten sign names, none cut short, in an 80-column terminal or log."""
    signs = (
        "airplane",
        "donkey",
        "pretend",
        "thankyou",
        "grandmother",
        "listen",
        "because",
        "bedroom",
        "giraffe",
        "yesterday",
    )
    root = write_gislr(tmp_path / "d", signs=signs, per_signer=10)
    out = tmp_path / "run"
    trained = run("train", "--data", root, "--out", out, "--epochs", "1", "--preset", "simple")
    assert trained.exit_code == 0, trained.output
    result = run("evaluate", out / "model.safetensors", env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "…" not in result.output, result.output
    matrix = result.output.split("confusion matrix")[1]
    assert all(f" {i} {sign} " in matrix for i, sign in enumerate(signs))
    assert max(len(line) for line in matrix.splitlines()) <= 80


@pytest.mark.parametrize(
    "flags, message",
    [
        pytest.param(
            "--learning-rate inf", "learning_rate=inf must be a finite number", id="learning-rate"
        ),
        pytest.param(
            "--warmup-epochs inf", "warmup_epochs=inf must be a finite number", id="warmup"
        ),
        pytest.param(f"--seed {2**63}", "does not fit in 64 bits", id="seed"),
        pytest.param("--depth 100000", "each must be at most 64", id="depth"),
        pytest.param(
            "--preset hybrid --kernel-size 16", "kernel size 16 must be odd", id="even-kernel"
        ),
        pytest.param("--preset hybrid --kernel-size 100001", "and at most 255", id="huge-kernel"),
        pytest.param(
            "--width 100000 --heads 1", "parameters, more than 500,000,000", id="parameters"
        ),
    ],
)
def test_flags_past_what_can_train_are_one_line_errors(tiny_data, tmp_path, flags, message):
    """Non-finite numbers, a 100000-layer model, an even or huge kernel and a model past the
    parameter cap are refused before any data is read."""
    out = tmp_path / "run"
    one_line_error(run("train", "--data", tiny_data, "--out", out, *flags.split()), message)
    assert not out.exists()


def test_a_diverged_run_stops_with_an_error(tiny_data, tmp_path):
    """A loss that turns NaN ends the run (exit 1, one error line); no epoch with NaN weights
    is saved or reported as a result (the accuracy of NaN logits is the share of class 0)."""
    out = tmp_path / "run"
    recipe = "--epochs 3 --preset article10 --learning-rate 1e30"
    result = run("train", "--data", tiny_data, "--out", out, *recipe.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: training diverged in epoch")
    for path in out.glob("*.safetensors"):  # whatever was kept is from a finite epoch
        tensors = load_file(path)
        assert all(t.isfinite().all() for t in tensors.values() if t.is_floating_point())


def test_select_after_just_below_one_keeps_the_last_epoch(tiny_data, tmp_path):
    """--select-after 0.99999999999 rounds to the last epoch, which stays a candidate."""
    out = tmp_path / "run"
    recipe = "--epochs 2 --select-after 0.99999999999"
    result = run("train", "--data", tiny_data, "--out", out, *recipe.split())
    assert result.exit_code == 0, result.output
    assert checkpoint.load(out / "model.safetensors").metadata["epoch"] == 2


def test_interrupted_before_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch):
    """Ctrl-C before any epoch is saved does not advise a --resume that cannot work."""
    import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_run", interrupted)
    root = write_gislr(tmp_path / "d")
    result = run("train", "--data", root, "--out", tmp_path / "run")
    assert result.exit_code == 130 and "--resume" not in result.output, result.output
    assert result.output.strip().endswith("before the first epoch ended: nothing saved")


def unfinished_copy(out: Path, copy: Path, epochs: int = 3) -> Path:
    """A copy of a finished 2-epoch run whose resume state asks for `epochs`: one to go."""
    import shutil

    from safetensors import safe_open

    shutil.copytree(out, copy)
    path = copy / "resume.safetensors"
    with safe_open(path, "pt") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    train_config = {**json.loads(metadata["train_config"]), "epochs": epochs}
    checkpoint.write(path, tensors, {**metadata, "train_config": json.dumps(train_config)})
    return copy


def test_resume_of_a_finished_run_or_moved_data(trained, tmp_path):
    """A finished run is not re-run and its files stay as they are; data that moved is named
    with --data, and refused if its vocabulary differs."""
    import shutil

    data_dir, out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    one_line_error(run("train", "--resume", out), "has finished all 2 epochs: nothing to resume")
    assert (out / "model.safetensors").read_bytes() == before
    copy = unfinished_copy(out, tmp_path / "run")
    moved = shutil.copytree(data_dir, tmp_path / "moved")
    other = write_gislr(tmp_path / "other", signs=("beta", "alpha", "gamma"))
    one_line_error(run("train", "--resume", copy, "--data", other), "has another vocabulary")
    result = run("train", "--resume", copy, "--data", moved)
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(copy / "last.safetensors")
    assert loaded.metadata["epoch"] == 3 and loaded.metadata["data"] == str(moved.resolve())


def test_resume_honours_threads_and_reads_data_from_anywhere(trained, tmp_path, monkeypatch):
    """--resume applies --threads; the checkpoint records an absolute
    data path, so evaluate and resume work from another working directory."""
    import torch

    _, out, _ = trained
    copy = unfinished_copy(out, tmp_path / "run")
    monkeypatch.chdir(tmp_path)  # away from where the data path was given
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = run("train", "--resume", "run", "--threads", "1")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert Path(checkpoint.load(copy / "model.safetensors").metadata["data"]).is_absolute()
    result = run("evaluate", copy / "model.safetensors")
    assert result.exit_code == 0 and "12 sequences" in result.output, result.output


def test_resume_with_another_process_count_is_refused_at_once(trained, tmp_path):
    """A run of 2 processes resumed by 1: one line before any data is loaded."""
    import shutil

    from safetensors import safe_open

    _, out, _ = trained
    run_dir = tmp_path / "two"
    shutil.copytree(out, run_dir)
    path = run_dir / "resume.safetensors"
    with safe_open(path, "pt") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    assert json.loads(metadata["world"]) == 1
    checkpoint.write(path, tensors, {**metadata, "world": "2"})
    result = run("train", "--resume", run_dir)
    one_line_error(result, f"{run_dir} was trained by 2 process(es): resume it with as many, not 1")
