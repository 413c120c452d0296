"""The Makefile: the targets a user types pass paths through as given."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(*args: str) -> str:
    """The commands `make ARGS` would run, without running them (nor the set-up: -W)."""
    command = ["make", "-n", "-W", ".venv/.installed", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_makefile_quotes_paths_and_keeps_other_datasets():
    """make passes DATA and CKPT with spaces as one argument each, and make clean removes the
    synthetic set only, not datasets/ where the README puts prepared data."""
    assert '--data "/my data/set"' in dry_run("train", "DATA=/my data/set")
    assert 'evaluate "/my runs/m.safetensors"' in dry_run("evaluate", "CKPT=/my runs/m.safetensors")
    clean = dry_run("clean").split()
    assert "datasets/synthetic-top10" in clean and "datasets" not in clean
