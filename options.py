"""The options of `train`, one type alias each (type, help text, help panel, bounds).

`train`'s signature names them with the default preset's values as defaults; `cv` and `bench`
take the same flags after their own options (cli.train_flags).
"""

from pathlib import Path
from typing import Annotated

import models
import presets
from cli import AUGMENT_PANEL, DATA_PANEL, MODEL_PANEL, TRAIN_PANEL, chance, option

Out = Annotated[Path | None, option("Run directory (default: a new folder under runs/).")]
Preset = Annotated[
    str,
    option(f"Model + recipe preset: {', '.join(presets.PRESETS)}. Flags given override it."),
]
TestSigner = Annotated[str, option("Held-out test signer, or 'none'.", DATA_PANEL)]
ValSigner = Annotated[
    str | None,
    option(
        "Validation signer(s) that pick the epoch, comma-separated (default: the first other).",
        DATA_PANEL,
    ),
]
Landmarks = Annotated[
    str, option("fullbody (130 points), fullbody-head (+ pose 0-10) or all (543).", DATA_PANEL)
]
Coordinates = Annotated[str, option("xy or xyz.", DATA_PANEL)]
Normalize = Annotated[bool, option("Parts-based normalisation.", DATA_PANEL)]
Align = Annotated[str, option("Normalisation origin: framewise or unique.", DATA_PANEL)]
Scale = Annotated[str, option("Normalisation unit: framewise or unique.", DATA_PANEL)]
MirrorLeft = Annotated[
    bool, option("Mirror clips signed with the left hand (all look right-handed).", DATA_PANEL)
]
Model = Annotated[str, option(f"{', '.join(models.MODELS)}.", MODEL_PANEL)]
Width = Annotated[int, option("Model width D.", MODEL_PANEL, min=1)]
Depth = Annotated[int, option("Encoder layers.", MODEL_PANEL, min=1)]
Heads = Annotated[int, option("Attention heads.", MODEL_PANEL, min=1)]
Feedforward = Annotated[int, option("MLP hidden width.", MODEL_PANEL, min=1)]
Dropout = Annotated[float, option("Dropout.", MODEL_PANEL, min=0, max=1)]
PreNorm = Annotated[bool, option("Pre-LN (else Post-LN).", MODEL_PANEL)]
AttentionDropout = Annotated[
    float, option("Dropout on attention weights (slow on CPU).", MODEL_PANEL, min=0, max=1)
]
Bidirectional = Annotated[bool, option("RNNs read both directions.", MODEL_PANEL)]
KernelSize = Annotated[
    int, option("Depthwise convolution kernel (conformer, hybrid).", MODEL_PANEL, min=1)
]
ConvBlocks = Annotated[
    int, option("Conv blocks before each Transformer block (hybrid).", MODEL_PANEL, min=0)
]
Velocity = Annotated[bool, option("Append frame-to-frame differences to the input.", MODEL_PANEL)]
Threads = Annotated[
    int,
    option(
        "CPU threads for PyTorch (0 = its default). 1 is fastest on a busy machine.",
        TRAIN_PANEL,
        min=0,
    ),
]
Epochs = Annotated[int, option("Epochs.", TRAIN_PANEL, min=1)]
BatchSize = Annotated[int, option("Batch size.", TRAIN_PANEL, min=1)]
LearningRate = Annotated[float, option("Peak learning rate.", TRAIN_PANEL, min=0)]
LabelSmoothing = Annotated[
    float,
    option(
        "Label smoothing ε: targets (1-ε)·one-hot + ε/K (PyTorch's).", TRAIN_PANEL, min=0, max=1
    ),
]
Seed = Annotated[int, option("Seed of weights, dropout, order, augmentation.", TRAIN_PANEL)]
Flip = Annotated[float, chance("Horizontal flip.")]
Affine = Annotated[float, chance("Rotation, shear, per-part scale/shift.")]
Noise = Annotated[float, chance("Noise on present landmarks.")]
Crop = Annotated[float, chance("Temporal crop.")]
CropMin = Annotated[
    float,
    option("Shortest span a crop keeps, a fraction of the frames: 0 < F <= 1.", AUGMENT_PANEL),
]
Resample = Annotated[float, chance("Temporal resampling (speed).")]
DropPart = Annotated[float, chance("Drop a whole part.")]
DropJoints = Annotated[float, chance("Drop random joints.")]
DropTime = Annotated[float, chance("Drop a time span.")]
Optimizer = Annotated[str, option("adam or adamw.", TRAIN_PANEL)]
WeightDecay = Annotated[float, option("AdamW weight decay.", TRAIN_PANEL, min=0)]
WarmupEpochs = Annotated[float, option("Linear warm-up epochs.", TRAIN_PANEL, min=0)]
Schedule = Annotated[str, option("constant or cosine.", TRAIN_PANEL)]
ClipNorm = Annotated[float, option("Gradient-norm clip (0 = off).", TRAIN_PANEL, min=0)]
Ema = Annotated[float, option("EMA decay of weights (0 = off).", TRAIN_PANEL, min=0, max=1)]
LateDropout = Annotated[
    int, option("Dropout off until this epoch (0 = always on).", TRAIN_PANEL, min=0)
]
SelectAfter = Annotated[
    float, option("Pick the epoch past this fraction of training: 0 <= F < 1.", TRAIN_PANEL)
]
Amp = Annotated[bool, option("bfloat16 autocast on CUDA.", TRAIN_PANEL)]
Resume = Annotated[Path | None, option("Continue an interrupted run directory (its own configs).")]
Init = Annotated[
    Path | None,
    option(
        "Start from this checkpoint: its data and model configs and encoder weights, "
        "a new head for this data's signs."
    ),
]
