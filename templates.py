"""Templates: nearest neighbour over time-warped hand tracks, the `personal` preset's model.

A few clips a sign are too few to train a network on (the default recipe is at chance with
one clip a sign of a real signer), but enough to compare with: every training clip is kept as
a template, and a new clip gets the sign of the template it is closest to under dynamic time
warping (DTW). Training is remembering, so it takes as long as preprocessing.

What is compared, per frame (the input is preprocessing's `fullbody-head` selection, xy,
left-handed clips mirrored, so the dominant hand is always the right one):
    the dominant hand's 21 points, centred on the hand and scaled by its size   (42 values)
    the wrist's position relative to the nose, in shoulder widths, x3           (2 values)
Frames where the hand was not detected are dropped (a missing hand is all zeros after
preprocessing, a point far from every real hand shape: dropping them took 1-shot accuracy on
the real hello/thankyou signers from 85% to 93%), and the rest resampled to FRAMES frames.

    x (N, T, J*C), valid (N, T) -> tracks (N, L, D) -> DTW to (M, L, D) templates -> (N, M)
    -> per sign the nearest template's distance -> logits (N, K) = -distance / scale

The templates, their signs and the scale are buffers: a checkpoint stores them like weights,
so `predict`, `evaluate`, `live`, `serve` and `export` take the model like any other.

    python -c "import templates; print(templates.TemplateISLR(num_features=282, num_classes=2, num_examples=4))"
"""

import torch
from torch import Tensor, nn

import landmarks
from data import Prepared

SELECTION = "fullbody-head"  # the landmarks the model reads (its DataConfig: xy, mirrored)
FRAMES = 16  # L: every track resampled to this many frames (16, 24 and 32 measured the same)
POSITION_WEIGHT = 3.0  # the wrist-to-nose position against the 42 hand-shape values
FAR = 1e4  # the distance of a sign without a template: never the nearest


def _columns(points: tuple[int, ...]) -> list[int]:
    """Columns of (x, y) of `points` in the (J*C) input of the `fullbody-head` selection."""
    selected = landmarks.SELECTIONS[SELECTION]
    return [2 * selected.index(p) + c for p in points for c in (0, 1)]


HAND = _columns(tuple(range(landmarks.RIGHT_HAND, landmarks.NUM_LANDMARKS)))
WRIST = _columns((landmarks.POSE + 16,))  # the pose's right wrist: where the hand is
NOSE = _columns((landmarks.POSE,))
NUM_FEATURES = 2 * len(landmarks.SELECTIONS[SELECTION])
TRACK_WIDTH = len(HAND) + len(WRIST)  # D


def tracks(x: Tensor, valid: Tensor) -> Tensor:
    """(N, T, J*C), (N, T) -> (N, L, D): hand frames only, resampled to L frames."""
    N, T, _ = x.shape
    position = (x[..., WRIST] - x[..., NOSE]) * POSITION_WEIGHT  # (N, T, 2)
    hand = x[..., HAND]  # (N, T, 42)
    y = torch.cat([hand, position], -1)  # (N, T, D)
    seen = (hand != 0).any(-1) & valid  # (N, T) frames with the hand detected
    use = torch.where(seen.any(1, keepdim=True), seen, valid)  # no hand at all: every frame
    frame = torch.arange(T, device=x.device).expand(N, T)
    order = torch.argsort(frame + T * (~use).long(), dim=1)  # (N, T) used frames first, in order
    y = y.gather(1, order[..., None].expand(-1, -1, y.shape[-1]))  # (N, T, D)
    last = (use.sum(1).clamp(min=1) - 1).to(x.dtype)  # (N,) index of the last used frame
    at = torch.linspace(0, 1, FRAMES, device=x.device)[None] * last[:, None]  # (N, L)
    low = at.floor().long()  # (N, L)
    high = torch.minimum(low + 1, last.long()[:, None])  # (N, L)
    weight = (at - low.to(x.dtype))[..., None]  # (N, L, 1)
    D = y.shape[-1]
    below = y.gather(1, low[..., None].expand(-1, -1, D))  # (N, L, D)
    above = y.gather(1, high[..., None].expand(-1, -1, D))  # (N, L, D)
    return below * (1 - weight) + above * weight  # (N, L, D)


def warped_distance(a: Tensor, b: Tensor) -> Tensor:
    """DTW distance of every track in a (N, L, D) to every track in b (M, L, D): (N, M).

    The frame cost is the Euclidean distance; the path runs from the first frames to the
    last, each step one frame on in either track or both (the classic three moves).
    """
    N, L, D = a.shape
    M = b.shape[0]
    flat_a, flat_b = a.reshape(N * L, D), b.reshape(M * L, D)
    square = (
        (flat_a * flat_a).sum(1)[:, None] + (flat_b * flat_b).sum(1)[None] - 2 * flat_a @ flat_b.T
    )
    cost = square.clamp(min=0).sqrt().view(N, L, M, L).permute(0, 2, 1, 3)  # (N, M, L, L)
    row = cost[:, :, 0].cumsum(-1)  # (N, M, L) the first frame of a against b's first j frames
    for i in range(1, L):
        cells = [row[..., 0] + cost[:, :, i, 0]]
        for j in range(1, L):
            best = torch.minimum(torch.minimum(row[..., j], row[..., j - 1]), cells[-1])
            cells.append(best + cost[:, :, i, j])
        row = torch.stack(cells, -1)  # (N, M, L)
    return row[..., -1] / (2 * L)  # (N, M) per step of a path's typical length


class TemplateISLR(nn.Module):
    """Nearest template under DTW, per sign; logits are -distance / scale."""

    def __init__(self, *, num_features: int, num_classes: int, num_examples: int):
        super().__init__()
        if num_features != NUM_FEATURES:
            raise ValueError(
                f"the template model reads --landmarks {SELECTION} --coordinates xy "
                f"({NUM_FEATURES} features), not {num_features}"
            )
        self.num_classes = num_classes
        self.register_buffer("templates", torch.zeros(num_examples, FRAMES, TRACK_WIDTH))
        self.register_buffer("labels", torch.zeros(num_examples, dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def remember(self, tracks: Tensor, labels: Tensor) -> Tensor:
        """Keep these (M, L, D) tracks as the templates and set the scale of the logits;
        returns the (M, M) distances between templates (infinite on the diagonal).

        The scale is the median distance from a template to its nearest other template, so
        that a clip that close to one sign and twice as far from the others gets ~73%.
        """
        self.templates.copy_(tracks)
        self.labels.copy_(labels)
        distances = warped_distance(tracks, tracks)  # (M, M)
        distances.fill_diagonal_(float("inf"))
        nearest = distances.min(1).values  # (M,)
        if len(nearest) > 1:
            self.scale.copy_(nearest.median().clamp(min=1e-6))
        return distances

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        distances = warped_distance(tracks(x, valid), self.templates)  # (N, M)
        signs = torch.arange(self.num_classes, device=x.device)  # (K,)
        other = (self.labels[None] != signs[:, None]).to(x.dtype) * FAR  # (K, M)
        nearest = (distances[:, None, :] + other[None]).min(-1).values  # (N, K)
        return -nearest / self.scale  # (N, K)


@torch.no_grad()
def fit(prepared: Prepared, num_classes: int, batch_size: int = 256) -> tuple[TemplateISLR, dict]:
    """A model keeping every sequence of `prepared` as a template, and its leave-one-out
    metrics: each clip classified by all the others, over the clips whose sign has another.
    """
    parts = [tracks(b.features, b.valid) for b in prepared.batches(batch_size)]
    order = prepared.lengths.argsort(stable=True)  # the order batches() goes in
    model = TemplateISLR(
        num_features=prepared.frames.shape[1], num_classes=num_classes, num_examples=len(order)
    )
    labels = prepared.labels[order]
    distances = model.remember(torch.cat(parts), labels)  # (M, M)
    signs = torch.arange(num_classes)
    other = (labels[None] != signs[:, None]).float() * FAR  # (K, M)
    nearest = (distances[:, None, :] + other[None]).min(-1).values  # (M, K)
    testable = labels.bincount(minlength=num_classes)[labels] > 1  # (M,)
    right = nearest.argmin(1) == labels
    samples = int(testable.sum())
    accuracy = right[testable].float().mean().item() if samples else None
    return model, {"samples": samples, "accuracy": accuracy}
