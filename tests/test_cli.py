"""The command line end to end: train, evaluate, and one-line errors for user mistakes."""

import dataclasses
import json
import shlex
import statistics
import sys
from pathlib import Path

import pytest
from conftest import require_real_data, run, write_gislr
from safetensors.torch import load_file

import checkpoint
import crossval
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


def test_progress_bars_on_a_terminal_only(monkeypatch):
    """A terminal gets a progress bar per pass; a log file gets none."""
    import io

    from rich.console import Console

    import cli

    for terminal in (True, False):
        screen = io.StringIO()
        monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=terminal))
        assert list(cli.tracked(iter(range(3)), 3, "epoch 7")) == [0, 1, 2]
        shown = "epoch 7" in screen.getvalue() and "3/3" in screen.getvalue()
        assert shown == terminal, screen.getvalue()


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


def _one_line_error(result, message):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output
    assert message in " ".join(lines), result.output


def test_a_command_line_that_does_not_parse_is_one_line(monkeypatch, capsys):
    """What typer refuses (a value out of range, an unknown flag or command, a missing
    argument) is one line on standard error and exit 2, as islr.py runs it (cli.main); errors
    of the commands keep their exit code; brackets are the user's, not markup; without a
    command, the help."""
    import cli
    import islr  # noqa: F401  (registers every command)

    for argv, code, message in [
        (["train", "--epochs", "0"], 2, "Invalid value for '--epochs'"),
        (["train", "--epoch", "3"], 2, "No such option: --epoch"),
        (["trian[/]"], 2, "No such command 'trian[/]'. Did you mean 'train'?"),
        (["evaluate"], 2, "Missing argument 'ckpt'. (python islr.py evaluate --help)"),
        (
            ["evaluate", "/no[bold]where.safetensors"],
            1,
            "/no[bold]where.safetensors does not exist",
        ),
    ]:
        monkeypatch.setattr(sys, "argv", ["islr.py", *argv])
        assert cli.main() == code, argv
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert not out and len(lines) == 1 and lines[0].startswith("error:"), (out, err)
        assert message in lines[0], lines
    monkeypatch.setattr(sys, "argv", ["islr.py"])
    assert cli.main() == 2 and "Usage: islr.py [OPTIONS] COMMAND" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["islr.py", "--help"])
    assert cli.main() == 0 and not capsys.readouterr().err


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


def test_user_mistakes_are_one_line_errors(trained, tmp_path):
    """Bad paths, signers, checkpoints and vocabularies exit 1 with one line and no traceback."""
    data_dir, out, _ = trained
    ckpt = out / "model.safetensors"
    before, last = ckpt.read_bytes(), (out / "last.safetensors").read_bytes()
    _one_line_error(run("train", "--data", tmp_path / "none"), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(run("train", "--data", tmp_path / "empty"), "no <participant_id>.hdf5")
    _one_line_error(run("train", "--data", data_dir, "--test-signer", "42"), "test signer 42")
    _one_line_error(run("train", "--data", data_dir, "--val-signer", "42"), "validation signer 42")
    _one_line_error(
        run("train", "--data", data_dir, "--val-signer", "101,42"), "validation signer 42"
    )
    _one_line_error(run("train", "--data", data_dir, "--val-signer", "16069"), "the test signer")
    _one_line_error(run("train", "--data", data_dir, "--out", out), "already holds a trained model")
    half = tmp_path / "half"  # interrupted before any epoch could be kept: only last.safetensors
    half.mkdir()
    (half / "last.safetensors").write_bytes((out / "last.safetensors").read_bytes())
    _one_line_error(run("train", "--data", data_dir, "--out", half), "already holds")
    _one_line_error(run("train", "--data", data_dir, "--landmarks", "feet"), "unknown landmarks")
    _one_line_error(run("train", "--data", data_dir, "--crop-min", "0"), "crop_min=0 must be above")
    _one_line_error(run("train", "--data", data_dir, "--model", "foo"), "unknown model 'foo'")
    _one_line_error(run("train", "--data", data_dir, "--width", "63", "--heads", "3"), "even")
    _one_line_error(
        run("train", "--data", data_dir, "--landmarks", "all"), "--no-mirror-left (and --flip 0)"
    )
    _one_line_error(
        run("train", "--data", data_dir, "--landmarks", "all", "--no-mirror-left"), "--flip 0"
    )
    _one_line_error(
        run("train", "--resume", out, "--epochs", "9", "--data", data_dir, "--no-amp"),
        f"--resume continues {out} with its own settings: drop --epochs --no-amp",
    )
    _one_line_error(run("train", "--data", data_dir, "--select-after", "1"), "select_after")
    _one_line_error(run("train", "--data", data_dir, "--device", "cuda:7"), "no such CUDA GPU")
    _one_line_error(run("evaluate", ckpt, "--device", "tpu"), "unknown device 'tpu'")
    (tmp_path / "x.safetensors").write_text("not a checkpoint")
    _one_line_error(run("evaluate", tmp_path / "x.safetensors"), "not a safetensors file")
    (tmp_path / "cut.safetensors").write_bytes(before[: len(before) // 2])
    _one_line_error(run("evaluate", tmp_path / "cut.safetensors"), "truncated")
    _one_line_error(run("evaluate", out), "is a directory: pass a checkpoint in it")
    _one_line_error(run("evaluate", half), f"such as {half / 'last.safetensors'}")  # no model
    _one_line_error(run("evaluate", out / "resume.safetensors"), "is a resume state (for train")
    for command in (
        ["evaluate", ckpt, "--json"],
        ["predict", ckpt, ckpt, "--json"],
        ["export", ckpt],
    ):
        _one_line_error(run(*command, ckpt), f"{ckpt} is the checkpoint being read")
        _one_line_error(run(*command, out / "last.safetensors"), "is named like a checkpoint")
    (tmp_path / "a-file").write_text("")
    _one_line_error(run("train", "--data", data_dir, "--out", tmp_path / "a-file"), "is a file")
    _one_line_error(run("cv", "--data", data_dir, "--out", tmp_path / "a-file"), "is a file")
    _one_line_error(run("evaluate", ckpt, "--json", tmp_path), "is a directory: name a file")
    missing = tmp_path / "no-dir" / "m.json"
    _one_line_error(run("evaluate", ckpt, "--json", missing), "no-dir does not exist")
    other = write_gislr(tmp_path / "other", signs=("x", "y", "z"))
    _one_line_error(run("evaluate", ckpt, "--data", other), "different vocabulary")
    swapped = write_gislr(tmp_path / "swapped", signs=("beta", "alpha", "gamma"))  # same names
    _one_line_error(run("evaluate", ckpt, "--data", swapped), "different vocabulary")
    _one_line_error(run("evaluate", ckpt, "--data", tmp_path / "nowhere"), "does not exist")
    _one_line_error(run("train", "--data", ckpt), "is a file: name the dataset directory")
    _one_line_error(run("train", "--resume", out / "resume.safetensors"), f"--resume {out}")
    _one_line_error(run("predict", ckpt, tmp_path), "is a directory: name the recording files")
    _one_line_error(run("evaluate", ckpt, "--signer", "42"), "signer 42 is not in")
    _one_line_error(run("evaluate", ckpt, "--signer", ","), "--signer ',' names no signer")
    _one_line_error(run("train", "--data", data_dir, "--val-signer", " "), "names no signer")
    assert ckpt.read_bytes() == before and (out / "last.safetensors").read_bytes() == last


def test_real_data_trains_and_evaluates(tmp_path):
    """Issue 2's check on the real recordings: train on ../shared/data/gislr-hello-thankyou
    (test signer 16069, validation 2044), then evaluate reads the checkpoint back."""
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


def test_a_directory_another_run_writes_to_is_refused(tiny_data, tmp_path):
    """train or cv into a directory a running train holds: refused, nothing written there;
    the lock ends with its holder."""
    from cli import claim

    busy = tmp_path / "busy"
    with claim(busy):  # as a train still in its epochs holds it
        for command in (["train"], ["cv", "--test-signer", "16069", "--seeds", "1"]):
            result = run(*command, "--data", tiny_data, "--out", busy, "--epochs", "1")
            _one_line_error(result, f"{busy} is in use by another run: choose another --out")
        assert [path.name for path in busy.iterdir()] == [".lock"]
    result = run("train", "--data", tiny_data, "--out", busy, "--epochs", "1")
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh"  # a mistake found after the claim leaves no empty run behind
    _one_line_error(run("train", "--data", tiny_data, "--out", fresh, "--test-signer", "7"), "7")
    assert not fresh.exists()


@pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning")
def test_inference_commands_take_threads_and_predict_a_device(trained, tmp_path):
    """--threads for evaluate, predict and export (the README's remedy on a busy machine)."""
    import torch

    data_dir, out, _ = trained
    ckpt = out / "model.safetensors"
    commands = (
        ["evaluate", ckpt],
        ["predict", ckpt, data_dir / "101.hdf5", "--device", "cpu"],
        ["export", ckpt, tmp_path / "m.pt"],
    )
    try:
        for command in commands:
            torch.set_num_threads(1)
            result = run(*command, "--threads", "2")
            assert result.exit_code == 0, result.output
            assert torch.get_num_threads() == 2, command
    finally:
        torch.set_num_threads(1)  # as conftest set it


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
    _one_line_error(
        result, f"{run_dir} was trained by 2 process(es): resume it with as many, not 1"
    )


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_ctrl_c_while_pytorch_loads_is_quiet(tmp_path):
    """Ctrl-C in the first second or two, while `import torch` runs, ends with one line and
    exit 130 (it printed a KeyboardInterrupt traceback from inside torch)."""
    import signal
    import subprocess
    import time

    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "islr.py", "synth", tmp_path / "set"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while "libtorch" not in maps.read_text():  # torch's library is loaded: its import is under way
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert (process.returncode, output.strip()) == (130, "interrupted"), output


def test_training_without_a_test_signer(tiny_data, tmp_path, monkeypatch):
    """--test-signer none trains on every other signer; evaluate then needs --signer. The
    checkpoint records the command as typed."""
    out = tmp_path / "run"
    argv = [
        "islr.py",
        "train",
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--test-signer",
        "none",
    ]
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
    _one_line_error(run("evaluate", ckpt), "trained without a test signer: name one with --signer")
    named = run("evaluate", ckpt, "--signer", "16069")
    assert named.exit_code == 0 and "signer(s) 16069 trained or validated" in named.output


def test_recipe_flags_reach_the_checkpoint(tmp_path, tiny_data):
    """Augmentation probabilities, the crop's shortest span and the epoch rule given as flags
    are what training used."""
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        tiny_data,
        "--out",
        out,
        "--epochs",
        "2",
        "--crop",
        "1",
        "--crop-min",
        "0.25",
        "--resample",
        "0.5",
        "--select-after",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(out / "model.safetensors")
    saved = loaded.metadata["augment_config"]
    assert (saved["crop"], saved["crop_min"], saved["resample"]) == (1.0, 0.25, 0.5)
    assert loaded.metadata["train_config"]["select_after"] == 0.5
    assert loaded.metadata["epoch"] == 2  # epoch 1 was not a candidate
    assert "(picks the epoch from 2-2)" in result.output


@pytest.mark.parametrize("preset", list(presets.PRESETS))
def test_every_preset_trains_and_round_trips(preset, tmp_path, tiny_data):
    """Each preset trains one epoch from the CLI, and its checkpoint evaluates to the same accuracy."""
    out = tmp_path / preset
    result = run(
        "train",
        "--data",
        tiny_data,
        "--out",
        out,
        "--preset",
        preset,
        "--epochs",
        "1",
        "--batch-size",
        "8",
    )
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(out / "model.safetensors")
    assert loaded.model_config == presets.PRESETS[preset].model
    report = tmp_path / "m.json"
    assert run("evaluate", out / "model.safetensors", "--json", report).exit_code == 0
    test = loaded.metadata["metrics"]["test"]
    assert json.loads(report.read_text())["accuracy"] == pytest.approx(test["accuracy"])


def test_cv_averages_a_class_only_over_the_runs_that_test_it():
    """A class missing from one fold's test signers does not count as 0% there."""
    assert crossval.mean_per_class([[1.0, None], [0.5, 0.75], [0.0, None]]) == [0.5, 0.75]
    assert crossval.mean_per_class([[1.0, None]]) == [1.0, None]


def test_cv_tests_every_signer_once_and_validates_elsewhere(tmp_path):
    """`cv`: disjoint test groups covering every signer, validation signers outside them, and a
    summary whose mean is the mean of its runs."""
    root = write_gislr(tmp_path / "data", signers=("101", "202", "303", "404", "505", "606"))
    out = tmp_path / "cv"
    result = run(
        "cv",
        "--data",
        root,
        "--folds",
        "2",
        "--seeds",
        "2",
        "--val-signers",
        "2",
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--preset",
        "simple",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "cv.json").read_text())
    runs = summary["runs"]
    assert [(r["fold"], r["seed"]) for r in runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    tested = sorted({s for r in runs for s in r["test_signers"]})
    assert tested == ["101", "202", "303", "404", "505", "606"]
    for r in runs:
        assert len(r["val_signers"]) == 2 and not set(r["val_signers"]) & set(r["test_signers"])
    for r in runs:  # each seed trained as itself (the labels alone come from the loop)
        ckpt = out / f"fold{r['fold']}-seed{r['seed']}" / "model.safetensors"
        assert checkpoint.load(ckpt).metadata["train_config"]["seed"] == r["seed"]
    assert summary["mean"] == pytest.approx(sum(r["accuracy"] for r in runs) / 4)
    assert summary["std"] == pytest.approx(statistics.stdev(r["accuracy"] for r in runs))
    assert f"test accuracy {summary['mean']:.2%}" in result.output
    fixed = run(
        "cv",
        "--data",
        root,
        "--test-signer",
        "606",
        "--out",
        tmp_path / "fixed",
        "--epochs",
        "1",
        "--preset",
        "simple",
    )
    assert fixed.exit_code == 0, fixed.output
    assert json.loads((tmp_path / "fixed" / "cv.json").read_text())["runs"][0]["test_signers"] == [
        "606"
    ]
    _one_line_error(
        run("cv", "--data", root, "--folds", "2", "--val-signers", "4"), "--val-signers"
    )
    held_out = tmp_path / "held-out"
    result = run(
        "cv",
        "--data",
        root,
        "--folds",
        "2",
        "--val-signers",
        "1",
        "--exclude",
        "606",
        "--out",
        held_out,
        "--epochs",
        "1",
        "--preset",
        "simple",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((held_out / "cv.json").read_text())
    assert summary["excluded"] == ["606"]
    for r in summary["runs"]:
        assert "606" not in r["test_signers"] + r["val_signers"]
        assert "606" not in json.dumps(
            checkpoint.load(held_out / f"fold{r['fold']}-seed0" / "model.safetensors").metadata[
                "split"
            ]
        )
    _one_line_error(run("cv", "--data", root, "--exclude", "999"), "excluded signer 999")
    # Train flags that cv sets itself were silently ignored; now they are refused.
    _one_line_error(
        run("cv", "--data", root, "--val-signer", "101", "--seed", "7"),
        "cv does not take --val-signer (it picks them per fold: give --val-signers N); "
        "--seed (it runs seeds 0..N-1: give --seeds N)",
    )
    _one_line_error(run("cv", "--data", root, "--test-signer", "606", "--folds", "3"), "not both")
    _one_line_error(run("cv", "--data", root, "--out", out), "already holds cross-validation")


def test_signer_lists_take_spaces_and_repeats():
    """ "2044, 4718" and "2044,2044" mean what they say (spaces made an unknown signer)."""
    from cli import parse_signers

    assert parse_signers("2044, 4718 ,", "--x") == ["2044", "4718"]
    assert parse_signers("2044,2044", "--x") == ["2044"] and parse_signers(None, "--x") == []
    with pytest.raises(ValueError, match="--x ' , ' names no signer"):
        parse_signers(" , ", "--x")


def test_default_data_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch):
    """A dangling `datasets` link where the synthetic set would go: one line, exit 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").symlink_to(tmp_path / "gone")
    result = run("train", "--epochs", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]  # after the "Generating ..." line
    assert last.startswith("error: cannot write the default data"), result.output


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
    """A finished run is not re-run (its test phase and recorded command were rewritten); data
    that moved is named with --data, and refused if its vocabulary differs."""
    import shutil

    data_dir, out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    _one_line_error(run("train", "--resume", out), "has finished all 2 epochs: nothing to resume")
    assert (out / "model.safetensors").read_bytes() == before
    copy = unfinished_copy(out, tmp_path / "run")
    moved = shutil.copytree(data_dir, tmp_path / "moved")
    other = write_gislr(tmp_path / "other", signs=("beta", "alpha", "gamma"))
    _one_line_error(run("train", "--resume", copy, "--data", other), "has another vocabulary")
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


def test_train_help_shows_the_default_presets_values():
    """The defaults `train --help` shows are the ones a plain `train` uses (they were the base
    configs': adam, 3e-4, no EMA, which no default run used)."""
    result = run("train", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = {line.split()[1]: line for line in result.output.splitlines() if "│ --" in line}
    for flag, shown in (
        ("--optimizer", "adamw"),
        ("--learning-rate", "0.001"),
        ("--ema", "0.999"),
        ("--select-after", "0.5"),
        ("--attention-dropout", "0.0"),
        ("--mirror-left", "mirror-left"),
    ):
        assert f"[default: {shown}]" in lines[flag], lines[flag]


def test_every_command_takes_dash_h_and_cv_names_bad_flags_in_one_line():
    """-h is help for every command (cv -h and bench -h printed train's, as "cv train")."""
    for command in ("cv", "bench", "evaluate"):
        result = run(command, "-h")
        assert result.exit_code == 0 and f" {command} [OPTIONS]" in result.output, result.output
        assert "train [OPTIONS]" not in result.output
    _one_line_error(run("cv", "--bogus", "3"), "No such option: --bogus")


def test_confusion_matrix_of_ten_signs_fits_80_columns(tmp_path):
    """Ten sign names, none cut short in an 80-column terminal or log (they were: 'donk…')."""
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


def test_interrupted_cv_says_how_far_it_got(tmp_path, monkeypatch):
    """Ctrl-C during cv names the runs finished and where they are."""
    import trainer

    train_run, calls = trainer.train_run, []

    def second_is_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_run(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_run", second_is_interrupted)
    root = write_gislr(tmp_path / "d")
    result = run(
        "cv",
        "--data",
        root,
        "--test-signer",
        "16069",
        "--seeds",
        "3",
        "--val-signers",
        "1",
        "--out",
        tmp_path / "cv",
        "--epochs",
        "1",
        "--preset",
        "simple",
    )
    assert result.exit_code == 130, result.output
    assert f"interrupted after 1 of 3 runs (kept in {tmp_path / 'cv'})" in " ".join(
        result.output.split()
    )
    assert (tmp_path / "cv" / "fold0-seed0" / "model.safetensors").exists()


def test_flags_past_what_can_train_are_one_line_errors(tiny_data, tmp_path):
    """Non-finite numbers, a 100000-layer model, an even or huge kernel and a model past the
    parameter cap are refused before any data is read."""
    for args, message in (
        (["--learning-rate", "inf"], "learning_rate=inf must be a finite number"),
        (["--warmup-epochs", "inf"], "warmup_epochs=inf must be a finite number"),
        (["--seed", str(2**63)], "does not fit in 64 bits"),
        (["--depth", "100000"], "each must be at most 64"),
        (["--preset", "hybrid", "--kernel-size", "16"], "kernel size 16 must be odd"),
        (["--preset", "hybrid", "--kernel-size", "100001"], "and at most 255"),
        (["--width", "100000", "--heads", "1"], "parameters, more than 500,000,000"),
    ):
        out = tmp_path / "run"
        _one_line_error(run("train", "--data", tiny_data, "--out", out, *args), message)
        assert not out.exists()


def test_a_diverged_run_stops_with_an_error(tiny_data, tmp_path):
    """A loss that turns NaN ends the run (exit 1, one error line) instead of being saved and
    reported as a result (the accuracy of NaN logits is the share of class 0)."""
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        tiny_data,
        "--out",
        out,
        "--epochs",
        "3",
        "--preset",
        "article10",
        "--learning-rate",
        "1e30",
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: training diverged in epoch")
    for path in out.glob("*.safetensors"):  # whatever was kept is from a finite epoch
        tensors = load_file(path)
        assert all(t.isfinite().all() for t in tensors.values() if t.is_floating_point())


def test_select_after_just_below_one_keeps_the_last_epoch(tiny_data, tmp_path):
    """--select-after 0.99999999999 rounds to the last epoch, which stays a candidate."""
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        tiny_data,
        "--out",
        out,
        "--epochs",
        "2",
        "--select-after",
        "0.99999999999",
    )
    assert result.exit_code == 0, result.output
    assert checkpoint.load(out / "model.safetensors").metadata["epoch"] == 2


def test_makefile_quotes_paths_and_keeps_other_datasets():
    """make passes DATA and CKPT with spaces as one argument each, and make clean removes the
    synthetic set only, not datasets/ where the README puts prepared data."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def dry_run(*args: str) -> str:
        command = ["make", "-n", "-W", ".venv/.installed", *args]  # -W: never the set-up
        return subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout

    assert '--data "/my data/set"' in dry_run("train", "DATA=/my data/set")
    assert 'evaluate "/my runs/m.safetensors"' in dry_run("evaluate", "CKPT=/my runs/m.safetensors")
    clean = dry_run("clean").split()
    assert "datasets/synthetic-top10" in clean and "datasets" not in clean


def test_default_run_folders_never_collide(tiny_data, tmp_path, monkeypatch):
    """Two runs started in the same second get runs/NAME and runs/NAME-2; a default folder left empty by a mistake is removed."""
    import cli

    monkeypatch.setattr(cli, "RUNS", tmp_path / "runs")
    assert cli.new_run_directory("x") == tmp_path / "runs" / "x"
    assert cli.new_run_directory("x") == tmp_path / "runs" / "x-2"
    _one_line_error(run("train", "--data", tiny_data, "--val-signer", "9"), "signer 9 is not in")
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["x", "x-2"]


def test_train_and_cv_never_share_a_folder_and_cv_stops_on_sigterm(trained, tmp_path, monkeypatch):
    """cv into a trained run, or train into cv runs, is refused; SIGTERM stops cv like Ctrl-C,
    saying how many runs finished (it ended with exit 143 and nothing said)."""
    import os
    import signal

    import trainer

    data_dir, out, _ = trained
    _one_line_error(run("cv", "--data", data_dir, "--out", out), "already holds a trained model")
    (tmp_path / "cv" / "fold0-seed0").mkdir(parents=True)
    _one_line_error(run("train", "--data", data_dir, "--out", tmp_path / "cv"), "cross-validation")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "train_run", terminated)
    result = run(
        "cv",
        "--data",
        data_dir,
        "--out",
        tmp_path / "cv2",
        "--seeds",
        "2",
        "--test-signer",
        "16069",
    )
    assert result.exit_code == 130 and "interrupted after 0 of 2 runs" in result.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_train_notes_signs_without_training_sequences(tmp_path):
    """A sign of the vocabulary that no training signer has is named before training."""
    root = write_gislr(tmp_path / "d")
    (root / "sign_to_prediction_index_map.json").write_text(
        json.dumps({"alpha": 0, "beta": 1, "gamma": 2, "delta": 3})
    )
    result = run("train", "--data", root, "--out", tmp_path / "run", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "note: no training sequence of delta: the model cannot learn them" in result.output
