"""crossval.py: `cv` tests every signer once, averages over its runs, and stops cleanly."""

import json
import statistics

import pytest
from conftest import one_line_error, run, words, write_gislr

import checkpoint
import crossval


def test_cv_averages_a_class_only_over_the_runs_that_test_it():
    """A class missing from one fold's test signers does not count as 0% there."""
    assert crossval.mean_per_class([[1.0, None], [0.5, 0.75], [0.0, None]]) == [0.5, 0.75]
    assert crossval.mean_per_class([[1.0, None]]) == [1.0, None]


@pytest.fixture(scope="module")
def six_signers(tmp_path_factory):
    """A tiny dataset of six signers, enough for two folds of three."""
    root = tmp_path_factory.mktemp("cv") / "data"
    return write_gislr(root, signers=("101", "202", "303", "404", "505", "606"))


# Every run below is one short epoch of the simple preset.
QUICK = "--epochs 1 --preset simple".split()


def test_cv_tests_every_signer_once_and_validates_elsewhere(six_signers, tmp_path):
    """`cv`: disjoint test groups covering every signer, validation signers outside them, and a
    summary whose mean is the mean of its runs; --test-signer fixes the test group, --exclude
    leaves a signer out of every split; an output folder holding cv runs is refused."""
    root = six_signers
    out = tmp_path / "cv"
    folds = "--folds 2 --seeds 2 --val-signers 2 --batch-size 8".split()
    result = run("cv", "--data", root, "--out", out, *folds, *QUICK)
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
    fixed = run("cv", "--data", root, "--test-signer", "606", "--out", tmp_path / "fixed", *QUICK)
    assert fixed.exit_code == 0, fixed.output
    assert json.loads((tmp_path / "fixed" / "cv.json").read_text())["runs"][0]["test_signers"] == [
        "606"
    ]
    held_out = tmp_path / "held-out"
    folds = "--folds 2 --val-signers 1 --exclude 606".split()
    result = run("cv", "--data", root, "--out", held_out, *folds, *QUICK)
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
    one_line_error(run("cv", "--data", root, "--out", out), "already holds cross-validation")


@pytest.mark.parametrize(
    "command, message",
    [
        pytest.param(
            "cv --data {data} --folds 2 --val-signers 4", "--val-signers", id="too-many-val"
        ),
        pytest.param("cv --data {data} --exclude 999", "excluded signer 999", id="exclude"),
        pytest.param(
            "cv --data {data} --val-signer 101 --seed 7",
            "cv does not take --val-signer (it picks them per fold: give --val-signers N); "
            "--seed (it runs seeds 0..N-1: give --seeds N)",
            id="train-flags-cv-sets",
        ),
        pytest.param(
            "cv --data {data} --test-signer 606 --folds 3", "not both", id="test-signer-and-folds"
        ),
        pytest.param("cv --bogus 3", "No such option: --bogus", id="unknown-flag"),
    ],
)
def test_cv_mistakes_are_one_line_errors(six_signers, command, message):
    """Flags that contradict each other, name an unknown signer, or set what cv sets itself
    (train's --val-signer, --seed) are refused in one line before any run."""
    one_line_error(run(*words(command, data=six_signers)), message)


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
    seeds = "--test-signer 16069 --seeds 3 --val-signers 1".split()
    result = run("cv", "--data", root, "--out", tmp_path / "cv", *seeds, *QUICK)
    assert result.exit_code == 130, result.output
    assert f"interrupted after 1 of 3 runs (kept in {tmp_path / 'cv'})" in " ".join(
        result.output.split()
    )
    assert (tmp_path / "cv" / "fold0-seed0" / "model.safetensors").exists()


def test_train_and_cv_never_share_a_folder_and_cv_stops_on_sigterm(trained, tmp_path, monkeypatch):
    """cv into a trained run, or train into cv runs, is refused; SIGTERM stops cv like Ctrl-C,
    saying how many runs finished."""
    import os
    import signal

    import trainer

    data_dir, out, _ = trained
    one_line_error(run("cv", "--data", data_dir, "--out", out), "already holds a trained model")
    (tmp_path / "cv" / "fold0-seed0").mkdir(parents=True)
    one_line_error(run("train", "--data", data_dir, "--out", tmp_path / "cv"), "cross-validation")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "train_run", terminated)
    seeds = "--seeds 2 --test-signer 16069".split()
    result = run("cv", "--data", data_dir, "--out", tmp_path / "cv2", *seeds)
    assert result.exit_code == 130 and "interrupted after 0 of 2 runs" in result.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
