"""cli.py, the pieces every command shares: one-line errors for a command line that does not
parse, checked output paths, run folders and their locks, signer lists, threads, progress."""

import io
import os
import sys

import pytest
import torch
from conftest import one_line_error, run, words
from rich.console import Console

import cli
import islr  # noqa: F401  (registers every command on cli.app)


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_progress_bars_on_a_terminal_only(monkeypatch, terminal):
    """A terminal gets a progress bar per pass; a log file gets none."""
    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=terminal))
    assert list(cli.tracked(iter(range(3)), 3, "epoch 7")) == [0, 1, 2]
    shown = "epoch 7" in screen.getvalue() and "3/3" in screen.getvalue()
    assert shown == terminal, screen.getvalue()


@pytest.mark.parametrize(
    "argv, code, message",
    [
        pytest.param("train --epochs 0", 2, "Invalid value for '--epochs'", id="out-of-range"),
        pytest.param("train --epoch 3", 2, "No such option: --epoch", id="unknown-flag"),
        pytest.param(
            "trian[/]", 2, "No such command 'trian[/]'. Did you mean 'train'?", id="unknown-command"
        ),
        pytest.param(
            "evaluate",
            2,
            "Missing argument 'ckpt'. (python islr.py evaluate --help)",
            id="missing-argument",
        ),
        pytest.param(
            "evaluate /no[bold]where.safetensors",
            1,
            "/no[bold]where.safetensors does not exist",
            id="command-error",
        ),
    ],
)
def test_a_command_line_that_does_not_parse_is_one_line(monkeypatch, capsys, argv, code, message):
    """What typer refuses (a value out of range, an unknown flag or command, a missing
    argument) is one line on standard error and exit 2, as islr.py runs it (cli.main); errors
    of the commands keep their exit code; brackets are the user's, not markup."""
    monkeypatch.setattr(sys, "argv", ["islr.py", *argv.split()])
    assert cli.main() == code, argv
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert not out and len(lines) == 1 and lines[0].startswith("error:"), (out, err)
    assert message in lines[0], lines


def test_without_a_command_the_help(monkeypatch, capsys):
    """No command prints the usage (exit 2); --help prints it with exit 0 and no error."""
    monkeypatch.setattr(sys, "argv", ["islr.py"])
    assert cli.main() == 2 and "Usage: islr.py [OPTIONS] COMMAND" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["islr.py", "--help"])
    assert cli.main() == 0 and not capsys.readouterr().err


@pytest.mark.parametrize("command", ["cv", "bench", "evaluate"])
def test_every_command_takes_dash_h(command):
    """-h prints a command's own help, also for cv and bench, which take train's flags too."""
    result = run(command, "-h")
    assert result.exit_code == 0 and f" {command} [OPTIONS]" in result.output, result.output
    assert "train [OPTIONS]" not in result.output


# A command line writing where it must not, with {name} for the paths of the mistake_paths
# fixture, and what its one-line error must say.
OUTPUT_MISTAKES = [
    pytest.param(
        "evaluate {ckpt} --json {ckpt}",
        "{ckpt} is the checkpoint being read",
        id="evaluate-json-over-its-checkpoint",
    ),
    pytest.param(
        "evaluate {ckpt} --json {last}",
        "is named like a checkpoint",
        id="evaluate-json-over-a-checkpoint",
    ),
    pytest.param(
        "predict {ckpt} {ckpt} --json {ckpt}",
        "{ckpt} is the checkpoint being read",
        id="predict-json-over-its-checkpoint",
    ),
    pytest.param(
        "predict {ckpt} {ckpt} --json {last}",
        "is named like a checkpoint",
        id="predict-json-over-a-checkpoint",
    ),
    pytest.param(
        "export {ckpt} {ckpt}",
        "{ckpt} is the checkpoint being read",
        id="export-over-its-checkpoint",
    ),
    pytest.param(
        "export {ckpt} {last}", "is named like a checkpoint", id="export-over-a-checkpoint"
    ),
    pytest.param("train --data {data} --out {tmp}/a-file", "is a file", id="train-out-a-file"),
    pytest.param("cv --data {data} --out {tmp}/a-file", "is a file", id="cv-out-a-file"),
    pytest.param(
        "evaluate {ckpt} --json {tmp}", "is a directory: name a file", id="json-a-directory"
    ),
    pytest.param(
        "evaluate {ckpt} --json {tmp}/no-dir/m.json", "no-dir does not exist", id="json-no-folder"
    ),
]


@pytest.mark.parametrize("command, message", OUTPUT_MISTAKES)
def test_outputs_are_checked_before_the_work(mistake_paths, command, message):
    """An output that would overwrite a checkpoint, a file where a folder goes or a folder where
    a file goes, and a missing parent folder are one-line errors; the checkpoints stay."""
    paths = mistake_paths
    before = paths["ckpt"].read_bytes(), paths["last"].read_bytes()
    one_line_error(run(*words(command, **paths)), message.format(**paths))
    assert (paths["ckpt"].read_bytes(), paths["last"].read_bytes()) == before


def test_signer_lists_take_spaces_and_repeats():
    """ "2044, 4718" and "2044,2044" mean what they say: two signers, and one."""
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


def test_default_run_folders_never_collide(tiny_data, tmp_path, monkeypatch):
    """Two runs started in the same second get runs/NAME and runs/NAME-2; a default folder left
    empty by a mistake is removed."""
    monkeypatch.setattr(cli, "RUNS", tmp_path / "runs")
    assert cli.new_run_directory("x") == tmp_path / "runs" / "x"
    assert cli.new_run_directory("x") == tmp_path / "runs" / "x-2"
    one_line_error(run("train", "--data", tiny_data, "--val-signer", "9"), "signer 9 is not in")
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["x", "x-2"]


@pytest.mark.parametrize("command", ["train", "cv --test-signer 16069 --seeds 1"])
def test_a_directory_another_run_writes_to_is_refused(tiny_data, tmp_path, command):
    """train or cv into a directory a running train holds: refused, nothing written there."""
    busy = tmp_path / "busy"
    with cli.claim(busy):  # as a train still in its epochs holds it
        result = run(*command.split(), "--data", tiny_data, "--out", busy, "--epochs", "1")
        one_line_error(result, f"{busy} is in use by another run: choose another --out")
        assert [path.name for path in busy.iterdir()] == [".lock"]


def test_the_lock_ends_with_its_holder(tiny_data, tmp_path):
    """A directory claimed and released takes a run; a mistake found after the claim leaves no
    empty run folder behind."""
    busy = tmp_path / "busy"
    with cli.claim(busy):
        pass
    result = run("train", "--data", tiny_data, "--out", busy, "--epochs", "1")
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh"
    one_line_error(run("train", "--data", tiny_data, "--out", fresh, "--test-signer", "7"), "7")
    assert not fresh.exists()


@pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "command",
    [
        "evaluate {ckpt}",
        "predict {ckpt} {data}/101.hdf5 --device cpu",
        "export {ckpt} {tmp}/m.pt",
    ],
    ids=["evaluate", "predict", "export"],
)
def test_inference_commands_take_threads_and_predict_a_device(trained, tmp_path, command):
    """--threads for evaluate, predict and export (the README's remedy on a busy machine)."""
    data_dir, out, _ = trained
    paths = {"ckpt": out / "model.safetensors", "data": data_dir, "tmp": tmp_path}
    try:
        torch.set_num_threads(1)
        result = run(*words(command, **paths), "--threads", "2")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2, command
    finally:
        torch.set_num_threads(1)  # as conftest set it


def test_openmp_threads_wait_passively_where_the_cores_are_shared(monkeypatch):
    """Passive waiting for serve and where other processes keep half a core busy; OpenMP's own
    spinning on free cores; /proc/stat read for real gives a count between 0 and the cores."""

    monkeypatch.setattr(islr, "busy_cores", lambda: 0.1)
    assert islr.wait_policy("train") is None and islr.wait_policy("serve") == "PASSIVE"
    monkeypatch.setattr(islr, "busy_cores", lambda: 1.5)
    assert islr.wait_policy("train") == "PASSIVE"
    monkeypatch.undo()
    assert 0 <= islr.busy_cores(0.05) <= os.cpu_count() + 0.01


def test_a_users_wait_policy_wins(monkeypatch):
    """islr sets OMP_WAIT_POLICY where it is unset and leaves a user's own value alone."""
    import islr

    monkeypatch.setattr(islr, "busy_cores", lambda: 2.0)
    unset, given = {}, {"OMP_WAIT_POLICY": "ACTIVE"}
    islr.set_wait_policy(unset, ["islr.py", "train"])
    islr.set_wait_policy(given, ["islr.py", "serve"])
    assert unset == {"OMP_WAIT_POLICY": "PASSIVE"} and given == {"OMP_WAIT_POLICY": "ACTIVE"}
