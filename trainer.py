"""A whole training run: epochs, checkpoints, resume, interruption, several processes.

`train_run` drives `loops.fit` and owns everything on disk in the run directory:

    model.safetensors    the best validation epoch (ties: lower validation loss) among
                         those past `select_after` of training (TrainConfig)
    last.safetensors     the last completed epoch
    resume.safetensors   weights, optimizer, scheduler, EMA and RNG state of that epoch
    history.json         per-epoch metrics

Every file is replaced atomically once per epoch, so killing the process at any moment
(even SIGKILL) leaves the previous files loadable, and `--resume RUN_DIR` continues from the
last completed epoch with exactly the state an uninterrupted run would have had.

Under `torchrun --nproc-per-node N islr.py train ...` each process trains on its shard of
every epoch's batches (DistributedDataParallel: gloo on CPU, nccl on CUDA); only rank 0
writes files.

`fit_templates` is the run of the `personal` preset (templates.py): no epochs, every training
clip kept as a template, model.safetensors written once.
"""

import gc
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import augment
import checkpoint
import loops
import models
import safely
import templates
from data import Batch, Prepared
from preprocessing import DataConfig
from presets import Preset

RESUME_FORMAT = "islr-resume/1"


# ---------------------------------------------------------------------------------------------
# Several processes


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (a no-op for one process); returns the device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def end_distributed() -> None:
    """Leave the process group before exit: gloo torn down by the interpreter's shutdown, with
    its threads still running, can end a finished run in std::terminate (exit -6)."""
    if dist.is_initialized():
        gc.collect()  # the DistributedDataParallel model (a reference cycle) holds the group
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (a no-op for one)."""
    if dist.is_initialized():
        dist.barrier()


def reduce_metrics(metrics: dict, device: torch.device) -> dict:
    """The training metrics of all processes: loss and accuracy averaged, weighted by samples;
    samples summed. (On the training device: nccl reduces CUDA tensors only.)"""
    if not dist.is_initialized():
        return metrics
    n = metrics["samples"]
    totals = torch.tensor([metrics["loss"] * n, metrics["accuracy"] * n, n], dtype=torch.float64)
    totals = totals.to(device)
    dist.all_reduce(totals)
    loss, correct, seen = totals.tolist()
    seconds = metrics["seconds"]
    return {
        **metrics,
        "loss": loss / seen,
        "accuracy": correct / seen,
        "samples": int(seen),
        "samples_per_second": seen / max(seconds, 1e-9),
    }


# ---------------------------------------------------------------------------------------------
# Resumable state: tensors in safetensors, the rest as JSON in its header; no pickle.


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The random state of every process (each draws its own dropout masks), gathered onto
    all of them: rank 0 writes them, and each takes its own back on resume."""
    states = {"torch": torch.get_rng_state()}  # uint8 tensors, the same size in every process
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    if not dist.is_initialized():
        return {f"rng.{name}": value for name, value in states.items()}
    gathered = {}
    for name, state in states.items():
        local = state.to(device)  # nccl gathers CUDA tensors only
        every = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(every, local)
        gathered |= {f"rng.{name}{_rank_suffix(r)}": s.cpu() for r, s in enumerate(every)}
    return gathered


def check_world(resumed: dict, out: Path) -> None:
    """A run resumes with as many processes as it had: batches, schedule and RNG follow."""
    world = loops.world_size()
    if resumed.get("world", 1) != world:
        raise ValueError(
            f"{out} was trained by {resumed.get('world', 1)} process(es): "
            f"resume it with as many, not {world}"
        )


def _rank_suffix(rank: int) -> str:
    return f".{rank}" if rank else ""  # rank 0's keys are those of a single process


def save_resume(path: Path, state: loops.TrainState, extra: dict, rng: dict) -> None:
    """Write the state an uninterrupted run would carry into the next epoch (`rng`: from
    `rng_states`)."""
    tensors = {f"model.{k}": v for k, v in loops.unwrap(state.model).state_dict().items()}
    if state.ema is not None:
        tensors |= {f"ema.{k}": v for k, v in state.ema.state_dict().items()}
    optimizer = state.optimizer.state_dict()
    for index, values in optimizer["state"].items():
        tensors |= {f"optimizer.{index}.{name}": v for name, v in values.items()}
    tensors |= rng
    tensors["rng.batches"] = state.generator.get_state()
    metadata = {
        "format": RESUME_FORMAT,
        "epoch": state.epoch,
        "optimizer_groups": optimizer["param_groups"],
        "scheduler": state.scheduler.state_dict(),
        **extra,
    }
    checkpoint.write(path, tensors, {k: json.dumps(v) for k, v in metadata.items()})


def load_resume(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a resume file, checked before anything is built from it."""
    tensors, metadata = checkpoint.read(path)
    if metadata.get("format") != RESUME_FORMAT:
        raise checkpoint.CheckpointError(f"{path} is not an islr resume state")
    return tensors, metadata


@dataclass(frozen=True)
class ResumedRun:
    """What `--resume RUN_DIR` continues: the run's own configs, split, data and vocabulary."""

    preset: Preset
    split: dict[str, list[str]]
    data_dir: Path
    vocabulary: dict[str, int]


def read_resumed_run(run_dir: Path) -> ResumedRun:
    """The run recorded in RUN_DIR/resume.safetensors, checked before any data is loaded."""
    path = run_dir / "resume.safetensors"
    if run_dir.is_file():
        raise ValueError(
            f"--resume takes the run directory: --resume {shlex.quote(str(run_dir.parent))}"
        )
    if not run_dir.exists():
        raise ValueError(f"--resume {run_dir} does not exist")
    if not path.is_file():
        raise ValueError(f"{run_dir} has no resume.safetensors: it is not a run that can resume")
    _, saved = load_resume(path)
    check_world(saved, run_dir)
    try:
        preset = Preset(
            DataConfig(**saved["data_config"]),
            models.ModelConfig(**saved["model_config"]),
            loops.TrainConfig(**saved["train_config"]),
            augment.AugmentConfig(**saved["augment_config"]),
        )
        run = ResumedRun(preset, saved["split"], Path(saved["data"]), saved["vocabulary"])
        done = len(saved["history"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} has an incomplete or foreign configuration ({error})") from None
    if done >= preset.train.epochs:
        raise ValueError(
            f"{run_dir} has finished all {done} epochs: nothing to resume "
            "(evaluate its model.safetensors)"
        )
    return run


def run_metadata(split: dict[str, list[str]], data_dir: Path) -> dict:
    """What every checkpoint of a run records besides its configs: the signers of each part,
    the data and the command line that trained it."""
    return dict(split=split, data=str(data_dir.resolve()), command=shlex.join(sys.argv))


def restore(
    state: loops.TrainState, tensors: dict[str, torch.Tensor], metadata: dict, device: torch.device
) -> None:
    """Put a saved training state back in place, RNG included (of this process, on `device`)."""

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    loops.unwrap(state.model).load_state_dict(part("model."))
    if state.ema is not None:
        state.ema.load_state_dict(part("ema."))
    per_parameter: dict[int, dict] = {}
    for name, value in part("optimizer.").items():
        index, key = name.split(".", 1)
        per_parameter.setdefault(int(index), {})[key] = value
    groups = metadata["optimizer_groups"]
    state.optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})
    state.scheduler.load_state_dict(metadata["scheduler"])

    suffix = _rank_suffix(loops.rank())
    torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    if f"rng.cuda{suffix}" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], device)
    state.generator.set_state(tensors["rng.batches"])
    state.epoch = metadata["epoch"]


# ---------------------------------------------------------------------------------------------
# The run


def improves(val: dict, best_val: dict) -> bool:
    """Whether an epoch's validation metrics beat the kept epoch's: more clips right, and on a
    tie (one validation signer has few clips) lower validation loss.

    Counts, not accuracies, are compared: an accuracy that went through float32 (35/36 as
    0.9722222089...) must tie with the same count in float64 (0.9722222222...).
    """

    def right(metrics: dict) -> int:
        return round(metrics["accuracy"] * metrics["samples"])

    return (right(val), -val["loss"]) > (right(best_val), -best_val["loss"])


def train_run(
    prepared: dict[str, Prepared],
    out: Path,
    preset: Preset,
    *,
    vocabulary: dict[str, int],
    device: torch.device | str = "cpu",
    metadata: dict | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict, bool], None] = lambda record, is_best: None,
    track: Callable[[Iterable[Batch], int, str], Iterable[Batch]] = lambda batches, n, what: (
        batches
    ),
    on_saved: Callable[[list[dict], dict | None], None] = lambda history, best: None,
    init: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Train on prepared["train"], keep the best epoch on prepared["val"], then test once.

    The test split (if any) is evaluated at the end for both checkpoints, and its metrics
    are added to them. With `resume`, training continues from `out/resume.safetensors`.
    `on_saved(history, best)` runs once each epoch's files are written (e.g. to draw them);
    `init` holds weights to start from (encoder_weights).
    Returns {"best": record, "test": {"model": metrics, "last": metrics}, "parameters": n}.
    """
    device = torch.device(device)
    state, parameters = start_state(prepared["train"], preset, len(vocabulary), device, init)
    augmenter = augment.build(preset.augment, preset.data)
    saved = checkpoint_fields(preset, vocabulary, metadata)
    history, best = [], None
    if resume:
        history, best = resume_state(state, out, device)
    writer = loops.rank() == 0

    for record in loops.fit(
        state,
        prepared["train"],
        prepared["val"],
        preset.train,
        device=device,
        augment=augmenter,
        track=track,
    ):
        val = epoch_metrics(record, device)
        history.append(
            {"epoch": record["epoch"], "train": loops.summary(record["train"]), "val": val}
        )
        is_best = record["epoch"] >= preset.train.first_candidate and (
            best is None or improves(val, best["val"])
        )
        if is_best:
            best = {"epoch": record["epoch"], "val": val}
        rng = rng_states(device)  # every process takes part
        if not writer:
            continue
        on_epoch(record, is_best)
        save_epoch(out, state, record["epoch"], val, is_best, saved, history, best, rng)
        on_saved(history, best)

    tests = evaluate_checkpoints(prepared.get("test"), out, saved, device) if writer else {}
    barrier()
    return {"best": best, "test": tests, "parameters": parameters}


def encoder_weights(path: Path, preset: Preset, num_classes: int) -> dict[str, torch.Tensor]:
    """The weights of checkpoint `path` that fit the preset's model, its head left out (a new
    one for this vocabulary): the tensors whose names and shapes match."""
    source = checkpoint.load(path)
    if source.model_config.name in models.TEMPLATE_MODELS:
        raise ValueError(f"--init {path} keeps templates, not an encoder: start a network afresh")
    with torch.device("meta"):
        target = models.build(preset.model, preset.data.num_features, num_classes).state_dict()
    shared = {
        name: tensor
        for name, tensor in source.model.state_dict().items()
        if not name.startswith("head.") and name in target and target[name].shape == tensor.shape
    }
    if not shared:
        raise ValueError(f"--init {path}: none of its weights fits this model")
    return shared


def start_state(
    train: Prepared,
    preset: Preset,
    num_classes: int,
    device: torch.device,
    init: dict[str, torch.Tensor] | None = None,
) -> tuple[loops.TrainState, int]:
    """(the seeded model with its optimizer, schedule and EMA, its parameter count); the model
    starts from the `init` weights where given (encoder_weights) and is wrapped in
    DistributedDataParallel under torchrun."""
    torch.manual_seed(preset.train.seed)
    model = models.build(preset.model, preset.data.num_features, num_classes)
    if init:
        model.load_state_dict(init, strict=False)
    model = model.to(device)
    parameters = models.num_parameters(model)
    if dist.is_initialized():
        model = nn.parallel.DistributedDataParallel(model)
    num_batches = train.num_batches(preset.train.batch_size, loops.world_size())
    return loops.start(model, preset.train, num_batches), parameters


def checkpoint_fields(preset: Preset, vocabulary: dict[str, int], metadata: dict | None) -> dict:
    """What every checkpoint of a run records: checkpoint.save takes the data and model configs
    as dataclasses (they rebuild the model) and everything else ready for JSON."""
    return dict(
        data_config=preset.data,
        model_config=preset.model,
        vocabulary=vocabulary,
        train_config=asdict(preset.train),
        augment_config=asdict(preset.augment),
        **(metadata or {}),
    )


def resume_state(
    state: loops.TrainState, out: Path, device: torch.device
) -> tuple[list[dict], dict | None]:
    """Put out/resume.safetensors back into `state`; returns the run's (history, best)."""
    tensors, resumed = load_resume(out / "resume.safetensors")
    check_world(resumed, out)
    restore(state, tensors, resumed, device)
    return resumed["history"], resumed["best"]


def epoch_metrics(record: dict, device: torch.device) -> dict:
    """The epoch's validation summary, once its training metrics (in `record`, reduced over the
    processes in place) and validation loss are known to be finite."""
    record["train"] = reduce_metrics(record["train"], device)
    val = loops.summary(record["val"])
    if not (math.isfinite(record["train"]["loss"]) and math.isfinite(val["loss"])):
        raise ValueError(
            f"training diverged in epoch {record['epoch']} (its loss is not "
            "finite); the checkpoints of the epochs before it are kept: try a "
            "lower --learning-rate or --clip-norm 1"
        )
    return val


def save_epoch(
    out: Path,
    state: loops.TrainState,
    epoch: int,
    val: dict,
    is_best: bool,
    saved: dict,
    history: list[dict],
    best: dict | None,
    rng: dict,
) -> None:
    """Write the epoch's files: model.safetensors (if best), last, resume and history.json."""
    out.mkdir(parents=True, exist_ok=True)  # now: a run stopped in its first epoch leaves none
    epoch_state = dict(epoch=epoch, metrics={"val": val})
    eval_model = loops.unwrap(state.eval_model)
    if is_best:
        checkpoint.save(out / "model.safetensors", eval_model, **saved, **epoch_state)
    checkpoint.save(out / "last.safetensors", eval_model, **saved, **epoch_state)
    save_resume(
        out / "resume.safetensors",
        state,
        {
            **saved,
            "history": history,
            "best": best,
            "data_config": asdict(saved["data_config"]),
            "model_config": asdict(saved["model_config"]),
            "world": loops.world_size(),
        },
        rng,
    )
    safely.write_text(out / "history.json", json.dumps(history, indent=1))


def evaluate_checkpoints(
    test: Prepared | None, out: Path, saved: dict, device: torch.device
) -> dict[str, dict]:
    """Evaluate model and last.safetensors on the test split (if any) and add its metrics to
    them; returns {"model": metrics, "last": metrics} (each with its epoch), or {}."""
    tests = {}
    if test is None:
        return tests
    for name in ("model", "last"):
        path = out / f"{name}.safetensors"
        loaded = checkpoint.load(path)
        batches = test.batches(loops.EVAL_BATCH)
        result = loops.evaluate(loaded.model.to(device), batches, device=device)
        metrics = {**loaded.metadata["metrics"], "test": loops.summary(result)}
        epoch = loaded.metadata["epoch"]
        checkpoint.save(path, loaded.model, **saved, epoch=epoch, metrics=metrics)
        tests[name] = {**result, "epoch": epoch}
    return tests


# ---------------------------------------------------------------------------------------------
# The personal preset: no epochs, the clips are the model


def fit_templates(
    train: Prepared,
    test: Prepared | None,
    out: Path,
    preset: Preset,
    saved: dict,
) -> dict:
    """Keep every clip of `train` as a template, score `test` (if any), write the checkpoint.

    `saved` is trainer.checkpoint_fields(...). Returns {"leave_one_out": {samples, accuracy},
    "test": metrics or None, "templates": M}; the same figures go into the checkpoint.
    """
    num_classes = len(saved["vocabulary"])
    model, leave_one_out = templates.fit(train, num_classes)
    tested = None
    if test is not None and len(test):
        tested = loops.evaluate(model, test.batches(loops.EVAL_BATCH))
    metrics = {"leave_one_out": leave_one_out}
    if tested is not None:
        metrics["test"] = loops.summary(tested)
    fields = {**saved, "model_config": replace(preset.model, examples=len(model.templates))}
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out / "model.safetensors", model, **fields, epoch=1, metrics=metrics)
    # One "epoch" in history.json, as a network's run would have it (the page reads it): its
    # validation figures are the leave-one-out ones.
    record = {"epoch": 1, "train": {"samples": len(train)}, "val": leave_one_out}
    safely.write_text(out / "history.json", json.dumps([record], indent=1))
    return {"leave_one_out": leave_one_out, "test": tested, "templates": len(model.templates)}
