"""Models: per-frame features -> temporal encoder -> mean over valid frames -> linear head.

Shape letters, used in every comment on the right of a line:
    N batch, T frames, J landmarks, C coordinates, D width, E expanded width, H heads,
    K classes. The input of a model is (N, T, J*C): J*C features per frame.

Every model is `forward(x, valid) -> logits` with x (N, T, J*C) and valid (N, T) bool
(True = a real frame, always a prefix: valid is built from lengths). Padded frames are
masked in attention, recurrence, convolution and pooling, so a sequence's logits do not
depend on what else is in its batch. The loss lives in loops.py.

    python -c "import models; print(models.build(models.ModelConfig(name='hybrid'), 260, 10))"
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import templates


@dataclass(frozen=True)
class ModelConfig:
    name: str = "transformer"  # a key of MODELS
    width: int = 64  # D: the series' article-10 width (hidden size per direction for RNNs)
    depth: int = 2  # encoder layers; RNN layers; hybrid groups of conv blocks + a Transformer
    heads: int = 2  # attention heads; width must divide by it
    feedforward: int = 256  # hidden width of each layer's MLP and of the hybrid's conv blocks
    dropout: float = 0.1  # on positions, residual branches, MLPs and between RNN layers
    pre_norm: bool = True  # Pre-LN (article 10) trains stably without warm-up; False = Post-LN
    # Dropout on attention probabilities; in training on the CPU it runs attention written out
    # (attention_with_dropout), elsewhere PyTorch's fused kernel.
    attention_dropout: float = 0.1  # article 10 uses the same 0.1 as everywhere else
    bidirectional: bool = True  # RNNs: a sign is classified after it ends, so read both ways
    kernel_size: int = 17  # frames seen by the depthwise convs (Kaggle 1st place: 17)
    conv_blocks: int = 3  # hybrid: conv blocks before each Transformer block (Kaggle 1st place)
    # Append x[t] - x[t-1] and x[t] - x[t-2]: motion the Kaggle 1st place found worth adding.
    velocity: bool = False
    # "dtw" (templates.py): the training clips it keeps as templates; training sets it.
    examples: int = 0


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU: 16-bit integers cut from 64-bit random words.

    Each element is kept with probability 1 - p, to within 2^-17 (the threshold is a whole
    number of 65,536ths), and the kept ones are scaled by 1 / (1 - p), as nn.Dropout does. The
    words come from PyTorch's default generator, so `torch.manual_seed` reproduces the masks.
    PyTorch's CPU dropout draws one float Bernoulli sample per element (`aten::bernoulli_`)
    and divides it by 1 - p in a second pass: 4.4x the CPU time of these draws (one thread,
    524,288 elements: 3.9 ms against 0.9 ms). On other devices F.dropout, fused there, runs.
    No weights: a checkpoint's keys are those of nn.Dropout.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        return x * keep_mask(x.shape, self.p, x.dtype)


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> Tensor:
    """A dropout mask of `shape`: 1 / (1 - p) where an element is kept (probability 1 - p), else 0."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
    bits = words.view(torch.int16)[:n].view(shape)  # four uniform 16-bit integers per word
    keep = bits < round((1 - p) * 2**16) - 2**15  # P(keep) = round((1 - p) * 65536) / 65536
    return keep.to(dtype).mul_(1 / (1 - p))


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid frames: (N, T, D), (N, T) -> (N, D)."""
    weights = valid.to(x.dtype).unsqueeze(-1)  # (N, T, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


def add_velocity(x: Tensor, valid: Tensor) -> Tensor:
    """x with its 1- and 2-frame differences appended: (N, T, J*C) -> (N, T, 3*J*C).

    Differences look backwards only, so a valid frame never reads a padded one; they are
    zero where the earlier frame does not exist (t < 1, t < 2) and on padded frames. They are
    also zero where the coordinate is missing in either frame (missing is exactly 0, as in
    preprocessing and augment): a hand coming into view has not moved there from the origin.
    """
    present = x.sign().abs()  # (N, T, J*C) 1.0 where a coordinate is not 0
    parts = [x]
    for step in (1, 2):
        difference = torch.zeros_like(x)  # (N, T, J*C)
        difference[:, step:] = (x[:, step:] - x[:, :-step]) * present[:, step:] * present[:, :-step]
        parts.append(difference * valid.unsqueeze(-1))
    return torch.cat(parts, -1)  # (N, T, 3*J*C)


def num_inputs(num_features: int, velocity: bool) -> int:
    return num_features * 3 if velocity else num_features


class SimpleISLR(nn.Module):
    """The series' first model: Linear + ReLU per frame, mean over time, linear head."""

    def __init__(self, *, num_features: int, width: int, num_classes: int, velocity: bool = False):
        super().__init__()
        self.velocity = velocity
        self.embed = nn.Linear(num_inputs(num_features, velocity), width)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: Tensor, valid: Tensor) -> Tensor:
        if self.velocity:
            x = add_velocity(x, valid)  # (N, T, 3*J*C)
        return masked_mean(F.relu(self.embed(x)), valid)  # (N, D)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.head(self.forward_features(x, valid))  # (N, K)


class RecurrentISLR(nn.Module):
    """Stacked RNN, LSTM or GRU over packed sequences -> mean over valid frames -> head.

    Packing runs each sequence's recurrence over its own valid frames only, so padding
    never enters the state (in either direction).
    """

    def __init__(self, config: ModelConfig, *, num_features: int, num_classes: int):
        super().__init__()
        self.velocity = config.velocity
        recurrent = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.name]
        self.rnn = recurrent(
            num_inputs(num_features, config.velocity),
            config.width,
            num_layers=config.depth,
            batch_first=True,
            dropout=config.dropout if config.depth > 1 else 0.0,  # only between layers
            bidirectional=config.bidirectional,
        )
        self.head = nn.Linear(config.width * (2 if config.bidirectional else 1), num_classes)

    def forward_features(self, x: Tensor, valid: Tensor) -> Tensor:
        T = x.shape[1]
        if self.velocity:
            x = add_velocity(x, valid)  # (N, T, 3*J*C)
        lengths = valid.sum(1).clamp(min=1).cpu()  # (N,) packing wants them on the CPU
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=T)
        return masked_mean(h, valid)  # (N, D) or (N, 2D) when bidirectional

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.head(self.forward_features(x, valid))  # (N, K)


class SinusoidalPositions(nn.Module):
    """Adds the fixed sin/cos position code of "Attention is all you need" to (N, T, D).

    Computed for the input's own length on every call, from the input itself rather than from
    T as a number, so a traced or exported graph takes sequences of any length.
    """

    def __init__(self, *, width: int):
        super().__init__()
        frequency = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        self.register_buffer("frequency", frequency, persistent=False)  # (D/2,)

    def forward(self, x: Tensor) -> Tensor:
        position = torch.ones_like(x[0, :, :1], dtype=torch.float32).cumsum(0) - 1  # (T, 1)
        angle = position * self.frequency  # (T, D/2)
        return x + torch.stack([angle.sin(), angle.cos()], -1).flatten(1)  # (T, D) interleaved


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
        attend = valid[:, None, None, :]  # (N, 1, 1, T)
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, attend, self.dropout)  # (N, H, T, D/H)
        else:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(N, T, D))  # (N, T, D)


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, attend: Tensor, p: float) -> Tensor:
    """Softmax attention with dropout on its probabilities, written out.

    What `F.scaled_dot_product_attention` computes with dropout_p > 0 on the CPU (its unfused
    math kernel), with the mask of `keep_mask` in place of a Bernoulli draw per weight.
    q, k, v (N, H, T, D/H); attend (N, 1, 1, T) True where a key may be attended to.
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (N, H, T, T)
    scores = scores.masked_fill(~attend, float("-inf"))
    weights = scores.softmax(-1) * keep_mask(scores.shape, p, scores.dtype)  # (N, H, T, T)
    return weights @ v  # (N, H, T, D/H)


class EncoderLayer(nn.Module):
    """Attention then MLP, each in a residual branch, normalised before (Pre-LN) or after."""

    def __init__(
        self,
        *,
        width: int,
        heads: int,
        feedforward: int,
        dropout: float,
        attention_dropout: float,
        pre_norm: bool,
    ):
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = SelfAttention(width=width, heads=heads, dropout=attention_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, feedforward),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(feedforward, width),
        )
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attention(self.norm1(x), valid))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attention(x, valid)))
        return self.norm2(x + self.drop(self.mlp(x)))


class DepthwiseConv(nn.Module):
    """One filter per channel along time over the valid frames only.

    Padded frames are zeroed first, so a sequence's last frames see the same zeros as the
    convolution's own padding would give it alone: the output does not depend on the batch.
    Time runs along the height of a Conv2d: on CPU its depthwise kernel trains ~3x faster
    than Conv1d's (torch 2.13, measured forward + backward at N=32, T=30, D=256).
    """

    def __init__(self, *, width: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, (kernel_size, 1), padding="same", groups=width)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = (x * valid.unsqueeze(-1)).transpose(1, 2).unsqueeze(-1)  # (N, D, T, 1)
        return self.conv(x).squeeze(-1).transpose(1, 2)  # (N, T, D)


class FeedForward(nn.Module):
    """Pre-LN MLP with SiLU (Swish), the Conformer's feed-forward module."""

    def __init__(self, *, width: int, feedforward: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, feedforward),
            nn.SiLU(),
            Dropout(dropout),
            nn.Linear(feedforward, width),
            Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (N, T, D)


class ConvolutionModule(nn.Module):
    """The Conformer's: pointwise + GLU, depthwise conv, norm, SiLU, pointwise.

    LayerNorm instead of the paper's BatchNorm: BatchNorm would mix padded frames and
    batch-mates into every sequence's statistics.
    """

    def __init__(self, *, width: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.expand = nn.Linear(width, 2 * width)
        self.depthwise = DepthwiseConv(width=width, kernel_size=kernel_size)
        self.conv_norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, width)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = F.glu(self.expand(self.norm(x)), dim=-1)  # (N, T, D)
        h = F.silu(self.conv_norm(self.depthwise(h, valid)))  # (N, T, D)
        return self.drop(self.project(h))  # (N, T, D)


class ConformerBlock(nn.Module):
    """Half-step FFN, self-attention, [convolution module,] half-step FFN, LayerNorm.

    Without a kernel size this is a Macaron-Net block; with one, a Conformer block.
    """

    def __init__(
        self,
        *,
        width: int,
        heads: int,
        feedforward: int,
        dropout: float,
        attention_dropout: float,
        kernel_size: int | None,
    ):
        super().__init__()
        self.ff1 = FeedForward(width=width, feedforward=feedforward, dropout=dropout)
        self.attention_norm = nn.LayerNorm(width)
        self.attention = SelfAttention(width=width, heads=heads, dropout=attention_dropout)
        self.drop = Dropout(dropout)
        self.conv = None
        if kernel_size is not None:
            self.conv = ConvolutionModule(width=width, kernel_size=kernel_size, dropout=dropout)
        self.ff2 = FeedForward(width=width, feedforward=feedforward, dropout=dropout)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)  # (N, T, D)
        x = x + self.drop(self.attention(self.attention_norm(x), valid))
        if self.conv is not None:
            x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)  # (N, T, D)


class ChannelAttention(nn.Module):
    """Efficient channel attention (ECA): channel gates from a 1D conv over the mean frame."""

    def __init__(self, *, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding="same", bias=False)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        gates = self.conv(masked_mean(x, valid).unsqueeze(1))  # (N, 1, E) over valid frames
        return x * torch.sigmoid(gates)  # (N, T, E)


class ConvBlock(nn.Module):
    """The Kaggle 1st place's 1D conv block: expand, depthwise conv, norm, ECA, project.

    LayerNorm stands in for its BatchNorm for the same reason as in ConvolutionModule.
    """

    def __init__(self, *, width: int, expanded: int, kernel_size: int, dropout: float):
        super().__init__()
        self.expand = nn.Linear(width, expanded)
        self.depthwise = DepthwiseConv(width=expanded, kernel_size=kernel_size)
        self.norm = nn.LayerNorm(expanded)
        self.channel_attention = ChannelAttention()
        self.project = nn.Linear(expanded, width)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = F.silu(self.expand(x))  # (N, T, E)
        h = self.norm(self.depthwise(h, valid))  # (N, T, E)
        h = self.channel_attention(h, valid)  # (N, T, E)
        return x + self.drop(self.project(h))  # (N, T, D)


class EncoderISLR(nn.Module):
    """Linear + ReLU -> positions -> blocks -> LayerNorm -> mean over valid frames -> head.

    Article 10's Transformer and its descendants, which differ only in their blocks:
    "transformer" EncoderLayer, "macaron" / "conformer" ConformerBlock, and "hybrid"
    `depth` groups of `conv_blocks` ConvBlocks followed by one Pre-LN EncoderLayer
    (`pre_norm` only switches the "transformer"). The hybrid keeps the shared front end
    (sinusoidal positions are harmless next to convolutions) and leaves out the 1st place's
    Linear(D -> 2D) before pooling; its late dropout belongs to the training recipe.
    """

    def __init__(self, config: ModelConfig, *, num_features: int, num_classes: int):
        super().__init__()
        D = config.width
        self.velocity = config.velocity
        self.embed = nn.Linear(num_inputs(num_features, config.velocity), D)
        self.positions = SinusoidalPositions(width=D)
        self.drop = Dropout(config.dropout)
        attention = dict(
            width=D,
            heads=config.heads,
            feedforward=config.feedforward,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
        )
        blocks: list[nn.Module] = []
        for _ in range(config.depth):
            if config.name == "transformer":
                blocks.append(EncoderLayer(**attention, pre_norm=config.pre_norm))
            elif config.name in ("macaron", "conformer"):
                kernel_size = config.kernel_size if config.name == "conformer" else None
                blocks.append(ConformerBlock(**attention, kernel_size=kernel_size))
            else:  # hybrid
                conv = dict(expanded=config.feedforward, kernel_size=config.kernel_size)
                blocks += [
                    ConvBlock(width=D, **conv, dropout=config.dropout)
                    for _ in range(config.conv_blocks)
                ]
                blocks.append(EncoderLayer(**attention, pre_norm=True))
        self.layers = nn.ModuleList(blocks)
        # A Pre-LN residual stream is unnormalised at the end; Post-LN and Conformer blocks
        # already end with a LayerNorm.
        final_norm = config.name == "hybrid" or (config.name == "transformer" and config.pre_norm)
        self.norm = nn.LayerNorm(D) if final_norm else nn.Identity()
        self.head = nn.Linear(D, num_classes)

    def forward_features(self, x: Tensor, valid: Tensor) -> Tensor:
        if self.velocity:
            x = add_velocity(x, valid)  # (N, T, 3*J*C)
        h = self.drop(self.positions(F.relu(self.embed(x))))  # (N, T, D)
        for layer in self.layers:
            h = layer(h, valid)  # (N, T, D)
        return masked_mean(self.norm(h), valid)  # (N, D)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.head(self.forward_features(x, valid))  # (N, K)


MODELS = ("simple", "transformer", "rnn", "lstm", "gru", "macaron", "conformer", "hybrid")
TEMPLATE_MODELS = ("dtw",)  # no weights to train: nearest template (templates.py)

MAX_DEPTH = 64  # layers (and conv blocks per layer): far past any model here; a typo beyond
MAX_KERNEL = 255  # frames a depthwise convolution sees: longer than most signs


def build(config: ModelConfig, num_features: int, num_classes: int) -> nn.Module:
    """The model a config describes; the only way models are made (also from checkpoints)."""
    if config.name not in MODELS + TEMPLATE_MODELS:
        known = ", ".join(MODELS + TEMPLATE_MODELS)
        raise ValueError(f"unknown model {config.name!r}: choose one of {known}")
    if config.name == "dtw":
        return templates.TemplateISLR(
            num_features=num_features, num_classes=num_classes, num_examples=config.examples
        )
    if not (1 <= config.depth <= MAX_DEPTH and 0 <= config.conv_blocks <= MAX_DEPTH):
        raise ValueError(
            f"depth {config.depth}, conv blocks {config.conv_blocks}: each must be "
            f"at most {MAX_DEPTH}"
        )
    if config.name in ("conformer", "hybrid") and not (
        config.kernel_size % 2 == 1 and config.kernel_size <= MAX_KERNEL
    ):
        raise ValueError(
            f"kernel size {config.kernel_size} must be odd (centred on each frame) "
            f"and at most {MAX_KERNEL}"
        )
    if config.name == "simple":
        return SimpleISLR(
            num_features=num_features,
            width=config.width,
            num_classes=num_classes,
            velocity=config.velocity,
        )
    if config.name in ("rnn", "lstm", "gru"):
        return RecurrentISLR(config, num_features=num_features, num_classes=num_classes)
    if config.width % config.heads:
        raise ValueError(f"width {config.width} must be a multiple of heads {config.heads}")
    if config.width % 2:
        raise ValueError(f"width {config.width} must be even: positions pair a sine and a cosine")
    return EncoderISLR(config, num_features=num_features, num_classes=num_classes)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
