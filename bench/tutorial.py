"""Bench (e): the tutorial's data path (article 10's code, REFERENCE.md section 7), rebuilt
for timing beside islr's: the same model and training step fed by the series' DataLoader of
deep-copied samples and its per-sample padded merge.

    python islr.py bench --tutorial          # speed.run(..., tutorial=True) calls tutorial_comparison
"""

import copy
import os
import statistics
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
import torch

import loops
from data import Batch, Prepared


class TutorialDataset(torch.utils.data.Dataset):
    """The series' HDF5Dataset with load_into_ram=True: every sequence preprocessed once and
    kept as a dict of NumPy arrays; each one drawn is deep-copied, then turned into tensors."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = copy.deepcopy(self.samples[index])
        return {key: torch.from_numpy(value) for key, value in sample.items()}


def tutorial_merge(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The series' padded merge: one copy per sample into a zero tensor, and the mask of real
    frames read from the values (a frame is padding where every value is 0)."""
    C, _, J = samples[0]["feature"].shape
    T = max(sample["feature"].shape[1] for sample in samples)
    features = torch.zeros(len(samples), C, T, J)  # (N, C, T, J)
    tokens = torch.zeros(len(samples), 1, dtype=torch.long)
    for i, sample in enumerate(samples):
        features[i, :, : sample["feature"].shape[1]] = sample["feature"]
        tokens[i, :1] = sample["token"]
    real = ~(features == 0).all(1).all(-1)  # (N, T)
    return {"feature": features, "token": tokens, "feature_pad_mask": real}


def tutorial_samples(prepared: Prepared, channels: int) -> list[dict[str, np.ndarray]]:
    """Each preprocessed sequence as the series keeps it: feature (C, T, J), token (1,)."""
    samples = []
    for offset, length, label in zip(
        prepared.offsets.tolist(), prepared.lengths.tolist(), prepared.labels.tolist(), strict=True
    ):
        frames = prepared.frames[offset : offset + length].numpy()  # (T, J*C)
        feature = frames.reshape(length, -1, channels).transpose(2, 0, 1).copy()  # (C, T, J)
        samples.append({"feature": feature, "token": np.array([label], dtype=np.int64)})
    return samples


def as_batch(merged: dict[str, torch.Tensor]) -> Batch:
    """A merged tutorial batch in the layout islr's models take (the series' models reshape
    [N, C, T, J] to [N, T, C*J] themselves, the same work)."""
    N, C, T, J = merged["feature"].shape
    features = merged["feature"].permute(0, 2, 3, 1).reshape(N, T, J * C)  # (N, T, J*C)
    valid = merged["feature_pad_mask"]  # read from values: a frame with nothing seen is a hole
    indices = torch.zeros(N, dtype=torch.long)  # the series' batches do not carry them
    return Batch(features, valid, valid.sum(1), merged["token"][:, 0], indices)


def tutorial_comparison(
    train: Prepared,
    build: Callable[[], torch.nn.Module],
    channels: int,
    config: loops.TrainConfig,
    *,
    device: torch.device,
    repeats: int,
) -> dict:
    """(e) training samples/s through islr's data path and through the tutorial's, side by side.

    The same sequences, no augmentation, each path training its own copy of the same freshly
    built model through the same `loops.train_epoch`, so only the data path differs:
    - islr: length-bucketed batches cut from one preprocessed tensor (as `train`);
    - the tutorial's: a DataLoader of shuffled batches of `config.batch_size`, deep copies and
      a per-sample merge, with 0 worker processes and with `os.cpu_count()` (article 10's);
    - the tutorial's batches merged in advance: its model-only ceiling. It is below islr's
      because random batches pad more: more frames per sequence to compute.
    Rounds of one epoch per path alternate; the first round warms up; medians of the rest.
    islr_over_tutorial compares with the faster of the tutorial's two worker settings.
    """
    workers = os.cpu_count() or 1
    paths = data_paths(train, tutorial_samples(train, channels), config, device, workers)
    runs = alternate_epochs(paths, build, train, config, device, repeats)

    def frames_per_sequence(batches: Iterable[Batch]) -> float:
        return sum(b.features.shape[0] * b.features.shape[1] for b in batches) / len(train)

    result = {f"{name}_samples_per_second": statistics.median(r) for name, r in runs.items()}
    tutorial_best = max(
        result["tutorial_0_workers_samples_per_second"],
        result["tutorial_all_workers_samples_per_second"],
    )
    return result | {
        "tutorial_workers": workers,
        "islr_over_tutorial": result["islr_samples_per_second"] / tutorial_best,
        **{f"{name}_runs": r for name, r in runs.items()},
        "islr_frames_per_sequence": frames_per_sequence(paths["islr"](torch.Generator())),
        "tutorial_frames_per_sequence": frames_per_sequence(
            paths["tutorial_0_workers"](torch.Generator())
        ),
        "real_frames_per_sequence": float(train.lengths.float().mean()),
    }


EpochPath = Callable[[torch.Generator], Iterable[Batch]]  # one epoch's batches from a generator


def data_paths(
    train: Prepared,
    samples: list[dict[str, np.ndarray]],
    config: loops.TrainConfig,
    device: torch.device,
    workers: int,
) -> dict[str, EpochPath]:
    """The four ways (e) feeds an epoch to the model, by name."""

    def tutorial(generator: torch.Generator, num_workers: int = 0) -> Iterable[Batch]:
        epoch = torch.utils.data.DataLoader(
            TutorialDataset(samples),
            batch_size=config.batch_size,
            shuffle=True,
            collate_fn=tutorial_merge,
            num_workers=num_workers,
            generator=generator,
        )
        return map(as_batch, epoch)

    def merged_in_advance(generator: torch.Generator) -> list[Batch]:
        batches = [batch.to(device) for batch in tutorial(generator)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the copies done before the clock starts
        return batches

    return {
        "islr": lambda generator: train.batches(
            config.batch_size, shuffle=True, generator=generator
        ),
        "tutorial_0_workers": tutorial,
        "tutorial_all_workers": partial(tutorial, num_workers=workers),
        "tutorial_model_only": merged_in_advance,
    }


def alternate_epochs(
    paths: dict[str, EpochPath],
    build: Callable[[], torch.nn.Module],
    train: Prepared,
    config: loops.TrainConfig,
    device: torch.device,
    repeats: int,
) -> dict[str, list[float]]:
    """Samples/s of each path's epochs: a model per path, one epoch each per round, rounds
    alternating; the first round warms up and is left out."""
    states = {}
    for name in paths:
        torch.manual_seed(config.seed)
        states[name] = loops.start(build().to(device), config, train.num_batches(config.batch_size))
    runs: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(repeats + 1):
        for name, batches in paths.items():
            state = states[name]
            metrics = loops.train_epoch(state, batches(state.generator), config, device=device)
            if repeat:
                runs[name].append(metrics["samples_per_second"])
    return runs
