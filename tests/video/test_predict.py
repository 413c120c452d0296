"""predict: new recordings in three formats, identical to what evaluate computes."""

import json

import h5py
import numpy as np
import pytest
from conftest import REAL_RAW, one_line_error, require_real_data, run

import checkpoint
import data
import loops
from video import predict


def test_predict_equals_evaluate(trained, tmp_path):
    """A sequence predicted alone from .npy or .hdf5 gets the same probabilities as in a batch."""
    data_dir, out, _ = trained
    ckpt = out / "model.safetensors"
    loaded = checkpoint.load(ckpt)
    dataset = data.load_dataset(data_dir, signers={"16069"})
    prepared = data.prepare(dataset, loaded.data_config)
    logits, _, order = loops.predict(loaded.model, prepared.batches(64))
    expected = logits.softmax(-1)[order.argsort()]  # (S, K) in file order

    i = 5
    np.save(tmp_path / "one.npy", dataset.features[i].transpose(1, 2, 0))
    report = tmp_path / "p.json"
    inputs = [tmp_path / "one.npy", data_dir / "16069.hdf5"]
    result = run("predict", ckpt, *inputs, "--top-k", "3", "--json", report)
    assert result.exit_code == 0, result.output
    predictions = json.loads(report.read_text())
    assert len(predictions) == 1 + len(dataset)
    for row, probabilities in [(0, expected[i])] + [
        (1 + j, expected[j]) for j in range(len(dataset))
    ]:
        got = {p["sign"]: p["probability"] for p in predictions[row]["predictions"]}
        for sign, index in loaded.vocabulary.items():
            assert got[sign] == pytest.approx(probabilities[index].item(), abs=1e-6)
    assert predictions[1 + i]["input"] == f"{data_dir / '16069.hdf5'}/{dataset.sequence_ids[i]}"
    assert all(p["landmarks_seen"] for p in predictions)


def test_predict_reads_unlabelled_hdf5(trained, tmp_path):
    """Recordings to predict on need no `token`: the same predictions as the labelled file."""
    from test_data import _unlabelled_copy

    data_dir, out, _ = trained
    _unlabelled_copy(data_dir / "16069.hdf5", tmp_path / "new.hdf5")
    rows = []
    for path in (data_dir / "16069.hdf5", tmp_path / "new.hdf5"):
        report = tmp_path / f"{path.stem}.json"
        result = run("predict", out / "model.safetensors", path, "--json", report)
        assert result.exit_code == 0, result.output
        rows.append([row["predictions"] for row in json.loads(report.read_text())])
    assert rows[0] == rows[1] and len(rows[0]) > 0


def test_predict_reads_kaggle_parquet(trained, tmp_path):
    """A raw Kaggle parquet file reads to the array of its converted HDF5 sequence, and predict
    gives both the same top-k (alone or in the signer file's batch: within 1e-6)."""
    pytest.importorskip("pyarrow", reason="reading parquet needs the [kaggle] extra")
    hdf5 = require_real_data() / "2044.hdf5"
    parquet = REAL_RAW / "train_landmark_files" / "2044" / "1148566480.parquet"
    ((name, from_parquet),) = predict.read_recordings(parquet)
    with h5py.File(hdf5) as file:
        stored = file["1148566480"]["feature"][()]
    assert np.array_equal(from_parquet, stored, equal_nan=True)
    ckpt = trained[1] / "model.safetensors"
    rows = {}
    for path in (parquet, hdf5):
        report = tmp_path / f"{path.suffix[1:]}.json"
        assert run("predict", ckpt, path, "--json", report, "--top-k", "3").exit_code == 0
        rows |= {row["input"]: row["predictions"] for row in json.loads(report.read_text())}
    alone, in_batch = rows[str(parquet)], rows[f"{hdf5}/1148566480"]
    assert [p["sign"] for p in alone] == [p["sign"] for p in in_batch] and len(alone) == 3
    for one, other in zip(alone, in_batch, strict=True):  # alone or padded in a batch
        assert one["probability"] == pytest.approx(other["probability"], abs=1e-6)


# A recording to predict on: a name, how to write it, and what the one-line error must say.
BAD_INPUTS = [
    pytest.param(
        "bad.npy",
        lambda path: np.save(path, np.zeros((4, 100, 3), np.float32)),
        "expected [T, 543, 3]",
        id="wrong-shape",
    ),
    pytest.param("none.npy", None, "does not exist", id="missing"),
    pytest.param("x.txt", lambda path: path.write_text("hi"), "unknown input type", id="type"),
    pytest.param(
        "obj.npy",
        lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "not a readable .npy",
        id="objects",
    ),
    pytest.param(
        "text.npy",
        lambda path: np.save(path, np.full((5, 543, 3), "a")),
        "holds <U1 values, expected numbers",
        id="text",
    ),
    pytest.param(
        "empty.hdf5",
        lambda path: h5py.File(path, "w").close(),
        "empty.hdf5 holds no sequences",
        id="empty-hdf5",
    ),
    pytest.param(
        "huge.npy",
        lambda path: np.save(path, np.full((5, 543, 3), 1e30, np.float32)),
        "output is not finite",
        id="huge-values",
    ),
    pytest.param(
        "empty.npy", lambda path: path.write_bytes(b""), "not a readable .npy array", id="empty-npy"
    ),
    pytest.param(
        "folder", lambda path: path.mkdir(), "is a directory: name the recording files", id="folder"
    ),
]


@pytest.mark.parametrize("name, write, message", BAD_INPUTS)
def test_predict_bad_inputs(trained, tmp_path, name, write, message):
    """Unknown types, wrong shapes, unreadable contents and missing files are one-line errors."""
    _, out, _ = trained
    if write is not None:
        write(tmp_path / name)
    one_line_error(run("predict", out / "model.safetensors", tmp_path / name), message)


def test_predict_json_into_a_folder_is_one_line(trained, tmp_path):
    """--json naming a folder is a one-line error."""
    _, out, _ = trained
    np.save(tmp_path / "ok.npy", np.zeros((5, 543, 3), np.float32))
    result = run("predict", out / "model.safetensors", tmp_path / "ok.npy", "--json", tmp_path)
    one_line_error(result, "is a directory")


def test_predict_names_inputs_as_given_and_notes_empty_recordings(trained, tmp_path):
    """Two files of the same name in two folders stay apart; a recording without one landmark
    of the model's gets a note (and landmarks_seen false), not just a confident-looking row."""
    data_dir, out, _ = trained
    feature = data.load_dataset(data_dir, signers={"16069"}).features[0].transpose(1, 2, 0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "1.NPY", "wb") as file:  # the suffix in any case
            np.save(file, feature)
    np.save(tmp_path / "nothing.npy", np.full((10, 543, 3), np.nan, np.float32))
    report = tmp_path / "p.json"
    inputs = [tmp_path / "a" / "1.NPY", tmp_path / "b" / "1.NPY", tmp_path / "nothing.npy"]
    result = run("predict", out / "model.safetensors", *inputs, "--json", report)
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())
    assert [row["input"] for row in rows] == [str(path) for path in inputs]
    assert [row["landmarks_seen"] for row in rows] == [True, True, False]
    assert "nothing.npy: none of the model's landmarks was detected" in " ".join(
        result.output.split()
    )
