"""Augmentations change what they should and nothing else."""

import numpy as np
import pytest
import torch

import augment
import data
from data import DataConfig


def _mirror_raw(frames: torch.Tensor) -> torch.Tensor:
    """Mirror a raw (F, 543, 3) track in the image: x -> 1 - x, then swap left/right points."""
    mirrored = frames.clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    swapped = mirrored.clone()
    for a, b in augment.FACE_PAIRS + augment.POSE_PAIRS + augment.HAND_PAIRS:
        swapped[:, a], swapped[:, b] = mirrored[:, b], mirrored[:, a]
    return swapped


def test_flip_equals_mirroring_the_video():
    """Flipping normalised features equals preprocessing the mirrored video, missing points kept."""
    rng = np.random.default_rng(0)
    raw = torch.from_numpy(rng.uniform(0.2, 0.8, size=(10, 543, 3)).astype(np.float32))
    raw[3, 468:489] = float("nan")  # left hand missing in one frame
    config = DataConfig()
    lengths = torch.tensor([10])
    flip = augment.HorizontalFlip(config, probability=1.0)
    features = data.preprocess(raw, lengths, config)[None]  # (1, T, D)
    expected = data.preprocess(_mirror_raw(raw), lengths, config)[None]
    assert torch.allclose(flip.flip(features), expected, atol=1e-5)
    # the left hand (slots 76-96) went missing in frame 3, so the right hand slots are 0 there
    assert flip.flip(features)[0, 3].view(130, 2)[109:130].abs().sum() == 0
    assert torch.equal(flip.flip(flip.flip(features)), features)  # twice = identity


def test_flip_probability_and_labels(tiny_data):
    """With p=0 nothing changes; with p=1 every sequence is mirrored; labels and masks stay."""
    prepared = data.prepare(data.load_dataset(tiny_data), DataConfig())
    batch = prepared.merge(torch.arange(8))
    generator = torch.Generator().manual_seed(0)
    same = augment.HorizontalFlip(DataConfig(), probability=0.0)(batch, generator)
    assert torch.equal(same.features, batch.features)
    flip = augment.HorizontalFlip(DataConfig(), probability=1.0)
    flipped = flip(batch, generator)
    assert torch.equal(flipped.features, flip.flip(batch.features))
    assert torch.equal(flipped.labels, batch.labels) and torch.equal(flipped.valid, batch.valid)


def test_flip_refuses_what_it_cannot_mirror():
    """The 468-point face has no mirror table here, and raw coordinates cannot be flipped in place."""
    with pytest.raises(ValueError, match="mirror pair"):
        augment.HorizontalFlip(DataConfig(landmarks="all"), probability=0.5)
    with pytest.raises(ValueError, match="parts-normalised"):
        augment.HorizontalFlip(DataConfig(normalize=False), probability=0.5)
