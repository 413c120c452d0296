"""Shared fixtures: a tiny random GISLR dataset, a run trained on it, the real data in
../shared/data, and the command line run in-process."""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import islr

# The preprocessed cache (cache.py) of the test runs goes to a temporary folder, not ~/.cache.
os.environ.setdefault("ISLR_CACHE_DIR", tempfile.mkdtemp(prefix="islr-test-cache-"))

# One thread: the tests' models are tiny, and on a shared 2-core machine a second thread
# mostly waits for the other processes (measured 10-100x slower under load).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REAL_GISLR = SHARED_DATA / "gislr-hello-thankyou"
REAL_RAW = SHARED_DATA / "asl-signs-raw"


VIDEOS = SHARED_DATA / "videos"
SELFIE = VIDEOS / "signer-selfie.mp4"
PERSON = VIDEOS / "person.png"


def require_videos() -> Path:
    if not SELFIE.is_file():
        pytest.skip(
            f"real videos not found at {VIDEOS} (they live in ../shared/data beside the repo)"
        )
    return VIDEOS


def require_real_data() -> Path:
    if not REAL_GISLR.is_dir():
        pytest.skip(
            f"real data not found at {REAL_GISLR} (it lives in ../shared/data beside the repo)"
        )
    return REAL_GISLR


def random_sequence(rng: np.random.Generator, frames: int, label: int) -> np.ndarray:
    """A (3, T, 543) float32 track: noise around a class-dependent drift, some NaNs."""
    base = rng.uniform(0.3, 0.7, size=(3, 1, 543))
    drift = (label + 1) * 0.01 * np.arange(frames)[None, :, None]
    feature = base + drift + rng.normal(0, 0.01, size=(3, frames, 543))
    feature[:, rng.random(frames) < 0.2, 468:489] = np.nan  # the left hand out of view
    return feature.astype(np.float32)


def write_gislr(
    root: Path,
    *,
    signers: tuple[str, ...] = ("101", "202", "303", "16069"),
    per_signer: int = 12,
    signs: tuple[str, ...] = ("alpha", "beta", "gamma"),
    seed: int = 0,
    left_handed: tuple[str, ...] = (),
) -> Path:
    """A small dataset in the GISLR layout, one file per signer.

    The right hand is always seen and the left one mostly, except for `left_handed` signers,
    whose hands swap those roles (so `--mirror-left` mirrors their clips).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sign_to_prediction_index_map.json").write_text(
        json.dumps({s: i for i, s in enumerate(signs)})
    )
    for s, signer in enumerate(signers):
        with h5py.File(root / f"{signer}.hdf5", "w") as file:
            for i in range(per_signer):
                label = i % len(signs)
                group = file.create_group(str(1000 * s + i))
                frames = int(rng.integers(2, 30))
                feature = random_sequence(rng, frames, label)
                if signer in left_handed:
                    left, right = feature[:, :, 468:489].copy(), feature[:, :, 522:543].copy()
                    feature[:, :, 468:489], feature[:, :, 522:543] = right, left
                group["feature"] = feature
                group["token"] = np.array([label], dtype=np.int64)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_gislr(tmp_path / "tiny")


def run(*args, env: dict[str, str] | None = None):
    """Invoke the command line in-process, as a user would type it."""
    return CliRunner().invoke(islr.app, [str(a) for a in args], env=env)


ROOT = Path(__file__).resolve().parent.parent  # the repository: where islr.py is


def start(*args, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python islr.py ARGS` in a process of its own (for signals and kills), output merged
    into its stdout as text."""
    return subprocess.Popen(
        [sys.executable, "islr.py", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def words(command: str, **paths: Path) -> list[str]:
    """A command line written as one string, split as a shell would, with {name} in each word
    replaced by paths[name]: words("evaluate {ckpt} --json {ckpt}", ckpt=...)."""
    return [word.format(**paths) for word in shlex.split(command)]


def one_line_error(result, message: str) -> None:
    """The command failed with exit 1 and said only `error: ...`, containing `message`."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output
    assert message in " ".join(lines), result.output


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A 2-epoch run on the tiny set, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data_dir = write_gislr(root / "data", left_handed=("16069",))  # the test signer, as for real
    out = root / "run"
    result = run("train", "--data", data_dir, "--out", out, "--epochs", "2", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    return data_dir, out, result.output


@pytest.fixture(scope="session")
def mistake_paths(trained, tmp_path_factory) -> dict[str, Path]:
    """The paths that user mistakes name: the trained run and its data, broken checkpoints,
    a run with only last.safetensors, a file where a directory goes, other vocabularies.
    Keys name them in `words` templates: {data}, {out}, {ckpt}, {last}, {half}, {tmp}."""
    data_dir, out, _ = trained
    tmp = tmp_path_factory.mktemp("mistakes")
    ckpt = out / "model.safetensors"
    (tmp / "empty").mkdir()
    half = tmp / "half"  # interrupted before any epoch could be kept: only last.safetensors
    half.mkdir()
    (half / "last.safetensors").write_bytes((out / "last.safetensors").read_bytes())
    (tmp / "x.safetensors").write_text("not a checkpoint")
    (tmp / "cut.safetensors").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    (tmp / "a-file").write_text("")
    write_gislr(tmp / "other", signs=("x", "y", "z"))
    write_gislr(tmp / "swapped", signs=("beta", "alpha", "gamma"))  # the same names, reordered
    return {
        "data": data_dir,
        "out": out,
        "ckpt": ckpt,
        "last": out / "last.safetensors",
        "half": half,
        "tmp": tmp,
    }
