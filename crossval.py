"""Signer-independent cross-validation: `python islr.py cv`, registered on the app of cli.py.

Each fold trains on some signers, picks its epoch on others and tests on signers it never
saw (data.signer_folds), or one fixed test signer is run with several seeds; the command
prints mean ± std test accuracy and writes every run plus a summary (cv.json) under --out.

    python islr.py cv --data DIR --folds 3 --seeds 2 --preset hybrid
    python islr.py cv --data DIR --exclude 16069 --folds 8 --val-signers 1   # never sees 16069
"""

import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import torch
import typer

import data
import safely
import trainer
from cli import (
    DEFAULT_DATA,
    DataDir,
    Device,
    claim,
    console,
    describe_run,
    given_options,
    load_features,
    new_run_directory,
    option,
    output_directory,
    parse_signers,
    pick_device,
    refuse_options,
    refuse_templates,
    refuse_used,
    resolve_configs,
    say_interrupted,
    styled,
    tracked,
    train_flags,
    user_errors,
)
from pictures import curves, plots
from presets import Preset
from synthetic import synth

# cv and bench take any train flag after their own options.
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
# Train flags that cv cannot take, and what to give instead. (--data, --out, --test-signer
# and --device are cv's own options, wherever they stand.)
CV_REFUSES = {
    "seed": "it runs seeds 0..N-1: give --seeds N",
    "val_signer": "it picks them per fold: give --val-signers N",
    "resume": "a cross-validation starts afresh",
    "init": "each fold starts afresh",
}


def cv(
    ctx: typer.Context,
    data_dir: DataDir = DEFAULT_DATA,
    folds: Annotated[int, option("Disjoint groups of test signers.", min=2)] = 5,
    seeds: Annotated[int, option("Seeds per fold (0, 1, ...).", min=1)] = 1,
    val_signers: Annotated[
        int,
        option(
            "Validation signers per fold: they pick the epoch and never train (one signer's "
            "accuracy saturates or stalls, and then the choice is noise).",
            min=1,
        ),
    ] = 2,
    test_signer: Annotated[
        str | None, option("Instead of folds: one fixed test signer, seeds runs.")
    ] = None,
    exclude: Annotated[
        str | None,
        option(
            "Signers left out of every fold, comma-separated: compare recipes without ever "
            "seeing the signer you will report on."
        ),
    ] = None,
    out: Annotated[
        Path | None, option("Directory for the runs (default: a new folder under runs/).")
    ] = None,
    device: Device = "auto",
) -> None:
    """Signer-independent cross-validation: mean ± std test accuracy over folds and seeds.

    Any `train` flag (--preset, --model, --epochs, ...) after these options sets the recipe.
    Within each fold validation signers (--val-signers) pick the epoch; the fold's test
    signers never choose anything.
    """
    with user_errors(), ExitStack() as held:
        held.enter_context(safely.raised())
        recipe = train_flags(ctx)
        refuse_options(recipe, CV_REFUSES, "cv")
        if test_signer is not None and "folds" in given_options(ctx):
            raise ValueError(
                "give --folds or --test-signer, not both: a fixed test signer is one fold"
            )
        config = resolve_configs(recipe)
        refuse_templates(config, "cv")
        device_ = pick_device(device)
        made = out is None
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-cv-{recipe.params['preset']}"
        out = new_run_directory(name) if made else output_directory(out, "--out")
        held.enter_context(claim(out, made=made))  # until the summary is written
        refuse_used(out)
        synth.ensure_default_data(data_dir)
        dataset = load_features(data_dir, config.data)  # streamed, or mapped
        excluded = parse_signers(exclude, "--exclude")
        splits = cv_splits(sorted(set(dataset.signers)), excluded, folds, val_signers, test_signer)
        where = f" on {data_dir} ({dataset}): {len(splits)} fold(s) x {seeds} seed(s), out {out}"
        describe_run("islr cv", where, config)
        runs, parameters = [], 0
        try:
            for fold, split in enumerate(splits):
                prepared = dataset.split(*split)
                for seed in range(seeds):
                    run, parameters = cv_run(
                        prepared, fold, seed, split, config, out, dataset, data_dir, device_
                    )
                    runs.append(run)
        except KeyboardInterrupt:
            say_interrupted(
                f" after {len(runs)} of {len(splits) * seeds} runs (kept in {out}); "
                "no summary written: start again with another --out"
            )
            raise typer.Exit(130) from None
        finally:
            curves.wait_for_drawing()  # each run's curves.png, before the lock is let go
        summarise(runs, parameters, dataset, config, excluded, out)


def cv_splits(
    signers: list[str],
    excluded: list[str],
    folds: int,
    val_signers: int,
    test_signer: str | None,
) -> list[tuple[list[str], list[str], list[str]]]:
    """(train, val, test) signers of each fold: disjoint test groups, or one fixed test signer;
    `excluded` signers are in none."""
    signers = list(signers)
    for signer in excluded:
        if signer not in signers:
            raise data.DataError(f"excluded signer {signer} is not in the data")
        if signer == test_signer:
            raise ValueError(f"--test-signer {signer} is also excluded: drop one of them")
        signers.remove(signer)
    if test_signer is None:
        return data.signer_folds(signers, folds, val_signers)
    train_signers, val, test = data.split_signers(signers, test_signer, val_signers)
    return [(train_signers, val, [test])]


def cv_run(
    prepared: dict,
    fold: int,
    seed: int,
    split: tuple[list[str], list[str], list[str]],
    config: Preset,
    out: Path,
    dataset: data.Dataset,
    data_dir: Path,
    device: torch.device,
) -> tuple[dict, int]:
    """Train and test one fold with one seed, print its line; (its cv.json entry, the model's
    number of parameters)."""
    train_signers, val, test = split
    run_dir = out / f"fold{fold}-seed{seed}"
    result = trainer.train_run(
        prepared,
        run_dir,
        replace(config, train=replace(config.train, seed=seed)),
        vocabulary=dataset.vocabulary,
        device=device,
        metadata=trainer.run_metadata({"train": train_signers, "val": val, "test": test}, data_dir),
        track=tracked,
        on_saved=curves.writer(
            run_dir / "curves.png", config.train.first_candidate, config.train.epochs
        ),
    )
    test_metrics = result["test"]["model"]
    run = {
        "fold": fold,
        "seed": seed,
        "test_signers": test,
        "val_signers": val,
        "best_epoch": result["best"]["epoch"],
        **test_metrics,
    }
    console.print(
        f"fold {fold} seed {seed} (test {', '.join(test)}, val {', '.join(val)}): "
        f"epoch {result['best']['epoch']}, "
        f"test acc {test_metrics['accuracy']:.2%}, "
        f"last-epoch {result['test']['last']['accuracy']:.2%}"
    )
    return run, result["parameters"]


def summarise(
    runs: list[dict],
    parameters: int,
    dataset: data.Dataset,
    config: Preset,
    excluded: list[str],
    out: Path,
) -> None:
    """Print mean ± std test accuracy and per-class accuracy; write cv.json (and cv.png)."""
    accuracies = torch.tensor([r["accuracy"] for r in runs])
    per_class = mean_per_class([r["per_class_accuracy"] for r in runs])
    std = accuracies.std().item() if len(runs) > 1 else 0.0
    console.print(
        styled(
            f"test accuracy {accuracies.mean():.2%} ± {std:.2%}",
            "bold",
            f" over {len(runs)} runs "
            f"(min {accuracies.min():.2%}, max {accuracies.max():.2%}); {parameters:,} parameters",
        )
    )
    signs = sorted(dataset.vocabulary, key=dataset.vocabulary.get)
    shown = (
        f"{s} -" if a is None else f"{s} {a:.1%}" for s, a in zip(signs, per_class, strict=True)
    )
    console.print("per-class: " + ", ".join(shown))
    summary = {
        "runs": runs,
        "mean": accuracies.mean().item(),
        "std": std,
        "excluded": excluded,
        "signs": signs,
        "per_class_accuracy": per_class,
        "model": asdict(config.model),
        "train": asdict(config.train),
        "data": asdict(config.data),
        "augment": asdict(config.augment),
    }
    safely.write_text(out / "cv.json", json.dumps(summary, indent=1))
    if plots.available():
        plots.write_cv(out / "cv.png", runs)
        console.print(f"picture: {out / 'cv.png'}")


def mean_per_class(runs: list[list[float | None]]) -> list[float | None]:
    """Each class's accuracy averaged over the runs whose test signers have it (None: none do)."""
    table = torch.tensor([[math.nan if a is None else a for a in run] for run in runs])
    return [None if math.isnan(a) else a for a in table.nanmean(0).tolist()]
