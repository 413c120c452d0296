"""Bench: one run on a tiny dataset returns every figure as a positive finite number."""

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
