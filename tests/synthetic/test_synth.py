"""The synthetic GISLR top-10 set: layout, determinism, plausible values, mirrored signers."""

import dataclasses
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import one_line_error, require_real_data, run, start

import data
from synthetic import clips, lexicon, synth

LEFT, RIGHT = slice(468, 489), slice(522, 543)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """3 signers x 60 sequences, seed 0: big enough for rates, small enough to be fast."""
    out = tmp_path_factory.mktemp("synthetic")
    assert synth.generate(out, seed=0, num_signers=3, sequences_per_signer=60) == 180
    return out


def _structure(path: Path) -> dict:
    """What a reader relies on in one signer file: names, dtypes, ranks, filters."""
    with h5py.File(path, "r") as file:
        groups = list(file.values())
        feature, token = groups[0]["feature"], groups[0]["token"]
        return dict(
            names_numeric=all(name.isdigit() for name in file),
            members={tuple(sorted(group)) for group in groups},
            feature=(feature.dtype, feature.ndim, feature.shape[0], feature.shape[2]),
            feature_filters=(feature.compression, feature.shuffle),
            token=(token.dtype, token.shape, token.compression),
        )


def test_layout_matches_real_data(small):
    """Same files, group and dataset names, dtypes, shapes and filters as a real GISLR file."""
    names = sorted(path.name for path in small.iterdir())
    assert names == [
        "16069.hdf5",
        "2044.hdf5",
        "4718.hdf5",
        "LICENSE.txt",
        "README.txt",
        "sign_to_prediction_index_map.json",
    ]
    assert json.loads((small / "sign_to_prediction_index_map.json").read_text()) == {
        "listen": 0,
        "look": 1,
        "shhh": 2,
        "donkey": 3,
        "mouse": 4,
        "duck": 5,
        "uncle": 6,
        "hear": 7,
        "pretend": 8,
        "cow": 9,
    }
    for name in ("README.txt", "LICENSE.txt"):
        text = (small / name).read_text()
        assert "Synthetic" in text and "not the real gislr" in text.lower()
        assert f"python islr.py synth {small} --seed 0" in text
    assert _structure(small / "16069.hdf5") == _structure(require_real_data() / "16069.hdf5")


def test_the_project_reader_loads_it(small):
    """data.load_dataset reads the set: 180 sequences, 3 signers, unique ids, valid labels."""
    dataset = data.load_dataset(small)
    assert len(dataset) == 180 and set(dataset.signers) == {"16069", "2044", "4718"}
    assert dataset.vocabulary == lexicon.VOCABULARY
    assert len(set(dataset.sequence_ids)) == 180 and all(i.isdigit() for i in dataset.sequence_ids)
    assert all(f.dtype == np.float32 and f.shape[::2] == (3, 543) for f in dataset.features)
    assert dataset.labels.dtype == np.int64 and np.bincount(dataset.labels).tolist() == [18] * 10


def test_same_seed_same_bytes_other_seed_other_values(tmp_path):
    """Regenerating with a seed rewrites identical bytes; another seed gives other data."""
    first = synth.generate(tmp_path / "a", seed=3, num_signers=2, sequences_per_signer=10)
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert synth.generate(tmp_path / "a", seed=3, num_signers=2, sequences_per_signer=10) == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    synth.generate(tmp_path / "b", seed=4, num_signers=2, sequences_per_signer=10)
    for name in ("16069.hdf5", "2044.hdf5"):
        assert (tmp_path / "b" / name).read_bytes() != before[name]


def test_values_in_real_ranges_and_nan_rates_in_bounds(small):
    """Coordinates lie where MediaPipe's do; NaN rates and lengths are in the stated bands."""
    dataset = data.load_dataset(small)
    lengths = np.array([f.shape[1] for f in dataset.features])
    assert lengths.min() >= 2 and lengths.max() <= 100 and 14 <= np.median(lengths) <= 28
    assert 0.1 <= np.mean(lengths <= 6) <= 0.3  # about one clip in five is short
    frames = np.concatenate(dataset.features, 1)  # (3, F, 543)
    assert 0.02 <= np.isnan(frames).mean() <= 0.10  # real data: 0.06
    whole = np.isnan(frames[0]).all(1)
    assert whole.mean() <= 0.02
    assert not np.isnan(frames[:, ~whole, 489:522]).any()  # the pose is always estimated
    assert np.isnan(frames[0, ~whole, :468]).all(1).mean() <= 0.02
    signer = np.repeat(dataset.signers, lengths)
    for name in set(signer):  # frames without the hand: signing, other (real: 0.24-0.73, 1)
        missing = np.sort(np.isnan(frames[0][signer == name][:, [468, 522]]).mean(0))
        assert 0.1 <= missing[0] <= 0.75 and 0.7 <= missing[1] <= 1.0
    face, hands = frames[:, :, :468], frames[:, :, np.r_[LEFT, RIGHT]]
    inside = lambda v, low, high: np.mean((v >= low) & (v <= high))  # noqa: E731
    assert inside(face[:2][~np.isnan(face[:2])], 0, 1) >= 0.99
    hands_xy = hands[:2][~np.isnan(hands[:2])]  # fingers may leave the frame (real: 99.5% in)
    assert inside(hands_xy, 0, 1) >= 0.98 and inside(hands_xy, -0.3, 1.3) == 1.0
    assert inside(face[2][~np.isnan(face[2])], -0.15, 0.2) == 1.0
    assert inside(hands[2][~np.isnan(hands[2])], -0.35, 0.15) == 1.0
    assert np.nanmax(np.abs(frames[2, :, [468, 522]])) == 0  # hand z is relative to the wrist
    pose = frames[:, ~whole, 489:522]
    assert inside(pose[0], -0.5, 1.5) == 1.0 and inside(pose[2], -4, 3) == 1.0
    # Shoulders are level, left (odd) on the image's right, a believable width apart.
    width = pose[0, :, 11] - pose[0, :, 12]
    assert np.all(width > 0.3) and np.all(width < 0.8)


def _shoulder_frame(clip: np.ndarray, part: slice) -> np.ndarray:
    """(T, J, 2): a part's points with the origin between the shoulders, x along them."""
    left, right = clip[:2, :, 489 + 11], clip[:2, :, 489 + 12]  # (2, T) each
    across = (left - right) / np.linalg.norm(left - right, axis=0)
    points = clip[:2, :, part] - ((left + right) / 2)[..., None]  # (2, T, J)
    x = across[0, :, None] * points[0] + across[1, :, None] * points[1]
    y = -across[1, :, None] * points[0] + across[0, :, None] * points[1]
    return np.stack([x, y], -1)


def test_left_handed_signer_is_the_mirror_image(monkeypatch):
    """A left-handed twin signs with the left_hand block, mirrored in x, y unchanged."""
    monkeypatch.setattr(clips, "NOISE", np.zeros_like(clips.NOISE))  # exact geometry only
    signer = clips.make_signer(np.random.default_rng(1), "1", left_handed=False)
    twin = dataclasses.replace(signer, left_handed=True)
    labels = np.arange(40) % 10
    _, signs = lexicon.vocabulary(10)
    right = clips.signer_clips(np.random.default_rng(2), signer, labels, signs)
    left = clips.signer_clips(np.random.default_rng(2), twin, labels, signs)
    compared = 0
    for clip, twin_clip in zip(right, left, strict=True):
        both = ~np.isnan(clip[0, :, RIGHT]) & ~np.isnan(twin_clip[0, :, LEFT])
        mirrored = _shoulder_frame(clip, RIGHT) * (-1, 1)
        assert np.abs(_shoulder_frame(twin_clip, LEFT) - mirrored)[both].max(initial=0) < 1e-4
        compared += both.sum()
    assert compared > 1000  # a real comparison: the signing hand is seen in most clips


def test_left_handed_signer_in_the_files_signs_on_the_image_right(small):
    """In the written set one of 3 signers is left-handed: left hand seen most, beside the face."""
    sides = {}
    for path in small.glob("*.hdf5"):
        with h5py.File(path, "r") as file:
            frames = np.concatenate([group["feature"][()] for group in file.values()], 1)
        seen = (~np.isnan(frames[0][:, [468, 522]])).mean(0)
        hand = LEFT if seen[0] > seen[1] else RIGHT
        offset = np.nanmedian(frames[0, :, hand].mean(1) - frames[0, :, 489])  # from the nose
        sides[path.stem] = (hand == LEFT, offset > 0)
    assert sides["16069"] == (False, False)  # the default test signer is right-handed
    assert sorted(sides.values()) == [(False, False), (False, False), (True, True)]
    lefty = next(name for name, side in sides.items() if side[0])
    assert f"(their movements mirrored): {lefty}." in (small / "README.txt").read_text()


def test_interrupted_run_leaves_no_half_file(tmp_path, monkeypatch):
    """A failure while writing leaves neither a signer file nor a temporary one behind; the
    README marks the unfinished directory as synth's own, so it can be generated again."""
    monkeypatch.setattr(synth, "COMPRESSION", dict(compression="no-such-filter"))
    with pytest.raises(ValueError):
        synth.generate(tmp_path, seed=0, num_signers=1, sequences_per_signer=5)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LICENSE.txt", "README.txt"]
    assert synth.unfinished(tmp_path)


def test_interrupted_default_set_is_generated_again(tmp_path, monkeypatch):
    """Ctrl-C while the default set is first generated: the next run generates it again, and
    `synth` accepts the unfinished directory."""
    from functools import partial

    from conftest import run

    import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one process: the patch below applies
    monkeypatch.setattr(synth, "generate", partial(synth.generate, sequences_per_signer=4))
    write_signer, written = synth._signer_file, []

    def interrupted_after_two(*args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(write_signer(*args))
        return written[-1]

    monkeypatch.setattr(synth, "_signer_file", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        synth.ensure_default_data(cli.DEFAULT_DATA)
    assert len(list(cli.DEFAULT_DATA.glob("*.hdf5"))) == 2 and synth.unfinished(cli.DEFAULT_DATA)
    monkeypatch.setattr(synth, "_signer_file", write_signer)
    synth.ensure_default_data(cli.DEFAULT_DATA)
    assert len(data.load_dataset(cli.DEFAULT_DATA)) == 21 * 4
    assert not synth.unfinished(cli.DEFAULT_DATA)

    (cli.DEFAULT_DATA / data.VOCABULARY_FILE).unlink()  # unfinished again
    result = run("synth", cli.DEFAULT_DATA, "--per-sign", "1")
    assert result.exit_code == 0 and "210 synthetic sequences written" in result.output


def test_refuses_a_directory_of_other_data(tmp_path):
    """generate() will not write into a directory that holds HDF5 files it did not make."""
    (tmp_path / "12345.hdf5").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match="choose an empty directory"):
        synth.generate(tmp_path, seed=0, num_signers=1, sequences_per_signer=5)


def test_synth_from_the_command_line(tmp_path, monkeypatch):
    """`islr.py synth DIR` writes a loadable set; a file or a non-empty directory is refused."""

    from conftest import run

    result = run("synth", tmp_path / "set", *"--seed 3 --signers 2 --signs 5 --per-sign 1".split())
    assert result.exit_code == 0 and "10 synthetic sequences written" in result.output
    assert len(data.load_dataset(tmp_path / "set")) == 10
    (tmp_path / "note.txt").write_text("not a directory")
    for taken, message in (
        (tmp_path / "set", "is not empty"),
        (tmp_path / "note.txt", "is a file: name a directory"),
        (tmp_path / "note.txt" / "set", "Not a directory"),  # an OSError, caught at the edge
    ):
        result = run("synth", taken)
        assert result.exit_code == 1 and message in result.output, result.output
        assert result.output.startswith("error:") and "Traceback" not in result.output


def test_ctrl_c_stops_synth_at_once(tmp_path):
    """SIGINT to `islr.py synth` ends it within seconds: one line, exit 130, no traceback, and a
    directory the next run may finish."""
    import signal
    import time

    process = start("synth", tmp_path / "set")
    deadline = time.monotonic() + 60
    while not (tmp_path / "set" / "README.txt").exists():  # written first, then the signers
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130 and output.strip().endswith("interrupted"), output
    assert "Traceback" not in output and synth.unfinished(tmp_path / "set")


def test_real_lengths_have_the_real_datas_tail(tmp_path):
    """--lengths real: clips as long on average as the real ones (mean 33 frames, up to 272),
    the top-10 model's median kept; an unknown model is refused."""
    out = tmp_path / "real"
    result = run("synth", out, "--signers", 3, "--per-sign", 40, "--lengths", "real")
    assert result.exit_code == 0, result.output
    lengths = []
    for path in out.glob("*.hdf5"):
        with h5py.File(path) as file:
            lengths += [file[key]["feature"].shape[1] for key in file]
    lengths = np.array(lengths)
    assert len(lengths) == 3 * 10 * 40
    assert 17 <= np.median(lengths) <= 23 and 29 <= lengths.mean() <= 38
    assert lengths.max() > 100  # past the top-10 model's longest clip
    assert "--lengths real" in (out / "README.txt").read_text()
    one_line_error(run("synth", tmp_path / "x", "--lengths", "long"), "unknown lengths 'long'")
