"""Reading the GISLR layout, signer splits, preprocessing and the padded merge."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import require_real_data, write_gislr

import data
import landmarks
from data import DataError
from preprocessing import DataConfig, preprocess


def test_reads_real_data():
    """The reader finds every signer and sequence of the real two-sign set, shapes intact."""
    dataset = data.load_dataset(require_real_data())
    assert len(dataset) == 642
    assert len(set(dataset.signers)) == 18 and "16069" in set(dataset.signers)
    assert dataset.vocabulary == {"hello": 0, "thankyou": 1}
    assert all(f.shape[0] == 3 and f.shape[2] == 543 for f in dataset.features)
    assert set(dataset.labels.tolist()) == {0, 1}


def test_subset_keeps_only_named_signers(tiny_data):
    """subset() keeps exactly the sequences of the named signers, aligned with their labels."""
    dataset = data.load_dataset(tiny_data)
    part = dataset.subset({"101", "303"})
    assert len(part) == 24 and set(part.signers) == {"101", "303"}
    i = dataset.sequence_ids.index(part.sequence_ids[5])
    assert np.array_equal(dataset.features[i], part.features[5], equal_nan=True)
    assert dataset.labels[i] == part.labels[5]


def test_split_signers_defaults_and_errors():
    """The validation signers default to other signers, never the test one; unknown ids fail."""
    train, val, test = data.split_signers(["16069", "2044", "4718", "30680"], "16069")
    assert (val, test) == (["2044"], "16069") and sorted(train) == ["30680", "4718"]
    assert data.split_signers(["1", "2", "3"], None) == (["2", "3"], ["1"], None)
    train, val, _ = data.split_signers(["1", "2", "3", "4", "5"], "1", 2)
    assert (train, val) == (["4", "5"], ["2", "3"])
    train, val, _ = data.split_signers(["1", "2", "3", "4", "5"], "1", ["5", "3"])
    assert (train, val) == (["2", "4"], ["5", "3"])
    # "numeric order": signer 9 comes before 10 (text order would pick 10)
    assert data.split_signers(["10", "9", "11"], None)[1] == ["9"]
    with pytest.raises(DataError, match="test signer 999 is not in the data"):
        data.split_signers(["1", "2", "3"], "999")
    with pytest.raises(DataError, match="validation signer 999"):
        data.split_signers(["1", "2", "3"], "1", ["2", "999"])
    with pytest.raises(DataError, match="must not include the test signer"):
        data.split_signers(["1", "2", "3"], "1", ["1"])
    with pytest.raises(DataError, match=r"no signer is left to train on \(1, 2, 3: test 1, valid"):
        data.split_signers(["1", "2", "3"], "1", 2)
    with pytest.raises(DataError, match="at least 3 signers"):
        data.split_signers(["1", "2"], "1")


def test_signer_folds_are_disjoint_and_validate_elsewhere():
    """Every signer is tested exactly once; validation signers are never the fold's test signers."""
    signers = [str(i) for i in range(1, 19)]
    for val_signers in (1, 2):
        folds = data.signer_folds(signers, 3, val_signers)
        tested = sorted((s for _, _, test in folds for s in test), key=int)
        assert tested == signers
        for train, val, test in folds:
            assert len(val) == val_signers and not set(val) & set(test)
            assert sorted(train + val + test, key=int) == signers
    with pytest.raises(DataError, match="--val-signers must be 1..6"):
        data.signer_folds(signers, 3, 7)
    with pytest.raises(DataError, match="--folds 2 leaves a fold no training signer: more signers"):
        data.signer_folds(["1", "2", "3"], 2)  # "--folds must be 2..2" said 2 would do
    with pytest.raises(DataError, match="no training signer: --folds 3"):
        data.signer_folds(["1", "2", "3", "4"], 2, 2)


def _bad_sequence(root, feature=None, token=None):
    with h5py.File(root / "101.hdf5", "a") as file:
        group = file.create_group("999999")
        group["feature"] = feature if feature is not None else np.zeros((3, 4, 543), np.float32)
        group["token"] = token if token is not None else np.array([0])


def _unlabelled_copy(source, target):
    """The sequences of a signer file without their tokens, as recordings to predict on."""
    with h5py.File(source) as file:
        features = {name: group["feature"][()] for name, group in file.items()}
    with h5py.File(target, "w") as file:
        for name, feature in features.items():
            file.create_group(name)["feature"] = feature


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: [p.unlink() for p in root.glob("*.hdf5")], "holds no <participant_id>.hdf5"),
        (
            lambda root: (
                [p.unlink() for p in root.glob("*.hdf5")]
                + [(root / "train.csv").write_text("path,participant_id,sequence_id,sign\n")]
            ),
            "looks like the Kaggle parquet layout: convert it first with python islr.py prepare",
        ),
        (
            lambda root: (root / "sign_to_prediction_index_map.json").unlink(),
            "has no sign_to_prediction",
        ),
        (
            lambda root: (root / "sign_to_prediction_index_map.json").write_text("{"),
            "not valid JSON",
        ),
        (lambda root: (root / "101.hdf5").write_bytes(b"not hdf5 at all"), "not a readable HDF5"),
        (
            lambda root: (root / "202.hdf5").write_bytes((root / "202.hdf5").read_bytes()[:3000]),
            "not a readable HDF5",
        ),
        (
            lambda root: _bad_sequence(root, feature=np.zeros((3, 4, 500), np.float32)),
            r"expected \[3, T, 543\]",
        ),
        (
            lambda root: _bad_sequence(root, feature=np.zeros((4, 543), np.float32)),
            r"expected \[3, T, 543\]",
        ),
        (lambda root: _bad_sequence(root, feature=np.zeros((3, 0, 543), np.float32)), "0 frames"),
        (
            lambda root: _bad_sequence(root, token=np.array([7])),
            "token 7 is outside the vocabulary",
        ),
        (
            lambda root: _bad_sequence(root, token=np.array([1.7])),
            "token has type float64, expected an integer",
        ),
        (
            lambda root: _unlabelled_copy(root / "101.hdf5", root / "101.hdf5"),
            "is not a group with `feature` and `token`",
        ),
    ],
)
def test_bad_data_is_one_clear_error(tiny_data, damage, message):
    """Each kind of broken dataset raises DataError naming the problem."""
    damage(tiny_data)
    with pytest.raises(DataError, match=message):
        data.load_dataset(tiny_data)


def test_missing_directory_and_signer(tmp_path, tiny_data):
    """A missing directory or an unknown signer is a DataError."""
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="signer 555 is not in"):
        data.load_dataset(tiny_data, signers={"555"})


def _frames(rng, T=8):
    """One random but well-formed sequence (T, 543, 3), every landmark present."""
    x = rng.uniform(0.2, 0.8, size=(T, 543, 3)).astype(np.float32)
    return torch.from_numpy(x)


def test_fullbody_preset_shape():
    """fullbody + xy gives 130 landmarks * 2 = 260 features; all + xyz gives 1629."""
    x = _frames(np.random.default_rng(0))
    assert preprocess(x, torch.tensor([8]), DataConfig()).shape == (8, 260)
    config = DataConfig(landmarks="all", coordinates="xyz")
    assert preprocess(x, torch.tensor([8]), config).shape == (8, 1629) == (8, config.num_features)


def test_xyz_adds_the_z_channel():
    """xyz keeps x, y and z of each selected landmark, in that order."""
    x = _frames(np.random.default_rng(4))
    selected = list(landmarks.SELECTIONS["fullbody"])
    config = DataConfig(coordinates="xyz", normalize=False)
    assert torch.equal(preprocess(x, torch.tensor([8]), config).view(8, 130, 3), x[:, selected])


@pytest.mark.parametrize("align", ["framewise", "unique"])
@pytest.mark.parametrize("scale", ["framewise", "unique"])
def test_align_and_scale_modes(align, scale):
    """The pose is centred on the shoulders' midpoint and scaled by their distance: in every
    frame (framewise), or by one origin and one unit per sequence (unique), with which the
    body's drift and growth over the clip stay visible."""
    x = _frames(np.random.default_rng(3))
    t = torch.arange(8.0)[:, None, None]
    x[..., :2] = (x[..., :2] - 0.5) * (1 + 0.1 * t) + 0.5 + 0.02 * t  # drifts and grows
    config = DataConfig(align=align, scale=scale)
    y = preprocess(x, torch.tensor([8]), config).view(8, 130, 2)
    selected = landmarks.SELECTIONS["fullbody"]
    left, right = (y[:, selected.index(landmarks.POSE + i)] for i in (11, 12))
    middle, width = (left + right) / 2, (left - right).norm(dim=-1)  # (8, 2), (8,)
    if align == "framewise":
        assert middle.abs().max() < 1e-5
    else:
        assert middle.abs().max() > 0.05
    if scale == "framewise":
        assert torch.allclose(width, torch.ones(8), atol=1e-5)
    else:  # one unit: the clip's mean shoulder width
        assert width.mean() == pytest.approx(1, abs=1e-5) and width.max() - width.min() > 0.3
        assert middle.mean(0).abs().max() < 1e-5  # one origin: the clip's mean midpoint


def test_normalisation_removes_position_and_size():
    """Moving and scaling the whole body in the image leaves the normalised features unchanged."""
    x = _frames(np.random.default_rng(1))
    moved = x.clone()
    moved[..., :2] = moved[..., :2] * 1.7 + torch.tensor([0.3, -0.2])
    moved[..., 2] = moved[..., 2] * 1.7
    a = preprocess(x, torch.tensor([8]), DataConfig())
    b = preprocess(moved, torch.tensor([8]), DataConfig())
    assert torch.allclose(a, b, atol=1e-4)
    raw = preprocess(moved, torch.tensor([8]), DataConfig(normalize=False))
    assert not torch.allclose(raw, preprocess(x, torch.tensor([8]), DataConfig(normalize=False)))


def test_hands_are_normalised_mirror_alike():
    """Mirroring the image and swapping the hands maps one hand's features onto the other's."""
    x = _frames(np.random.default_rng(2))
    mirrored = x.clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    mirrored[:, 468:489], mirrored[:, 522:543] = x[:, 522:543].clone(), x[:, 468:489].clone()
    mirrored[:, 468:489, 0] = 1 - x[:, 522:543, 0]
    mirrored[:, 522:543, 0] = 1 - x[:, 468:489, 0]
    a = preprocess(x, torch.tensor([8]), DataConfig()).view(8, 130, 2)
    b = preprocess(mirrored, torch.tensor([8]), DataConfig()).view(8, 130, 2)
    left, right = slice(76, 97), slice(109, 130)
    flip = torch.tensor([-1.0, 1.0])
    assert torch.allclose(a[:, left], b[:, right] * flip, atol=1e-5)
    assert torch.allclose(a[:, right], b[:, left] * flip, atol=1e-5)


def test_missing_points_are_zero_and_sequences_independent():
    """NaN landmarks become exactly 0, and a sequence's features do not depend on its neighbours."""
    rng = np.random.default_rng(3)
    x, y = _frames(rng, 8), _frames(rng, 5)
    x[2, 468:489] = float("nan")  # left hand out of view in frame 2
    both = preprocess(torch.cat([x, y]), torch.tensor([8, 5]), DataConfig(align="unique"))
    alone = preprocess(x, torch.tensor([8]), DataConfig(align="unique"))
    assert torch.equal(both[:8], alone)
    assert both[2].view(130, 2)[76:97].abs().sum() == 0
    assert both[3].view(130, 2)[76:97].abs().sum() > 0


def test_infinite_values_count_as_missing():
    """An inf coordinate is a missing landmark like NaN, not a value that overflows training."""
    x = _frames(np.random.default_rng(4))
    x[0, 500, 0], x[1, 470, 1] = float("inf"), float("-inf")  # left shoulder, a left-hand point
    nan = x.clone()
    nan[0, 500], nan[1, 470] = float("nan"), float("nan")
    for config in (
        DataConfig(),
        DataConfig(align="unique", scale="unique"),
        DataConfig(normalize=False),
    ):
        y = preprocess(x, torch.tensor([8]), config)
        assert y.isfinite().all() and torch.equal(y, preprocess(nan, torch.tensor([8]), config))


def test_a_part_missing_any_reference_point_counts_as_missing():
    """Without face point 33 (an end of its unit length) the face of that frame is missing."""
    x = _frames(np.random.default_rng(5))
    x[0, 33] = float("nan")
    face = preprocess(x, torch.tensor([8]), DataConfig()).view(8, 130, 2)[:, :76]
    assert face[0].abs().sum() == 0 and (face[1:].abs().sum((1, 2)) > 0).all()


def test_merge_pads_with_zeros_and_builds_valid_from_lengths(tiny_data):
    """The padded merge pads with 0, marks real frames valid by length, even all-missing frames."""
    dataset = data.load_dataset(tiny_data)
    dataset.features[0][:, 0, :] = np.nan  # a real frame where nothing was detected
    prepared = data.prepare(dataset, DataConfig())
    indices = torch.tensor([0, 1, 2])
    batch = prepared.merge(indices)
    lengths = prepared.lengths[indices]
    assert batch.features.shape == (3, int(lengths.max()), 260)
    assert torch.equal(batch.valid.sum(1), lengths) and bool(batch.valid[0, 0])
    assert batch.features[0, 0].abs().sum() == 0  # all missing, yet valid
    for row, length in enumerate(lengths.tolist()):
        start = int(prepared.offsets[row])
        assert torch.equal(batch.features[row, :length], prepared.frames[start : start + length])
        assert batch.features[row, length:].abs().sum() == 0


def test_batches_cover_every_sequence_once(tiny_data):
    """Shuffled, bucketed batches visit each sequence exactly once per epoch."""
    prepared = data.prepare(data.load_dataset(tiny_data), DataConfig())
    generator = torch.Generator().manual_seed(0)
    seen = torch.cat([b.indices for b in prepared.batches(5, shuffle=True, generator=generator)])
    assert sorted(seen.tolist()) == list(range(len(prepared)))
    assert sorted(torch.cat([b.indices for b in prepared.batches(7)]).tolist()) == list(range(48))


def test_shuffled_batches_change_batch_mates_and_stay_bucketed():
    """Epoch to epoch, most pairs of batch-mates are new (sorting one pool by length kept 72%
    of them on the real training set), while padding stays near bucketed, not random."""
    lengths = torch.randint(2, 100, (572,), generator=torch.Generator().manual_seed(0))
    offsets = torch.cumsum(lengths, 0) - lengths
    prepared = data.Prepared(torch.zeros(int(lengths.sum()), 1), offsets, lengths, lengths * 0)
    generator = torch.Generator().manual_seed(0)
    epochs = [
        [b.indices.tolist() for b in prepared.batches(32, shuffle=True, generator=generator)]
        for _ in range(2)
    ]
    pairs = [{(i, j) for batch in epoch for i in batch for j in batch if i < j} for epoch in epochs]
    assert len(pairs[0] & pairs[1]) / len(pairs[0]) < 0.5
    padded = sum(len(batch) * int(lengths[batch].max()) for batch in epochs[0])
    assert padded / int(lengths.sum()) < 1.5  # random batches: about 1.9 here


def test_vocabulary_must_be_indices_0_to_k(tmp_path):
    """A dictionary whose indices are not 0..K-1 is refused."""
    root = write_gislr(tmp_path / "d")
    path = root / "sign_to_prediction_index_map.json"
    for bad, message in (
        ({"a": 0, "b": 5}, "distinct integer index"),
        ({"a": 0, "b": "1"}, "distinct integer index"),
        ({"a": 0.0, "b": True}, "distinct integer index"),
        (["a", "b"], "JSON object"),
        ({}, "JSON object"),
        ({"a": 0}, "holds one sign: a classifier needs at least two"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=message):
            data.load_dataset(root)
