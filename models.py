"""Models: per-frame features -> temporal encoder -> mean over valid frames -> linear head.

Shape letters, used in every comment on the right of a line:
    N batch, T frames, J landmarks, C coordinates, D width, K classes.

Every model is `forward(x, valid) -> logits` with x (N, T, J*C) and valid (N, T) bool
(True = a real frame). Padded frames are masked in attention and pooling, so a sequence's
logits do not depend on what else is in its batch. The loss lives in loops.py.

    python -c "import models; print(models.build(models.ModelConfig(), 260, 10))"
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    name: str = "transformer"  # a key of MODELS
    width: int = 64  # D: the series' article-10 width
    depth: int = 2  # encoder layers
    heads: int = 2  # attention heads; width must divide by it
    feedforward: int = 256  # hidden width of each layer's MLP
    dropout: float = 0.1  # on positions, attention and MLP outputs
    pre_norm: bool = True  # Pre-LN (article 10) trains stably without warm-up; False = Post-LN


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid frames: (N, T, D), (N, T) -> (N, D)."""
    weights = valid.to(x.dtype).unsqueeze(-1)  # (N, T, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


class SimpleISLR(nn.Module):
    """The series' first model: Linear + ReLU per frame, mean over time, linear head."""

    def __init__(self, *, num_features: int, width: int, num_classes: int):
        super().__init__()
        self.embed = nn.Linear(num_features, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = F.relu(self.embed(x))  # (N, T, D)
        return self.head(masked_mean(h, valid))  # (N, K)


class SinusoidalPositions(nn.Module):
    """Adds the fixed sin/cos position code of "Attention is all you need"."""

    def __init__(self, *, width: int, max_frames: int = 1024):
        super().__init__()
        position = torch.arange(max_frames)[:, None]  # (T, 1)
        frequency = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        table = torch.zeros(max_frames, width)  # (T, D)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        if T > len(self.table):  # longer than ever seen: extend the table on the fly
            return x + SinusoidalPositions(width=x.shape[-1], max_frames=T).table.to(x)
        return x + self.table[:T]


class SelfAttention(nn.Module):
    """Multi-head self-attention through PyTorch's fused kernel; padded keys are ignored."""

    def __init__(self, *, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        N, T, D = x.shape
        q, k, v = self.qkv(x).view(N, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        # (N, H, T, D/H) each; the boolean mask means "may attend", True for real frames.
        mask = valid[:, None, None, :]  # (N, 1, 1, T)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(N, T, D))  # (N, T, D)


class EncoderLayer(nn.Module):
    """Attention then MLP, each in a residual branch, normalised before (Pre-LN) or after."""

    def __init__(self, *, width: int, heads: int, feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = SelfAttention(width=width, heads=heads, dropout=dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, feedforward),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(feedforward, width),
        )
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attention(self.norm1(x), valid))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attention(x, valid)))
        return self.norm2(x + self.drop(self.mlp(x)))


class TransformerISLR(nn.Module):
    """Article 10: Linear + ReLU -> positions -> encoder layers -> LayerNorm -> mean -> head."""

    def __init__(self, config: ModelConfig, *, num_features: int, num_classes: int):
        super().__init__()
        D = config.width
        self.embed = nn.Linear(num_features, D)
        self.positions = SinusoidalPositions(width=D)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                width=D,
                heads=config.heads,
                feedforward=config.feedforward,
                dropout=config.dropout,
                pre_norm=config.pre_norm,
            )
            for _ in range(config.depth)
        )
        # Pre-LN leaves the residual stream unnormalised, so it needs a final norm.
        self.norm = nn.LayerNorm(D) if config.pre_norm else nn.Identity()
        self.head = nn.Linear(D, num_classes)

    def forward_features(self, x: Tensor, valid: Tensor) -> Tensor:
        h = self.drop(self.positions(F.relu(self.embed(x))))  # (N, T, D)
        for layer in self.layers:
            h = layer(h, valid)  # (N, T, D)
        return masked_mean(self.norm(h), valid)  # (N, D)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.head(self.forward_features(x, valid))  # (N, K)


def build(config: ModelConfig, num_features: int, num_classes: int) -> nn.Module:
    """The model a config describes; the only way models are made (also from checkpoints)."""
    if config.name == "simple":
        return SimpleISLR(num_features=num_features, width=config.width, num_classes=num_classes)
    if config.name == "transformer":
        if config.width % config.heads:
            raise ValueError(f"width {config.width} must be a multiple of heads {config.heads}")
        return TransformerISLR(config, num_features=num_features, num_classes=num_classes)
    raise ValueError(f"unknown model {config.name!r}: choose one of {', '.join(MODELS)}")


MODELS = ("simple", "transformer")


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
