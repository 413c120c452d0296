"""Model shapes, sizes, training and independence from batch-mates."""

import pytest
import torch
import torch.nn.functional as F

import models
from models import ModelConfig


@pytest.mark.parametrize("velocity", [False, True], ids=["plain", "velocity"])
@pytest.mark.parametrize("name", models.MODELS)
def test_output_does_not_depend_on_padding(name, velocity):
    """A sequence's logits are the same alone and padded inside a batch of longer sequences."""
    torch.manual_seed(0)
    model = models.build(ModelConfig(name=name, velocity=velocity), 260, 10).eval()
    lengths = torch.tensor([7, 30, 19, 1])  # 7 and 1 are shorter than the conv kernels
    x = torch.randn(4, 30, 260)
    valid = torch.arange(30)[None] < lengths[:, None]
    x = x * valid[..., None]
    garbage = torch.where(valid[..., None], x, 100.0)  # padded frames must not matter
    with torch.no_grad():
        batched = model(x, valid)  # (4, K)
        with_garbage = model(garbage, valid)
        alone = torch.cat(
            [model(x[i : i + 1, :n], valid[i : i + 1, :n]) for i, n in enumerate(lengths)]
        )
    assert batched.shape == (4, 10)
    assert torch.allclose(batched, alone, atol=1e-5)
    assert torch.allclose(with_garbage, alone, atol=1e-5)


@pytest.mark.parametrize("name", models.MODELS)
def test_shapes(name):
    """Every model maps (N, T, F) and a mask to (N, K) logits through (N, D') features."""
    model = models.build(ModelConfig(name=name, width=16, heads=2, feedforward=32), 20, 5)
    x, valid = torch.randn(3, 11, 20), torch.ones(3, 11, dtype=torch.bool)
    width = 32 if name in ("rnn", "lstm", "gru") else 16  # bidirectional RNNs concatenate
    assert model.forward_features(x, valid).shape == (3, width)
    assert model(x, valid).shape == (3, 5)


@pytest.mark.parametrize("name", models.MODELS)
def test_a_few_steps_reduce_the_loss(name):
    """Twenty Adam steps on one tiny random batch cut its loss by more than 70%."""
    torch.manual_seed(0)
    config = ModelConfig(name=name, width=32, feedforward=64, depth=1, velocity=True)
    model = models.build(config, 12, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    lengths = torch.tensor([5, 9, 12, 3, 8, 12, 7, 10])
    x, labels = torch.randn(8, 12, 12), torch.arange(8) % 4
    valid = torch.arange(12)[None] < lengths[:, None]
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x, valid), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_velocity_features():
    """Velocity appends backward 1- and 2-frame differences, zero at the start and on padding."""
    x = torch.tensor([[1.0, 2.0, 4.0, 7.0, 100.0]])[..., None]  # (1, 5, 1), last frame padded
    valid = torch.tensor([[True, True, True, True, False]])
    v = models.add_velocity(x, valid)  # (1, 5, 3)
    assert torch.equal(v[0, :, 1], torch.tensor([0.0, 1.0, 2.0, 3.0, 0.0]))
    assert torch.equal(v[0, :, 2], torch.tensor([0.0, 0.0, 3.0, 5.0, 0.0]))
    assert torch.equal(v[..., 0], x[..., 0])
    tiny = models.add_velocity(torch.ones(2, 1, 3), torch.ones(2, 1, dtype=torch.bool))
    assert tiny.shape == (2, 1, 9)


def test_velocity_is_zero_where_a_landmark_is_missing():
    """A coordinate missing (0) in either frame of a difference gives 0, not a jump to the origin."""
    x = torch.tensor([[0.0, 0.5, 0.7, 0.0, 0.2]])[..., None]  # (1, 5, 1): seen in frames 1, 2, 4
    v = models.add_velocity(x, torch.ones(1, 5, dtype=torch.bool))
    assert torch.allclose(v[0, :, 1], torch.tensor([0.0, 0.0, 0.2, 0.0, 0.0]))
    assert torch.allclose(v[0, :, 2], torch.tensor([0.0, 0.0, 0.0, 0.0, -0.5]))


@pytest.mark.parametrize("name", ["transformer", "macaron", "conformer", "hybrid"])
def test_attention_dropout_is_its_own_setting(name):
    """SelfAttention takes attention_dropout, not dropout, in every attention model."""
    model = models.build(ModelConfig(name=name, dropout=0.3, attention_dropout=0.0), 20, 3)
    rates = [m.dropout for m in model.modules() if isinstance(m, models.SelfAttention)]
    assert rates and all(rate == 0.0 for rate in rates)


def test_default_attention_dropout():
    """The default model's attention dropout is article 10's 0.1."""
    default = models.build(ModelConfig(), 20, 3)
    assert default.layers[0].attention.dropout == 0.1  # article 10 keeps 0.1


def test_conformer_is_macaron_plus_convolutions():
    """Conformer blocks hold a depthwise convolution module; Macaron blocks do not."""
    conformer = models.build(ModelConfig(name="conformer"), 20, 3)
    macaron = models.build(ModelConfig(name="macaron"), 20, 3)
    assert sum(isinstance(m, models.ConvolutionModule) for m in conformer.modules()) == 2
    assert not any(isinstance(m, models.DepthwiseConv) for m in macaron.modules())
    for model in (conformer, macaron):  # BatchNorm would mix padded frames and batch-mates
        assert not any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
        )


def test_hybrid_layout():
    """The hybrid repeats `conv_blocks` conv blocks then one Transformer block, `depth` times."""
    model = models.build(ModelConfig(name="hybrid", depth=2, conv_blocks=3), 20, 3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == (["ConvBlock"] * 3 + ["EncoderLayer"]) * 2


def test_unidirectional_rnn_halves_the_features():
    """bidirectional=False reads forwards only, with a head on width features."""
    model = models.build(ModelConfig(name="gru", bidirectional=False), 20, 3)
    assert not model.rnn.bidirectional and model.head.in_features == 64


def test_article10_transformer_size():
    """The article-10 Transformer on 260 features and 10 signs has about 117k parameters."""
    model = models.build(ModelConfig(), 260, 10)
    assert models.num_parameters(model) == 117_450


def test_post_norm_switch_changes_the_model():
    """pre_norm=False builds a Post-LN encoder without the final LayerNorm."""
    pre = models.build(ModelConfig(), 260, 10)
    post = models.build(ModelConfig(pre_norm=False), 260, 10)
    assert isinstance(post.norm, torch.nn.Identity) and isinstance(pre.norm, torch.nn.LayerNorm)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_encoder_layer_normalises_before_or_after(pre_norm):
    """Pre-LN: x + f(norm(x)); Post-LN: norm(x + f(x)), for the attention and the MLP."""
    torch.manual_seed(0)
    layer = models.EncoderLayer(
        width=8, heads=2, feedforward=16, dropout=0.0, attention_dropout=0.0, pre_norm=pre_norm
    ).eval()
    x, valid = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    attention, mlp, norm1, norm2 = layer.attention, layer.mlp, layer.norm1, layer.norm2
    if pre_norm:
        h = x + attention(norm1(x), valid)
        expected = h + mlp(norm2(h))
    else:
        h = norm1(x + attention(x, valid))
        expected = norm2(h + mlp(h))
    assert torch.allclose(layer(x, valid), expected, atol=1e-6)


@pytest.mark.parametrize(
    "config, message",
    [
        pytest.param(ModelConfig(name="nope"), "unknown model", id="unknown-model"),
        pytest.param(ModelConfig(width=65, heads=2), "multiple of heads", id="transformer-width"),
        pytest.param(
            ModelConfig(name="conformer", width=65, heads=2),
            "multiple of heads",
            id="conformer-width",
        ),
    ],
)
def test_bad_config_is_refused(config, message):
    """An unknown model name or a width not divisible by heads is a ValueError."""
    with pytest.raises(ValueError, match=message):
        models.build(config, 260, 10)


@pytest.mark.parametrize("name", ["transformer", "conformer", "hybrid"])
def test_long_sequences_run(name):
    """Sequences longer than any training clip (1,500 frames) run."""
    model = models.build(ModelConfig(name=name), 20, 3).eval()
    x = torch.randn(1, 1500, 20)
    assert model(x, torch.ones(1, 1500, dtype=torch.bool)).shape == (1, 3)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_each_element_with_probability_one_minus_p(p):
    """models.Dropout keeps 1 - p of the elements (within 5 standard errors, in each of the four
    16-bit lanes of a random word and overall), scales the kept ones by 1 / (1 - p), and keeps
    the mean; neighbours are uncorrelated."""
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last word is cut
    y = models.Dropout(p).train()(torch.ones(n))
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    bound = 5 * (p * (1 - p) / n) ** 0.5
    assert abs(kept.double().mean() - (1 - p)) < bound
    for lane in range(4):
        assert abs(kept[lane::4].double().mean() - (1 - p)) < 2 * bound
    assert abs(y.double().mean() - 1) < bound / (1 - p)
    a, b = kept[:-1].double(), kept[1:].double()
    correlation = ((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std())
    assert abs(correlation) < 5 / n**0.5


def test_dropout_is_reproducible_from_the_seed_and_off_in_eval():
    """The same seed gives the same mask, another seed another; eval mode and p = 0 pass the
    input through; the gradient is the mask (kept elements 1 / (1 - p), dropped 0)."""
    drop = models.Dropout(0.2).train()
    x = torch.randn(8, 30, 64, requires_grad=True)
    torch.manual_seed(1)
    a = drop(x)
    torch.manual_seed(1)
    b = drop(x)
    torch.manual_seed(2)
    c = drop(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert torch.allclose(x.grad, (a != 0).float() / 0.8)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(models.Dropout(0.0).train()(x), x)
    assert torch.equal(models.Dropout(1.0).train()(x), torch.zeros_like(x))


@pytest.mark.parametrize("name", ["transformer", "conformer", "hybrid"])
def test_models_use_the_fast_dropout_with_nn_dropout_keys(name, monkeypatch):
    """Every dropout layer of the encoder models is models.Dropout, and the state_dict has the
    keys and values of the same model built with nn.Dropout (older checkpoints load)."""
    torch.manual_seed(0)
    model = models.build(ModelConfig(name=name), 20, 3)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is models.Dropout for m in drops)
    monkeypatch.setattr(models, "Dropout", torch.nn.Dropout)
    torch.manual_seed(0)
    plain = models.build(ModelConfig(name=name), 20, 3).state_dict()
    assert list(plain) == list(model.state_dict())
    assert all(torch.equal(plain[key], value) for key, value in model.state_dict().items())


def test_attention_dropout_written_out_is_sdpa_with_the_fast_mask(monkeypatch):
    """In training on the CPU, attention with dropout runs `models.attention_with_dropout`:
    with a mask of ones it is F.scaled_dot_product_attention (padded keys ignored); with the
    real mask each weight is kept with probability 1 - p and scaled by 1 / (1 - p), so the
    weights of a row sum to 1 on average; eval mode takes the fused kernel, no dropout."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 3, 2, 7, 8).unbind()  # (N, H, T, D/H) each
    valid = torch.tensor([[True] * 7, [True] * 5 + [False] * 2, [True] + [False] * 6])
    attend = valid[:, None, None, :]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
    ones = lambda shape, p, dtype: torch.ones(shape, dtype=dtype)  # noqa: E731
    monkeypatch.setattr(models, "keep_mask", ones)
    assert torch.allclose(models.attention_with_dropout(q, k, v, attend, 0.3), expected, atol=1e-6)
    monkeypatch.undo()
    H, T, p = 50, 64, 0.3  # 204,800 weights
    identity = torch.eye(T).expand(1, H, T, T)  # v = I: the output is the weights
    uniform = torch.zeros(1, H, T, 1)  # q = k = 0: every weight 1 / T
    weights = models.attention_with_dropout(uniform, uniform, identity, torch.tensor(True), p)
    kept = weights != 0
    assert abs(kept.double().mean() - (1 - p)) < 5 * (p * (1 - p) / weights.numel()) ** 0.5
    assert torch.allclose(weights[kept], torch.tensor(1 / (1 - p) / T))
    attention = models.SelfAttention(width=16, heads=2, dropout=0.5)
    x = torch.randn(3, 7, 16)
    attention.eval()
    q, k, v = attention.qkv(x).view(3, 7, 3, 2, 8).permute(2, 0, 3, 1, 4)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
    assert torch.allclose(
        attention(x, valid), attention.out(fused.transpose(1, 2).reshape(3, 7, 16))
    )
