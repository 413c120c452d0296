"""One recording to its most likely signs, with a checkpoint's own preprocessing and model.

`classify` predicts one landmark track (T, 543, 3) the way `predict` does a file: for `live`'s
and `serve`'s segments and uploads and `show`'s titles. `top_signs` turns probabilities into
the ranked list all of them show.
"""

import numpy as np
import torch

import checkpoint
import data
import loops


def top_signs(probabilities: torch.Tensor, signs: list[str], top_k: int) -> list[list[dict]]:
    """For each row of (S, K) probabilities, its `top_k` signs: [{"sign", "probability"}]."""
    top = probabilities.topk(min(top_k, len(signs)), dim=-1)
    return [
        [{"sign": signs[i], "probability": p} for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def landmarks_seen(prepared: data.Prepared) -> list[bool]:
    """For each prepared sequence, whether any of the model's landmarks was detected.

    Preprocessing leaves a missing landmark at exactly 0: nothing non-zero, nothing seen.
    """
    return [
        bool(prepared.frames[o : o + n].any())
        for o, n in zip(prepared.offsets.tolist(), prepared.lengths.tolist(), strict=True)
    ]


def classify(
    loaded: checkpoint.Checkpoint, track: np.ndarray, top_k: int = 5, device: str = "cpu"
) -> dict:
    """The top `top_k` signs for one landmark track (T, 543, 3), as `predict` computes them.

    Returns {"frames": T, "landmarks_seen": bool, "predictions": [{"sign", "probability"}]}.
    The checkpoint's model must be on `device`.
    """
    features = np.ascontiguousarray(track.transpose(2, 0, 1), dtype=np.float32)  # (3, T, 543)
    prepared = data.prepare_arrays([features], [0], loaded.data_config)
    with torch.inference_mode():
        logits, _, _ = loops.predict(loaded.model, prepared.batches(loops.EVAL_BATCH), device)
    return {
        "frames": int(track.shape[0]),
        "landmarks_seen": landmarks_seen(prepared)[0],
        "predictions": top_signs(logits.softmax(-1), loaded.signs, top_k)[0],
    }
