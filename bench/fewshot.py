"""Few-shot accuracy of the `personal` preset: k clips a sign of one signer, that signer's other
clips to test.

    python -m bench.fewshot [REAL_DIR] [--draws 5] [--baseline]

Each signer alone: for every draw, k clips of each sign (k = 1, 3, 5) become the templates
(templates.fit, exactly what `train --preset personal` keeps) and every other clip of that
signer is named; the figure is the mean ± std of the accuracy over signers and draws. On the
real data (REAL_DIR, default ../shared/data/gislr-hello-thankyou: 2 signs, 18 signers) and on
synthetic sets made here (one signer, 10 and 50 signs, 10 clips a sign). Nothing is trained
before the k clips: no model has seen the signs under test. `--baseline` adds the default
recipe (`transformer`, 50 epochs, the last one kept) trained on the same k clips of every
other real signer, one draw, k = 1 and 5 (slow: about 4 minutes on one core).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import augment
import cache
import data
import loops
import models
import presets
import templates
from synthetic import synth

PERSONAL = presets.PRESETS["personal"]
REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gislr-hello-thankyou"
SHOTS = (1, 3, 5)


def load(directory: Path, config=PERSONAL.data) -> cache.Features:
    """Every clip of a GISLR folder, preprocessed (no cache entry): the same clips in the same
    order whatever the config, so the draws are the same clips for every method."""
    dataset = data.load_dataset(directory)
    prepared = data.prepare(dataset, config)
    ids = dataset.sequence_ids
    return cache.Features(dataset.vocabulary, prepared, dataset.signers, ids, cached=False)


def draws(features: cache.Features, k: int, num_draws: int):
    """(signer, train indices, test indices) for each signer and draw: k clips of each sign."""
    labels = features.prepared.labels
    for signer in sorted(set(features.signers)):
        mine = torch.from_numpy((features.signers == signer).nonzero()[0])
        for draw in range(num_draws):
            generator = torch.Generator().manual_seed(1000 * draw + k)
            chosen = []
            for sign in labels[mine].unique():
                clips = mine[labels[mine] == sign]
                chosen.append(clips[torch.randperm(len(clips), generator=generator)[:k]])
            train = torch.cat(chosen)
            test = mine[~torch.isin(mine, train)]
            yield signer, train, test


def accuracy(model: torch.nn.Module, test: data.Prepared) -> float:
    result = loops.evaluate(model, test.batches(loops.EVAL_BATCH))
    return result["accuracy"]


def templates_accuracy(features: cache.Features, train, test) -> float:
    num_classes = len(features.vocabulary)
    model, _ = templates.fit(data.subset(features.prepared, train), num_classes)
    return accuracy(model, data.subset(features.prepared, test))


def baseline_accuracy(features: cache.Features, train, test) -> float:
    """The default recipe on the k clips, as a new user would run it; the last epoch kept."""
    preset = presets.PRESETS[presets.DEFAULT]
    torch.manual_seed(0)
    part = data.subset(features.prepared, train)
    model = models.build(preset.model, preset.data.num_features, len(features.vocabulary))
    state = loops.start(model, preset.train, part.num_batches(preset.train.batch_size))
    augmenter = augment.build(preset.augment, preset.data)
    for _ in loops.fit(state, part, part, preset.train, augment=augmenter):
        pass
    return accuracy(state.eval_model, data.subset(features.prepared, test))


def measure(features, method, shots=SHOTS, num_draws=5, every=1) -> dict[int, list[float]]:
    """Accuracy of each (signer, draw) at each k; `every` takes every n-th signer's runs."""
    results = {}
    for k in shots:
        runs = list(draws(features, k, num_draws))[::every]
        results[k] = [method(features, train, test) for _, train, test in runs]
    return results


def row(name: str, results: dict[int, list[float]]) -> str:
    cells = []
    for k in SHOTS:
        values = results.get(k)
        if not values:
            cells.append("-")
            continue
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.mean(values):.1%} ± {spread:.1%} (n={len(values)})")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", nargs="?", type=Path, default=REAL)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| data | k = 1 | k = 3 | k = 5 |", "|---|---|---|---|"]
    if args.real.is_dir():
        real = load(args.real)
        started = time.perf_counter()
        lines.append(
            row(f"real, {real}: personal", measure(real, templates_accuracy, num_draws=args.draws))
        )
        print(f"real data: {time.perf_counter() - started:.0f}s", flush=True)
        if args.baseline:
            default = load(args.real, presets.PRESETS[presets.DEFAULT].data)
            baseline = measure(default, baseline_accuracy, shots=(1, 5), num_draws=1, every=2)
            lines.append(row("real, 9 signers, 1 draw: default recipe", baseline))
    else:
        print(f"no real data at {args.real}: synthetic only")
    with tempfile.TemporaryDirectory() as scratch:
        for signs in (10, 50):
            directory = Path(scratch) / f"synthetic-{signs}"
            synth.generate(
                directory, seed=1, num_signers=1, sequences_per_signer=10 * signs, num_signs=signs
            )
            features = load(directory)
            results = measure(features, templates_accuracy, num_draws=args.draws)
            lines.append(row(f"synthetic, 1 signer, {signs} signs: personal", results))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
