"""Augmentations: applied to whole training batches of preprocessed features, never at test time.

They work on `Batch.features` (N, T, J*C) after parts-based normalisation, where every part
(face, left hand, pose, right hand) is centred on its own origin and measured in its own
unit length. A transform of the raw video that normalisation undoes (a global shift, an
isotropic zoom) would be a silent no-op, so each one is written in the normalised space:

    flip       mirror: x -> -x and every left/right landmark pair swapped (exact).
    affine     one rotation and shear per sequence shared by all parts, each about its own
               origin (a camera roll or oblique view survives normalisation like this, to the
               extent that x and y, scaled by the frame's width and height, share a unit),
               then a scale and a shift drawn per part (errors of the origin and unit
               estimates, other body proportions).
    noise      Gaussian (and optionally uniform) jitter of the landmarks that are present.
    crop       keep a random contiguous span of at least `crop_min` of the frames.
    resample   change the speed: linear interpolation to round(length * factor) frames.
    drop_part  one whole part missing in every frame (a hand out of view).
    drop_joints random landmarks missing in every frame of the sequence.
    drop_time  every landmark missing in a span of frames; the frames stay valid (a real
               frame where MediaPipe found nothing).

Every transform draws, per sequence, whether it applies (its probability), keeps missing
landmarks missing (a landmark is missing iff all its C coordinates are exactly 0) and padded
frames exactly 0, and never touches labels or indices; the temporal ones (crop, resample)
rebuild `valid` from the new lengths. Most give a sequence not chosen identity parameters
(angle 0, nothing dropped), so the whole batch goes through the same few tensor ops on the
flat J*C axis; noise is drawn for the chosen sequences only. Presence is tested per coordinate
(x != 0), because masks broadcast over a size-C axis are several times slower on CPU. A
present landmark rarely has a coordinate of exactly 0 (never in the real data, 691 times in
the whole synthetic set, points level with their part's origin), and shifts and noise then
leave that one coordinate alone.
Randomness comes only from the `torch.Generator` passed in: the training loop passes its
seeded generator, so a run seed reproduces every epoch, and epochs differ because the
generator advances. There are no data-loader workers in this project, so no generator is
ever copied between processes (the series' duplicated-randomness pitfall).

    augmenter = build(AugmentConfig(flip=0.5, affine=0.5), DataConfig())
    batch = augmenter(batch, generator)
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

import landmarks
from data import Batch
from landmarks import mirror_permutation, part_of
from preprocessing import COORDINATES, DataConfig, mirror

# Probabilities and fractions: the fields that must lie in [0, 1].
_AT_MOST_ONE = {
    "flip",
    "affine",
    "noise",
    "crop",
    "crop_min",
    "resample",
    "drop_part",
    "drop_joints",
    "drop_joints_fraction",
    "drop_time",
    "drop_time_fraction",
}


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (per sequence, 0 = off) and magnitudes of the training augmentations."""

    flip: float = 0.5  # signers differ in handedness (unless mirrored); the series' largest gain
    affine: float = 0.0  # camera angle and body proportions differ between signers
    rotation: float = 30.0  # max degrees, one angle for all parts: the series' ±30°
    shear: float = 0.2  # max shear factor along x and along y (an oblique view)
    scale: float = 0.2  # per-part scale in [1 - scale, 1 + scale]: unit-length error
    shift: float = 0.1  # max per-part shift, in that part's unit lengths: origin error
    noise: float = 0.0  # MediaPipe's landmarks jitter from frame to frame
    noise_std: float = 0.02  # Gaussian std, in part unit lengths
    noise_uniform: float = 0.0  # half-width of added uniform noise; 0 = Gaussian only
    crop: float = 0.0  # recordings start and stop at different points of the sign
    crop_min: float = 0.8  # the shortest span kept, as a fraction of the frames
    resample: float = 0.0  # signers sign at different speeds
    resample_range: float = 0.3  # length factor in [1 - range, 1 + range]
    drop_part: float = 0.0  # a hand (or the face, the pose) goes undetected for a whole sign
    drop_joints: float = 0.0  # do not let the model lean on a few landmarks
    drop_joints_fraction: float = 0.1  # fraction of the landmarks dropped
    drop_time: float = 0.0  # detection fails for a stretch of frames
    drop_time_fraction: float = 0.2  # longest span dropped, as a fraction of the frames

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            high = 1.0 if field.name in _AT_MOST_ONE else math.inf
            if not 0 <= value <= high:
                raise ValueError(f"augmentation {field.name}={value} must be in [0, {high}]")
        for name in ("shear", "resample_range"):  # a factor of 0 would collapse points
            if getattr(self, name) >= 1:
                raise ValueError(f"augmentation {name}={getattr(self, name)} must be below 1")
        if self.crop_min == 0:
            raise ValueError("augmentation crop_min=0 must be above 0: a crop keeps a frame")


def _require_normalized(config: DataConfig, what: str) -> None:
    if not config.normalize:
        raise ValueError(f"{what} works on parts-normalised features: drop --no-normalize")


def _uniform(shape: tuple[int, ...], half_width: float, generator: torch.Generator) -> Tensor:
    return (2 * torch.rand(shape, generator=generator) - 1) * half_width


def _nonzero(features: Tensor) -> Tensor:
    """1.0 where a coordinate is not 0, else 0.0: float throughout, 6x faster than `!= 0`."""
    return features.sign().abs_()


class _Transform:
    """Shared state: the probability, C, and the part of each landmark."""

    def __init__(self, config: DataConfig, *, probability: float):
        self.probability = probability
        self.C = len(COORDINATES[config.coordinates])
        self.parts = torch.tensor(part_of(landmarks.SELECTIONS[config.landmarks]))  # (J,)

    def choose(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """(N,) bool: which sequences this augmentation changes."""
        return torch.rand(len(batch.labels), generator=generator) < self.probability

    def per_coordinate(self, mask: Tensor) -> Tensor:
        """(N, J) per landmark -> (N, 1, J*C) float, broadcastable over frames."""
        return mask.repeat_interleave(self.C, -1)[:, None].float()


class HorizontalFlip(_Transform):
    """Mirror a random subset of the batch: x -> -x and every left/right pair swapped."""

    def __init__(self, config: DataConfig, *, probability: float):
        _require_normalized(config, "horizontal flip")
        super().__init__(config, probability=probability)
        self.landmarks = landmarks.SELECTIONS[config.landmarks]
        try:  # refuse a selection without mirror pairs now
            mirror_permutation(self.landmarks)
        except ValueError as error:
            raise ValueError(
                f"--flip: {error} in --landmarks {config.landmarks}; add --flip 0"
            ) from None

    def flip(self, features: Tensor) -> Tensor:
        """(N, T, J*C) -> the mirrored features, same shape (`mirror` on the flat axis)."""
        return mirror(features.unflatten(-1, (-1, self.C)), self.landmarks).flatten(-2)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = self.choose(batch, generator)[:, None, None]  # (N, 1, 1)
        features = batch.features
        return replace(batch, features=torch.where(chosen, self.flip(features), features))


class Affine(_Transform):
    """Rotate and shear every part about its own origin, then scale and shift each part.

    The rotation and shear are one 2x2 map per sequence, applied to x, y of every part: that
    is what a camera roll or an oblique view does after normalisation. The scale (of all C
    coordinates, as the unit length divides them all) and the x, y shift are drawn per part.
    Missing points stay at 0: the linear maps keep 0 at 0 and the shift moves present points.
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        probability: float,
        rotation: float,
        shear: float,
        scale: float,
        shift: float,
    ):
        _require_normalized(config, "the affine augmentation")
        super().__init__(config, probability=probability)
        self.rotation, self.shear, self.scale, self.shift = rotation, shear, scale, shift
        J, C = len(self.parts), self.C  # x <-> y within each landmark, on the J*C axis
        self.swap = torch.arange(J * C).view(J, C)[:, [1, 0, *range(2, C)]].flatten()

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = self.choose(batch, generator).float()  # (N,) 0 gives the identity map
        N, P = len(chosen), len(landmarks.PARTS)
        angle = _uniform((N,), math.radians(self.rotation), generator) * chosen
        cos, sin = angle.cos(), angle.sin()
        rotate = torch.stack([cos, -sin, sin, cos], -1).view(N, 2, 2)
        shear = _uniform((N, 2), self.shear, generator) * chosen[:, None]  # along x, along y
        ones = torch.ones(N)
        matrix = rotate @ torch.stack([ones, shear[:, 0], shear[:, 1], ones], -1).view(N, 2, 2)
        scale = 1 + _uniform((N, P), self.scale, generator) * chosen[:, None]  # (N, P)
        shift = _uniform((N, P, 2), self.shift, generator) * chosen[:, None, None]  # (N, P, 2)
        return replace(batch, features=self.apply(batch.features, matrix, scale, shift))

    def apply(self, features: Tensor, matrix: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        """features (N, T, J*C) -> the same; matrix (N, 2, 2), scale (N, P), shift (N, P, 2).

        Per present landmark of part p, with m = matrix and s = scale[p]:
            x' = s (m00 x + m01 y) + shift[p, 0],  y' = s (m10 x + m11 y) + shift[p, 1],  z' = s z.
        Written as x * diagonal + swapped(x) * off-diagonal on the flat J*C axis, the scale
        folded into both: several times faster on CPU than a matmul over a size-2 axis.
        """
        N, C = len(features), self.C
        m = matrix.flatten(1)  # (N, 4): row by row
        s = scale[:, self.parts, None]  # (N, J, 1)
        z = torch.ones(N, C - 2)  # z (if any) is scaled, not rotated
        diagonal = (torch.cat([m[:, [0, 3]], z], 1)[:, None] * s).flatten(1)  # (N, J*C)
        off_diagonal = (torch.cat([m[:, [1, 2]], 0 * z], 1)[:, None] * s).flatten(1)
        move = torch.cat([shift, torch.zeros(N, shift.shape[1], C - 2)], 2)[:, self.parts]
        swapped = features.gather(2, self.swap.expand(features.shape))  # (N, T, J*C): y, x, z
        y = torch.addcmul(features * diagonal[:, None], swapped, off_diagonal[:, None])
        return y.addcmul_(move.flatten(1)[:, None], _nonzero(features))  # moves present points


class Noise(_Transform):
    """Add Gaussian (std) and uniform (half-width) noise to every present coordinate."""

    def __init__(self, config: DataConfig, *, probability: float, std: float, uniform: float):
        super().__init__(config, probability=probability)
        self.std, self.uniform = std, uniform

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        rows = self.choose(batch, generator).nonzero().flatten()  # draw for these only
        x = batch.features  # (N, T, J*C)
        shape = (len(rows), *x.shape[1:])
        noise = torch.empty(shape).normal_(0, self.std, generator=generator)
        if self.uniform > 0:
            noise += torch.empty(shape).uniform_(-self.uniform, self.uniform, generator=generator)
        noise = torch.zeros_like(x).index_copy_(0, rows, noise)
        return replace(batch, features=torch.addcmul(x, noise, _nonzero(x)))  # padding 0 stays 0


class DropPart(_Transform):
    """Make one whole part, drawn uniformly per sequence, missing in every frame."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = self.choose(batch, generator)[:, None]  # (N, 1)
        which = torch.randint(len(landmarks.PARTS), (len(chosen), 1), generator=generator)
        keep = (self.parts[None] != which) | ~chosen  # (N, J)
        return replace(batch, features=batch.features * self.per_coordinate(keep))


class DropJoints(_Transform):
    """Make a random `fraction` of the landmarks missing in every frame of the sequence."""

    def __init__(self, config: DataConfig, *, probability: float, fraction: float):
        super().__init__(config, probability=probability)
        self.fraction = fraction

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = self.choose(batch, generator)[:, None]  # (N, 1)
        keep = torch.rand(len(chosen), len(self.parts), generator=generator) >= self.fraction
        return replace(batch, features=batch.features * self.per_coordinate(keep | ~chosen))


class DropTimeSpan(_Transform):
    """Make every landmark missing in a span of up to `max_fraction` of the frames, rounded up:
    at least one frame, so a clip of one frame can lose all of it."""

    def __init__(self, config: DataConfig, *, probability: float, max_fraction: float):
        super().__init__(config, probability=probability)
        self.max_fraction = max_fraction

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        chosen = self.choose(batch, generator)
        N, T, _ = batch.features.shape
        L = batch.lengths  # (N,)
        span = (torch.rand(N, generator=generator) * self.max_fraction * L).ceil().long()
        span = span * chosen  # (N,) 0 frames if not chosen
        start = (torch.rand(N, generator=generator) * (L - span + 1)).long().minimum(L - span)
        steps = torch.arange(T)[None]  # (1, T)
        dropped = (steps >= start[:, None]) & (steps < (start + span)[:, None])  # (N, T)
        return replace(
            batch, features=batch.features * (~dropped).float()[..., None]
        )  # still valid


def retime(batch: Batch, positions: Tensor, lengths: Tensor) -> Batch:
    """Resample each sequence at source frame positions (N, T') to new lengths (N,).

    Integer positions copy frames. Between two frames a coordinate is linearly interpolated
    where it is present in both, and otherwise copied from the nearer frame, so no point is
    pulled towards a missing one and a missing one stays exactly 0.
    """
    N, T, _ = batch.features.shape
    frames = batch.features.flatten(0, 1)  # (N*T, J*C)
    start = (torch.arange(N) * T)[:, None]  # (N, 1) row of each sequence's frame 0
    last = (batch.lengths - 1)[:, None]  # (N, 1)
    low = positions.floor().long().clamp(min=0).minimum(last)  # (N, T')
    y = frames.index_select(0, (start + low).flatten()).view(N, -1, frames.shape[1])  # (N, T', J*C)
    if positions.is_floating_point():
        b = frames.index_select(0, (start + (low + 1).minimum(last)).flatten()).view(y.shape)
        weight = (positions - low).clamp(0, 1)[..., None]  # (N, T', 1)
        nearer = (weight >= 0.5).float()
        # Weight 0 or 1 (the nearer frame) wherever one side is missing: lerp is exact there.
        weight = nearer + _nonzero(y * b) * (weight - nearer)  # (N, T', J*C)
        y = torch.lerp(y, b, weight)
    valid = torch.arange(positions.shape[1])[None] < lengths[:, None]  # (N, T')
    return Batch(y * valid.float()[..., None], valid, lengths, batch.labels, batch.indices)


class TemporalCrop:
    """Keep a random contiguous span of at least `min_fraction` of each chosen sequence."""

    def __init__(self, *, probability: float, min_fraction: float):
        self.probability, self.min_fraction = probability, min_fraction

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        L = batch.lengths  # (N,)
        chosen = torch.rand(len(L), generator=generator) < self.probability
        fraction = torch.rand(len(L), generator=generator) * (1 - self.min_fraction)
        kept = ((self.min_fraction + fraction) * L).ceil().long().clamp(min=1).minimum(L)
        lengths = torch.where(chosen, kept, L)  # (N,)
        start = (torch.rand(len(L), generator=generator) * (L - lengths + 1)).long()
        start = start.minimum(L - lengths)
        positions = start[:, None] + torch.arange(int(lengths.max()))[None]  # (N, T') frames
        return retime(batch, positions, lengths)


class Resample:
    """Change the speed: each chosen sequence goes to round(length * factor) frames, with
    factor in [1 - max_change, 1 + max_change], by linear interpolation between frames."""

    def __init__(self, *, probability: float, max_change: float):
        self.probability, self.max_change = probability, max_change

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        L = batch.lengths  # (N,)
        chosen = torch.rand(len(L), generator=generator) < self.probability
        factor = 1 + _uniform((len(L),), self.max_change, generator)
        lengths = torch.where(chosen, (L * factor).round().long().clamp(min=1), L)
        step = (L - 1) / (lengths - 1).clamp(min=1)  # (N,) source frames per new frame
        positions = torch.arange(int(lengths.max()))[None] * step[:, None]  # (N, T') float
        return retime(batch, positions, lengths)


def build(
    config: AugmentConfig, data_config: DataConfig
) -> Callable[[Batch, torch.Generator], Batch] | None:
    """The enabled augmentations as one function of (batch, generator); None if all are off.

    Order: the temporal ops first (crop, then resample the kept span), then the geometric
    ones, then noise, then the drops, so that dropped landmarks end exactly at 0.
    """
    c, d = config, data_config
    steps = [
        (c.crop, lambda: TemporalCrop(probability=c.crop, min_fraction=c.crop_min)),
        (c.resample, lambda: Resample(probability=c.resample, max_change=c.resample_range)),
        (c.flip, lambda: HorizontalFlip(d, probability=c.flip)),
        (
            c.affine,
            lambda: Affine(
                d,
                probability=c.affine,
                rotation=c.rotation,
                shear=c.shear,
                scale=c.scale,
                shift=c.shift,
            ),
        ),
        (c.noise, lambda: Noise(d, probability=c.noise, std=c.noise_std, uniform=c.noise_uniform)),
        (c.drop_part, lambda: DropPart(d, probability=c.drop_part)),
        (
            c.drop_joints,
            lambda: DropJoints(d, probability=c.drop_joints, fraction=c.drop_joints_fraction),
        ),
        (
            c.drop_time,
            lambda: DropTimeSpan(d, probability=c.drop_time, max_fraction=c.drop_time_fraction),
        ),
    ]
    transforms = [make() for probability, make in steps if probability > 0]
    if not transforms:
        return None

    def augment(batch: Batch, generator: torch.Generator) -> Batch:
        for transform in transforms:
            batch = transform(batch, generator)
        return batch

    return augment
