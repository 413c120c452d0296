"""islr: isolated sign language recognition from MediaPipe landmarks. The command line.

This file is wiring only: it reads options (their defaults come from the config
dataclasses of the default preset), calls data.py / models.py / loops.py / trainer.py /
checkpoint.py, and prints.

    python islr.py train                       # synthetic top-10 set, the default preset:
                                               # article 10's Transformer, modern recipe
    python islr.py train --data path/to/dataset_top10 --preset simple
    python islr.py evaluate runs/<name>/model.safetensors
    python islr.py cv --data DIR --folds 3     # crossval.py
    python islr.py --help
"""

import os
import signal
import sys


def _quit_quietly(signum: int, frame: object) -> None:
    # Nothing is written yet, so leave at once: an exception raised here could land inside a
    # library's import, whose try/except may swallow it and leave the library half-imported.
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)


# Ctrl-C while PyTorch loads (a second or two) ends quietly, as it does later on; the usual
# handler is back once the commands are defined (at the end of this file). Not in a process
# that imports this file to work for it (prepare's spawned workers): SIGINT is not theirs.
if __name__ == "__main__":
    signal.signal(signal.SIGINT, _quit_quietly)

import shlex
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

import bench_video
import cache
import checkpoint
import classtables
import crossval
import data
import extract
import live
import loops
import models
import plots
import predict
import presets
import report
import safely
import serve
import show
import tools
import trainer
from cli import (
    AUGMENT_PANEL,
    DATA_PANEL,
    DEFAULT_DATA,
    DEFAULT_TEST_SIGNER,
    MODEL_PANEL,
    RUNS,
    TRAIN_PANEL,
    DataDir,
    Device,
    Threads,
    app,
    chance,
    claim,
    console,
    describe_run,
    ensure_default_data,
    errors,
    flag,
    given_options,
    main,
    new_run_directory,
    note,
    option,
    output_directory,
    output_file,
    parse_signer,
    parse_signers,
    pick_device,
    refuse_used,
    resolve_configs,
    say_interrupted,
    set_threads,
    styled,
    tracked,
    use_threads,
    user_errors,
    write_json,
)

# The defaults `train --help` shows: the default preset's. (A flag not given takes the value of
# the --preset chosen, so these only inform; see cli.resolve_configs.)
DEFAULT = presets.PRESETS[presets.DEFAULT]
PRESET_DATA, PRESET_MODEL, PRESET_TRAIN, PRESET_AUGMENT = (
    DEFAULT.data,
    DEFAULT.model,
    DEFAULT.train,
    DEFAULT.augment,
)
RESUME_OPTIONS = ("resume", "threads", "device", "data_dir")  # the options --resume goes with


@app.command()
def train(
    ctx: typer.Context,
    data_dir: DataDir = DEFAULT_DATA,
    out: Annotated[
        Path | None, option("Run directory (default: a new folder under runs/).")
    ] = None,
    preset: Annotated[
        str,
        option(f"Model + recipe preset: {', '.join(presets.PRESETS)}. Flags given override it."),
    ] = presets.DEFAULT,
    test_signer: Annotated[
        str, option("Held-out test signer, or 'none'.", DATA_PANEL)
    ] = DEFAULT_TEST_SIGNER,
    val_signer: Annotated[
        str | None,
        option(
            "Validation signer(s) that pick the epoch, comma-separated (default: the first other).",
            DATA_PANEL,
        ),
    ] = None,
    landmarks: Annotated[
        str, option("fullbody (130 points), fullbody-head (+ pose 0-10) or all (543).", DATA_PANEL)
    ] = PRESET_DATA.landmarks,
    coordinates: Annotated[str, option("xy or xyz.", DATA_PANEL)] = PRESET_DATA.coordinates,
    normalize: Annotated[
        bool, option("Parts-based normalisation.", DATA_PANEL)
    ] = PRESET_DATA.normalize,
    align: Annotated[
        str, option("Normalisation origin: framewise or unique.", DATA_PANEL)
    ] = PRESET_DATA.align,
    scale: Annotated[
        str, option("Normalisation unit: framewise or unique.", DATA_PANEL)
    ] = PRESET_DATA.scale,
    mirror_left: Annotated[
        bool, option("Mirror clips signed with the left hand (all look right-handed).", DATA_PANEL)
    ] = PRESET_DATA.mirror_left,
    model: Annotated[str, option(f"{', '.join(models.MODELS)}.", MODEL_PANEL)] = PRESET_MODEL.name,
    width: Annotated[int, option("Model width D.", MODEL_PANEL, min=1)] = PRESET_MODEL.width,
    depth: Annotated[int, option("Encoder layers.", MODEL_PANEL, min=1)] = PRESET_MODEL.depth,
    heads: Annotated[int, option("Attention heads.", MODEL_PANEL, min=1)] = PRESET_MODEL.heads,
    feedforward: Annotated[
        int, option("MLP hidden width.", MODEL_PANEL, min=1)
    ] = PRESET_MODEL.feedforward,
    dropout: Annotated[float, option("Dropout.", MODEL_PANEL, min=0, max=1)] = PRESET_MODEL.dropout,
    pre_norm: Annotated[
        bool, option("Pre-LN (else Post-LN).", MODEL_PANEL)
    ] = PRESET_MODEL.pre_norm,
    attention_dropout: Annotated[
        float, option("Dropout on attention weights (slow on CPU).", MODEL_PANEL, min=0, max=1)
    ] = PRESET_MODEL.attention_dropout,
    bidirectional: Annotated[
        bool, option("RNNs read both directions.", MODEL_PANEL)
    ] = PRESET_MODEL.bidirectional,
    kernel_size: Annotated[
        int, option("Depthwise convolution kernel (conformer, hybrid).", MODEL_PANEL, min=1)
    ] = PRESET_MODEL.kernel_size,
    conv_blocks: Annotated[
        int, option("Conv blocks before each Transformer block (hybrid).", MODEL_PANEL, min=0)
    ] = PRESET_MODEL.conv_blocks,
    velocity: Annotated[
        bool, option("Append frame-to-frame differences to the input.", MODEL_PANEL)
    ] = PRESET_MODEL.velocity,
    threads: Annotated[
        int,
        option(
            "CPU threads for PyTorch (0 = its default). 1 is fastest on a busy machine.",
            TRAIN_PANEL,
            min=0,
        ),
    ] = 0,
    epochs: Annotated[int, option("Epochs.", TRAIN_PANEL, min=1)] = PRESET_TRAIN.epochs,
    batch_size: Annotated[int, option("Batch size.", TRAIN_PANEL, min=1)] = PRESET_TRAIN.batch_size,
    learning_rate: Annotated[
        float, option("Peak learning rate.", TRAIN_PANEL, min=0)
    ] = PRESET_TRAIN.learning_rate,
    label_smoothing: Annotated[
        float,
        option(
            "Label smoothing ε: targets (1-ε)·one-hot + ε/K (PyTorch's).", TRAIN_PANEL, min=0, max=1
        ),
    ] = PRESET_TRAIN.label_smoothing,
    seed: Annotated[
        int, option("Seed of weights, dropout, order, augmentation.", TRAIN_PANEL)
    ] = PRESET_TRAIN.seed,
    flip: Annotated[float, chance("Horizontal flip.")] = PRESET_AUGMENT.flip,
    affine: Annotated[
        float, chance("Rotation, shear, per-part scale/shift.")
    ] = PRESET_AUGMENT.affine,
    noise: Annotated[float, chance("Noise on present landmarks.")] = PRESET_AUGMENT.noise,
    crop: Annotated[float, chance("Temporal crop.")] = PRESET_AUGMENT.crop,
    crop_min: Annotated[
        float,
        option("Shortest span a crop keeps, a fraction of the frames: 0 < F <= 1.", AUGMENT_PANEL),
    ] = PRESET_AUGMENT.crop_min,
    resample: Annotated[float, chance("Temporal resampling (speed).")] = PRESET_AUGMENT.resample,
    drop_part: Annotated[float, chance("Drop a whole part.")] = PRESET_AUGMENT.drop_part,
    drop_joints: Annotated[float, chance("Drop random joints.")] = PRESET_AUGMENT.drop_joints,
    drop_time: Annotated[float, chance("Drop a time span.")] = PRESET_AUGMENT.drop_time,
    optimizer: Annotated[str, option("adam or adamw.", TRAIN_PANEL)] = PRESET_TRAIN.optimizer,
    weight_decay: Annotated[
        float, option("AdamW weight decay.", TRAIN_PANEL, min=0)
    ] = PRESET_TRAIN.weight_decay,
    warmup_epochs: Annotated[
        float, option("Linear warm-up epochs.", TRAIN_PANEL, min=0)
    ] = PRESET_TRAIN.warmup_epochs,
    schedule: Annotated[str, option("constant or cosine.", TRAIN_PANEL)] = PRESET_TRAIN.schedule,
    clip_norm: Annotated[
        float, option("Gradient-norm clip (0 = off).", TRAIN_PANEL, min=0)
    ] = PRESET_TRAIN.clip_norm,
    ema: Annotated[
        float, option("EMA decay of weights (0 = off).", TRAIN_PANEL, min=0, max=1)
    ] = PRESET_TRAIN.ema,
    late_dropout: Annotated[
        int, option("Dropout off until this epoch (0 = always on).", TRAIN_PANEL, min=0)
    ] = PRESET_TRAIN.late_dropout,
    select_after: Annotated[
        float, option("Pick the epoch past this fraction of training: 0 <= F < 1.", TRAIN_PANEL)
    ] = PRESET_TRAIN.select_after,
    amp: Annotated[bool, option("bfloat16 autocast on CUDA.", TRAIN_PANEL)] = PRESET_TRAIN.amp,
    device: Device = "auto",
    resume: Annotated[
        Path | None, option("Continue an interrupted run directory (its own configs).")
    ] = None,
) -> None:
    """Train a model; keep the checkpoint of the best validation epoch and of the last one.

    --preset picks a model with its recipe; the defaults shown are the default preset's.

    Any flag given on the command line overrides the preset.
    """
    with user_errors(), ExitStack() as held:
        held.enter_context(safely.raised())
        device_ = trainer.init_distributed(pick_device(device))
        held.callback(trainer.end_distributed)
        console.quiet = errors.quiet = loops.rank() != 0  # one process speaks for all
        resumed = resumed_run(ctx, resume) if resume else None
        config = resumed.preset if resumed else resolve_configs(ctx)
        if resumed and "data_dir" not in given_options(ctx):  # --data: where its data moved
            data_dir = resumed.data_dir
        out, made = (resume, False) if resume else run_directory(out, preset)
        if loops.rank() == 0:  # one process writes the run and generates the synthetic set
            held.enter_context(claim(out, made=made))  # until training ends
            if not resume:
                refuse_used(out)
            ensure_default_data(data_dir)
        trainer.barrier()
        started = time.perf_counter()
        dataset = cache.load(data_dir, config.data, track=tracked)  # streamed, or mapped
        if resumed and dataset.vocabulary != resumed.vocabulary:
            raise ValueError(f"{data_dir} has another vocabulary than the run {resume} trained on")
        split = resumed.split if resumed else choose_split(dataset, test_signer, val_signer)
        prepared = dataset.split(**split)
        describe_training(data_dir, dataset, prepared, split, config, device_, resume)
        console.print(f"  load + preprocess {time.perf_counter() - started:.1f}s; out {out}")
        if not plots.available():
            note(f"no curves.png: drawing needs matplotlib, {plots.EXTRA_HINT}")
        result = train_or_say_how_far(
            prepared, out, config, dataset.vocabulary, device_, split, data_dir, resume
        )
    print_results(result, split, out)


def resumed_run(ctx: typer.Context, resume: Path) -> trainer.ResumedRun:
    """A resumed run is the same run: its own data, split and configs, into its own folder."""
    ignored = [name for name in given_options(ctx) if name not in RESUME_OPTIONS]
    if ignored:
        flags = " ".join(flag(ctx, name) for name in ignored)
        raise ValueError(f"--resume continues {resume} with its own settings: drop {flags}")
    set_threads(ctx)
    return trainer.read_resumed_run(resume)


def run_directory(out: Path | None, preset: str) -> tuple[Path, bool]:
    """(the run directory, whether it was made here): --out, or a new dated folder in runs/."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}"
    made = out is None and loops.rank() == 0  # one process makes the default folder
    return (
        new_run_directory(name) if made else output_directory(out or RUNS / name, "--out")
    ), made


def choose_split(dataset: data.Dataset, test_signer: str, val_signer: str | None) -> dict:
    """Signers of each part: one held-out test signer, validation signers, the rest train."""
    train_signers, val, test = data.split_signers(
        sorted(set(dataset.signers)),
        parse_signer(test_signer),
        parse_signers(val_signer, "--val-signer") or 1,
    )
    return {"train": train_signers, "val": val, "test": [test] if test else []}


def describe_training(data_dir, dataset, prepared, split, config, device, resume) -> None:
    where = f" on {data_dir} ({dataset}), device {device}" + (
        f", resuming {resume}" if resume else ""
    )
    counts = prepared["train"].labels.bincount(minlength=len(dataset.vocabulary)).tolist()
    unseen = [sign for sign, index in dataset.vocabulary.items() if not counts[index]]
    if unseen:
        note(f"no training sequence of {', '.join(unseen)}: the model cannot learn them")
    lines = [
        f"signers: {len(split['train'])} train, validation {', '.join(split['val'])} "
        f"(picks the epoch from {config.train.first_candidate}-{config.train.epochs}), "
        f"test {', '.join(split['test']) or 'none'}",
        "sequences: " + ", ".join(f"{k} {len(v)}" for k, v in prepared.items()),
    ]
    describe_run("islr train", where, config, lines)


def train_or_say_how_far(
    prepared, out, config, vocabulary, device, split, data_dir, resume
) -> dict:
    """trainer.train_run with its epochs printed; on Ctrl-C, what was kept and how to go on."""
    try:
        return trainer.train_run(
            prepared,
            out,
            config,
            vocabulary=vocabulary,
            device=device,
            metadata=trainer.run_metadata(split, data_dir),
            resume=resume is not None,
            on_epoch=print_epoch,
            track=tracked,
            on_saved=plots.curves_writer(out / "curves.png", config.train.first_candidate),
        )
    except KeyboardInterrupt:
        if (out / "resume.safetensors").exists():
            say_interrupted(
                f": the last completed epoch is saved in {out}; continue with: "
                f"python islr.py train --resume {shlex.quote(str(out))}"
            )
        else:
            say_interrupted(" before the first epoch ended: nothing saved")
        raise typer.Exit(130) from None
    finally:
        plots.wait_for_drawing()  # curves.png of the last epoch, before the lock is let go


def print_results(result: dict, split: dict, out: Path) -> None:
    best = result["best"]
    console.print(
        f"{result['parameters']:,} parameters; best validation epoch {best['epoch']}: "
        f"val acc {best['val']['accuracy']:.2%}"
    )
    for name, metrics in result["test"].items():
        console.print(
            f"test signer {', '.join(split['test'])}, {name} (epoch {metrics['epoch']}): "
            f"accuracy {metrics['accuracy']:.2%}{top5_text(metrics, ', ')}"
        )
    console.print(f"checkpoint: {out / 'model.safetensors'}")


def top5_text(metrics: dict, separator: str) -> str:
    """The top-5 figure for a result line; nothing with 5 signs or fewer (always 100% there)."""
    top5 = metrics["top5_accuracy"]
    return "" if top5 is None else f"{separator}top-5 accuracy {top5:.2%}"


def print_epoch(record: dict, is_best: bool) -> None:
    t, v = record["train"], record["val"]
    line = Text(
        f"epoch {record['epoch']:3d}  train loss {t['loss']:.4f}  val loss {v['loss']:.4f}  "
        f"val acc {v['accuracy']:.2%}  {t['seconds']:.1f}s  {t['samples_per_second']:,.0f} samples/s"
    )
    if is_best:
        line.append("  best", style="green")
    console.print(line)


@app.command()
def evaluate(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train.")],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data", help="GISLR dataset directory (default: the one it was trained on)."
        ),
    ] = None,
    signer: Annotated[
        list[str] | None,
        typer.Option(
            help="Signer(s) to evaluate on, repeated or comma-separated (default: its test signer)."
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics to this JSON file.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = loops.EVAL_BATCH,
    device: Device = "auto",
    threads: Threads = 0,
    plots_dir: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Write confusion.png, top_confusions.png and per_class.png into this directory "
            "(e.g. the run directory).",
        ),
    ] = None,
    errors_dir: Annotated[
        Path | None,
        typer.Option(
            "--errors",
            help="Write one animation per misclassified clip into this directory (worst first).",
        ),
    ] = None,
) -> None:
    """Accuracy, top-5, per-class accuracy and the confusion matrix of a checkpoint."""
    with user_errors():
        use_threads(threads)
        output_file(json_path, "--json", reading=ckpt)
        show.check_picture_directories(plots_dir, errors_dir)
        loaded = checkpoint.load(ckpt)
        data_dir = data_dir or Path(loaded.metadata.get("data", DEFAULT_DATA))
        signers = [s for value in signer or [] for s in parse_signers(value, "--signer")]
        signers = signers or loaded.metadata.get("split", {}).get("test")
        if not signers:
            raise ValueError(f"{ckpt} was trained without a test signer: name one with --signer")
        ensure_default_data(data_dir)
        vocabulary = data.read_vocabulary(data_dir)
        if vocabulary != loaded.vocabulary:
            raise ValueError(
                f"{data_dir} has a different vocabulary from {ckpt}: they do not fit together"
            )
        dataset = cache.load(data_dir, loaded.data_config, signers=set(signers), track=tracked)
        prepared = dataset.prepared
        device_ = pick_device(device)
        batches = tracked(
            prepared.batches(batch_size), prepared.num_batches(batch_size), "evaluating"
        )
        result = loops.evaluate(loaded.model.to(device_), batches, device=device_)

    signs = loaded.signs
    console.print(
        styled(
            str(ckpt),
            "bold",
            f" on {data_dir}, signer(s) {', '.join(signers)}: {result['samples']} sequences",
        )
    )
    console.print(f"accuracy {result['accuracy']:.2%}{top5_text(result, '   ')}")
    classtables.print_class_tables(console, signs, result)  # short past 20 signs
    split = loaded.metadata.get("split", {})
    seen = [s for s in signers if s in split.get("train", []) + split.get("val", [])]
    if seen:
        note(
            f"signer(s) {', '.join(seen)} trained or validated this model: these figures are "
            "not held-out accuracy"
        )
    if json_path:
        report = {
            "checkpoint": str(ckpt),
            "data": str(data_dir),
            "signers": signers,
            "signs": signs,
            "seen_in_training": seen,
            **result,
        }
        write_json(json_path, report)
    with user_errors():
        show.evaluation_pictures(
            plots_dir, errors_dir, result, loaded, dataset, prepared, device_, data_dir
        )


# The commands of the other modules: cross-validation (crossval.py); predict (predict.py);
# prepare, synth, bench, export (tools.py); the preprocessed cache (cache.py); pictures
# (show.py, report.py); videos (extract.py, live.py, bench_video.py); the web page (serve.py).
app.command(context_settings=crossval.EXTRA_ARGS)(crossval.cv)
app.command()(predict.predict)
app.command()(tools.prepare)
app.command()(tools.synth)
app.command(context_settings=crossval.EXTRA_ARGS)(tools.bench)
app.command()(tools.export)
app.command()(cache.cache)
app.command()(show.show)
app.command()(report.report)
app.command()(extract.extract)
app.command()(live.live)
app.command()(serve.serve)
app.command("bench-video")(bench_video.bench_video)

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
