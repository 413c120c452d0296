"""Loops: one training epoch and one evaluation pass, as plain functions over batches.

They take any iterable of `data.Batch`, never print, and return a dict of metrics, so
`islr.py` can wrap the iterable in a progress bar and print what comes back.

    metrics = train_epoch(model, prepared.batches(32, shuffle=True), optimizer)
    metrics = evaluate(model, prepared.batches(64), num_classes=10)
"""

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import augment
import checkpoint
import models
from data import Batch, DataConfig, Prepared


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50  # article 10's budget; the epoch kept is chosen on the validation signer
    batch_size: int = 32  # article 10
    learning_rate: float = 3e-4  # Adam, article 10
    label_smoothing: float = 0.1  # article 10's best; 0 = plain cross-entropy
    seed: int = 0  # seeds weights, dropout, batch order and augmentation: same seed, same metrics
    flip: float = 0.5  # probability of mirroring a training sequence: signers differ in handedness


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    label_smoothing: float = 0.0,
    device: torch.device | str = "cpu",
) -> dict:
    """One pass of updates; returns mean loss, accuracy, samples and samples/s."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for batch in batches:
        batch = batch.to(device)
        logits = model(batch.features, batch.valid)  # (N, K)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(batch.labels)
        total_loss += loss.item() * n
        correct += int((logits.argmax(-1) == batch.labels).sum())
        seen += n
    seconds = time.perf_counter() - start
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "samples": seen,
        "seconds": seconds,
        "samples_per_second": seen / max(seconds, 1e-9),
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
    """Loss, accuracy, top-5 accuracy, per-class accuracy and the confusion matrix."""
    K = logits.shape[1]
    predictions = logits.argmax(-1)  # (S,)
    top = logits.topk(min(5, K), dim=-1).indices  # (S, 5)
    confusion = torch.zeros(K, K, dtype=torch.long)  # rows: true sign, columns: predicted
    confusion.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    return {
        "loss": F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item(),
        "accuracy": (predictions == labels).float().mean().item(),
        "top5_accuracy": (top == labels[:, None]).any(-1).float().mean().item(),
        "per_class_accuracy": per_class.tolist(),
        "class_counts": confusion.sum(1).tolist(),
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
    model: nn.Module,
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
    """Train for `config.epochs`, yielding {"epoch", "train", "val"} metrics after each epoch.

    The caller decides what to keep (e.g. the checkpoint of the best validation epoch);
    `augment` transforms each training batch; `track` wraps each epoch's batches in a
    progress bar.
    """
    generator = torch.Generator().manual_seed(config.seed)  # batch order, separate from dropout
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    for epoch in range(1, config.epochs + 1):
        batches = train.batches(config.batch_size, shuffle=True, generator=generator)
        if augment is not None:
            batches = (augment(batch, generator) for batch in batches)
        batches = track(batches, train.num_batches(config.batch_size), f"epoch {epoch}")
        train_metrics = train_epoch(
            model, batches, optimizer, label_smoothing=config.label_smoothing, device=device
        )
        val_metrics = evaluate(
            model, val.batches(EVAL_BATCH), label_smoothing=config.label_smoothing, device=device
        )
        yield {"epoch": epoch, "train": train_metrics, "val": val_metrics}


EVAL_BATCH = 128  # evaluation has no gradients to store, so larger batches are cheap


def summary(metrics: dict) -> dict:
    """The scalar metrics of a result (without the per-class lists and the matrix)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def train_run(
    prepared: dict[str, Prepared],
    out: Path,
    *,
    data_config: DataConfig,
    model_config: models.ModelConfig,
    train_config: TrainConfig,
    vocabulary: dict[str, int],
    device: torch.device | str = "cpu",
    metadata: dict | None = None,
    on_epoch: Callable[[dict, bool], None] = lambda record, is_best: None,
    track: Callable[[Iterable[Batch], int, str], Iterable[Batch]] = lambda batches, n, what: (
        batches
    ),
) -> dict:
    """A whole run: train on prepared["train"], keep the best epoch on prepared["val"], test.

    Writes `out/model.safetensors` (best validation accuracy, ties to lower loss),
    `out/last.safetensors` and `out/history.json`; the test split (if any) is evaluated once,
    at the end, for both checkpoints, and its metrics are added to them.
    Returns {"best": record, "test": {"model": metrics, "last": metrics}, "parameters": n}.
    """
    torch.manual_seed(train_config.seed)
    model = models.build(model_config, data_config.num_features, len(vocabulary)).to(device)
    flip = train_config.flip
    augmenter = augment.HorizontalFlip(data_config, probability=flip) if flip > 0 else None
    out.mkdir(parents=True, exist_ok=True)
    saved = dict(data_config=data_config, model_config=model_config, vocabulary=vocabulary,
                 train_config=asdict(train_config), **(metadata or {}))  # fmt: skip

    history, best = [], None
    for record in fit(model, prepared["train"], prepared["val"], train_config, device=device,
                      augment=augmenter, track=track):  # fmt: skip
        history.append({"epoch": record["epoch"], "train": summary(record["train"]),
                        "val": summary(record["val"])})  # fmt: skip
        val = record["val"]
        is_best = best is None or (val["accuracy"], -val["loss"]) > (
            best["val"]["accuracy"],
            -best["val"]["loss"],
        )
        on_epoch(record, is_best)
        state = dict(epoch=record["epoch"], metrics={"val": summary(val)})
        if is_best:
            best = record
            checkpoint.save(out / "model.safetensors", model, **saved, **state)
        checkpoint.save(out / "last.safetensors", model, **saved, **state)
    (out / "history.json").write_text(json.dumps(history, indent=1))

    tests = {}
    if "test" in prepared:
        for name in ("model", "last"):
            path = out / f"{name}.safetensors"
            loaded = checkpoint.load(path)
            batches = prepared["test"].batches(EVAL_BATCH)
            result = evaluate(loaded.model.to(device), batches, device=device)
            metrics = {**loaded.metadata["metrics"], "test": summary(result)}
            epoch = loaded.metadata["epoch"]
            checkpoint.save(path, loaded.model, **saved, epoch=epoch, metrics=metrics)
            tests[name] = {**result, "epoch": epoch}
    return {"best": best, "test": tests, "parameters": models.num_parameters(model)}
