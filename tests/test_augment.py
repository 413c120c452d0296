"""Augmentations change what they should and nothing else."""

import math

import numpy as np
import pytest
import torch

import augment
import data
import landmarks
import presets
from preprocessing import DataConfig, preprocess


def _mirror_raw(frames: torch.Tensor) -> torch.Tensor:
    """Mirror a raw (F, 543, 3) track in the image: x -> 1 - x, then swap left/right points."""
    mirrored = frames.clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    swapped = mirrored.clone()
    for a, b in landmarks.FACE_PAIRS + landmarks.POSE_PAIRS + landmarks.HAND_PAIRS:
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
    features = preprocess(raw, lengths, config)[None]  # (1, T, D)
    expected = preprocess(_mirror_raw(raw), lengths, config)[None]
    assert torch.allclose(flip.flip(features), expected, atol=1e-5)
    # the left hand (slots 76-96) went missing in frame 3, so the right hand slots are 0 there
    assert flip.flip(features)[0, 3].view(130, 2)[109:130].abs().sum() == 0
    assert torch.equal(flip.flip(flip.flip(features)), features)  # twice = identity


def test_flip_with_head_points_equals_mirroring_the_video():
    """The fullbody-head preset's pose eyes, ears and mouth corners swap sides too."""
    rng = np.random.default_rng(1)
    raw = torch.from_numpy(rng.uniform(0.2, 0.8, size=(6, 543, 3)).astype(np.float32))
    config = DataConfig(landmarks="fullbody-head")
    lengths = torch.tensor([6])
    flip = augment.HorizontalFlip(config, probability=1.0)
    features = preprocess(raw, lengths, config)[None]
    expected = preprocess(_mirror_raw(raw), lengths, config)[None]
    assert torch.allclose(flip.flip(features), expected, atol=1e-5)


def _one_handed(rng: np.random.Generator, frames: int, hand: str) -> torch.Tensor:
    """A raw (T, 543, 3) track where only one hand is ever seen (the other one is NaN)."""
    raw = torch.from_numpy(rng.uniform(0.2, 0.8, size=(frames, 543, 3)).astype(np.float32))
    gone = slice(landmarks.RIGHT_HAND, 543) if hand == "left" else slice(468, 489)
    raw[:, gone] = float("nan")
    return raw


@pytest.mark.parametrize("normalize", [True, False])
def test_mirror_left_mirrors_left_handed_clips_only(normalize):
    """A left-handed clip becomes its mirror image; a right-handed one in the same call stays."""
    rng = np.random.default_rng(2)
    left, right = _one_handed(rng, 7, "left"), _one_handed(rng, 5, "right")
    left[2, landmarks.RIGHT_HAND :] = 0.5  # the right hand seen once: the left still dominates
    frames, lengths = torch.cat([left, right]), torch.tensor([7, 5])
    plain = DataConfig(normalize=normalize)
    mirrored = preprocess(frames, lengths, DataConfig(normalize=normalize, mirror_left=True))
    expected = preprocess(torch.cat([_mirror_raw(left), right]), lengths, plain)
    assert torch.allclose(mirrored, expected, atol=1e-5)
    assert not torch.allclose(mirrored[:7], preprocess(left, lengths[:1], plain), atol=1e-2)


def test_mirror_left_needs_mirror_pairs():
    with pytest.raises(data.DataError, match="mirror"):
        DataConfig(landmarks="all", mirror_left=True)


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


# ---------------------------------------------------------------------------------------------
# The other augmentations, on a batch of preprocessed random tracks with missing points


def _batch(n: int = 16, seed: int = 0, config: DataConfig | None = None) -> data.Batch:
    """Preprocessed random tracks: hands missing in some frames, never a right hand in one."""
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        frames = int(rng.integers(3, 40))
        raw = rng.uniform(0.2, 0.8, size=(3, frames, 543)).astype(np.float32)
        raw[:, rng.random(frames) < 0.3, landmarks.LEFT_HAND : landmarks.POSE] = np.nan
        raw[:, :, [61, 291]] = np.nan  # two lip points never detected
        if i == 1:
            raw[:, :, landmarks.RIGHT_HAND :] = np.nan
        arrays.append(raw)
    prepared = data.prepare_arrays(arrays, rng.integers(0, 10, size=n), config or DataConfig())
    return prepared.merge(torch.arange(n))


def _points(features: torch.Tensor, C: int = 2) -> torch.Tensor:
    return features.view(*features.shape[:2], -1, C)  # (N, T, J, C)


def _missing(features: torch.Tensor) -> torch.Tensor:
    return (_points(features) == 0).all(-1)  # (N, T, J)


def _assert_well_formed(before: data.Batch, after: data.Batch) -> None:
    """Labels and indices kept, valid built from lengths, padded frames exactly 0."""
    assert torch.equal(after.labels, before.labels) and torch.equal(after.indices, before.indices)
    T = int(after.lengths.max())
    assert after.features.shape == (len(before.labels), T, before.features.shape[2])
    assert torch.equal(after.valid, torch.arange(T)[None] < after.lengths[:, None])
    assert after.features[~after.valid].abs().sum() == 0
    assert torch.isfinite(after.features).all()


PARTS = torch.tensor(
    landmarks.part_of(landmarks.SELECTIONS["fullbody"])
)  # (J,) part of each landmark
ALL_ON = {
    "flip": lambda d: augment.HorizontalFlip(d, probability=1.0),
    "affine": lambda d: augment.Affine(
        d, probability=1.0, rotation=30, shear=0.2, scale=0.2, shift=0.1
    ),
    "noise": lambda d: augment.Noise(d, probability=1.0, std=0.05, uniform=0.05),
    "crop": lambda d: augment.TemporalCrop(probability=1.0, min_fraction=0.5),
    "resample": lambda d: augment.Resample(probability=1.0, max_change=0.3),
    "drop_part": lambda d: augment.DropPart(d, probability=1.0),
    "drop_joints": lambda d: augment.DropJoints(d, probability=1.0, fraction=0.3),
    "drop_time": lambda d: augment.DropTimeSpan(d, probability=1.0, max_fraction=0.3),
}


@pytest.mark.parametrize("name", sorted(ALL_ON))
def test_each_augmentation_keeps_the_batch_well_formed(name):
    """At probability 1: labels kept, valid == arange < lengths, padding 0, no NaN."""
    batch = _batch()
    after = ALL_ON[name](DataConfig())(batch, torch.Generator().manual_seed(0))
    _assert_well_formed(batch, after)
    assert not torch.equal(after.features, batch.features)  # it did something


@pytest.mark.parametrize("name", sorted(ALL_ON))
def test_probability_zero_is_identity(name):
    """At probability 0 every augmentation returns the batch unchanged, bit for bit."""
    batch = _batch()
    transform = ALL_ON[name](DataConfig())
    transform.probability = 0.0
    after = transform(batch, torch.Generator().manual_seed(0))
    assert torch.equal(after.features, batch.features) and torch.equal(after.valid, batch.valid)
    assert torch.equal(after.lengths, batch.lengths) and torch.equal(after.labels, batch.labels)


@pytest.mark.parametrize("name", ["affine", "noise", "drop_part", "drop_joints", "drop_time"])
def test_missing_points_stay_missing(name):
    """Augmentations that keep the frames never make a missing landmark reappear."""
    batch = _batch()
    after = ALL_ON[name](DataConfig())(batch, torch.Generator().manual_seed(0))
    assert after.features.shape == batch.features.shape
    assert (_missing(after.features) >= _missing(batch.features)).all()


def test_rotation_keeps_distances_to_each_part_origin():
    """A rotation moves points but keeps each one's distance to its part's origin."""
    batch = _batch()
    rotate = augment.Affine(DataConfig(), probability=1.0, rotation=30, shear=0, scale=0, shift=0)
    after = rotate(batch, torch.Generator().manual_seed(0))
    before_xy, after_xy = _points(batch.features), _points(after.features)
    assert torch.allclose(after_xy.norm(dim=-1), before_xy.norm(dim=-1), atol=1e-5)
    present = ~_missing(batch.features)
    assert (after_xy - before_xy).norm(dim=-1)[present].mean() > 0.05
    assert torch.equal(_missing(after.features), _missing(batch.features))


def _rotate_raw(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a raw (F, 543, 3) track in the image about its centre (x, y only)."""
    angle = torch.tensor(math.radians(degrees))
    cos, sin = angle.cos(), angle.sin()
    x, y = frames[..., 0] - 0.5, frames[..., 1] - 0.5
    rotated = frames.clone()
    rotated[..., 0] = cos * x - sin * y + 0.5
    rotated[..., 1] = sin * x + cos * y + 0.5
    return rotated


def test_affine_rotation_equals_rotating_the_video():
    """Rotating the raw video then normalising equals rotating each normalised part."""
    rng = np.random.default_rng(1)
    raw = torch.from_numpy(rng.uniform(0.3, 0.7, size=(12, 543, 3)).astype(np.float32))
    raw[4, landmarks.RIGHT_HAND :] = float("nan")
    config, lengths = DataConfig(), torch.tensor([12])
    features = preprocess(raw, lengths, config)[None]  # (1, T, D)
    expected = preprocess(_rotate_raw(raw, 25.0), lengths, config)[None]
    affine = augment.Affine(config, probability=1.0, rotation=0, shear=0, scale=0, shift=0)
    angle = torch.tensor(math.radians(25.0))
    matrix = torch.tensor([[angle.cos(), -angle.sin()], [angle.sin(), angle.cos()]])[None]
    got = affine.apply(features, matrix, torch.ones(1, 4), torch.zeros(1, 4, 2))
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(features, expected, atol=1e-2)  # and it did change the input


def test_affine_scale_and_shift_are_per_part():
    """Scale and shift are one factor and one vector per part, different across parts."""
    batch = _batch()
    present = ~_missing(batch.features)  # (N, T, J)
    generator = torch.Generator().manual_seed(0)
    scale = augment.Affine(DataConfig(), probability=1.0, rotation=0, shear=0, scale=0.3, shift=0)
    ratio = _points(scale(batch, generator).features) / _points(batch.features)
    shift = augment.Affine(DataConfig(), probability=1.0, rotation=0, shear=0, scale=0, shift=0.2)
    moved = _points(shift(batch, generator).features) - _points(batch.features)
    assert torch.equal(_missing(shift(batch, generator).features), ~present)
    for n in range(len(batch.labels)):
        factors, vectors = [], []
        for part in range(4):
            here = present[n][:, PARTS == part]  # (T, J_part)
            if not here.any():
                continue
            r = ratio[n][:, PARTS == part][here]  # (present points, C)
            v = moved[n][:, PARTS == part][here]
            assert torch.allclose(r, r[0, 0].expand_as(r), atol=1e-4) and 0.7 <= r[0, 0] <= 1.3
            assert torch.allclose(v, v[0].expand_as(v), atol=1e-5) and v.abs().max() <= 0.2
            factors.append(r[0, 0])
            vectors.append(v[0])
        assert len(set(f.item() for f in factors)) == len(factors)
        assert len(set(tuple(v.tolist()) for v in vectors)) == len(vectors)


def test_noise_moves_present_points_only():
    """Noise moves every present coordinate, leaves missing ones 0, keeps its bound."""
    batch = _batch()
    present = ~_missing(batch.features)
    noise = augment.Noise(DataConfig(), probability=1.0, std=0.05, uniform=0.0)
    after = noise(batch, torch.Generator().manual_seed(0))
    change = _points(after.features) - _points(batch.features)
    assert (change[present] != 0).all() and (change[~present] == 0).all()
    assert 0.04 < change[present].std() < 0.06
    uniform = augment.Noise(DataConfig(), probability=1.0, std=0.0, uniform=0.03)
    change = uniform(batch, torch.Generator().manual_seed(0)).features - batch.features
    assert change.abs().max() <= 0.03 and change.abs().max() > 0.02


def test_crop_keeps_a_contiguous_span():
    """Each cropped sequence is a contiguous run of its frames, at least min_fraction long."""
    batch = _batch()
    crop = augment.TemporalCrop(probability=1.0, min_fraction=0.5)
    after = crop(batch, torch.Generator().manual_seed(0))
    _assert_well_formed(batch, after)
    L, kept = batch.lengths, after.lengths
    assert ((kept >= (0.5 * L).ceil()) & (kept <= L)).all() and (kept < L).any()
    for n in range(len(L)):
        window = after.features[n, : kept[n]]
        source = batch.features[n, : L[n]].unfold(0, int(kept[n]), 1).permute(0, 2, 1)
        assert any(torch.equal(window, s) for s in source)


def test_resample_lengths_and_interpolation():
    """Resampled lengths are in bounds and frames are linear in time between sources."""
    lengths = torch.tensor([1, 2, 7, 20, 33])
    T = int(lengths.max())
    ramp = (1 + torch.arange(T, dtype=torch.float32))[None, :, None] * torch.ones(5, 1, 260)
    valid = torch.arange(T)[None] < lengths[:, None]
    batch = data.Batch(ramp * valid[..., None], valid, lengths, torch.arange(5), torch.arange(5))
    resample = augment.Resample(probability=1.0, max_change=0.3)
    after = resample(batch, torch.Generator().manual_seed(3))
    _assert_well_formed(batch, after)
    new = after.lengths
    assert ((new >= (0.7 * lengths).floor().clamp(min=1)) & (new <= (1.3 * lengths).ceil())).all()
    assert not torch.equal(new, lengths)
    for n in range(5):
        step = (lengths[n] - 1) / max(int(new[n]) - 1, 1)
        expected = 1 + torch.arange(int(new[n])) * step  # the ramp at the source positions
        assert torch.allclose(after.features[n, : new[n], 0], expected, atol=1e-4)


def test_resample_never_blends_with_a_missing_point():
    """Next to a missing frame resampling copies the nearer frame, never a blend."""
    T = 21
    features = torch.full((4, T, 260), 0.7)
    features[:, 1::2, :] = 0.0  # every landmark missing in odd frames
    lengths = torch.tensor([T, T, 15, 9])
    valid = torch.arange(T)[None] < lengths[:, None]
    features = features * valid[..., None]
    batch = data.Batch(features, valid, lengths, torch.arange(4), torch.arange(4))
    resample = augment.Resample(probability=1.0, max_change=0.3)
    after = resample(batch, torch.Generator().manual_seed(0))
    values = after.features[after.valid]
    assert ((values == 0) | (values == 0.7)).all() and (values == 0).any()
    assert not torch.equal(after.lengths, lengths)


def test_resample_at_factor_one_is_identity():
    """A speed factor of exactly 1 returns every sequence unchanged."""
    batch = _batch()
    resample = augment.Resample(probability=1.0, max_change=0.0)
    after = resample(batch, torch.Generator().manual_seed(0))
    assert torch.equal(after.features, batch.features) and torch.equal(after.valid, batch.valid)


@pytest.mark.parametrize("name", ["crop", "resample"])
def test_retiming_keeps_never_seen_points_missing(name):
    """A landmark missing in every frame is still missing after a crop or a resample."""
    batch = _batch()
    after = ALL_ON[name](DataConfig())(batch, torch.Generator().manual_seed(0))
    never_before = (_missing(batch.features) | ~batch.valid[..., None]).all(1)  # (N, J)
    never_after = (_missing(after.features) | ~after.valid[..., None]).all(1)
    assert (never_after >= never_before).all() and never_before[1, 109:].all()
    values = _points(after.features)[~_missing(after.features)]
    assert values.abs().min() > 0  # no point pulled to (or through) the origin by a zero


def test_drop_part_zeroes_exactly_one_part():
    """Each sequence loses exactly one whole part; over a batch every part gets dropped."""
    batch = _batch(n=32)
    after = augment.DropPart(DataConfig(), probability=1.0)(batch, torch.Generator().manual_seed(0))
    before_x, after_x = _points(batch.features), _points(after.features)
    dropped = []
    for n in range(32):
        changed = [
            p
            for p in range(4)
            if not torch.equal(after_x[n][:, PARTS == p], before_x[n][:, PARTS == p])
        ]
        zero = [p for p in range(4) if after_x[n][:, PARTS == p].abs().sum() == 0]
        # sequence 1 has no right hand to drop: drawing it there changes nothing
        assert (len(changed) == 1 and set(changed) <= set(zero)) or (n == 1 and zero == [3])
        dropped += changed
    assert set(dropped) == {0, 1, 2, 3}


def test_drop_joints_drops_the_same_joints_in_every_frame():
    """Dropped landmarks are 0 in every frame of their sequence; the rest are unchanged."""
    batch = _batch()
    drop = augment.DropJoints(DataConfig(), probability=1.0, fraction=0.3)
    after = drop(batch, torch.Generator().manual_seed(0))
    before_x, after_x = _points(batch.features), _points(after.features)
    changed = (before_x != after_x).any(-1).any(1)  # (N, J) joints touched in some frame
    assert (after_x.abs().sum((1, 3))[changed] == 0).all()
    fraction = changed.float().mean()
    assert 0.15 < fraction < 0.35


def test_drop_time_span_keeps_frames_valid():
    """A contiguous span of frames goes missing; valid, lengths and other frames stay."""
    batch = _batch()
    drop = augment.DropTimeSpan(DataConfig(), probability=1.0, max_fraction=0.3)
    after = drop(batch, torch.Generator().manual_seed(0))
    assert torch.equal(after.valid, batch.valid) and torch.equal(after.lengths, batch.lengths)
    changed = (after.features != batch.features).any(-1)  # (N, T)
    assert (after.features[changed] == 0).all() and changed.any()
    for n, length in enumerate(batch.lengths.tolist()):
        frames = changed[n].nonzero().flatten()
        if len(frames):
            assert frames[-1] - frames[0] + 1 <= math.ceil(0.3 * length) and frames[-1] < length
            assert (after.features[n, frames[0] : frames[-1] + 1] == 0).all()  # contiguous


def test_build_composes_and_switches_off():
    """build is None when all is off; same seed same output, other seed or epoch differs."""
    assert augment.build(presets.NO_AUGMENT, DataConfig()) is None
    pipeline = augment.build(presets.ALL_AUGMENTATIONS, DataConfig())
    batch = _batch()
    one = pipeline(batch, torch.Generator().manual_seed(7))
    again = pipeline(batch, torch.Generator().manual_seed(7))
    assert torch.equal(one.features, again.features) and torch.equal(one.lengths, again.lengths)
    generator = torch.Generator().manual_seed(8)
    other = pipeline(batch, generator)
    later = pipeline(batch, generator)  # the generator advanced, as it does between epochs
    for a, b in ((one, other), (other, later)):
        assert a.features.shape != b.features.shape or not torch.equal(a.features, b.features)
    _assert_well_formed(batch, one)
    everything = {name: 1.0 for name in ALL_ON}
    _assert_well_formed(
        batch, augment.build(augment.AugmentConfig(**everything), DataConfig())(batch, generator)
    )


@pytest.mark.parametrize(
    "bad",
    [dict(affine=1.5), dict(noise_std=-0.1), dict(shear=1.0), dict(crop_min=0.0)],
    ids=["probability-above-one", "negative-std", "shear-one", "crop-keeps-nothing"],
)
def test_config_rejects_bad_values(bad):
    """Probabilities outside [0, 1], a shear of 1 or a crop keeping nothing are refused."""
    with pytest.raises(ValueError, match="augmentation"):
        augment.AugmentConfig(**bad)


def test_affine_needs_normalised_features():
    """The affine transform needs parts-normalised features; noise, crops and drops work on raw
    coordinates too."""
    with pytest.raises(ValueError, match="parts-normalised"):
        augment.build(augment.AugmentConfig(flip=0.0, affine=0.5), DataConfig(normalize=False))
    raw = augment.build(augment.AugmentConfig(flip=0.0, noise=1.0), DataConfig(normalize=False))
    assert raw is not None  # noise, crops and drops do not need normalised features
