"""Personal: a model from a few clips of one person, and honest figures for one signer.

Two things a folder of one person's clips needs that a folder of many signers does not:

    split_clips(labels)     one signer, no signer to hold out: held-out clips of that same
                            signer validate and test (any preset; never signer-independent)
    fit_templates(...)      the `personal` preset's run (templates.py): every training clip
                            kept as a template, leave-one-out accuracy over them, the test
                            part (a test signer, or none) scored once, model.safetensors written

    python islr.py train --data DIR --preset personal --out RUN
"""

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

import checkpoint
import loops
import templates
from data import Prepared
from presets import Preset

HELD_OUT = 0.2  # the share of each sign's clips held out for validation, and as much for test


def split_clips(labels: Tensor, seed: int = 0) -> dict[str, Tensor]:
    """Clip indices of each part, per sign: HELD_OUT for test and for validation where a sign
    has enough clips (3: one each), the rest (at least one a sign) to train."""
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for sign in labels.unique():
        clips = torch.nonzero(labels == sign).flatten()
        clips = clips[torch.randperm(len(clips), generator=generator)]
        held = round(HELD_OUT * len(clips)) or (1 if len(clips) >= 3 else 0)
        parts["test"].append(clips[:held])
        parts["val"].append(clips[held : 2 * held])
        parts["train"].append(clips[2 * held :])
    return {name: torch.cat(chosen).sort().values for name, chosen in parts.items()}


def subset(prepared: Prepared, indices: Tensor) -> Prepared:
    """The sequences at `indices`, sharing the frames tensor."""
    return Prepared(
        prepared.frames,
        prepared.offsets[indices],
        prepared.lengths[indices],
        prepared.labels[indices],
    )


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
    return {"leave_one_out": leave_one_out, "test": tested, "templates": len(model.templates)}
