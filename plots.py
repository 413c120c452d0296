"""Pictures of training and evaluation: curves, confusion, per-class accuracy, cross-validation.

Drawn with matplotlib (the optional extra `plots`: pip install -e '.[plots]'), headless (Agg,
no window), each on its own Figure object rather than pyplot's global one. Every PNG is
written atomically (a temporary file, then os.replace), so a reader never sees half a file.

    plots.write_curves(run / "curves.png", history, kept_epoch=12, first_candidate=6)
    plots.write_evaluation(directory, result, signs)  # confusion, top confusions, per class
    plots.write_cv(out / "cv.png", runs)
"""

import io
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

EXTRA_HINT = "pip install -e '.[plots]' (make setup installs it)"
CELL_COUNTS_UP_TO = 30  # signs: beyond this the matrix cells are too small for numbers
NAMES_UP_TO = 60  # signs: beyond this the matrix has no tick labels and the bars show the worst
TOP_CONFUSIONS = 25  # pairs in the ranked chart
WORST_CLASSES = 40  # bars when there are more than NAMES_UP_TO signs
DPI = 100


def require() -> None:
    """Import matplotlib with the headless backend; a one-line error when the extra is absent."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(f"pictures need matplotlib: {EXTRA_HINT}") from None
    matplotlib.use("Agg")


def available() -> bool:
    try:
        require()
    except ValueError:
        return False
    return True


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A Figure of width x height inches with its own Agg canvas (no pyplot state)."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_atomic(path: Path, content: bytes) -> None:
    """Write `content` to `path` through a temporary file in the same folder and os.replace."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def write_png(path: Path, figure) -> None:
    write_atomic(path, png_bytes(figure))


# ---------------------------------------------------------------------------------------------
# Training curves


def curves_figure(
    history: list[dict],
    kept_epoch: int | None,
    first_candidate: int,
    planned_epochs: int | None = None,
):
    """Loss (train, validation), accuracy (train, validation) and learning rate per epoch.

    The kept epoch is a dashed line labelled "kept epoch N" on every panel (and a star on the
    validation accuracy); epochs before `first_candidate` (not eligible to be kept) are shaded.
    The epoch axis spans `planned_epochs` (when given), so a run in progress shows how far
    it has come.
    """
    from matplotlib.ticker import MaxNLocator

    numbers = [record["epoch"] for record in history]
    train = [record["train"] for record in history]
    val = [record["val"] for record in history]
    # Fixed margins: the constrained layout measured every label first, half the drawing time.
    figure = new_figure(12, 3.6, layout=None)
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.86, wspace=0.22)
    loss, accuracy, rate = figure.subplots(1, 3)
    loss.plot(numbers, [m["loss"] for m in train], label="train")
    loss.plot(numbers, [m["loss"] for m in val], label="validation")
    loss.set(title="loss", xlabel="epoch")
    accuracy.plot(numbers, [m["accuracy"] for m in train], label="train")
    accuracy.plot(numbers, [m["accuracy"] for m in val], label="validation")
    accuracy.set(title="accuracy", xlabel="epoch", ylim=(-0.02, 1.02))
    rate.plot(numbers, [m.get("learning_rate", np.nan) for m in train], color="tab:purple")
    rate.set(title="learning rate", xlabel="epoch (rate at its first step)")
    rate.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for axes in (loss, accuracy, rate):
        if first_candidate > 1:
            axes.axvspan(0.5, first_candidate - 0.5, color="0.85", label="not eligible")
        if kept_epoch is not None:
            axes.axvline(kept_epoch, color="tab:green", ls="--", label=f"kept epoch {kept_epoch}")
        axes.set_xlim(0.5, max(planned_epochs or 1, numbers[-1] if numbers else 1) + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    if kept_epoch in numbers:
        kept_accuracy = val[numbers.index(kept_epoch)]["accuracy"]
        accuracy.plot([kept_epoch], [kept_accuracy], "*", color="tab:green", ms=14, label="kept")
    loss.legend(fontsize="small")
    return figure


def write_curves(
    path: Path,
    history: list[dict],
    kept_epoch: int | None,
    first_candidate: int,
    epochs: int | None = None,
) -> None:
    write_png(path, curves_figure(history, kept_epoch, first_candidate, epochs))


class CurvesWriter:
    """The callback trainer.train_run calls once each epoch's files are written: it sends the
    history to a drawing process that redraws `path`, so training goes on meanwhile.

    A process, not a thread: matplotlib holds the GIL for most of a drawing, and a training
    loop waiting for it at every PyTorch call was measured 43% slower (BENCHMARKS.md). The
    process runs at a lower priority (nice 19), draws only the latest request it has, and
    ends once its input is closed and that is drawn (`wait_for_drawing`); it survives Ctrl-C
    (its own session) to draw the last request, and a broken one only costs the picture.
    """

    def __init__(self, path: Path, first_candidate: int, epochs: int | None = None):
        self.path, self.first_candidate, self.epochs = Path(path), first_candidate, epochs
        self.process: subprocess.Popen | None = None

    def __call__(self, history: list[dict], best: dict | None) -> None:
        request = {"path": str(self.path), "history": history, "first": self.first_candidate, "epochs": self.epochs,
                   "kept": best["epoch"] if best else None}  # fmt: skip
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            _PROCESSES.append(self.process)
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:  # the drawing process is gone (BrokenPipeError)
            pass


_PROCESSES: list[subprocess.Popen] = []


def wait_for_drawing(timeout: float = 60) -> None:
    """Return once every curves.png requested so far is drawn (a process still drawing after
    `timeout` seconds is stopped)."""
    while _PROCESSES:
        process = _PROCESSES.pop()
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve() -> None:
    """The drawing process: JSON requests on standard input, one a line; draws the latest one
    available each time, and the last one before it ends at end of input."""
    os.nice(19)  # the lowest priority: a busy machine trains first and draws when idle
    require()
    pending = b""
    while True:
        chunk = os.read(0, 1 << 20)
        pending += chunk
        while chunk and select.select([0], [], [], 0)[0]:  # take everything already sent
            chunk = os.read(0, 1 << 20)
            pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            request = json.loads(lines[-1])
            try:
                write_curves(Path(request["path"]), request["history"], request["kept"],
                             request["first"], request["epochs"])  # fmt: skip
            except OSError:
                pass  # a full disk, a removed folder: the training files matter, not this
        if not chunk:
            return


def curves_writer(
    path: Path, first_candidate: int, epochs: int | None = None
) -> Callable[[list[dict], dict | None], None]:
    """A CurvesWriter for `path`; without matplotlib, a callback that does nothing (islr.py
    says so once)."""
    if not available():
        return lambda history, best: None
    return CurvesWriter(path, first_candidate, epochs)


# ---------------------------------------------------------------------------------------------
# Confusion and per-class accuracy


def confused_order(confusion: np.ndarray) -> list[int]:
    """An order of the signs in which signs confused with each other sit together.

    Single linkage: pairs are joined from the most confused (row-normalised rates, both
    directions added) down, each join putting the two signs' groups end to end with the pair
    adjacent. Groups come largest first; signs never confused keep their order at the end.
    """
    confusion = np.asarray(confusion, dtype=float)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    similarity = rates + rates.T
    np.fill_diagonal(similarity, 0)
    K = len(confusion)
    group = {i: [i] for i in range(K)}  # sign -> the list of its group (shared by its members)
    rows, columns = np.triu_indices(K, 1)
    strength = similarity[rows, columns]
    for index in np.argsort(-strength, kind="stable"):
        i, j = int(rows[index]), int(columns[index])
        if strength[index] <= 0:
            break
        first, second = group[i], group[j]
        if first is second:
            continue
        if first[0] == i and len(first) > 1:
            first.reverse()  # i at the end of its group ...
        if second[-1] == j and len(second) > 1:
            second.reverse()  # ... and j at the start of its own
        joined = first + second
        for sign in joined:
            group[sign] = joined
    groups = list({id(g): g for g in group.values()}.values())
    joined_groups = sorted((g for g in groups if len(g) > 1), key=lambda g: (-len(g), min(g)))
    alone = sorted(g[0] for g in groups if len(g) == 1)
    return [sign for g in joined_groups for sign in g] + alone


def confusion_figure(confusion, signs: list[str]):
    """The confusion matrix, rows normalised (each true sign's clips add up to 1), in
    `confused_order`; counts in the cells up to CELL_COUNTS_UP_TO signs, names up to
    NAMES_UP_TO. Returns (figure, order)."""
    from matplotlib.colors import PowerNorm

    confusion = np.asarray(confusion)
    K = len(signs)
    order = confused_order(confusion)
    counts = confusion[np.ix_(order, order)]
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = min(max(4.5, 0.32 * K + 2.5), 16)
    figure = new_figure(side + 1.2, side)
    axes = figure.subplots()
    # A square-root colour scale: a mistake in 5% of a sign's clips is still visible.
    scale = PowerNorm(0.5, vmin=0, vmax=1)
    image = axes.imshow(rates, cmap="Blues", norm=scale, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true sign's clips")
    if K <= CELL_COUNTS_UP_TO:
        for t in range(K):
            for p in range(K):
                if counts[t, p]:
                    color = "white" if rates[t, p] > 0.4 else "black"
                    axes.text(p, t, str(counts[t, p]), ha="center", va="center", color=color,
                              fontsize="small" if K <= 15 else "x-small")  # fmt: skip
    if K <= NAMES_UP_TO:
        names = [signs[i] for i in order]
        axes.set_xticks(range(K), names, rotation=90, fontsize="small")
        axes.set_yticks(range(K), names, fontsize="small")
    else:
        axes.set(xticks=[], yticks=[])
    axes.set(xlabel="predicted", ylabel="true",
             title=f"confusion matrix, {int(confusion.sum())} clips (confused signs together)")  # fmt: skip
    return figure, order


def top_confusions(confusion, signs: list[str], limit: int = TOP_CONFUSIONS) -> list[tuple]:
    """The most frequent mistakes: (true sign, predicted sign, count, share of the true
    sign's clips), most clips first."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(1)
    pairs = [(int(confusion[t, p]), t, p) for t, p in zip(*np.nonzero(confusion), strict=True)
             if t != p]  # fmt: skip
    pairs.sort(key=lambda pair: (-pair[0], -pair[0] / totals[pair[1]], pair[1], pair[2]))
    return [(signs[t], signs[p], n, n / totals[t]) for n, t, p in pairs[:limit]]


def top_confusions_figure(confusion, signs: list[str]):
    """A ranked bar chart of the most frequent mistakes (readable at any number of signs)."""
    from matplotlib.ticker import MaxNLocator

    ranked = top_confusions(confusion, signs)
    figure = new_figure(8, 1.2 + 0.3 * max(len(ranked), 1))
    axes = figure.subplots()
    if not ranked:
        axes.text(0.5, 0.5, "no clip was misclassified", ha="center", va="center")
        axes.set_axis_off()
        return figure
    labels = [f"{true} → {predicted}" for true, predicted, _, _ in ranked]
    bars = axes.barh(range(len(ranked)), [n for _, _, n, _ in ranked], color="tab:red")
    axes.bar_label(bars, [f" {n} ({share:.0%})" for _, _, n, share in ranked], fontsize="small")
    axes.set_yticks(range(len(ranked)), labels, fontsize="small")
    axes.invert_yaxis()
    axes.margins(x=0.15)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="clips", title="most frequent confusions: true → predicted (share of true)")
    return figure


def per_class_figure(accuracy: list[float | None], counts: list[int], signs: list[str]):
    """Per-class accuracy bars, worst first, each labelled with its clip count; beyond
    NAMES_UP_TO signs only the WORST_CLASSES worst. Signs without clips are left out."""
    shown = sorted((a, s, n) for a, s, n in zip(accuracy, signs, counts, strict=True)
                   if a is not None)  # fmt: skip
    title = f"per-class accuracy, worst first ({len(shown)} signs with clips)"
    if len(shown) > NAMES_UP_TO:
        title = f"per-class accuracy: the {WORST_CLASSES} worst of {len(shown)} signs"
        shown = shown[:WORST_CLASSES]
    figure = new_figure(8, 1.2 + 0.28 * max(len(shown), 1))
    axes = figure.subplots()
    bars = axes.barh(range(len(shown)), [a for a, _, _ in shown], color="tab:blue")
    axes.bar_label(bars, [f" {a:.0%} of {n}" for a, _, n in shown], fontsize="small")
    axes.set_yticks(range(len(shown)), [s for _, s, _ in shown], fontsize="small")
    axes.invert_yaxis()
    axes.set(xlim=(0, 1.18), xlabel="accuracy", title=title)
    return figure


def evaluation_figures(result: dict, signs: list[str]) -> dict[str, object]:
    """{file name: figure} of an evaluation result (loops.evaluate's dict)."""
    return {
        "confusion.png": confusion_figure(result["confusion"], signs)[0],
        "top_confusions.png": top_confusions_figure(result["confusion"], signs),
        "per_class.png": per_class_figure(
            result["per_class_accuracy"], result["class_counts"], signs
        ),
    }


def write_evaluation(directory: Path, result: dict, signs: list[str]) -> list[Path]:
    """Write confusion.png, top_confusions.png and per_class.png into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in evaluation_figures(result, signs).items():
        write_png(directory / name, figure)
        paths.append(directory / name)
    return paths


# ---------------------------------------------------------------------------------------------
# Cross-validation


def cv_figure(runs: list[dict]):
    """Test accuracy of every run, one column per fold (seeds side by side), with the mean
    as a line and mean ± standard deviation shaded."""
    from matplotlib.ticker import PercentFormatter

    accuracies = np.array([run["accuracy"] for run in runs])
    mean = accuracies.mean()
    std = accuracies.std(ddof=1) if len(runs) > 1 else 0.0
    folds = sorted({run["fold"] for run in runs})
    seeds = sorted({run["seed"] for run in runs})
    figure = new_figure(max(6, 1.8 * len(folds) + 2), 4.5)
    axes = figure.subplots()
    axes.axhspan(mean - std, mean + std, color="tab:blue", alpha=0.15, label="mean ± std")
    axes.axhline(mean, color="tab:blue", label=f"mean {mean:.1%}")
    for seed in seeds:
        chosen = [run for run in runs if run["seed"] == seed]
        offset = 0.25 * (seed - (len(seeds) - 1) / 2) / max(len(seeds) - 1, 1)
        axes.plot([folds.index(run["fold"]) + offset for run in chosen],
                  [run["accuracy"] for run in chosen], "o", label=f"seed {seed}")  # fmt: skip
    names = {run["fold"]: signer_lines(run["test_signers"]) for run in runs}
    axes.set_xticks(range(len(folds)), [f"fold {f}\n{names[f]}" for f in folds], fontsize="x-small")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set(ylabel="test accuracy", xlim=(-0.6, len(folds) - 0.4),
             title=f"cross-validation: {mean:.1%} ± {std:.1%} over {len(runs)} runs")  # fmt: skip
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def signer_lines(signers: list[str], per_line: int = 3) -> str:
    """Test signers under a fold's tick, a few per line."""
    lines = [", ".join(signers[i : i + per_line]) for i in range(0, len(signers), per_line)]
    return "\n".join(lines)


def write_cv(path: Path, runs: list[dict]) -> None:
    write_png(path, cv_figure(runs))


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
