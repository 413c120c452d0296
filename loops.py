"""Loops: one training epoch and one evaluation pass, as plain functions over batches.

They take any iterable of `data.Batch`, never print, and return a dict of metrics, so
`islr.py` can wrap the iterable in a progress bar and print what comes back.

    state = start(model, TrainConfig(), steps_per_epoch=prepared.num_batches(32))
    metrics = train_epoch(state, prepared.batches(32, shuffle=True), TrainConfig())
    metrics = evaluate(state.eval_model, prepared.batches(EVAL_BATCH))
"""

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

import models
from data import Batch, Prepared


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50  # article 10's budget; the epoch kept is chosen on the validation signer
    batch_size: int = 32  # article 10
    learning_rate: float = 3e-4  # peak learning rate; article 10: Adam at 3e-4
    # Article 10's setting, through its code's nn.CrossEntropyLoss(label_smoothing=0.1): the
    # targets are (1-ε)·one-hot + ε/K, so the true class gets 1-ε+ε/K and every other ε/K.
    # REFERENCE.md's wording (the true class 1-ε, the others ε/(K-1)) is what passing
    # ε·K/(K-1) here gives. 0 = plain cross-entropy.
    label_smoothing: float = 0.1
    seed: int = 0  # seeds weights, dropout, batch order and augmentation: same seed, same metrics
    optimizer: str = "adam"  # "adam" (article 10) or "adamw" (decoupled weight decay)
    weight_decay: float = 0.0  # AdamW's decoupled decay; ignored by plain Adam
    warmup_epochs: float = 0.0  # linear per step, from peak/steps up to peak; Post-LN, big models
    schedule: str = "constant"  # "constant" (article 10) or "cosine" decay to 0 after warm-up
    clip_norm: float = 0.0  # clip the gradient norm to this (0 = off); guards against spikes
    ema: float = 0.0  # decay of an exponential moving average of weights (0 = off), e.g. 0.999
    late_dropout: int = 0  # every dropout stays off until this epoch (Kaggle 1st place); 0 = on
    # The kept epoch is chosen on validation among the epochs past this fraction of training
    # (0 = all): a small validation set otherwise picks early high-rate epochs by luck.
    select_after: float = 0.0
    amp: bool = True  # bfloat16 autocast on CUDA; the CPU always runs float32

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: choose adam or adamw")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}: choose constant or cosine")
        if not 0 <= self.select_after < 1:
            raise ValueError(
                f"select_after={self.select_after} must be in [0, 1): the last "
                "epoch must be a candidate"
            )
        numbers = (
            "learning_rate",
            "label_smoothing",
            "weight_decay",
            "warmup_epochs",
            "clip_norm",
            "ema",
        )
        for name in numbers:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)} must be a finite number")
        if not -(2**63) <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed} does not fit in 64 bits")

    @property
    def first_candidate(self) -> int:
        """The first epoch (1-based) that may be kept as the best validation epoch."""
        # Rounded first: 0.29 * 100 is 28.999999999999996 in floating point; and never past
        # the last epoch (0.99999999999 * 2 rounds to 2).
        return min(math.floor(round(self.select_after * self.epochs, 9)) + 1, self.epochs)


EVAL_BATCH = 128  # evaluation has no gradients to store, so larger batches are cheap


@dataclass
class TrainState:
    """Everything that changes during training; resuming a run restores exactly this."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: torch.optim.swa_utils.AveragedModel | None  # evaluated and saved instead of `model`
    generator: torch.Generator  # batch order and augmentation
    epoch: int = 0  # epochs completed

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def learning_rate_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at an optimizer step: warm-up, then the schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def start(model: nn.Module, config: TrainConfig, steps_per_epoch: int) -> TrainState:
    """A fresh training state for `model` (already on its device)."""
    decay = config.weight_decay if config.optimizer == "adamw" else 0.0
    make = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # One fused kernel per parameter: on the CPU, PyTorch's default runs ~10 small ops and 5
    # tensor copies per parameter and step (the same arithmetic, to rounding).
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    optimizer = make(
        model.parameters(), lr=config.learning_rate, weight_decay=decay, fused=fused or None
    )
    factor = partial(
        learning_rate_factor,
        warmup=round(config.warmup_epochs * steps_per_epoch),
        total=config.epochs * steps_per_epoch,
        schedule=config.schedule,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    ema = None
    if config.ema > 0:
        average = ema_with_warmup(config.ema)
        ema = torch.optim.swa_utils.AveragedModel(
            unwrap(model), multi_avg_fn=average, use_buffers=True
        )
    return TrainState(model, optimizer, scheduler, ema, torch.Generator().manual_seed(config.seed))


def ema_with_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """The EMA update for AveragedModel, with a decay that ramps up as (1 + n) / (10 + n).

    n counts the updates so far (TensorFlow's ExponentialMovingAverage with num_updates). A
    fixed 0.999 over a short run (900 steps: 50 epochs of the real two-sign data) would leave
    40% of the average on the first steps' weights; with the ramp the average follows the
    model early on and settles as training goes on. The ramp passes 0.99 after 890 updates
    and 0.999 after 8,990, so on short runs it, not `decay`, sets the average: on the real
    two-sign data any decay from 0.99 up gives the same run.
    """

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        n = num_averaged.float()
        weight = 1 - torch.clamp((1 + n) / (10 + n), max=decay)  # of the current weights
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight.to(average.dtype))
            else:  # integer buffers (counters): keep the model's
                average.copy_(value)

    return update


# Modules whose dropout follows their train/eval flag; late dropout keeps them in eval mode.
DROPOUT_MODULES = (nn.Dropout, models.SelfAttention)


@contextmanager
def dropout_off(model: nn.Module) -> Iterator[None]:
    """Every dropout of a model in training mode off, for late dropout.

    RNNs stay in training mode with their dropout at 0: cuDNN cannot backpropagate an RNN
    in eval mode.
    """
    rnns, others = {}, []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            rnns[module], module.dropout = module.dropout, 0.0
        elif isinstance(module, DROPOUT_MODULES) and module.training:
            others.append(module.eval())
    try:
        yield
    finally:
        for module, rate in rnns.items():
            module.dropout = rate
        for module in others:
            module.train()


def train_epoch(
    state: TrainState,
    batches: Iterable[Batch],
    config: TrainConfig,
    *,
    dropout: bool = True,
    device: torch.device | str = "cpu",
) -> dict:
    """One pass of updates; returns mean loss, accuracy, samples, samples/s and the first
    step's learning rate."""
    model = state.model
    model.train()
    device = torch.device(device)
    autocast = torch.autocast(
        device.type, torch.bfloat16, enabled=config.amp and device.type == "cuda"
    )
    total_loss, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    learning_rate = state.scheduler.get_last_lr()[0]  # the rate of this epoch's first step
    start_time = time.perf_counter()
    for batch in batches:
        batch = batch.to(device)
        with autocast, nullcontext() if dropout else dropout_off(model):
            logits = model(batch.features, batch.valid)  # (N, K)
            loss = F.cross_entropy(
                logits.float(), batch.labels, label_smoothing=config.label_smoothing
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        state.optimizer.step()
        state.scheduler.step()
        if state.ema is not None:
            state.ema.update_parameters(model)
        n = len(batch.labels)
        # Accumulate on the device: a .item() per step would wait for the GPU every batch.
        total_loss += loss.detach() * n
        correct += (logits.argmax(-1) == batch.labels).sum()
        seen += n
    loss_sum, right = total_loss.item(), correct.item()  # on a GPU: waits for the last step
    seconds = time.perf_counter() - start_time
    return {
        "loss": loss_sum / max(seen, 1),
        "accuracy": right / max(seen, 1),
        "samples": seen,
        "seconds": seconds,
        "samples_per_second": seen / max(seconds, 1e-9),
        "learning_rate": learning_rate,
    }


@torch.inference_mode()
def predict(
    model: nn.Module, batches: Iterable[Batch], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (S, K), labels (S,), indices (S,)) for every sequence, in batch order."""
    model.eval()
    logits, labels, indices = [], [], []
    for batch in batches:
        logits.append(model(batch.features.to(device), batch.valid.to(device)).float().cpu())
        labels.append(batch.labels)
        indices.append(batch.indices)
    return torch.cat(logits), torch.cat(labels), torch.cat(indices)


def metrics_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0
) -> dict:
    """Loss, accuracy, top-5 accuracy, per-class accuracy and the confusion matrix.

    Top-5 accuracy is None with 5 classes or fewer (every class is in the top 5), and so is
    the accuracy of a class with no sequences (class_counts says which).
    """
    K, S = logits.shape[1], len(labels)
    predictions = logits.argmax(-1)  # (S,)
    # Accuracies are counts divided in Python (float64): 35/36 reads 0.9722222222222222, not
    # float32's 0.9722222089767456.
    top5 = None
    if K > 5:
        top5 = (logits.topk(5, dim=-1).indices == labels[:, None]).any(-1).sum().item() / S
    confusion = torch.zeros(K, K, dtype=torch.long)  # rows: true sign, columns: predicted
    confusion.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    counts = confusion.sum(1).tolist()
    right = confusion.diag().tolist()
    return {
        "loss": F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item(),
        "accuracy": sum(right) / S,
        "top5_accuracy": top5,
        "per_class_accuracy": [r / n if n else None for r, n in zip(right, counts, strict=True)],
        "class_counts": counts,
        "confusion": confusion.tolist(),
        "samples": len(labels),
    }


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    label_smoothing: float = 0.0,
    device: torch.device | str = "cpu",
) -> dict:
    """Metrics of the model over every sequence of the batches (no gradients, eval mode)."""
    start = time.perf_counter()
    logits, labels, _ = predict(model, batches, device)
    seconds = time.perf_counter() - start
    result = metrics_from_logits(logits, labels, label_smoothing=label_smoothing)
    result["seconds"] = seconds
    result["samples_per_second"] = result["samples"] / max(seconds, 1e-9)
    return result


def fit(
    state: TrainState,
    train: Prepared,
    val: Prepared,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    augment: Callable[[Batch, torch.Generator], Batch] | None = None,
    track: Callable[[Iterable[Batch], int, str], Iterable[Batch]] = lambda batches, n, what: (
        batches
    ),
) -> Iterator[dict]:
    """Train from `state.epoch` to `config.epochs`, yielding {"epoch", "train", "val"} metrics.

    The caller decides what to keep (e.g. the checkpoint of the best validation epoch);
    `augment` transforms each training batch; `track` wraps each epoch's batches in a
    progress bar.
    """
    shard, world = rank(), world_size()
    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        batches = epoch_batches(train, config.batch_size, state.generator, augment, shard, world)
        batches = track(batches, train.num_batches(config.batch_size, world), f"epoch {epoch}")
        train_metrics = train_epoch(
            state, batches, config, dropout=epoch >= config.late_dropout, device=device
        )
        state.epoch = epoch
        # The validation loss is the training objective, label smoothing included (it breaks
        # accuracy ties); test metrics and `islr.py evaluate` give the plain cross-entropy.
        val_metrics = evaluate(
            state.eval_model,
            val.batches(EVAL_BATCH),
            label_smoothing=config.label_smoothing,
            device=device,
        )
        yield {"epoch": epoch, "train": train_metrics, "val": val_metrics}


def epoch_batches(
    train: Prepared,
    batch_size: int,
    generator: torch.Generator,
    augment: Callable[[Batch, torch.Generator], Batch] | None,
    rank: int = 0,
    world: int = 1,
) -> Iterator[Batch]:
    """One epoch of shuffled, augmented training batches: this process's share of them.

    Every process must draw the same batch order, epoch after epoch, so the shared generator
    has to advance alike in all of them. Each augments different batches, though, so with
    several processes the augmentation draws come from a generator of their own, seeded from
    the shared one (a resumed run restores it). One process draws both from the one generator.
    """
    batches = train.batches(batch_size, shuffle=True, generator=generator, rank=rank, world=world)
    if augment is None:
        return batches
    draws = generator
    if world > 1:
        seed = int(torch.randint(2**62, (1,), generator=generator))
        draws = torch.Generator().manual_seed(seed + rank)
    return (augment(batch, draws) for batch in batches)


def world_size() -> int:
    """Processes training together (torchrun); 1 without a process group."""
    return dist.get_world_size() if dist.is_initialized() else 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def rank() -> int:
    """This process's place among them; 0 speaks and writes for all."""
    return dist.get_rank() if dist.is_initialized() else 0


def summary(metrics: dict) -> dict:
    """The scalar metrics of a result (without the per-class lists and the matrix)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}
