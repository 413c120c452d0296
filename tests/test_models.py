"""Model shapes, sizes and independence from batch-mates."""

import pytest
import torch

import models
from models import ModelConfig


@pytest.mark.parametrize("name", models.MODELS)
def test_output_does_not_depend_on_padding(name):
    """A sequence's logits are the same alone and padded inside a batch of longer sequences."""
    torch.manual_seed(0)
    model = models.build(ModelConfig(name=name), 260, 10).eval()
    lengths = torch.tensor([7, 30, 19])
    x = torch.randn(3, 30, 260)
    valid = torch.arange(30)[None] < lengths[:, None]
    x = x * valid[..., None]
    with torch.no_grad():
        batched = model(x, valid)  # (3, K)
        alone = model(x[:1, :7], valid[:1, :7])  # (1, K)
        garbage = x.clone()
        garbage[0, 7:] = 100.0  # whatever sits in padded frames must not matter
        with_garbage = model(garbage, valid)
    assert batched.shape == (3, 10)
    assert torch.allclose(batched[:1], alone, atol=1e-5)
    assert torch.allclose(with_garbage[:1], alone, atol=1e-5)


def test_article10_transformer_size():
    """The article-10 Transformer on 260 features and 10 signs has about 117k parameters."""
    model = models.build(ModelConfig(), 260, 10)
    assert models.num_parameters(model) == 117_450


def test_post_norm_switch_changes_the_model():
    """pre_norm=False builds a Post-LN encoder without the final LayerNorm."""
    pre = models.build(ModelConfig(), 260, 10)
    post = models.build(ModelConfig(pre_norm=False), 260, 10)
    assert isinstance(post.norm, torch.nn.Identity) and isinstance(pre.norm, torch.nn.LayerNorm)


def test_bad_config_is_refused():
    """An unknown model name or a width not divisible by heads is a ValueError."""
    with pytest.raises(ValueError, match="unknown model"):
        models.build(ModelConfig(name="nope"), 260, 10)
    with pytest.raises(ValueError, match="multiple of heads"):
        models.build(ModelConfig(width=65, heads=2), 260, 10)


def test_long_sequences_beyond_the_position_table():
    """Sequences longer than the precomputed position table still run."""
    model = models.build(ModelConfig(), 20, 3).eval()
    x = torch.randn(1, 1500, 20)
    assert model(x, torch.ones(1, 1500, dtype=torch.bool)).shape == (1, 3)
