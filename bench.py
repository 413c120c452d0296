"""Bench: where the time goes in training and inference, measured in one run on the same data.

    (a) training samples/s of a full epoch as users run it: `loops.train_epoch` over
        `Prepared.batches(shuffle=True)`, each batch merged and augmented on the fly;
    (b) the same epoch with every batch merged and augmented in advance, so only forward,
        backward and optimizer step are timed: the model-only ceiling. (a)/(b) is the
        share of the ceiling the input pipeline leaves;
    (c) single-sequence latency, `preprocessing.preprocess` of one raw (T, 543, 3) sequence plus the
        forward pass at batch size 1, median and p95, on 1 thread and on all threads; and
        batched inference sequences/s (`loops.evaluate`);
    (d) seconds from start to the first training step: load, preprocess, build the model.

Shared machines are noisy: a warm-up epoch comes first, then (a) and (b) alternate
(a, b, a, b, ...) and each figure is the median of its repetitions.

    python islr.py bench                         # the default preset on the synthetic set
    python -c "import bench, data, models, loops; print(bench.run('datasets/synthetic-top10',
        data.DataConfig(), models.ModelConfig(), loops.TrainConfig(), max_sequences=1000))"
"""

import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import augment
import data
import loops
import models
import preprocessing
from augment import AugmentConfig
from data import DataConfig, Prepared


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

    def batches():
        """One epoch's batches exactly as `loops.fit` makes them (a generator: lazy)."""
        epoch = train.batches(train_config.batch_size, shuffle=True, generator=state.generator)
        if augmenter is None:
            return epoch
        return (augmenter(batch, state.generator) for batch in epoch)

    first = next(iter(batches()))
    loops.train_epoch(state, [first], train_config, device=device)  # the first training step
    first_step = time.perf_counter()

    loops.train_epoch(state, batches(), train_config, device=device)  # warm-up epoch
    pipeline, ceiling = [], []
    for _ in range(repeats):
        metrics = loops.train_epoch(state, batches(), train_config, device=device)
        pipeline.append(metrics["samples_per_second"])
        ready = [batch.to(device) for batch in batches()]  # merged and augmented up front
        synchronize(device)
        metrics = loops.train_epoch(state, ready, train_config, device=device)
        ceiling.append(metrics["samples_per_second"])

    result = {
        "sequences": len(train),
        "batch_size": train_config.batch_size,
        "parameters": models.num_parameters(model),
        "threads": torch.get_num_threads(),
        "load_average": load_average,
        "train_samples_per_second": statistics.median(pipeline),
        "model_samples_per_second": statistics.median(ceiling),
        "train_runs": pipeline,
        "model_runs": ceiling,
    }
    result["pipeline_ratio"] = (
        result["train_samples_per_second"] / result["model_samples_per_second"]
    )

    model.eval()
    sequences = raw_sequences(dataset, latency_calls, state.generator)
    for suffix, threads in (("1_thread", 1), ("all_threads", result["threads"])):
        median, p95 = latency(model, sequences, data_config, device, threads=threads)
        result[f"latency_median_ms_{suffix}"] = median
        result[f"latency_p95_ms_{suffix}"] = p95
    result["mean_frames"] = float(np.mean([len(s) for s in sequences]))

    evaluation = train.batches(loops.EVAL_BATCH)
    loops.evaluate(model, [next(evaluation)], device=device)  # warm-up
    metrics = loops.evaluate(model, train.batches(loops.EVAL_BATCH), device=device)
    result["inference_sequences_per_second"] = metrics["samples_per_second"]

    result |= {
        "load_seconds": loaded - started,
        "preprocess_seconds": preprocessed - loaded,
        "build_seconds": built - preprocessed,
        "seconds_to_first_step": built - started,
        "first_step_seconds": first_step - built,
    }
    return result


def subset(prepared: Prepared, count: int | None, generator: torch.Generator) -> Prepared:
    """`count` random sequences of a Prepared set, sharing its frames (no copy)."""
    if count is None or count >= len(prepared):
        return prepared
    keep = torch.randperm(len(prepared), generator=generator)[:count]
    return Prepared(prepared.frames, prepared.offsets[keep], prepared.lengths[keep],
                    prepared.labels[keep])  # fmt: skip


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
