"""Bench: where the time goes in training and inference, measured in one run on the same data.

    (a) training samples/s of a full epoch as users run it: `loops.train_epoch` over
        `Prepared.batches(shuffle=True)`, each batch merged and augmented on the fly;
    (b) the same epoch with every batch merged and augmented in advance, so only forward,
        backward and optimizer step are timed: the model-only ceiling. (a)/(b) is the
        share of the ceiling the input pipeline leaves. How close (b) is to the machine: the
        FLOPs of a training sample (`torch.utils.flop_counter`), the FLOP/s (b) achieves, and
        that as a fraction of a 2048 x 2048 `torch.mm` timed after each (b) epoch; and the
        fixed cost of a step, a step on one two-frame sequence, as a share of a (b) step;
    (c) single-sequence latency, `preprocessing.preprocess` of one raw (T, 543, 3) sequence plus the
        forward pass at batch size 1, median and p95, on 1 thread and on all threads; and
        batched inference sequences/s (`loops.evaluate`);
    (d) seconds from start to the first training step: load, preprocess, build the model;
    (e) with `tutorial=True`, the same training epoch fed the tutorial's way (tutorial.py).

Shared machines are noisy: a warm-up epoch comes first, then (a) and (b) alternate
(a, b, a, b, ...) and each figure is the median of its repetitions.

    python islr.py bench                         # the default preset on the synthetic set
    python -c "import bench, preprocessing, models, loops; print(bench.run('datasets/synthetic-top10',
        preprocessing.DataConfig(), models.ModelConfig(), loops.TrainConfig(), max_sequences=1000))"
"""

import copy
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import augment
import data
import loops
import models
import preprocessing
from augment import AugmentConfig
from bench.tutorial import tutorial_comparison
from data import Batch, Prepared
from preprocessing import DataConfig


@dataclass
class Setup:
    """What every figure is measured on, and how long it took to get there."""

    dataset: data.Dataset
    train: Prepared  # the sequences trained on: all, or `max_sequences` of them
    state: loops.TrainState
    batches: Callable[[], Iterable[Batch]]  # one epoch, as `loops.fit` makes it
    seconds: dict[str, float]  # load, preprocess, build, to the first step, the first step


def run(
    data_dir: Path | str,
    data_config: DataConfig,
    model_config: models.ModelConfig,
    train_config: loops.TrainConfig,
    augment_config: AugmentConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    max_sequences: int | None = None,
    repeats: int = 3,
    latency_calls: int = 100,
    tutorial: bool = False,
) -> dict:
    """Every figure of the module docstring: a flat dict of numbers (runs: one per repetition).

    augment_config: the training augmentations (None or all zero = none). max_sequences:
    train (a), (b) and batched inference on this many sequences, drawn at random (all by
    default); (d) always loads and preprocesses the whole directory, as `train` does.

    load_average is the machine's 1-minute load before the run: above the core count, the
    figures measure the contention as much as the code.
    """
    device = torch.device(device)
    load_average = os.getloadavg()[0]  # other work on the machine skews every figure below
    setup = set_up(
        data_dir, data_config, model_config, train_config, augment_config, device, max_sequences
    )
    model = setup.state.model
    result = {
        "sequences": len(setup.train),
        "batch_size": train_config.batch_size,
        "parameters": models.num_parameters(model),
        "threads": torch.get_num_threads(),
        "load_average": load_average,
    }
    result |= training_figures(setup, train_config, device, repeats)
    result |= machine_figures(setup, train_config, device, result)
    model.eval()
    result |= inference_figures(setup, data_config, device, latency_calls)
    result |= setup.seconds
    if tutorial:
        build = partial(
            models.build, model_config, data_config.num_features, len(setup.dataset.vocabulary)
        )
        channels = len(preprocessing.COORDINATES[data_config.coordinates])
        result |= tutorial_comparison(
            setup.train, build, channels, train_config, device=device, repeats=repeats
        )
    return result


def set_up(
    data_dir: Path | str,
    data_config: DataConfig,
    model_config: models.ModelConfig,
    train_config: loops.TrainConfig,
    augment_config: AugmentConfig | None,
    device: torch.device,
    max_sequences: int | None,
) -> Setup:
    """(d): load, preprocess, build the model and its training state, take the first step."""
    started = time.perf_counter()
    dataset = data.load_dataset(data_dir)
    loaded = time.perf_counter()
    prepared = data.prepare(dataset, data_config)
    preprocessed = time.perf_counter()
    torch.manual_seed(train_config.seed)
    model = models.build(model_config, data_config.num_features, len(dataset.vocabulary))
    model = model.to(device)
    train = subset(prepared, max_sequences, torch.Generator().manual_seed(train_config.seed))
    state = loops.start(model, train_config, train.num_batches(train_config.batch_size))
    built = time.perf_counter()
    augmenter = augment.build(augment_config, data_config) if augment_config else None

    def batches() -> Iterable[Batch]:
        """One epoch's batches, made by the function `loops.fit` uses (a generator: lazy)."""
        return loops.epoch_batches(train, train_config.batch_size, state.generator, augmenter)

    first = next(iter(batches()))
    loops.train_epoch(state, [first], train_config, device=device)  # the first training step
    seconds = {
        "load_seconds": loaded - started,
        "preprocess_seconds": preprocessed - loaded,
        "build_seconds": built - preprocessed,
        "seconds_to_first_step": built - started,
        "first_step_seconds": time.perf_counter() - built,
    }
    return Setup(dataset, train, state, batches, seconds)


def training_figures(
    setup: Setup, config: loops.TrainConfig, device: torch.device, repeats: int
) -> dict:
    """(a) and (b): a warm-up epoch, then full epochs and model-only epochs alternating."""
    state = setup.state
    loops.train_epoch(state, setup.batches(), config, device=device)  # warm-up epoch
    pipeline, ceiling, matmul = [], [], []
    for _ in range(repeats):
        metrics = loops.train_epoch(state, setup.batches(), config, device=device)
        pipeline.append(metrics["samples_per_second"])
        ready = [batch.to(device) for batch in setup.batches()]  # merged and augmented up front
        synchronize(device)
        metrics = loops.train_epoch(state, ready, config, device=device)
        ceiling.append(metrics["samples_per_second"])
        matmul.append(matmul_flops_per_second(device))  # the machine's rate right after (b)
    result = {
        "train_samples_per_second": statistics.median(pipeline),
        "model_samples_per_second": statistics.median(ceiling),
        "matmul_flops_per_second": statistics.median(matmul),
        "train_runs": pipeline,
        "model_runs": ceiling,
    }
    result["pipeline_ratio"] = (
        result["train_samples_per_second"] / result["model_samples_per_second"]
    )
    return result


def machine_figures(
    setup: Setup, config: loops.TrainConfig, device: torch.device, timed: dict
) -> dict:
    """How close (b) is to the machine: FLOPs of a training sample (forward + backward, over
    one epoch's batches, padding included), the FLOP/s (b) achieves, and its fraction of a
    large `torch.mm` on the same threads and device, timed after each (b) epoch (`timed`)."""
    batches = [batch.to(device) for batch in setup.batches()]
    samples = sum(len(b.labels) for b in batches)
    flops = training_flops(setup.state.model, batches, config) / samples
    achieved = flops * timed["model_samples_per_second"]
    step = samples / len(batches) / timed["model_samples_per_second"]  # seconds of a (b) step
    fixed = fixed_step_seconds(setup.state.model, batches[0], config, device)
    return {
        "flops_per_training_sample": flops,
        "achieved_flops_per_second": achieved,
        "fraction_of_matmul": achieved / timed["matmul_flops_per_second"],
        "step_seconds": step,
        "fixed_step_seconds": fixed,
        "fixed_share_of_step": fixed / step,
    }


def fixed_step_seconds(
    model: torch.nn.Module, like: Batch, config: loops.TrainConfig, device: torch.device
) -> float:
    """Seconds of a training step on one sequence of two frames, the median of 5 rounds of 20:
    the part of every step that does not grow with the batch (starting each operation of
    forward, backward and update, clipping, the EMA). Measured on a copy of the model with a
    fresh optimizer, so the run's own state is left as it was."""
    tiny = Batch(
        like.features[:1, :2].contiguous(),
        torch.ones(1, 2, dtype=torch.bool, device=device),
        torch.full((1,), 2, device=like.lengths.device),
        like.labels[:1],
        like.indices[:1],
    )
    state = loops.start(copy.deepcopy(model), config, steps_per_epoch=20)
    loops.train_epoch(state, [tiny] * 20, config, device=device)  # warm-up
    rounds = [loops.train_epoch(state, [tiny] * 20, config, device=device) for _ in range(5)]
    return statistics.median(r["seconds"] / 20 for r in rounds)


aten = torch.ops.aten
# PyTorch's counter leaves out the CPU's fused attention: count it as the GPU's kernels are.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: (
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)
    ),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda grad, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(
            grad, q, k, v
        )
    ),
}


def training_flops(model: torch.nn.Module, batches: list[Batch], config: loops.TrainConfig) -> int:
    """FLOPs of the forward and backward passes of a training step over `batches` (no update)."""
    model.train()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        for batch in batches:
            logits = model(batch.features, batch.valid)  # (N, K)
            loss = torch.nn.functional.cross_entropy(
                logits.float(), batch.labels, label_smoothing=config.label_smoothing
            )
            loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_flops_per_second(device: torch.device, size: int = 2048, calls: int = 3) -> float:
    """FLOP/s of a float32 (size x size) @ (size x size) `torch.mm`, the median of `calls`."""
    a, b = torch.randn(2, size, size, device=device).unbind()
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def inference_figures(
    setup: Setup, data_config: DataConfig, device: torch.device, latency_calls: int
) -> dict:
    """(c): single-sequence latency on 1 thread and on all, and batched sequences/s."""
    model, result = setup.state.model, {}
    sequences = raw_sequences(setup.dataset, latency_calls, setup.state.generator)
    for suffix, threads in (("1_thread", 1), ("all_threads", torch.get_num_threads())):
        median, p95 = latency(model, sequences, data_config, device, threads=threads)
        result[f"latency_median_ms_{suffix}"] = median
        result[f"latency_p95_ms_{suffix}"] = p95
    result["mean_frames"] = float(np.mean([len(s) for s in sequences]))
    evaluation = setup.train.batches(loops.EVAL_BATCH)
    loops.evaluate(model, [next(evaluation)], device=device)  # warm-up
    metrics = loops.evaluate(model, setup.train.batches(loops.EVAL_BATCH), device=device)
    result["inference_sequences_per_second"] = metrics["samples_per_second"]
    return result


def subset(prepared: Prepared, count: int | None, generator: torch.Generator) -> Prepared:
    """`count` random sequences of a Prepared set, sharing its frames (no copy)."""
    if count is None or count >= len(prepared):
        return prepared
    keep = torch.randperm(len(prepared), generator=generator)[:count]
    return Prepared(
        prepared.frames, prepared.offsets[keep], prepared.lengths[keep], prepared.labels[keep]
    )


def raw_sequences(
    dataset: data.Dataset, count: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """`count` raw (T, 543, 3) sequences drawn from the dataset, as a deployment receives them."""
    picks = torch.randint(len(dataset), (count,), generator=generator).tolist()
    return [torch.from_numpy(dataset.features[i].transpose(1, 2, 0).copy()) for i in picks]


@torch.inference_mode()
def latency(
    model: torch.nn.Module,
    sequences: list[torch.Tensor],
    data_config: DataConfig,
    device: torch.device,
    *,
    threads: int,
) -> tuple[float, float]:
    """(median, p95) milliseconds of preprocess + forward for one sequence at a time."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for i, landmarks in enumerate(sequences[:5] + sequences):  # the first 5: warm-up
            start = time.perf_counter()
            lengths = torch.tensor([len(landmarks)])
            x = preprocessing.preprocess(landmarks, lengths, data_config).to(device)  # (T, J*C)
            valid = torch.ones(1, len(x), dtype=torch.bool, device=device)  # (1, T)
            model(x[None], valid).softmax(-1).cpu()  # (1, K) on the host, as a caller needs it
            synchronize(device)
            if i >= 5:
                times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times), float(np.percentile(times, 95))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
