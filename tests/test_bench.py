"""Bench: one run on a tiny dataset returns every figure as a positive finite number."""

import json
import math

import pytest
import torch

import augment
import bench
import data
import loops
import models

FIGURES = {
    "train_samples_per_second", "model_samples_per_second", "pipeline_ratio",
    "latency_median_ms_1_thread", "latency_p95_ms_1_thread", "latency_median_ms_all_threads",
    "latency_p95_ms_all_threads", "inference_sequences_per_second", "seconds_to_first_step",
    "load_seconds", "preprocess_seconds", "build_seconds", "first_step_seconds",
}  # fmt: skip


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
    result = bench.run(
        tiny_data,
        data.DataConfig(),
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
    assert torch.get_num_threads() == 1  # the latency pass restored the thread count


def test_subset_shares_frames():
    """subset picks whole sequences by offset and length, without copying frames."""
    prepared = data.Prepared(torch.arange(10.0)[:, None], torch.tensor([0, 3, 7]),
                             torch.tensor([3, 4, 3]), torch.tensor([0, 1, 2]))  # fmt: skip
    part = bench.subset(prepared, 2, torch.Generator().manual_seed(0))
    assert len(part) == 2 and part.frames is prepared.frames
    for offset, length in zip(part.offsets.tolist(), part.lengths.tolist(), strict=True):
        assert (offset, length) in {(0, 3), (3, 4), (7, 3)}
    assert bench.subset(prepared, None, torch.Generator()) is prepared


def test_bench_command_prints_every_figure(tiny_data, tmp_path, one_thread):
    """`islr.py bench` prints a row for (a), (b), (a)/(b), (c) and (d), and writes them as JSON."""
    from conftest import run

    report = tmp_path / "bench.json"
    result = run("bench", "--data", tiny_data, "--repeats", "1", "--latency-calls", "10",
                 "--json", report, "--epochs", "1", "--batch-size", "8", "--threads", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    for label in ("(a) training epoch", "(b) model only", "(a)/(b)", "(c) latency 1 thread",
                  "(c) latency all 1 thread(s)", "(c) batched inference", "(d) start to first step"):  # fmt: skip
        assert label in result.output
    figures = json.loads(report.read_text())
    assert FIGURES <= figures.keys()
    assert all(math.isfinite(figures[name]) and figures[name] > 0 for name in FIGURES)
    missing = tmp_path / "no-dir" / "bench.json"  # refused before the minutes of measuring
    result = run("bench", "--data", tiny_data, "--json", missing)
    assert result.exit_code == 1 and result.output.startswith("error:"), result.output
    assert "no-dir does not exist" in result.output
    result = run("bench", "--data", tiny_data, "--val-signer", "101", "--out", tmp_path / "r")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "bench does not take --val-signer (it trains on every sequence); --out" in result.output
