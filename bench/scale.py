"""Training throughput at two data sizes, interleaved: does the cost per sample stay flat?

    python -m bench.scale SMALL_DIR LARGE_DIR [SEQUENCES] [REPEATS]

Loads both sets through cache.load (memory-mapped from the preprocessed cache, built first
if missing) with the default preset's data config, builds the default preset's model once
(head sized for the larger vocabulary), and times `loops.train_epoch` with its augmentation
over SEQUENCES (default 3,000) random training sequences of each set, alternating small,
large, small, large ... (REPEATS rounds, default 3) after one warm-up pass of each, so both
see the same machine load. Prints the samples/s of every pass and the medians; the figures
in BENCHMARKS.md also give each full epoch's samples/s from `train`'s own log.
"""

import statistics
import sys
import time

import torch

import augment
import cache
import loops
import models
import presets
from bench.speed import subset

PRESET = presets.PRESETS[presets.DEFAULT]


def main(small_dir: str, large_dir: str, count: int = 3000, repeats: int = 3) -> dict:
    torch.set_num_threads(1)
    data_config = PRESET.data
    train_config, augment_config = PRESET.train, PRESET.augment
    sets, classes = {}, 0
    for name, directory in (("small", small_dir), ("large", large_dir)):
        started = time.perf_counter()
        features = cache.load(directory, data_config)
        sets[name] = subset(features.prepared, count, torch.Generator().manual_seed(0))
        classes = max(classes, len(features.vocabulary))
        print(f"{name}: {directory} {features}, loaded in {time.perf_counter() - started:.1f}s")
    torch.manual_seed(0)
    model = models.build(PRESET.model, data_config.num_features, classes)
    augmenter = augment.build(augment_config, data_config)
    state = loops.start(model, train_config, 10**6)
    figures = {"small": [], "large": []}
    for round_ in range(repeats + 1):
        for name, prepared in sets.items():
            batches = loops.epoch_batches(
                prepared, train_config.batch_size, state.generator, augmenter
            )
            metrics = loops.train_epoch(state, batches, train_config)
            if round_:  # the first round warms up
                figures[name].append(metrics["samples_per_second"])
                print(f"round {round_} {name}: {metrics['samples_per_second']:,.0f} samples/s")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(
        f"median samples/s: small {medians['small']:,.0f}, large {medians['large']:,.0f} "
        f"(large / small {medians['large'] / medians['small']:.3f})"
    )
    return medians


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
