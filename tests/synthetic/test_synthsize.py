"""Synthetic sets at size: any vocabulary, the raw Kaggle layout that prepare converts, and
the readable per-class tables of a 250-sign evaluation."""

import io
import json

import numpy as np
import pytest
from conftest import run
from rich.console import Console

import data
from pictures import classtables
from synthetic import lexicon, synth


def test_vocabulary_keeps_the_ten_and_adds_fixed_made_up_signs():
    names, signs = lexicon.vocabulary(250)
    assert len(names) == len(signs) == 250
    assert list(names)[:10] == list(lexicon.VOCABULARY)
    assert signs[:10] == [lexicon.SIGNS[name] for name in lexicon.VOCABULARY]
    assert list(names.values()) == list(range(250))
    assert list(names)[10] == "sign-011" and list(names)[-1] == "sign-250"
    assert lexicon.vocabulary(250) == (names, signs)  # fixed, whatever the data's seed
    assert len(set(signs)) > 240  # nearly all distinct
    assert lexicon.vocabulary(3)[0] == {"listen": 0, "look": 1, "shhh": 2}


def test_a_large_vocabulary_set_is_balanced_and_deterministic(tmp_path):
    count = synth.generate(tmp_path / "a", num_signers=3, sequences_per_signer=60, num_signs=30)
    assert count == 180
    dataset = data.load_dataset(tmp_path / "a")
    assert len(dataset.vocabulary) == 30 and dataset.vocabulary["sign-030"] == 29
    assert np.bincount(dataset.labels, minlength=30).tolist() == [6] * 30
    lengths = np.array([f.shape[1] for f in dataset.features])
    assert 2 <= lengths.min() and lengths.max() <= 100 and 10 <= np.median(lengths) <= 30
    synth.generate(tmp_path / "b", num_signers=3, sequences_per_signer=60, num_signs=30)
    for path in (tmp_path / "a").glob("*.hdf5"):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    assert "--signs 30" in (tmp_path / "a" / "README.txt").read_text()


def test_a_signer_made_in_parts_stays_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "CLIPS_AT_ONCE", 7)
    synth.generate(tmp_path / "a", num_signers=2, sequences_per_signer=20)
    dataset = data.load_dataset(tmp_path / "a")
    assert len(dataset) == 40 and np.isnan(dataset.features[0]).any()
    synth.generate(tmp_path / "b", num_signers=2, sequences_per_signer=20)
    assert (tmp_path / "a" / "2044.hdf5").read_bytes() == (
        tmp_path / "b" / "2044.hdf5"
    ).read_bytes()


def test_the_kaggle_layout_converts_to_the_same_values(tmp_path):
    pytest.importorskip("pyarrow")
    settings = dict(seed=5, num_signers=2, sequences_per_signer=24, num_signs=12)
    synth.generate(tmp_path / "gislr", **settings)
    assert synth.generate(tmp_path / "raw", layout="kaggle", **settings) == 48
    raw = tmp_path / "raw"
    lines = (raw / "train.csv").read_text().splitlines()
    assert lines[0] == "path,participant_id,sequence_id,sign" and len(lines) == 49
    assert json.loads((raw / "sign_to_prediction_index_map.json").read_text())["sign-012"] == 11
    assert not list((raw / "train_landmark_files").glob(".*"))  # no partial folder left
    result = run("prepare", raw, tmp_path / "converted", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "48 sequences of 2 signers" in result.output and "sequences/s" in result.output
    expected = data.load_dataset(tmp_path / "gislr")
    converted = data.load_dataset(tmp_path / "converted")
    assert converted.vocabulary == expected.vocabulary
    by_id = dict(zip(converted.sequence_ids, converted.features, strict=True))
    labels = dict(zip(converted.sequence_ids, converted.labels, strict=True))
    assert sorted(by_id) == sorted(expected.sequence_ids)
    for sequence_id, feature, label in zip(
        expected.sequence_ids, expected.features, expected.labels, strict=True
    ):
        np.testing.assert_array_equal(by_id[sequence_id], feature)  # NaN where NaN
        assert labels[sequence_id] == label


def test_synth_command_takes_the_size(tmp_path):
    out = tmp_path / "set"
    result = run("synth", out, "--signs", "12", "--signers", "2", "--per-sign", "2")
    assert result.exit_code == 0, result.output
    assert "48 synthetic sequences" in result.output
    bad = run("synth", tmp_path / "other", "--layout", "csv")
    assert bad.exit_code == 1 and "unknown layout 'csv'" in bad.output


def result_for(confusion: np.ndarray) -> dict:
    counts = confusion.sum(1)
    return {
        "confusion": confusion.tolist(),
        "class_counts": counts.tolist(),
        "per_class_accuracy": [
            (r / n if n else None) for r, n in zip(np.diag(confusion), counts, strict=True)
        ],
    }


def printed(signs: list[str], result: dict) -> str:
    out = io.StringIO()
    classtables.print_class_tables(Console(file=out, width=100), signs, result)
    return out.getvalue()


def test_250_signs_print_top_confusions_not_the_matrix():
    K = 250
    confusion = np.diag(np.full(K, 9))
    confusion[3, 3], confusion[3, 7] = 2, 7  # sign 3 mostly taken for sign 7
    confusion[10, 10], confusion[10, 11] = 5, 4
    confusion[200, 200] = 0  # no sequences
    signs = [f"s{k}" for k in range(K)]
    assert classtables.top_confusions(confusion.tolist(), 3) == [(3, 7, 7), (10, 11, 4)]
    text = printed(signs, result_for(confusion))
    assert "top confusions" in text and "true \\ predicted" not in text
    assert "s7 (7)" in text and "77.8%" in text  # 7 of sign 3's 9 sequences
    assert "1 without sequences here" in text
    assert len(text.splitlines()) < 60


def test_ten_signs_print_the_full_matrix():
    confusion = np.diag(np.full(10, 3))
    text = printed([f"s{k}" for k in range(10)], result_for(confusion))
    assert "confusion matrix" in text and "per-class accuracy" in text
