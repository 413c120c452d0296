"""The command line's shared pieces: the Typer app, the console, options, errors, configs.

The command modules (islr.py's train and evaluate, crossval.py, predict.py, tools.py, ...) define
their commands as functions; islr.py registers every one on `app`; `python islr.py` runs it.
"""

import fcntl
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

import augment
import cache
import checkpoint
import data
import loops
import models
import presets
import safely
from presets import Preset

DEFAULT_DATA = Path("datasets/synthetic-top10")  # made by `synth` on first use, git-ignored
DEFAULT_TEST_SIGNER = "16069"  # the series' test signer
RUNS = Path("runs")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# No markup: paths, sign names and the user's own words print as they are, brackets too
# (rich would read "a[/]b" as a closing tag). soft_wrap: a long line stays one line in logs.
console = Console(highlight=False, soft_wrap=True, markup=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # "error: ..." lines


def styled(lead: str, style: str, rest: str = "") -> Text:
    """A line whose first words stand out ("note:", "interrupted"), the rest as it is."""
    return Text.assemble((lead, style), rest)


def note(message: str) -> None:
    console.print(styled("note:", "yellow", f" {message}"))


def say_interrupted(rest: str = "") -> None:
    """The line a stopped command ends with ("interrupted", then how far it got)."""
    console.print(styled("interrupted", "yellow", rest))


def say_error(message: str) -> None:
    """The one line a user mistake gets, on standard error."""
    errors.print(styled("error:", "red", f" {message}"))


DATA_PANEL, MODEL_PANEL, TRAIN_PANEL, AUGMENT_PANEL = "Data", "Model", "Training", "Augmentation"


def main() -> int:
    """Run the command line and return its exit code.

    A command line that does not parse (an unknown flag or command, a value out of range) is
    one line, exit 2, as every other mistake is: typer's own display is a framed box of
    four lines and more. Without a command, typer's help.
    """
    try:
        code = app(standalone_mode=False, prog_name="islr.py")
    except typer.TyperException as error:  # typer's usage errors derive from it
        # Without a command the help is already printed (typer tells this case by name too).
        if type(error).__name__ != "NoArgsIsHelpError":
            context = getattr(error, "ctx", None)
            see = f" (python {context.command_path} --help)" if context is not None else ""
            say_error(f"{error.format_message()}{see}")
        return error.exit_code
    except typer.Abort:  # how typer reports an EOFError that no command caught
        say_error("a file or the input ended before it should have")
        return 1
    return code if isinstance(code, int) else 0  # a typer.Exit's code, or 0


@contextmanager
def user_errors(*more: type[Exception]) -> Iterator[None]:
    """Turn a mistake the user can fix (a path, a file, a flag) into one line and exit 1."""
    try:
        yield
    except (data.DataError, checkpoint.CheckpointError, ValueError, OSError, *more) as error:
        say_error(str(error))  # OSError: a path that cannot be written, ...
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        say_interrupted()
        raise typer.Exit(130) from None


def write_json(path: Path, value: object) -> None:
    """Write a command's --json file at its end (atomically); a disk that filled up meanwhile
    is one line, as any other mistake."""
    with user_errors():
        safely.write_text(path, json.dumps(value, indent=1))


def output_directory(path: Path, flag: str) -> Path:
    """A directory a command will write into; a file in its place is a one-line error."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file: name a directory")
    return path


def refuse_used(out: Path) -> None:
    """A run directory must not already hold a trained model or cross-validation runs."""
    if any((out / name).exists() for name in checkpoint.CHECKPOINTS):
        raise ValueError(f"{out} already holds a trained model: choose another --out")
    if (out / "cv.json").exists() or any(out.glob("fold*-seed*")):
        raise ValueError(f"{out} already holds cross-validation runs: choose another --out")


def new_run_directory(name: str) -> Path:
    """runs/NAME made for this run, or runs/NAME-2, -3, ... when it exists: two runs started
    in the same second get their own folders (mkdir is atomic)."""
    for n in itertools.count(1):
        path = RUNS / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


@contextmanager
def claim(directory: Path, flag: str = "--out", *, made: bool = False) -> Iterator[None]:
    """Hold DIRECTORY/.lock while a run writes there: a second run into it is refused instead
    of overwriting the first one's files. The lock (flock) ends with the process, so a
    killed run leaves none behind. A directory made here (or `made` for it) and left empty is
    removed."""
    made = made or not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with open(directory / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                message = f"{directory} is in use by another run: choose another {flag}"
                raise ValueError(message) from None
            yield
    finally:
        if made and [path.name for path in directory.iterdir()] == [".lock"]:
            (directory / ".lock").unlink()
            directory.rmdir()


def output_file(path: Path | None, flag: str, *, reading: Path | None = None) -> Path | None:
    """A file a command will write at the end, checked first so that no work is lost on it;
    never the file it is `reading`, nor any checkpoint.

    None (no file asked for) passes through.
    """
    if path is None:
        return None
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory: name a file")
    if reading is not None and reading.exists() and path.exists() and path.samefile(reading):
        raise ValueError(f"{flag} {path} is the checkpoint being read: name another file")
    if path.suffix == ".safetensors":
        raise ValueError(f"{flag} {path} is named like a checkpoint: name another file")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{flag} {path}: directory {path.parent} is not writable")
    return path


def pick_device(name: str) -> torch.device:
    """The device to run on: "auto" takes CUDA when present; one that cannot run is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: choose auto, cpu or cuda (cuda:N)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: no such CUDA GPU here; use auto or cpu")
    return device


def load_features(data_dir: Path, config, signers: set[str] | None = None) -> cache.Features:
    """cache.load with a progress bar, saying so when no cache entry could be written."""
    features = cache.load(data_dir, config, signers=signers, track=tracked)
    if features.cache_note:
        note(features.cache_note)
    return features


def tracked(batches: Iterable, total: int, description: str) -> Iterator:
    """Yield the batches under a transient rich progress bar (plain iteration in a log file)."""
    if not console.is_terminal:
        yield from batches
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for batch in batches:
            yield batch
            progress.advance(task)


def parse_signer(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def parse_signers(value: str | None, flag: str) -> list[str]:
    """A comma-separated list of signer ids ("2044,4718" or "2044, 4718"), each once; none
    given is an empty list, and a value naming no signer (",") an error."""
    if value is None:
        return []
    signers = list(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    if not signers:
        raise ValueError(f"{flag} {value!r} names no signer")
    return signers


def option(help: str, panel: str | None = None, *names: str, **checks) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=panel, **checks)


def chance(help: str) -> typer.models.OptionInfo:
    """A per-sequence augmentation probability; magnitudes come from augment.AugmentConfig."""
    return option(f"{help} Probability per training sequence.", AUGMENT_PANEL, min=0, max=1)


DataDir = Annotated[
    Path,
    option(
        "GISLR dataset directory (default: the synthetic set, made on first use).",
        DATA_PANEL,
        "--data",
    ),
]
Device = Annotated[str, option("auto (CUDA when present), cpu or cuda.")]
Threads = Annotated[int, option("CPU threads for PyTorch (0 = its default).", min=0)]


CONFIG_OPTIONS = {"model": "name"}  # CLI option -> config field, where the names differ


def resolve_configs(ctx: typer.Context) -> Preset:
    """The --preset chosen, with every option given on the command line applied to it."""
    preset = presets.PRESETS.get(ctx.params["preset"])
    if preset is None:
        names = ", ".join(presets.PRESETS)
        raise ValueError(f"unknown preset {ctx.params['preset']!r}: choose one of {names}")
    given = {CONFIG_OPTIONS.get(name, name): ctx.params[name] for name in given_options(ctx)}
    changed = {}
    for part in fields(preset):
        base = getattr(preset, part.name)
        names = {f.name for f in fields(base)}
        changed[part.name] = replace(base, **{k: v for k, v in given.items() if k in names})
    preset = replace(preset, **changed)
    # Refuse a bad combination now, not after loading the data; the model is built without
    # memory (on the meta device), as a checkpoint's is before loading.
    augment.build(preset.augment, preset.data)
    with torch.device("meta"):
        size = models.num_parameters(models.build(preset.model, preset.data.num_features, 2))
    if size > checkpoint.MAX_PARAMETERS:
        raise ValueError(
            f"the model would have {size:,} parameters, more than "
            f"{checkpoint.MAX_PARAMETERS:,}: a smaller --width or --feedforward"
        )
    set_threads(ctx)
    return preset


def refuse_templates(preset: Preset, command: str) -> None:
    """cv and bench time and train networks for epochs; a template model has no weights."""
    if preset.model.name in models.TEMPLATE_MODELS:
        raise ValueError(
            f"{command} trains networks for epochs; --preset personal keeps its clips as "
            "templates and has none: python -m bench.fewshot measures it"
        )


def describe_run(title: str, where: str, preset: Preset, lines: Iterable[str] = ()) -> None:
    """The head of a train or cv log: what runs where, then every config in full."""
    console.print(styled(title, "bold", where))
    for line in lines:
        console.print(f"  {line}")
    for part in fields(preset):
        console.print(f"  {part.name}: {asdict(getattr(preset, part.name))}")
    note_recipe(preset.train)


def note_recipe(train_config: loops.TrainConfig) -> None:
    """Say so when a recipe is not what its flags suggest (a short smoke run, usually)."""
    if 0 < train_config.epochs <= train_config.warmup_epochs:
        note(
            f"the warm-up ({train_config.warmup_epochs:g} epochs) lasts all "
            f"{train_config.epochs}: the learning rate never reaches its peak"
        )


def given_options(ctx: typer.Context) -> list[str]:
    """The options given on the command line, by parameter name."""
    return [name for name in ctx.params if ctx.get_parameter_source(name).name == "COMMANDLINE"]


def flag(ctx: typer.Context, name: str) -> str:
    """How an option was typed: data_dir as --data, a boolean turned off as --no-amp."""
    param = next(param for param in ctx.command.params if param.name == name)
    if param.secondary_opts and ctx.params[name] is False:
        return param.secondary_opts[0]
    return param.opts[0]


def refuse_options(ctx: typer.Context, refused: dict[str, str], command: str) -> None:
    """One line naming every option given that `command` does not take, and what instead."""
    given = [name for name in given_options(ctx) if name in refused]
    if given:
        reasons = "; ".join(f"{flag(ctx, name)} ({refused[name]})" for name in given)
        raise ValueError(f"{command} does not take {reasons}")


def set_threads(ctx: typer.Context) -> None:
    """Every command that takes the train flags honours --threads (0: PyTorch's default)."""
    use_threads(ctx.params.get("threads", 0))


def use_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def train_flags(ctx: typer.Context) -> typer.Context:
    """Parse the extra arguments of `cv` or `bench` exactly as `train` parses its flags."""
    command = typer.main.get_command(app).get_command(ctx, "train")
    try:
        return command.make_context("train", list(ctx.args), parent=ctx)
    except Exception as error:  # a usage error; shown as is, it names a command "cv train"
        if not hasattr(error, "format_message"):  # (typer keeps its click exceptions private)
            raise
        raise ValueError(
            f"{error.format_message()}; the recipe flags are those of `python islr.py train --help`"
        ) from None
