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
import time


def busy_cores(seconds: float = 0.1) -> float:
    """How many cores other processes keep busy now, from two reads of /proc/stat (Linux); 0
    where it cannot be read."""

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + waiting for I/O

    try:
        total, idle = ticks()
        time.sleep(seconds)
        total_after, idle_after = ticks()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (1 - (idle_after - idle) / max(total_after - total, 1)) * (os.cpu_count() or 1)


def wait_policy(command: str) -> str | None:
    """OpenMP's wait policy for this run: PASSIVE (threads without work sleep) where the cores
    are shared, None (the runtime's own: spin a while, then sleep) where they are free.

    Threads that spin for work take the cores other processes need: two trainings that spin
    side by side each keep 0.2 of one alone, two that wait passively 0.65. Alone, passive
    waiting costs a training about a third of its speed. So: passive for `serve` (it trains
    beside itself) and wherever other processes keep half a core busy when islr starts (a
    training started beside a spinning one keeps 0.5 of one alone, and the spinning one 0.6-1);
    spinning otherwise (BENCHMARKS.md, "Threads that share").
    """
    return "PASSIVE" if command == "serve" or busy_cores() >= 0.5 else None


def set_wait_policy(environ: dict, argv: list[str]) -> None:
    """OMP_WAIT_POLICY for the command in `argv`, unless `environ` has the user's own."""
    policy = None if "OMP_WAIT_POLICY" in environ else wait_policy(argv[1] if argv[1:] else "")
    if policy:
        environ["OMP_WAIT_POLICY"] = policy


# The OpenMP runtime reads its policy once, when PyTorch loads: set before any import below.
if __name__ == "__main__":
    set_wait_policy(os.environ, sys.argv)


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

import dataclasses
import shlex
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

import cache
import checkpoint
import crossval
import data
import loops
import models
import options
import presets
import safely
import tools
import trainer
from bench import video_path
from cli import (
    CONFIG_OPTIONS,
    DEFAULT_DATA,
    DEFAULT_TEST_SIGNER,
    RUNS,
    DataDir,
    Device,
    Threads,
    app,
    claim,
    console,
    describe_run,
    errors,
    flag,
    given_options,
    load_features,
    main,
    new_run_directory,
    note,
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
from pictures import classtables, curves, evaluation, plots, report, show
from synthetic import synth
from video import extract, live, predict, record
from web import serve

# The defaults `train --help` shows: the default preset's. (A flag not given takes the value of
# the --preset chosen, so these only inform; see cli.resolve_configs.)
DEFAULT = presets.PRESETS[presets.DEFAULT]
RESUME_OPTIONS = ("resume", "threads", "device", "data_dir")  # the options --resume goes with


@app.command()
def train(
    ctx: typer.Context,
    data_dir: DataDir = DEFAULT_DATA,
    out: options.Out = None,
    preset: options.Preset = presets.DEFAULT,
    test_signer: options.TestSigner = DEFAULT_TEST_SIGNER,
    val_signer: options.ValSigner = None,
    landmarks: options.Landmarks = DEFAULT.data.landmarks,
    coordinates: options.Coordinates = DEFAULT.data.coordinates,
    normalize: options.Normalize = DEFAULT.data.normalize,
    align: options.Align = DEFAULT.data.align,
    scale: options.Scale = DEFAULT.data.scale,
    mirror_left: options.MirrorLeft = DEFAULT.data.mirror_left,
    model: options.Model = DEFAULT.model.name,
    width: options.Width = DEFAULT.model.width,
    depth: options.Depth = DEFAULT.model.depth,
    heads: options.Heads = DEFAULT.model.heads,
    feedforward: options.Feedforward = DEFAULT.model.feedforward,
    dropout: options.Dropout = DEFAULT.model.dropout,
    pre_norm: options.PreNorm = DEFAULT.model.pre_norm,
    attention_dropout: options.AttentionDropout = DEFAULT.model.attention_dropout,
    bidirectional: options.Bidirectional = DEFAULT.model.bidirectional,
    kernel_size: options.KernelSize = DEFAULT.model.kernel_size,
    conv_blocks: options.ConvBlocks = DEFAULT.model.conv_blocks,
    velocity: options.Velocity = DEFAULT.model.velocity,
    threads: options.Threads = 0,
    epochs: options.Epochs = DEFAULT.train.epochs,
    batch_size: options.BatchSize = DEFAULT.train.batch_size,
    learning_rate: options.LearningRate = DEFAULT.train.learning_rate,
    label_smoothing: options.LabelSmoothing = DEFAULT.train.label_smoothing,
    seed: options.Seed = DEFAULT.train.seed,
    flip: options.Flip = DEFAULT.augment.flip,
    affine: options.Affine = DEFAULT.augment.affine,
    noise: options.Noise = DEFAULT.augment.noise,
    crop: options.Crop = DEFAULT.augment.crop,
    crop_min: options.CropMin = DEFAULT.augment.crop_min,
    resample: options.Resample = DEFAULT.augment.resample,
    drop_part: options.DropPart = DEFAULT.augment.drop_part,
    drop_joints: options.DropJoints = DEFAULT.augment.drop_joints,
    drop_time: options.DropTime = DEFAULT.augment.drop_time,
    optimizer: options.Optimizer = DEFAULT.train.optimizer,
    weight_decay: options.WeightDecay = DEFAULT.train.weight_decay,
    warmup_epochs: options.WarmupEpochs = DEFAULT.train.warmup_epochs,
    schedule: options.Schedule = DEFAULT.train.schedule,
    clip_norm: options.ClipNorm = DEFAULT.train.clip_norm,
    ema: options.Ema = DEFAULT.train.ema,
    late_dropout: options.LateDropout = DEFAULT.train.late_dropout,
    select_after: options.SelectAfter = DEFAULT.train.select_after,
    amp: options.Amp = DEFAULT.train.amp,
    device: Device = "auto",
    resume: options.Resume = None,
    init: options.Init = None,
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
        config = started_from(ctx, config, init) if init else config
        if resumed and "data_dir" not in given_options(ctx):  # --data: where its data moved
            data_dir = resumed.data_dir
        out = open_run(held, out, preset, resume, data_dir)
        started = time.perf_counter()
        data_dir = tools.converted(data_dir, out)  # the raw Kaggle layout, through the cache
        dataset = load_features(data_dir, config.data)  # streamed, or mapped
        if resumed and dataset.vocabulary != resumed.vocabulary:
            raise ValueError(f"{data_dir} has another vocabulary than the run {resume} trained on")
        check_signs(dataset)
        if config.model.name in models.TEMPLATE_MODELS:
            signers = set(dataset.signers)  # the default test signer where it is one of several
            given = "test_signer" in given_options(ctx) or (
                len(signers) > 1 and test_signer in signers
            )
            return train_templates(
                dataset, config, out, data_dir, test_signer if given else None, started
            )
        prepared, split = choose_parts(dataset, resumed, test_signer, val_signer)
        describe_training(data_dir, dataset, prepared, split, config, device_, resume)
        weights = trainer.encoder_weights(init, config, len(dataset.vocabulary)) if init else None
        if weights:
            console.print(f"  --init {init}: {len(weights)} weight tensors, a new head")
        console.print(f"  load + preprocess {time.perf_counter() - started:.1f}s; out {out}")
        if not plots.available():
            note(f"no curves.png: drawing needs matplotlib, {plots.EXTRA_HINT}")
        result = train_or_say_how_far(
            prepared, out, config, dataset.vocabulary, device_, split, data_dir, resume, weights
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


def open_run(
    held: ExitStack, out: Path | None, preset: str, resume: Path | None, data_dir: Path
) -> Path:
    """The run directory, claimed by rank 0 until `held` closes (the synthetic set generated
    there if it is the default data); every process waits for it."""
    out, made = (resume, False) if resume else run_directory(out, preset)
    if loops.rank() == 0:  # one process writes the run and generates the synthetic set
        held.enter_context(claim(out, made=made))  # until training ends
        if not resume:
            refuse_used(out)
        synth.ensure_default_data(data_dir)
    trainer.barrier()
    return out


def run_directory(out: Path | None, preset: str) -> tuple[Path, bool]:
    """(the run directory, whether it was made here): --out, or a new dated folder in runs/."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}"
    made = out is None and loops.rank() == 0  # one process makes the default folder
    return (
        new_run_directory(name) if made else output_directory(out or RUNS / name, "--out")
    ), made


def started_from(ctx: typer.Context, config: presets.Preset, init: Path) -> presets.Preset:
    """--init: the checkpoint's data and model configs (its encoder reads that input, in that
    shape) with the preset's training recipe; a data or model flag beside it is refused."""
    if config.model.name in models.TEMPLATE_MODELS:
        raise ValueError("--init starts a network from an encoder; --preset personal has none")
    loaded = checkpoint.load(init)
    names = {f.name for part in (config.data, config.model) for f in dataclasses.fields(part)}
    clashing = [n for n in given_options(ctx) if CONFIG_OPTIONS.get(n, n) in names]
    if clashing:
        raise ValueError(
            f"--init {init} sets the model and its input: drop {flag(ctx, clashing[0])}"
        )
    return dataclasses.replace(config, data=loaded.data_config, model=loaded.model_config)


def check_signs(dataset: cache.Features) -> None:
    """Every sign of the vocabulary has a clip: a classifier cannot learn an empty sign."""
    counts = dataset.prepared.labels.bincount(minlength=len(dataset.vocabulary)).tolist()
    empty = [sign for sign, index in dataset.vocabulary.items() if not counts[index]]
    if len(dataset.vocabulary) - len(empty) < 2:
        raise ValueError(f"{len(counts) - len(empty)} sign has clips: a classifier needs two")
    if empty:
        note(f"no clip of {', '.join(empty)}: the model cannot learn them")


def choose_parts(dataset: cache.Features, resumed, test_signer: str, val_signer: str | None):
    """(prepared parts, split): by signer, or held-out clips where there is one signer."""
    signers = sorted(set(dataset.signers))
    if len(signers) > 1:
        split = resumed.split if resumed else choose_split(dataset, test_signer, val_signer)
        return dataset.split(**split), split
    indices = data.split_clips(dataset.prepared.labels)  # the same on --resume: seeded
    if not len(indices["val"]):
        raise ValueError(
            "one signer with fewer than 3 clips of each sign: no clip is left to validate "
            "on; record more, or use --preset personal"
        )
    prepared = {k: data.subset(dataset.prepared, v) for k, v in indices.items() if len(v)}
    note(
        f"one signer ({signers[0]}): held-out clips of the same signer validate and test; "
        "the accuracy is on held-out clips of the same signer, not signer-independent"
    )
    return prepared, {"train": signers, "val": signers, "test": [], "held_out": "clips"}


def train_templates(dataset, config, out: Path, data_dir: Path, test_signer, started) -> None:
    """The personal preset: every clip a template; leave-one-out and test figures printed."""
    signers = sorted(set(dataset.signers))
    test = [parse_signer(test_signer)] if parse_signer(test_signer) else []
    if test and (test[0] not in signers or len(signers) < 2):
        raise ValueError(f"test signer {test[0]} is not one of several in {data_dir}")
    split = {"train": [s for s in signers if s not in test], "val": [], "test": test}
    describe_run(
        "islr train",
        f" on {data_dir} ({dataset})",
        config,
        [
            f"templates: every clip of signer(s) {', '.join(split['train'])}; "
            f"test {', '.join(test) or 'none'}"
        ],
    )
    saved = trainer.checkpoint_fields(
        config, dataset.vocabulary, trainer.run_metadata(split, data_dir)
    )
    parts = dataset.split(**split)
    result = trainer.fit_templates(parts["train"], parts.get("test"), out, config, saved)
    seconds = time.perf_counter() - started
    loo = result["leave_one_out"]
    console.print(f"{result['templates']} templates kept in {seconds:.1f}s")
    if loo["samples"]:
        console.print(
            f"leave-one-out accuracy on held-out clips of the same signer(s) "
            f"({loo['samples']} clips, each named by all the others; not signer-independent): "
            f"{loo['accuracy']:.2%}"
        )
    else:
        note("one clip of each sign: no clip is left to test on (the model is written)")
    if result["test"]:
        console.print(
            f"test signer {test[0]} (not seen): accuracy {result['test']['accuracy']:.2%}"
        )
    console.print(f"checkpoint: {out / 'model.safetensors'}")


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
    signers = (
        f"one signer, {split['train'][0]}: held-out clips of it validate and test"
        if split.get("held_out")
        else f"signers: {len(split['train'])} train, validation {', '.join(split['val'])} "
        f"(picks the epoch from {config.train.first_candidate}-{config.train.epochs}), "
        f"test {', '.join(split['test']) or 'none'}"
    )
    lines = [
        signers,
        "sequences: " + ", ".join(f"{k} {len(v)}" for k, v in prepared.items()),
    ]
    describe_run("islr train", where, config, lines)


def train_or_say_how_far(
    prepared, out, config, vocabulary, device, split, data_dir, resume, init=None
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
            on_saved=curves.writer(
                out / "curves.png", config.train.first_candidate, config.train.epochs
            ),
            init=init,
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
        curves.wait_for_drawing()  # curves.png of the last epoch, before the lock is let go


def print_results(result: dict, split: dict, out: Path) -> None:
    best = result["best"]
    console.print(
        f"{result['parameters']:,} parameters; best validation epoch {best['epoch']}: "
        f"val acc {best['val']['accuracy']:.2%}"
    )
    tested = (
        f"held-out clips of the same signer {split['train'][0]} (not signer-independent)"
        if split.get("held_out")
        else f"test signer {', '.join(split['test'])}"
    )
    for name, metrics in result["test"].items():
        console.print(
            f"{tested}, {name} (epoch {metrics['epoch']}): "
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
        evaluation.check_picture_directories(plots_dir, errors_dir)
        loaded = checkpoint.load(ckpt)
        data_dir = data_dir or Path(loaded.metadata.get("data", DEFAULT_DATA))
        data_dir = tools.converted(data_dir, ckpt.parent)  # the raw Kaggle layout too
        signers = [s for value in signer or [] for s in parse_signers(value, "--signer")]
        signers = signers or loaded.metadata.get("split", {}).get("test")
        if not signers:
            raise ValueError(f"{ckpt} was trained without a test signer: name one with --signer")
        synth.ensure_default_data(data_dir)
        device_ = pick_device(device)
        result, dataset, prepared = report.evaluate_run(
            loaded, data_dir, signers, device_, batch_size
        )

    seen = print_evaluation(ckpt, loaded, data_dir, signers, result)
    if json_path:
        metrics = {
            "checkpoint": str(ckpt),
            "data": str(data_dir),
            "signers": signers,
            "signs": loaded.signs,
            "seen_in_training": seen,
            **result,
        }
        write_json(json_path, metrics)
    with user_errors():
        evaluation.evaluation_pictures(
            plots_dir, errors_dir, result, loaded, dataset, prepared, device_, data_dir
        )


def print_evaluation(
    ckpt: Path, loaded: checkpoint.Checkpoint, data_dir: Path, signers: list[str], result: dict
) -> list[str]:
    """Print evaluate's figures and class tables; returns the signers among them that trained
    or validated the model (noted: their figures are not held-out accuracy)."""
    console.print(
        styled(
            str(ckpt),
            "bold",
            f" on {data_dir}, signer(s) {', '.join(signers)}: {result['samples']} sequences",
        )
    )
    console.print(f"accuracy {result['accuracy']:.2%}{top5_text(result, '   ')}")
    classtables.print_class_tables(console, loaded.signs, result)  # short past 20 signs
    split = loaded.metadata.get("split", {})
    seen = [s for s in signers if s in split.get("train", []) + split.get("val", [])]
    if seen:
        note(
            f"signer(s) {', '.join(seen)} trained or validated this model: these figures are "
            "not held-out accuracy"
        )
    return seen


# The commands of the other modules: cross-validation (crossval.py); predict (predict.py);
# prepare, synth, bench, export, cache (tools.py); pictures
# (show.py, report.py); videos (extract.py, live.py, record.py, video_path.py); the web page
# (serve.py).
app.command(context_settings=crossval.EXTRA_ARGS)(crossval.cv)
app.command()(predict.predict)
app.command()(tools.prepare)
app.command()(tools.synth)
app.command(context_settings=crossval.EXTRA_ARGS)(tools.bench)
app.command()(tools.export)
app.command()(tools.cache)
app.command()(show.show)
app.command()(report.report)
app.command()(extract.extract)
app.command()(live.live)
app.command()(record.record)
app.command()(serve.serve)
app.command("bench-video")(video_path.bench_video)

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
