"""Streaming load and the preprocessed cache: the same batches as the in-memory load, and an
entry that follows its data and settings and is never trusted when damaged."""

import os
import threading
from pathlib import Path

import pytest
import torch
from conftest import REAL_GISLR, require_real_data, run, write_gislr

import cache
import data
from preprocessing import DataConfig
from synthetic import synth

CONFIGS = [
    DataConfig(),
    DataConfig(mirror_left=True, align="unique", scale="framewise"),
    DataConfig(landmarks="all", coordinates="xyz", normalize=False),
]


def batches_of(prepared: data.Prepared, shuffle: bool) -> list[data.Batch]:
    generator = torch.Generator().manual_seed(3)
    return list(prepared.batches(7, shuffle=shuffle, generator=generator))


def assert_same_batches(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for name in expected:
        for shuffle in (False, True):
            old, new = batches_of(expected[name], shuffle), batches_of(actual[name], shuffle)
            assert len(old) == len(new) > 0
            for a, b in zip(old, new, strict=True):
                for field in data.FIELDS:
                    x, y = getattr(a, field), getattr(b, field)
                    assert x.dtype == y.dtype and torch.equal(x, y), field


def check_identical(root: Path, cache_dir: Path, config: DataConfig, split: dict) -> None:
    """In memory (today's load), streamed into a new cache entry, mapped from it, streamed
    without a cache: every batch bit for bit the same."""
    dataset = data.load_dataset(root)
    expected = data.prepare_split(dataset, **split, config=config)
    for directory, cached in ((cache_dir, False), (cache_dir, True), (None, False)):
        features = cache.load(root, config, cache_dir=directory)
        assert features.cached == cached
        assert list(features.signers) == list(dataset.signers)
        assert list(features.sequence_ids) == dataset.sequence_ids
        assert features.vocabulary == dataset.vocabulary
        assert_same_batches(expected, features.split(**split))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_FRAMES", 50)  # several chunks per file


@pytest.mark.parametrize("config", CONFIGS)
def test_streamed_batches_are_bit_identical(tmp_path, small_chunks, config):
    root = write_gislr(tmp_path / "data", left_handed=("202",))
    split = {"train": ["101", "202"], "val": ["303"], "test": ["16069"]}
    check_identical(root, tmp_path / "cache", config, split)


def test_streamed_batches_are_bit_identical_on_synthetic_data(tmp_path, small_chunks):
    root = tmp_path / "synth"
    synth.generate(root, num_signers=4, sequences_per_signer=30)
    split = {"train": ["2044", "4718"], "val": ["18796"], "test": ["16069"]}
    for config in CONFIGS[:2]:
        check_identical(root, tmp_path / "cache", config, split)


def test_streamed_batches_are_bit_identical_on_real_data(tmp_path):
    root = require_real_data()
    signers = sorted(path.stem for path in REAL_GISLR.glob("*.hdf5"))
    split = {"train": signers[2:], "val": signers[1:2], "test": signers[:1]}
    check_identical(root, tmp_path / "cache", CONFIGS[1], split)


def test_second_load_maps_the_cache_without_decoding(tmp_path, monkeypatch):
    root = write_gislr(tmp_path / "data")
    first = cache.load(root, DataConfig(), cache_dir=tmp_path / "cache")
    assert not first.cached

    def refuse(*args, **kwargs):
        raise AssertionError("decoded HDF5 again")

    monkeypatch.setattr(data, "read_signer_chunks", refuse)
    second = cache.load(root, DataConfig(), cache_dir=tmp_path / "cache")
    assert second.cached
    [entry] = entries(tmp_path / "cache")
    assert str(entry / cache.FRAMES_FILE) in Path("/proc/self/maps").read_text()  # mapped
    assert torch.equal(first.prepared.frames, second.prepared.frames)
    some = cache.load(root, DataConfig(), signers={"303"}, cache_dir=tmp_path / "cache")
    assert set(some.signers) == {"303"} and len(some) == 12


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir())


def test_a_changed_file_or_setting_makes_a_new_entry(tmp_path):
    root = write_gislr(tmp_path / "data")
    directory = tmp_path / "cache"
    before = cache.load(root, DataConfig(), cache_dir=directory)
    [old] = entries(directory)
    # Another file under the same name, size and time aside: its contents must be read.
    write_gislr(root, seed=1)
    os.utime(root / "101.hdf5", ns=(1, 1))
    after = cache.load(root, DataConfig(), cache_dir=directory)
    assert not after.cached
    [new] = entries(directory)
    assert new != old  # the replaced entry is gone
    assert not torch.equal(before.prepared.lengths, after.prepared.lengths)
    expected = data.prepare(data.load_dataset(root), DataConfig())
    assert torch.equal(after.prepared.frames, expected.frames)

    other = cache.load(root, DataConfig(coordinates="xyz"), cache_dir=directory)
    assert not other.cached and other.prepared.frames.shape[1] == 130 * 3
    assert len(entries(directory)) == 2  # another setting: its own entry, the first kept
    assert cache.load(root, DataConfig(), cache_dir=directory).cached


def damage_frames(entry: Path) -> None:
    path = entry / cache.FRAMES_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def truncate_labels(entry: Path) -> None:
    path = entry / "labels.npy"
    path.write_bytes(path.read_bytes()[:-8])


def no_manifest(entry: Path) -> None:
    (entry / cache.MANIFEST).unlink()


def garbage_manifest(entry: Path) -> None:
    (entry / cache.MANIFEST).write_text('{"format": 1, "files_check": ')


@pytest.mark.parametrize("damage", [damage_frames, truncate_labels, no_manifest, garbage_manifest])
def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path, damage):
    root = write_gislr(tmp_path / "data")
    directory = tmp_path / "cache"
    good = cache.load(root, DataConfig(), cache_dir=directory).prepared.frames.clone()
    [entry] = entries(directory)
    damage(entry)
    again = cache.load(root, DataConfig(), cache_dir=directory)
    assert not again.cached  # rebuilt
    assert torch.equal(good, again.prepared.frames)
    assert cache.load(root, DataConfig(), cache_dir=directory).cached


def test_a_half_built_entry_is_cleaned_up(tmp_path):
    root = write_gislr(tmp_path / "data")
    directory = tmp_path / "cache"
    key, _ = cache.entry_key(root, data.signer_files(root), DataConfig())
    leftover = directory / f"{key}.tmp-99999"
    leftover.mkdir(parents=True)
    (leftover / cache.FRAMES_FILE).write_bytes(b"half")
    assert not cache.load(root, DataConfig(), cache_dir=directory).cached
    assert not leftover.exists()
    assert [p.name for p in entries(directory)] == [key]


def test_two_runs_at_once_build_one_entry(tmp_path, monkeypatch):
    root = write_gislr(tmp_path / "data")
    directory = tmp_path / "cache"
    builds, write = [], cache._write

    def counted(*args):
        builds.append(1)
        write(*args)

    monkeypatch.setattr(cache, "_write", counted)
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cache.load(root, DataConfig(), cache_dir=directory))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(builds) == 1
    assert all(torch.equal(r.prepared.frames, results[0].prepared.frames) for r in results)


def test_cache_command_lists_and_clears(tmp_path):
    root = write_gislr(tmp_path / "data")
    directory = tmp_path / "cache"
    cache.load(root, DataConfig(), cache_dir=directory)
    listed = run("cache", env={"ISLR_CACHE_DIR": str(directory)})
    assert listed.exit_code == 0, listed.output
    assert "1 entries" in listed.output and str(root.resolve()) in listed.output
    cleared = run("cache", "--clear", env={"ISLR_CACHE_DIR": str(directory)})
    assert cleared.exit_code == 0 and "cleared" in cleared.output
    assert not list(directory.iterdir())


def test_cache_off_streams_into_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("ISLR_CACHE_DIR", "none")
    assert cache.cache_directory() is None
    features = cache.load(write_gislr(tmp_path / "data"), DataConfig())
    assert not features.cached and len(features) == 48


def test_a_cache_that_cannot_be_written_is_done_without(tmp_path):
    root = write_gislr(tmp_path / "data")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    features = cache.load(root, DataConfig(), cache_dir=blocked / "cache")
    assert not features.cached and len(features) == 48
    assert (
        "no preprocessed cache" in features.cache_note and "ISLR_CACHE_DIR" in features.cache_note
    )
