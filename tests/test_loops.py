"""Training and evaluation loops: metrics, determinism."""

import torch

import data
import loops
import models


def _train(tiny_data, seed):
    dataset = data.load_dataset(tiny_data)
    prepared = data.prepare(dataset, data.DataConfig())
    torch.manual_seed(seed)
    model = models.build(models.ModelConfig(), 260, 3)
    config = loops.TrainConfig(epochs=2, batch_size=8, seed=seed)
    return [r["val"]["loss"] for r in loops.fit(model, prepared, prepared, config)]


def test_same_seed_same_metrics(tiny_data):
    """Two runs with the same seed give identical metrics; another seed does not."""
    assert _train(tiny_data, 0) == _train(tiny_data, 0)
    assert _train(tiny_data, 0) != _train(tiny_data, 1)


def test_metrics_from_logits():
    """Accuracy, top-5, per-class accuracy and the confusion matrix are counted right."""
    logits = torch.tensor(
        [
            [9.0, 1, 0, 0, 0, 0, 0],
            [0, 9.0, 1, 0, 0, 0, 0],
            [1, 2, 3, 4, 5, 6, 7],
            [7, 6, 5, 4, 3, 2, 1],
        ]
    )
    labels = torch.tensor([0, 2, 6, 6])
    m = loops.metrics_from_logits(logits, labels)
    assert m["accuracy"] == 0.5  # rows 0 and 2
    assert m["top5_accuracy"] == 0.75  # row 1: label 2 is in its top 5; row 3: label 6 is last
    assert m["confusion"][2][1] == 1 and m["confusion"][6][6] == 1 and m["confusion"][6][0] == 1
    assert m["per_class_accuracy"][0] == 1.0 and m["per_class_accuracy"][6] == 0.5
    assert m["class_counts"] == [1, 0, 1, 0, 0, 0, 2]


def test_training_learns_the_tiny_set(tiny_data):
    """A few epochs on the tiny set beat chance, and label smoothing raises the loss floor."""
    prepared = data.prepare(data.load_dataset(tiny_data), data.DataConfig())
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(), 260, 3)
    config = loops.TrainConfig(epochs=15, batch_size=8, learning_rate=1e-3, label_smoothing=0.0)
    last = list(loops.fit(model, prepared, prepared, config))[-1]
    assert last["val"]["accuracy"] > 0.6
    smoothed = loops.evaluate(model, prepared.batches(16), label_smoothing=0.3)
    assert smoothed["loss"] > last["val"]["loss"]
    assert last["train"]["samples"] == len(prepared) and last["train"]["samples_per_second"] > 0
