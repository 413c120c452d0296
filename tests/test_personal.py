"""The personal preset: nearest templates under DTW, from a few clips of one signer."""

from pathlib import Path

import pytest
import torch
from conftest import one_line_error, run, write_gislr

import cache
import checkpoint
import data
import presets
import templates
from deploy import export
from synthetic import synth

PERSONAL = presets.PRESETS["personal"]


def _synthetic(root: Path, *, signs: int, per_sign: int, layout: str = "gislr") -> Path:
    synth.generate(
        root,
        seed=3,
        num_signers=1,
        sequences_per_signer=signs * per_sign,
        num_signs=signs,
        layout=layout,
    )
    return root


def test_learns_signs_from_one_or_two_clips(tmp_path):
    """Two clips of each of 4 synthetic signs name the other clips of that signer >= 80% right."""
    data_dir = _synthetic(tmp_path / "d", signs=4, per_sign=6)
    features = cache.load(data_dir, PERSONAL.data)
    labels = features.prepared.labels
    train = torch.cat([torch.nonzero(labels == k).flatten()[:2] for k in range(4)])
    test = torch.tensor([i for i in range(len(labels)) if i not in set(train.tolist())])
    model, _ = templates.fit(data.subset(features.prepared, train), 4)
    batch = data.subset(features.prepared, test).merge(torch.arange(len(test)))
    accuracy = (model(batch.features, batch.valid).argmax(1) == batch.labels).float().mean()
    assert accuracy >= 0.8


def test_output_does_not_depend_on_padding():
    """A clip's logits are the same alone and padded in a batch, garbage in the padding."""
    torch.manual_seed(0)
    model = templates.TemplateISLR(
        num_features=templates.NUM_FEATURES, num_classes=2, num_examples=3
    )
    model.remember(torch.randn(3, templates.FRAMES, templates.TRACK_WIDTH), torch.tensor([0, 1, 1]))
    lengths = torch.tensor([5, 12, 1])
    valid = torch.arange(12)[None] < lengths[:, None]
    x = torch.randn(3, 12, templates.NUM_FEATURES) * valid[..., None]
    garbage = torch.where(valid[..., None], x, 100.0)
    alone = torch.cat(
        [model(x[i : i + 1, :n], valid[i : i + 1, :n]) for i, n in enumerate(lengths)]
    )
    assert torch.allclose(model(garbage, valid), alone, atol=1e-5)


def test_dtw_aligns_a_slowed_down_track():
    """A track and the same track at half speed are closer under DTW than two different ones."""
    t = torch.linspace(0, 1, templates.FRAMES)[:, None]
    a = torch.sin(6 * t).expand(-1, 4)
    slow = torch.sin(6 * (t**2)).expand(-1, 4)  # the same path, another timing
    other = torch.cos(6 * t).expand(-1, 4)
    d = templates.warped_distance(a[None], torch.stack([slow, other]))  # (1, 2)
    assert d[0, 0] < 0.3 * d[0, 1]


def test_train_writes_a_checkpoint_that_loads_and_predicts(tmp_path):
    """train --preset personal on the raw Kaggle layout writes a model whose logits reload, that
    predict reads and export turns into TorchScript."""
    raw = _synthetic(tmp_path / "raw", signs=3, per_sign=3, layout="kaggle")
    out = tmp_path / "run"
    env = {"ISLR_CACHE_DIR": str(tmp_path / "cache")}
    result = run("train", "--data", raw, "--preset", "personal", "--out", out, env=env)
    assert result.exit_code == 0, result.output
    assert "held-out clips of the same signer" in " ".join(result.output.split())
    loaded = checkpoint.load(out / "model.safetensors")
    assert loaded.model_config.examples == 9 and loaded.metadata["metrics"]["leave_one_out"]
    features = cache.load(Path(loaded.metadata["data"]), loaded.data_config)
    batch = features.prepared.merge(torch.arange(len(features)))
    fresh, _ = templates.fit(features.prepared, 3)
    assert torch.allclose(
        loaded.model(batch.features, batch.valid), fresh(batch.features, batch.valid)
    )
    signer = loaded.metadata["split"]["train"][0]
    evaluated = run(
        "evaluate", out / "model.safetensors", "--data", raw, "--signer", signer, env=env
    )
    assert evaluated.exit_code == 0 and "accuracy 100.00%" in evaluated.output, evaluated.output
    predicted = run("predict", out / "model.safetensors", *sorted(raw.rglob("*.parquet"))[:1])
    assert predicted.exit_code == 0, predicted.output
    exported = export.export(out / "model.safetensors", tmp_path / "model.pt", "torchscript")
    assert exported["max_abs_difference"] < 1e-4  # every clip length, traced once


def test_one_clip_a_sign_needs_no_other_flag(tmp_path):
    """One clip of each sign: the model is written, and train says there is nothing to test on."""
    data_dir = _synthetic(tmp_path / "d", signs=3, per_sign=1)
    out = tmp_path / "run"
    result = run("train", "--data", data_dir, "--preset", "personal", "--out", out)
    assert result.exit_code == 0, result.output
    assert "no clip is left to test on" in " ".join(result.output.split())
    assert checkpoint.load(out / "model.safetensors").model_config.examples == 3


def test_one_signer_trains_a_network_on_held_out_clips(tmp_path):
    """A network preset on one signer validates and tests on held-out clips, and says so."""
    data_dir = _synthetic(tmp_path / "d", signs=3, per_sign=5)
    out = tmp_path / "run"
    result = run("train", "--data", data_dir, "--preset", "simple", "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "held-out clips of the same signer" in text and "signer-independent" in text
    assert checkpoint.load(out / "model.safetensors").metadata["split"]["held_out"] == "clips"


def test_split_clips_keeps_a_clip_of_every_sign_to_train():
    """Each sign keeps >= 1 training clip; 5 clips give 1 test, 1 validation, 3 train."""
    labels = torch.tensor([0] * 5 + [1] * 2 + [2])
    parts = data.split_clips(labels)
    assert sorted(torch.cat(list(parts.values())).tolist()) == list(range(8))
    assert labels[parts["train"]].bincount().tolist() == [3, 2, 1]
    assert labels[parts["test"]].tolist() == [0] and labels[parts["val"]].tolist() == [0]


@pytest.mark.parametrize("preset", ["personal", "simple"])
def test_only_one_sign_with_clips_is_one_line(tmp_path, preset):
    """Data whose clips are all of one sign is refused in one line, for any preset."""
    data_dir = write_gislr(tmp_path / "d", signers=("101",), per_signer=1, signs=("a", "b"))
    result = run("train", "--data", data_dir, "--preset", preset, "--out", tmp_path / "run")
    one_line_error(result, "a classifier needs two")


def test_init_starts_from_an_encoder_with_a_new_head(tmp_path):
    """--init copies every encoder weight of a checkpoint and sizes a new head for new signs."""
    first = tmp_path / "first"
    source = write_gislr(tmp_path / "a", signs=("a", "b", "c"))
    flags = ["--preset", "simple", "--epochs", "1"]
    assert run("train", "--data", source, "--out", first, *flags).exit_code == 0
    target = write_gislr(tmp_path / "b", signs=("w", "x", "y", "z"), seed=1)
    second = tmp_path / "second"
    init = first / "model.safetensors"
    result = run(
        "train", "--data", target, "--out", second, *flags, "--init", init, "--learning-rate", "0"
    )
    assert result.exit_code == 0, result.output
    before = checkpoint.load(init).model.state_dict()
    after = checkpoint.load(second / "model.safetensors").model.state_dict()
    assert torch.equal(before["embed.weight"], after["embed.weight"])  # lr 0: as copied
    assert after["head.weight"].shape[0] == 4 and before["head.weight"].shape[0] == 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--preset", "personal"], "--preset personal has none"),
        (["--width", "32"], "drop --width"),
    ],
)
def test_init_refusals_are_one_line(trained, tmp_path, flags, message):
    """--init with the personal preset, or beside a model flag, is refused in one line."""
    data_dir, out, _ = trained
    init = out / "model.safetensors"
    result = run("train", "--data", data_dir, "--out", tmp_path / "r", "--init", init, *flags)
    one_line_error(result, message)


@pytest.mark.parametrize("command", ["cv", "bench"])
def test_cv_and_bench_refuse_the_template_model_in_one_line(tiny_data, tmp_path, command):
    """cv and bench train networks for epochs: --preset personal is refused, naming bench.fewshot."""
    result = run(command, "--data", tiny_data, "--preset", "personal")
    one_line_error(result, "python -m bench.fewshot")
