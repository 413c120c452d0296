"""Bench: one run on a tiny dataset returns every figure as a positive finite number."""

import json
import math

import pytest
import torch

import augment
import data
import loops
import models
import preprocessing
from bench import speed, tutorial

FIGURES = {
    "train_samples_per_second",
    "model_samples_per_second",
    "pipeline_ratio",
    "latency_median_ms_1_thread",
    "latency_p95_ms_1_thread",
    "latency_median_ms_all_threads",
    "latency_p95_ms_all_threads",
    "inference_sequences_per_second",
    "seconds_to_first_step",
    "load_seconds",
    "preprocess_seconds",
    "build_seconds",
    "first_step_seconds",
    "flops_per_training_sample",
    "achieved_flops_per_second",
    "matmul_flops_per_second",
    "fraction_of_matmul",
    "step_seconds",
    "fixed_step_seconds",
    "fixed_share_of_step",
}


@pytest.fixture
def one_thread():
    """On a busy machine, two threads' spin-waits make a tiny model ~100x slower: use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("max_sequences", [None, 20])
def test_bench_reports_every_figure(tiny_data, one_thread, max_sequences):
    """Every figure is a positive finite number (no timing asserts: the machine is shared)."""
    result = speed.run(
        tiny_data,
        preprocessing.DataConfig(),
        models.ModelConfig(width=16, heads=2, feedforward=32, depth=1),
        loops.TrainConfig(batch_size=8),
        augment.AugmentConfig(flip=0.5, noise=0.5),
        max_sequences=max_sequences,
        repeats=2,
        latency_calls=5,
    )
    assert FIGURES <= result.keys()
    assert result["sequences"] == (max_sequences or 4 * 12)
    assert len(result["train_runs"]) == len(result["model_runs"]) == 2
    assert result.pop("load_average") >= 0
    numbers = [v for v in result.values() if not isinstance(v, list)]
    numbers += result["train_runs"] + result["model_runs"]
    for value in numbers:
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, result
    assert result["latency_p95_ms_1_thread"] >= result["latency_median_ms_1_thread"]
    ratio = result["train_samples_per_second"] / result["model_samples_per_second"]
    assert result["pipeline_ratio"] == pytest.approx(ratio)
    share = result["fixed_step_seconds"] / result["step_seconds"]
    assert result["fixed_share_of_step"] == pytest.approx(share)
    assert torch.get_num_threads() == 1  # the latency pass restored the thread count


TUTORIAL_FIGURES = {
    "islr_samples_per_second",
    "tutorial_0_workers_samples_per_second",
    "tutorial_all_workers_samples_per_second",
    "tutorial_model_only_samples_per_second",
    "islr_over_tutorial",
    "islr_frames_per_sequence",
    "tutorial_frames_per_sequence",
    "real_frames_per_sequence",
}


def test_bench_times_the_tutorial_data_path(tiny_data, one_thread):
    """(e): every path timed once per round, and padding that only ever adds frames."""
    result = speed.run(
        tiny_data,
        preprocessing.DataConfig(),
        models.ModelConfig(width=16, heads=2, feedforward=32, depth=1),
        loops.TrainConfig(batch_size=8),
        max_sequences=30,
        repeats=2,
        latency_calls=5,
        tutorial=True,
    )
    assert TUTORIAL_FIGURES <= result.keys()
    for name in ("islr", "tutorial_0_workers", "tutorial_all_workers", "tutorial_model_only"):
        assert len(result[f"{name}_runs"]) == 2
    for name in TUTORIAL_FIGURES:
        assert math.isfinite(result[name]) and result[name] > 0, (name, result[name])
    tutorial = max(
        result["tutorial_0_workers_samples_per_second"],
        result["tutorial_all_workers_samples_per_second"],
    )
    ratio = result["islr_samples_per_second"] / tutorial
    assert result["islr_over_tutorial"] == pytest.approx(ratio)
    # Length-bucketed batches pad less than the series' random ones (fixed seeds: no luck).
    assert result["tutorial_frames_per_sequence"] > result["islr_frames_per_sequence"]
    assert result["islr_frames_per_sequence"] >= result["real_frames_per_sequence"]


def test_the_tutorial_path_trains_on_the_same_features(tiny_data):
    """The tutorial's samples, deep copies and per-sample merge give islr's padded batch; its
    mask read from values drops exactly the real frames whose features are all 0."""
    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())
    prepared.frames[prepared.offsets[3] + 1] = 0  # a real frame with every landmark missing
    samples = tutorial.tutorial_samples(prepared, channels=2)
    indices = torch.tensor([3, 0, 7, 5])
    dataset = tutorial.TutorialDataset(samples)
    batch = tutorial.as_batch(tutorial.tutorial_merge([dataset[i] for i in indices.tolist()]))
    expected = prepared.merge(indices)
    assert torch.equal(batch.features, expected.features)
    assert torch.equal(batch.labels, expected.labels)
    all_zero = (expected.features == 0).all(-1)
    assert torch.equal(batch.valid, expected.valid & ~all_zero)
    assert not batch.valid[0, 1] and expected.valid[0, 1]
    assert samples[3]["feature"].shape == (2, int(prepared.lengths[3]), 130)  # (C, T, J)


def test_training_flops_count_the_cpu_attention():
    """A training step's FLOPs are PyTorch's count plus each attention layer's forward and
    backward (the CPU's fused attention kernel, which PyTorch's counter leaves out)."""
    from torch.utils.flop_counter import (
        FlopCounterMode,
        sdpa_backward_flop_count,
        sdpa_flop_count,
    )

    torch.manual_seed(0)
    N, T, D, H = 4, 9, 16, 2
    config = models.ModelConfig(
        width=D, heads=H, feedforward=32, depth=2, dropout=0.0, attention_dropout=0.0
    )
    model = models.build(config, 20, 3)
    valid = torch.ones(N, T, dtype=torch.bool)
    batch = data.Batch(
        torch.randn(N, T, 20), valid, valid.sum(1), torch.zeros(N).long(), valid[:, 0]
    )
    flops = speed.training_flops(model, [batch], loops.TrainConfig())
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients
    with FlopCounterMode(display=False) as plain:
        torch.nn.functional.cross_entropy(model(batch.features, valid), batch.labels).backward()
    shape = (N, H, T, D // H)
    attention = sdpa_flop_count(shape, shape, shape) + sdpa_backward_flop_count(
        shape, shape, shape, shape
    )
    assert flops == plain.get_total_flops() + 2 * attention


def test_subset_shares_frames():
    """subset picks whole sequences by offset and length, without copying frames."""
    prepared = data.Prepared(
        torch.arange(10.0)[:, None],
        torch.tensor([0, 3, 7]),
        torch.tensor([3, 4, 3]),
        torch.tensor([0, 1, 2]),
    )
    part = speed.subset(prepared, 2, torch.Generator().manual_seed(0))
    assert len(part) == 2 and part.frames is prepared.frames
    for offset, length in zip(part.offsets.tolist(), part.lengths.tolist(), strict=True):
        assert (offset, length) in {(0, 3), (3, 4), (7, 3)}
    assert speed.subset(prepared, None, torch.Generator()) is prepared


def test_bench_command_prints_every_figure(tiny_data, tmp_path, one_thread):
    """`islr.py bench --tutorial` prints a row for (a) to (e), and writes them as JSON."""
    from conftest import run

    report = tmp_path / "speed.json"
    quick = "--repeats 1 --latency-calls 10 --epochs 1 --batch-size 8 --threads 1 --tutorial"
    result = run("bench", "--data", tiny_data, "--json", report, *quick.split())
    assert result.exit_code == 0, result.output
    for label in (
        "(a) training epoch",
        "(b) model only",
        "(a)/(b)",
        "(b) MFLOP a training sample",
        "(b) GFLOP/s",
        "(c) latency 1 thread",
        "(c) latency all 1 thread(s)",
        "(c) batched inference",
        "(d) start to first step",
        "(e) no augmentation, samples/s: islr",
        "(e) tutorial DataLoader, 0 workers",
        "(e) islr / tutorial",
        "(e) frames per sequence",
    ):
        assert label in result.output
    figures = json.loads(report.read_text())
    assert FIGURES | TUTORIAL_FIGURES <= figures.keys()
    assert all(math.isfinite(figures[name]) and figures[name] > 0 for name in FIGURES)


@pytest.mark.parametrize(
    "command, message",
    [
        pytest.param("--json {tmp}/no-dir/bench.json", "no-dir does not exist", id="json-folder"),
        pytest.param(
            "--val-signer 101 --out {tmp}/r",
            "bench does not take --val-signer (it trains on every sequence); --out",
            id="train-flags-bench-ignores",
        ),
    ],
)
def test_bench_mistakes_are_one_line_errors(tiny_data, tmp_path, command, message):
    """A --json that cannot be written and train flags that bench has no use for are refused
    in one line, before the minutes of measuring."""
    from conftest import one_line_error, run, words

    result = run("bench", "--data", tiny_data, *words(command, tmp=tmp_path))
    one_line_error(result, message)


def test_benchscale_times_both_sets_and_prints_the_ratio(tmp_path, capsys):
    """benchscale loads two sets of different vocabularies through the cache and times
    the default preset's epoch on each."""
    from conftest import write_gislr

    from bench import scale

    small = write_gislr(tmp_path / "small")
    large = write_gislr(tmp_path / "large", signs=("a", "b", "c", "d", "e"), per_signer=20)
    medians = scale.main(str(small), str(large), 16, 1)
    assert medians.keys() == {"small", "large"}
    assert all(math.isfinite(value) and value > 0 for value in medians.values())
    assert "(large / small " in capsys.readouterr().out


def test_bench_drawing_prints_epoch_times_with_and_without_curves(tiny_data):
    """bench.drawing trains the recipe with and without curves.png and prints both medians."""
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.drawing",
            "--data",
            str(tiny_data),
            "--epochs",
            "2",
            "--rounds",
            "1",
            "--preset",
            "simple",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for label in ("epoch without curves.png: median", "epoch with curves.png:", "alone"):
        assert label in result.stdout
