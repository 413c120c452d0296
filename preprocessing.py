"""Preprocessing: landmark selection, NaN handling, parts-based normalisation, mirroring.

Runs once per dataset, over every frame of every sequence at once: the sequences are laid
end to end and `segments` says which sequence each frame belongs to, so per-sequence
statistics are scatter sums and there is no per-sequence Python.

    frames (F, 543, 3) raw, NaN where MediaPipe saw nothing
      -> preprocess(frames, lengths, DataConfig())   (F, J*C): J = 130 points, C = 2 (x, y)

`data.prepare_arrays` calls it (so `cache.load` does, chunk by chunk); `deploy/export.py` traces it into the deployed graph.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import landmarks
from landmarks import LEFT_WRIST, PARTS, REFERENCE_POINTS, RIGHT_WRIST

COORDINATES = {"xy": (0, 1), "xyz": (0, 1, 2)}
UNIT_RANGE = (1e-3, 5.0)  # the series clips the unit length (per sequence or frame) to this


class DataError(Exception):
    """A problem with the user's data; the message is one sentence naming the thing and the fix."""


@dataclass(frozen=True)
class DataConfig:
    """How raw landmarks become model input; saved in every checkpoint."""

    landmarks: str = "fullbody"  # a landmarks.SELECTIONS key: the points the model sees
    coordinates: str = "xy"  # "xy" or "xyz": z from MediaPipe is noisy, the series drops it
    normalize: bool = True  # parts-based normalisation: the series' largest single gain
    align: str = "framewise"  # origin per frame ("framewise") or one per sequence ("unique")
    scale: str = "unique"  # unit length per frame ("framewise") or one per sequence ("unique")
    mirror_left: bool = False  # mirror sequences signed with the left hand: all look right-handed

    def __post_init__(self) -> None:
        checks = {
            "landmarks": (self.landmarks, landmarks.SELECTIONS),
            "coordinates": (self.coordinates, COORDINATES),
            "align": (self.align, ("framewise", "unique")),
            "scale": (self.scale, ("framewise", "unique")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise DataError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
        if self.mirror_left:
            try:
                landmarks.mirror_permutation(landmarks.SELECTIONS[self.landmarks])
            except ValueError as error:
                raise DataError(
                    f"--mirror-left: {error} in --landmarks {self.landmarks}; "
                    "add --no-mirror-left (and --flip 0)"
                ) from None

    @property
    def num_features(self) -> int:
        return len(landmarks.SELECTIONS[self.landmarks]) * len(COORDINATES[self.coordinates])


def _segment_mean(values: Tensor, weights: Tensor, segments: Tensor, num_sequences: int) -> Tensor:
    """Weighted mean of per-frame values over each sequence: (F, P) -> (S, P)."""
    S = num_sequences
    total = values.new_zeros(S, values.shape[1]).index_add_(0, segments, values * weights)
    count = weights.new_zeros(S, weights.shape[1]).index_add_(0, segments, weights)
    return total / count.clamp(min=1)


def preprocess(frames: Tensor, lengths: Tensor, config: DataConfig) -> Tensor:
    """Model input for every frame of one or more sequences laid end to end.

    frames: (F, 543, 3) raw landmarks with NaN, F = sum of lengths; lengths: (S,).
    Returns (F, J*C): the selected landmarks, parts-normalised if asked, 0 where missing,
    and mirrored where `mirror_left` is set and the left hand is seen in more frames.
    """
    selected = landmarks.SELECTIONS[config.landmarks]
    references = [p for part in PARTS for points in REFERENCE_POINTS[part].values() for p in points]
    # Gather only the landmarks used, once: index_select is far cheaper than fancy indexing
    # of the whole (F, 543, 3) array, and everything below works on the small copy.
    needed = set(selected) | (set(references) if config.normalize else set())
    needed = sorted(needed | ({LEFT_WRIST, RIGHT_WRIST} if config.mirror_left else set()))
    position = {landmark: i for i, landmark in enumerate(needed)}

    def local(points: tuple[int, ...]) -> Tensor:  # positions of `points` in the gathered copy
        return torch.tensor([position[p] for p in points])

    channels = frames.permute(2, 0, 1)  # (3, F, 543): free for data stored channel first
    channels = channels.index_select(0, torch.tensor(COORDINATES[config.coordinates]))
    raw = channels.index_select(2, torch.tensor(needed)).permute(1, 2, 0).contiguous()  # (F, Jn, C)
    present = raw.isfinite().all(-1)  # (F, Jn) a landmark was detected (NaN: it was not)
    x = torch.where(present[..., None], raw, 0.0)  # (F, Jn, C) missing -> 0
    chosen = local(selected)
    segments = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # (F,)
    if config.normalize:
        y, kept = _normalize(x, present, segments, len(lengths), local, selected, config)
    else:
        y, kept = x.index_select(1, chosen), present.index_select(1, chosen)
    if config.mirror_left:
        wrists = present.index_select(1, local((LEFT_WRIST, RIGHT_WRIST))).float()  # (F, 2)
        seen = wrists.new_zeros(len(lengths), 2).index_add_(0, segments, wrists)  # (S, 2)
        flip = (seen[:, 0] > seen[:, 1])[segments]  # (F,) the frames of left-handed clips
        y = torch.where(
            flip[:, None, None], mirror(y, selected, present=None if config.normalize else kept), y
        )
    return y.flatten(1)


def _normalize(
    x: Tensor,
    present: Tensor,
    segments: Tensor,
    num_sequences: int,
    local: Callable[[tuple[int, ...]], Tensor],
    selected: tuple[int, ...],
    config: DataConfig,
) -> tuple[Tensor, Tensor]:
    """Parts-based normalisation of (F, Jn, C) -> ((F, J, C) features, (F, J) kept points).

    Each part (face, hands, pose) is centred on its reference origin and divided by its
    reference length; a point whose part has no reference in a frame counts as missing.
    """
    origins, units, part_present = [], [], []
    for part in PARTS:
        points = REFERENCE_POINTS[part]
        references = points["origin"] + points["unit_from"] + points["unit_to"]
        found = present.index_select(1, local(references)).all(1)  # (F,)
        origin = x.index_select(1, local(points["origin"])).mean(1)  # (F, C)
        unit_to = x.index_select(1, local(points["unit_to"]))[..., :2].mean(1)  # (F, 2)
        unit_from = x.index_select(1, local(points["unit_from"]))[..., :2].mean(1)  # (F, 2)
        units.append(torch.linalg.vector_norm(unit_to - unit_from, dim=-1))  # (F,) image plane
        origins.append(origin)
        part_present.append(found)
    origin = torch.stack(origins, 1)  # (F, P, C)
    unit = torch.stack(units, 1)  # (F, P)
    found = torch.stack(part_present, 1).float()  # (F, P)

    if config.align == "unique":
        C = origin.shape[-1]
        mean = _segment_mean(
            origin.flatten(1), found.repeat_interleave(C, 1), segments, num_sequences
        )
        origin = mean.view(num_sequences, -1, C)[segments]
    if config.scale == "unique":
        unit = _segment_mean(unit, found, segments, num_sequences)[segments]
    unit = unit.clamp(*UNIT_RANGE)

    part = torch.tensor(landmarks.part_of(selected))  # (J,) the part of each selected landmark
    chosen = local(selected)
    y = (x.index_select(1, chosen) - origin[:, part]) / unit[:, part, None]  # (F, J, C)
    kept = present.index_select(1, chosen) & found[:, part].bool()  # missing point or part -> 0
    return y * kept[..., None], kept


_REFLECT_X = torch.tensor([-1.0, 1.0, 1.0])


def mirror(y: Tensor, selected: tuple[int, ...], *, present: Tensor | None = None) -> Tensor:
    """The mirror image of (..., J, C) features of the landmarks `selected`.

    Left/right points swap places and x is reflected. Parts-normalised features (no
    `present`) are centred on mirror-symmetric origins, so x -> -x. Raw image coordinates
    (0..1) reflect as x -> 1 - x where `present` (..., J) says a point was detected. Missing
    points stay exactly 0 either way.
    """
    permutation = torch.tensor(landmarks.mirror_permutation(selected))
    mirrored = y.index_select(-2, permutation)
    if present is None:
        return mirrored * _REFLECT_X[: y.shape[-1]]
    mirrored[..., 0] = (1 - mirrored[..., 0]) * present.index_select(-1, permutation)
    return mirrored
