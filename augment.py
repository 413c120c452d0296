"""Augmentations: applied to whole training batches of preprocessed features, never at test time.

They work on `Batch.features` viewed as (N, T, J, C) after parts-based normalisation, where
every part is centred on its own origin. In that space a horizontal mirror of the video is
exact and cheap: negate x and swap each left/right landmark pair.

    flip = HorizontalFlip(DataConfig(), probability=0.5)
    batch = flip(batch, generator)
"""

import torch
from torch import Tensor

import data
from data import Batch, DataConfig

# Mirror pairs among the face points of the fullbody preset (MediaPipe face mesh indices):
# lips, nose, and the two eye contours in matching order. Points on the midline (0, 1, 2,
# 13, 14, 17) map to themselves.
FACE_PAIRS = (
    (61, 291), (78, 308), (37, 267), (39, 269), (40, 270), (80, 310), (81, 311), (82, 312),
    (84, 314), (87, 317), (88, 318), (91, 321), (95, 324), (146, 375), (178, 402), (181, 405),
    (185, 409), (191, 415), (98, 327), (33, 263), (7, 249), (163, 390), (144, 373), (145, 374),
    (153, 380), (154, 381), (155, 382), (133, 362), (246, 466), (161, 388), (160, 387),
    (159, 386), (158, 385), (157, 384), (173, 398),
)  # fmt: skip
POSE_PAIRS = tuple((data.POSE + i, data.POSE + i + 1) for i in range(11, 23, 2))
HAND_PAIRS = tuple((data.LEFT_HAND + i, data.RIGHT_HAND + i) for i in range(21))


def mirror_permutation(landmarks: tuple[int, ...]) -> Tensor:
    """For each selected landmark, the position of its mirror image in the same selection."""
    partner = {}
    for a, b in FACE_PAIRS + POSE_PAIRS + HAND_PAIRS:
        partner[a], partner[b] = b, a
    position = {landmark: i for i, landmark in enumerate(landmarks)}
    face_points = [p for p in landmarks if p < data.LEFT_HAND]
    unknown = [p for p in face_points if p not in partner and p not in (0, 1, 2, 13, 14, 17)]
    if unknown:
        raise ValueError(f"horizontal flip knows no mirror pair for face point {unknown[0]}")
    return torch.tensor([position[partner.get(p, p)] for p in landmarks])


class HorizontalFlip:
    """Mirror a random subset of the batch: x -> -x and every left/right pair swapped."""

    def __init__(self, config: DataConfig, *, probability: float):
        if not config.normalize:
            raise ValueError(
                "horizontal flip works on parts-normalised features: drop --no-normalize"
            )
        self.probability = probability
        self.permutation = mirror_permutation(data.LANDMARK_PRESETS[config.landmarks])
        self.C = len(data.COORDINATES[config.coordinates])
        self.sign = torch.ones(self.C)
        self.sign[0] = -1.0  # x

    def flip(self, features: Tensor) -> Tensor:
        N, T, _ = features.shape
        x = features.view(N, T, -1, self.C)  # (N, T, J, C)
        return (x[:, :, self.permutation] * self.sign).reshape(N, T, -1)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = torch.rand(len(batch.labels), generator=generator) < self.probability  # (N,)
        features = torch.where(chosen[:, None, None], self.flip(batch.features), batch.features)
        return Batch(features, batch.valid, batch.lengths, batch.labels, batch.indices)
