"""Commands around training: convert Kaggle data, make synthetic data, measure speed, export
for deployment, list or clear the preprocessed cache. Registered on the app in islr.py; run them as `python islr.py prepare ...` etc.
"""

import hashlib
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cache import cache_directory, read_manifest
from cli import (
    DEFAULT_DATA,
    DataDir,
    Device,
    Threads,
    claim,
    console,
    note,
    option,
    output_directory,
    output_file,
    pick_device,
    refuse_options,
    refuse_templates,
    resolve_configs,
    styled,
    train_flags,
    use_threads,
    user_errors,
    write_json,
)
from synthetic.synth import ensure_default_data


def synth(
    out: Annotated[
        Path, typer.Argument(help="Directory to write the synthetic dataset into.")
    ] = DEFAULT_DATA,
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    signs: Annotated[int, typer.Option(min=2, help="Signs: the ten, then made-up ones.")] = 10,
    signers: Annotated[int, typer.Option(min=1, help="Signer files.")] = 21,
    per_sign: Annotated[int, typer.Option(min=1, help="Sequences of each sign per signer.")] = 19,
    layout: Annotated[
        str, typer.Option(help="gislr (HDF5) or kaggle (train.csv + parquet, for prepare).")
    ] = "gislr",
    lengths: Annotated[
        str, typer.Option(help="Clip lengths: top10 (median 19, mean 24) or real (mean 33).")
    ] = "top10",
) -> None:
    """Write a synthetic dataset in the GISLR top-10 layout (not real sign data)."""
    from synthetic import synth as synthetic

    with user_errors():
        output_directory(out, "OUT")
        if out.exists() and any(out.iterdir()) and not synthetic.unfinished(out):
            raise ValueError(f"{out} is not empty: choose a new directory")
        start = time.perf_counter()
        size = dict(num_signers=signers, sequences_per_signer=signs * per_sign, num_signs=signs)
        default = (signs, signers, per_sign, layout, lengths) == (10, 21, 19, "gislr", "top10")
        count = synthetic.generate(
            out, seed=seed, **({} if default else size), layout=layout, lengths=lengths
        )
    console.print(
        f"{count} synthetic sequences written to {out} in {time.perf_counter() - start:.1f}s"
    )


def converted(data_dir: Path, out: Path) -> Path:
    """A GISLR-layout folder for `data_dir`: itself, or, for the raw Kaggle layout (train.csv
    and a parquet file a clip, what `extract --dataset` writes), its conversion into a cache
    folder keyed by the input's path (OUT/data where the cache is off). A re-run converts
    only the signers whose clips changed (raw/convert.py)."""
    from raw import convert

    if not (data_dir / "train.csv").is_file() or any(data_dir.glob("*.hdf5")):
        return data_dir
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    base = cache_directory()
    target = base / f"kaggle-{key}" if base is not None else out / "data"
    try:
        with console.status(f"converting the raw Kaggle layout of {data_dir} into {target}"):
            report = convert.convert(data_dir, target)
    except (convert.ConvertError, convert.KaggleError) as error:
        raise ValueError(str(error)) from None
    skipped = sum(report.skipped.values())
    if skipped:
        note(f"{skipped} clips of {data_dir} could not be read and are left out")
    console.print(f"  {data_dir}: raw Kaggle layout, converted into {target}")
    return target


def prepare(
    raw_dir: Annotated[
        Path,
        typer.Argument(help="The Kaggle asl-signs download (train.csv, train_landmark_files/)."),
    ],
    out: Annotated[Path, typer.Argument(help="Directory for the GISLR-layout HDF5 files.")],
    top: Annotated[
        int | None, typer.Option(min=1, help="Keep the N most frequent signs (ties by name).")
    ] = None,
    signs: Annotated[
        str | None, typer.Option(help="Comma-separated signs to keep, in index order.")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes converting signers in parallel.")
    ] = 1,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad file instead of skipping it.")
    ] = False,
) -> None:
    """Convert the Kaggle parquet layout into the GISLR HDF5 layout (needs pip install '.\\[kaggle]')."""
    from raw import convert

    columns = (
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} sequences/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    chosen = [s.strip() for s in signs.split(",")] if signs else None
    with (
        user_errors(convert.ConvertError, convert.KaggleError),
        ExitStack() as held,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        output_directory(out, "OUT")
        convert.refuse_raw_dir(raw_dir, out)  # before the lock file goes in
        held.enter_context(claim(out, "OUT"))  # another prepare into OUT would race this one
        task = progress.add_task("convert", total=None, rate="-")
        started = time.perf_counter()

        def advance(n: int) -> None:
            progress.advance(task, n)
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / max(time.perf_counter() - started, 1e-9):,.0f}")

        report = convert.convert(
            raw_dir,
            out,
            top=top,
            signs=chosen,
            workers=workers,
            strict=strict,
            on_file=advance,
            on_total=lambda n: progress.update(task, total=n),
        )
    if report.replaced_vocabulary:
        note(
            f"{out} was made for {', '.join(report.replaced_vocabulary)}; it now holds "
            f"{', '.join(report.vocabulary)}, converted again"
        )
    if report.num_stale_removed:
        note(
            f"removed {report.num_stale_removed} signer files of an earlier run that train.csv "
            "no longer gives rows of these signs"
        )
    if top is not None and len(report.vocabulary) < top:
        note(f"--top {top}: train.csv has only {len(report.vocabulary)} signs")
    seconds = time.perf_counter() - started
    console.print(
        f"{report.num_sequences} sequences of {report.num_signers} signers written to {out}"
        f" ({report.num_signers_reused} signers already complete, {len(report.vocabulary)} signs)"
        f" in {seconds:.0f}s, {report.num_sequences / max(seconds, 1e-9):,.0f} sequences/s"
    )
    for kind, count in report.skipped.items():
        console.print(
            styled(f"skipped {count} ({kind}):", "yellow", " " + "; ".join(report.examples[kind]))
        )


# Train flags that bench cannot take: it times epochs on all the data and writes no run.
BENCH_REFUSES = {
    "test_signer": "it trains on every sequence",
    "val_signer": "it trains on every sequence",
    "out": "it writes no run; --json saves the figures",
    "resume": "it starts afresh",
    "init": "it times the recipe from scratch",
}


def bench(
    ctx: typer.Context,
    data_dir: DataDir = DEFAULT_DATA,
    max_sequences: Annotated[
        int | None, option("Train on a random subset of this size.", min=1)
    ] = None,
    repeats: Annotated[int, option("Timed epochs of (a) and of (b), interleaved.", min=1)] = 3,
    latency_calls: Annotated[
        int, option("Single-sequence calls per latency figure.", min=10)
    ] = 100,
    json_path: Annotated[
        Path | None, option("Also write the figures to this JSON file.", None, "--json")
    ] = None,
    tutorial: Annotated[
        bool, option("Also time epochs fed the tutorial's way (DataLoader, per-sample merge).")
    ] = False,
    device: Device = "auto",
) -> None:
    """Training and inference speed in one run: epoch vs model-only, latency, start-up.

    Any `train` flag (--preset, --model, --flip, ...) after these options sets the recipe.
    """
    from bench import speed as benchmark

    with user_errors():
        output_file(json_path, "--json")
        recipe = train_flags(ctx)
        refuse_options(recipe, BENCH_REFUSES, "bench")
        config = resolve_configs(recipe)
        refuse_templates(config, "bench")
        ensure_default_data(data_dir)
        result = benchmark.run(
            data_dir,
            config.data,
            config.model,
            config.train,
            config.augment,
            device=pick_device(device),
            max_sequences=max_sequences,
            repeats=repeats,
            latency_calls=latency_calls,
            tutorial=tutorial,
        )
    table = Table(
        "figure", "value", title=f"islr bench: preset {recipe.params['preset']} on {data_dir}"
    )
    for row in speed_rows(result) + (tutorial_rows(result) if tutorial else []):
        table.add_row(*row)
    console.print(table)
    if json_path:
        write_json(json_path, result)


def speed_rows(result: dict) -> list[tuple[str, str]]:
    """The table rows of bench's figures (a) to (d) and how close (b) is to the machine."""
    r = result
    return [
        ("(a) training epoch, samples/s", f"{r['train_samples_per_second']:,.0f}"),
        (
            "(b) model only (forward + backward + step), samples/s",
            f"{r['model_samples_per_second']:,.0f}",
        ),
        ("(a)/(b)", f"{r['pipeline_ratio']:.2f}"),
        (
            "(b) MFLOP a training sample (forward + backward)",
            f"{r['flops_per_training_sample'] / 1e6:.1f}",
        ),
        (
            "(b) GFLOP/s: step / torch.mm / ratio",
            f"{r['achieved_flops_per_second'] / 1e9:.1f} / "
            f"{r['matmul_flops_per_second'] / 1e9:.1f} / {r['fraction_of_matmul']:.2f}",
        ),
        (
            "(b) ms a step / of it on one 2-frame sequence (fixed)",
            f"{r['step_seconds'] * 1e3:.1f} / {r['fixed_step_seconds'] * 1e3:.1f} "
            f"({r['fixed_share_of_step']:.0%})",
        ),
        (
            "(c) latency 1 thread, median / p95 ms",
            f"{r['latency_median_ms_1_thread']:.2f} / {r['latency_p95_ms_1_thread']:.2f}",
        ),
        (
            f"(c) latency all {r['threads']} thread(s), median / p95 ms",
            f"{r['latency_median_ms_all_threads']:.2f} / {r['latency_p95_ms_all_threads']:.2f}",
        ),
        ("(c) batched inference, sequences/s", f"{r['inference_sequences_per_second']:,.0f}"),
        (
            "(d) start to first step, s",
            f"{r['seconds_to_first_step']:.1f} (load {r['load_seconds']:.1f}, "
            f"preprocess {r['preprocess_seconds']:.1f}, build {r['build_seconds']:.1f})",
        ),
        (
            "sequences / parameters / threads",
            f"{r['sequences']:,} / {r['parameters']:,} / {r['threads']}",
        ),
        ("load average before the run", f"{r['load_average']:.2f}"),
    ]


def tutorial_rows(result: dict) -> list[tuple[str, str]]:
    """The table rows of bench --tutorial's figures (e)."""
    r = result
    return [
        ("(e) no augmentation, samples/s: islr", f"{r['islr_samples_per_second']:,.0f}"),
        (
            "(e) tutorial DataLoader, 0 workers",
            f"{r['tutorial_0_workers_samples_per_second']:,.0f}",
        ),
        (
            f"(e) tutorial DataLoader, {r['tutorial_workers']} workers",
            f"{r['tutorial_all_workers_samples_per_second']:,.0f}",
        ),
        (
            "(e) tutorial batches merged in advance",
            f"{r['tutorial_model_only_samples_per_second']:,.0f}",
        ),
        ("(e) islr / tutorial (its faster setting)", f"{r['islr_over_tutorial']:.2f}"),
        (
            "(e) frames per sequence: real, islr, tutorial",
            f"{r['real_frames_per_sequence']:.1f}, {r['islr_frames_per_sequence']:.1f}, "
            f"{r['tutorial_frames_per_sequence']:.1f}",
        ),
    ]


def export(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train.")],
    out: Annotated[
        Path, typer.Argument(help="The file to write: .onnx for ONNX, TorchScript otherwise (.pt).")
    ],
    format: Annotated[
        str | None,
        option("torchscript or onnx (needs pip install '.\\[onnx]'); default: from OUT's suffix."),
    ] = None,
    threads: Threads = 0,
) -> None:
    """A self-contained model file taking raw landmarks [T, 543, 3], checked against PyTorch."""
    from deploy import export as exporter

    with user_errors():
        use_threads(threads)
        output_file(out, "OUT", reading=ckpt)
        result = exporter.export(ckpt, out, format or exporter.format_for(out))
    console.print(
        f"{result['path']} ({result['bytes']:,} bytes, {result['format']}): "
        f"max |logit difference| {result['max_abs_difference']:.1e} against PyTorch on "
        f"{result['parity_source']}"
    )


def describe_entry(entry: Path) -> str:
    """What a cache folder without a manifest is: a converted raw layout, or unfinished."""
    return (
        "a raw Kaggle layout converted by train"
        if entry.name.startswith("kaggle-")
        else "unfinished"
    )


def cache(
    clear: Annotated[bool, typer.Option("--clear", help="Remove every entry.")] = False,
) -> None:
    """List the preprocessed cache (ISLR_CACHE_DIR, default ~/.cache/islr), or clear it."""
    with user_errors():
        directory = cache_directory()
        if directory is None:
            console.print("the preprocessed cache is off (ISLR_CACHE_DIR=none)")
            return
        entries = sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        total = 0
        for entry in entries:
            size = sum(path.stat().st_size for path in entry.iterdir())
            total += size
            manifest = read_manifest(entry) or {}
            console.print(
                f"{entry.name}  {size / 2**20:8.1f} MiB  {manifest.get('num_sequences', '?')} "
                f"sequences  {manifest.get('root', describe_entry(entry))}  "
                f"{manifest.get('config', '')}"
            )
        if clear:
            for path in directory.iterdir() if directory.is_dir() else []:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            console.print(f"cleared {directory}: {len(entries)} entries, {total / 2**20:.1f} MiB")
        else:
            console.print(f"{directory}: {len(entries)} entries, {total / 2**20:.1f} MiB")
