"""Does drawing curves.png slow training? Epoch times with and without it, in one run.

Trains the same recipe (same seed, same data) twice per round, once with `on_saved` drawing
curves.png after every epoch as `train` does and once without, alternating rounds so that
a shared machine's load falls on both alike. An epoch's time is the wall time from the end
of one epoch's files (or the start) to the end of the next, so it holds the training, the
validation, the checkpoint writes and, with curves, the drawing. Prints medians.

    python -m bench.drawing                      # default preset, synthetic set, 2 rounds of 4 epochs
    python -m bench.drawing --data ../shared/data/gislr-hello-thankyou --epochs 6 --rounds 3
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import cache
import data
import presets
import trainer
from cli import DEFAULT_DATA
from pictures import curves, plots
from synthetic.synth import ensure_default_data


def timed_run(prepared: dict, out: Path, preset, vocabulary, drawing: bool) -> list[float]:
    """Epoch wall times of one training run, drawing curves.png as `train` does or not."""
    epoch_times = []
    train_config = preset.train
    draw = curves.writer(out / "curves.png", train_config.first_candidate, train_config.epochs)
    last = time.perf_counter()

    def on_saved(history: list[dict], best: dict | None) -> None:
        nonlocal last
        if drawing:
            draw(history, best)
        now = time.perf_counter()
        epoch_times.append(now - last)
        last = now

    trainer.train_run(prepared, out, preset, vocabulary=vocabulary, on_saved=on_saved)
    curves.wait_for_drawing()
    if drawing and not (out / "curves.png").is_file():
        raise RuntimeError("curves.png was not drawn")
    return epoch_times


def drawing_time(history: list[dict], first_candidate: int, path: Path) -> float:
    """Median seconds of drawing and writing curves.png of `history` in the foreground."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        curves.write_curves(path, history, len(history), first_candidate)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--preset", default=presets.DEFAULT)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default, as train")
    args = parser.parse_args()
    plots.require()
    if args.threads:
        torch.set_num_threads(args.threads)
    ensure_default_data(args.data)
    preset = presets.PRESETS[args.preset]
    preset = replace(preset, train=replace(preset.train, epochs=args.epochs))
    dataset = cache.load(args.data, preset.data)
    train, val, test = data.split_signers(sorted(set(dataset.signers)), "16069", 1)
    prepared = dataset.split(train, val, [])
    times = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            medians = []
            for drawing in (False, True):
                out = Path(folder) / f"round{round_}-{'curves' if drawing else 'plain'}"
                epoch_times = timed_run(prepared, out, preset, dataset.vocabulary, drawing)[
                    1:
                ]  # 1st: warm-up
                times[drawing] += epoch_times
                medians.append(statistics.median(epoch_times))
            print(
                f"round {round_}: epoch median without {medians[0]:.3f}s, "
                f"with {medians[1]:.3f}s ({medians[1] / medians[0] - 1:+.1%})",
                flush=True,
            )
        history = json.loads((out / "history.json").read_text())
        first = preset.train.first_candidate
        alone = drawing_time(history, first, Path(folder) / "alone.png")
    plain, drawn = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"{args.preset} on {args.data}, {args.rounds} rounds x {args.epochs} epochs, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(f"epoch without curves.png: median {plain:.3f}s over {len(times[False])} epochs")
    print(
        f"epoch with curves.png:    median {drawn:.3f}s over {len(times[True])} epochs "
        f"({(drawn - plain) / plain:+.1%})"
    )
    print(f"drawing curves.png alone (foreground): median {alone:.3f}s")


if __name__ == "__main__":
    main()
