"""Training and evaluation loops: metrics, determinism."""

from functools import partial

import pytest
import torch

import data
import loops
import models
import preprocessing
import presets


def _train(tiny_data, seed, weights_seed=None):
    dataset = data.load_dataset(tiny_data)
    prepared = data.prepare(dataset, preprocessing.DataConfig())
    torch.manual_seed(seed if weights_seed is None else weights_seed)
    model = models.build(models.ModelConfig(), 260, 3)
    config = loops.TrainConfig(epochs=2, batch_size=8, seed=seed)
    state = loops.start(model, config, prepared.num_batches(8))
    return [r["val"]["loss"] for r in loops.fit(state, prepared, prepared, config)]


def test_same_seed_same_metrics(tiny_data):
    """Two runs with the same seed give identical metrics; another seed does not."""
    assert _train(tiny_data, 0) == _train(tiny_data, 0)
    assert _train(tiny_data, 0) != _train(tiny_data, 1)
    # The same initial weights: TrainConfig.seed alone must change the batch order.
    assert _train(tiny_data, 0, weights_seed=0) != _train(tiny_data, 1, weights_seed=0)


def test_label_smoothing_reaches_the_training_and_validation_losses(tiny_data):
    """At learning rate 0 the weights stay put, so the epoch's training loss and fit's
    validation loss must both be the smoothed cross-entropy of that model on that data."""
    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(dropout=0.0, attention_dropout=0.0), 260, 3)
    warm = loops.TrainConfig(epochs=5, batch_size=8, learning_rate=3e-3, label_smoothing=0)
    list(loops.fit(loops.start(model, warm, prepared.num_batches(8)), prepared, prepared, warm))
    config = loops.TrainConfig(epochs=1, batch_size=8, learning_rate=0.0, label_smoothing=0.3)
    state = loops.start(model, config, prepared.num_batches(8))
    (record,) = loops.fit(state, prepared, prepared, config)
    smoothed = loops.evaluate(model, prepared.batches(8), label_smoothing=0.3)["loss"]
    assert smoothed > loops.evaluate(model, prepared.batches(8))["loss"] + 0.1  # confident now
    assert record["train"]["loss"] == pytest.approx(smoothed, rel=1e-5)
    assert record["val"]["loss"] == pytest.approx(smoothed, rel=1e-5)


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
    assert m["per_class_accuracy"][1] is None  # no sequence of class 1: not 0%


def test_top5_is_none_with_five_classes_or_fewer():
    """With 2 signs every class is in the top 5: no 100% that says nothing."""
    m = loops.metrics_from_logits(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 0]))
    assert m["top5_accuracy"] is None and m["accuracy"] == 0.5


def test_training_learns_the_tiny_set(tiny_data):
    """A few epochs on the tiny set beat chance, and label smoothing raises the loss floor."""
    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(), 260, 3)
    config = loops.TrainConfig(epochs=15, batch_size=8, learning_rate=1e-3, label_smoothing=0.0)
    state = loops.start(model, config, prepared.num_batches(8))
    last = list(loops.fit(state, prepared, prepared, config))[-1]
    assert last["val"]["accuracy"] > 0.6
    smoothed = loops.evaluate(model, prepared.batches(16), label_smoothing=0.3)
    assert smoothed["loss"] > last["val"]["loss"]
    assert last["train"]["samples"] == len(prepared) and last["train"]["samples_per_second"] > 0


@pytest.mark.parametrize(
    "step, warmup, schedule, expected",
    [
        pytest.param(0, 10, "cosine", 0.1, id="first-warm-up-step"),
        pytest.param(9, 10, "cosine", 1.0, id="warm-up-reaches-the-peak"),
        pytest.param(55, 10, "cosine", 0.5, id="cosine-halfway"),
        pytest.param(100, 10, "cosine", 0.0, id="cosine-end"),
        pytest.param(50, 0, "constant", 1.0, id="constant"),
    ],
)
def test_learning_rate_schedule(step, warmup, schedule, expected):
    """Warm-up rises linearly to the peak, cosine decays to 0, constant stays at the peak."""
    factor = loops.learning_rate_factor(step, warmup=warmup, total=100, schedule=schedule)
    assert factor == pytest.approx(expected)


def test_recipe_options_train(tiny_data, capsys):
    """AdamW, warm-up + cosine, clipping, EMA and late dropout run and change the outcome;
    the loops print nothing (the command line does)."""
    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())

    def run(**recipe):
        torch.manual_seed(0)
        model = models.build(models.ModelConfig(), 260, 3)
        config = loops.TrainConfig(epochs=3, batch_size=8, **recipe)
        state = loops.start(model, config, prepared.num_batches(8))
        records = list(loops.fit(state, prepared, prepared, config))
        return state, records

    _, (*_, plain) = run()
    state, records = run(
        optimizer="adamw",
        weight_decay=0.05,
        warmup_epochs=1,
        schedule="cosine",
        clip_norm=1.0,
        ema=0.9,
        late_dropout=2,
    )
    fancy = records[-1]
    steps = prepared.num_batches(8)  # per epoch; each epoch logs the rate of its first step
    factor = partial(loops.learning_rate_factor, warmup=steps, total=3 * steps, schedule="cosine")
    rates = [r["train"]["learning_rate"] for r in records]
    assert rates == pytest.approx([3e-4 * factor(e * steps) for e in range(3)])
    assert rates[0] == pytest.approx(3e-4 / steps) and 0 < rates[2] < 3e-4  # warm-up; cosine
    assert state.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)  # cosine reached 0
    assert fancy["val"]["loss"] != plain["val"]["loss"]
    assert state.eval_model is state.ema.module and state.epoch == 3
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="unknown optimizer"):
        loops.TrainConfig(optimizer="sgd")


@pytest.mark.parametrize(
    "epochs, select_after, first",
    [
        pytest.param(10, 0.5, 6, id="half-of-10"),
        pytest.param(3, None, 1, id="select-after-not-given"),
        pytest.param(1, 0.9, 1, id="one-epoch"),
        pytest.param(50, 0.5, 26, id="the-default-preset"),
        # 0.29 * 100 = 28.999999999999996 in floating point
        pytest.param(100, 0.29, 30, id="0.29-of-100"),
        pytest.param(100, 0.57, 58, id="0.57-of-100"),
        pytest.param(100, 0.58, 59, id="0.58-of-100"),
        pytest.param(50, 0.99, 50, id="the-last-epoch"),
    ],
)
def test_select_after_leaves_the_last_epochs_to_choose_from(epochs, select_after, first):
    """select_after 0.5 of 10 epochs: epochs 6-10 may be kept."""
    given = {} if select_after is None else {"select_after": select_after}
    assert loops.TrainConfig(epochs=epochs, **given).first_candidate == first


def test_select_after_one_is_refused():
    """select_after 1 would leave no epoch to choose from."""
    with pytest.raises(ValueError, match="select_after"):
        loops.TrainConfig(select_after=1.0)


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_late_dropout_turns_dropout_off(name):
    """Before the late-dropout epoch every dropout is off, so training is deterministic; RNNs
    stay in training mode (cuDNN cannot backpropagate them in eval mode) with dropout 0."""
    batch = data.Batch(
        torch.randn(4, 9, 260),
        torch.ones(4, 9, dtype=torch.bool),
        torch.full((4,), 9),
        torch.tensor([0, 1, 2, 0]),
        torch.arange(4),
    )
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(name=name, dropout=0.5), 260, 3)
    config = loops.TrainConfig(learning_rate=0.0, late_dropout=5)
    state = loops.start(model, config, 1)
    a = loops.train_epoch(state, [batch], config, dropout=False)
    b = loops.train_epoch(state, [batch], config, dropout=False)
    c = loops.train_epoch(state, [batch], config, dropout=True)
    assert a["loss"] == b["loss"] != c["loss"], name
    assert all(m.training for m in model.modules())  # back as it was
    with loops.dropout_off(model):
        rnns = [m for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
        assert all(m.training and m.dropout == 0 for m in rnns)
    assert all(m.dropout == 0.5 for m in rnns) and len(rnns) == (name == "lstm")


def test_ema_decay_ramps_up_to_its_setting():
    """The average copies the first weights, then follows decay min(d, (1 + n) / (10 + n))."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=loops.ema_with_warmup(0.5))
    expected, values = None, [2.0**i for i in range(12)]  # the clamp to 0.5 starts at n = 8
    for n, value in enumerate(values):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        decay = min(0.5, (1 + n) / (10 + n))  # n: the updates averaged before this one
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert ema.module.weight.item() == pytest.approx(expected)
    assert expected != pytest.approx(sum(values) / len(values))  # not a plain mean


def test_processes_agree_on_batch_order_every_epoch(tiny_data):
    """With several processes and augmentation, each epoch's batches still cover every sequence
    once across the processes, and each process augments its own batches differently."""
    import augment

    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())
    augmenter = augment.build(presets.FLIP, preprocessing.DataConfig())
    world, shared = 2, torch.Generator().manual_seed(0)
    generators = [torch.Generator().manual_seed(0) for _ in range(world)]
    for _ in range(3):
        seen, flipped = [], []
        for rank, generator in enumerate(generators):
            batches = list(loops.epoch_batches(prepared, 5, generator, augmenter, rank, world))
            seen += [i for batch in batches for i in batch.indices.tolist()]
            flipped.append(
                [
                    not torch.equal(b.features[row], prepared.merge(b.indices).features[row])
                    for b in batches
                    for row in range(len(b.indices))
                ]
            )
        assert sorted(seen) == list(range(len(prepared)))  # 48 sequences: 10 batches, one of 3
        assert flipped[0] != flipped[1]  # the ranks' draws are not copies of each other
        assert all(torch.equal(g.get_state(), generators[0].get_state()) for g in generators)
    # One process keeps the single stream: order and augmentation from one generator.
    alone = [b.indices for b in loops.epoch_batches(prepared, 8, shared, augmenter)]
    again = torch.Generator().manual_seed(0)
    assert [b.indices.tolist() for b in prepared.batches(8, shuffle=True, generator=again)] == [
        a.tolist() for a in alone
    ]


@pytest.mark.parametrize("world", [4, 8])
def test_more_processes_than_batches_all_get_one(tiny_data, world):
    """Every process gets the same number of batches, even when there are fewer batches."""
    prepared = data.prepare(data.load_dataset(tiny_data), preprocessing.DataConfig())
    counts = [len(list(prepared.batches(32, rank=r, world=world))) for r in range(world)]
    assert counts == [prepared.num_batches(32, world)] * world == [1] * world


def test_adam_runs_fused_on_the_cpu():
    """Adam and AdamW take PyTorch's fused kernel for CPU parameters (one kernel per parameter)."""
    model = models.build(models.ModelConfig(), 260, 3)
    for optimizer in ("adam", "adamw"):
        state = loops.start(model, loops.TrainConfig(optimizer=optimizer), steps_per_epoch=1)
        assert state.optimizer.param_groups[0]["fused"] is True
