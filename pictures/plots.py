"""Pictures of evaluation and cross-validation: confusion, per-class accuracy, cv; the helpers.

Drawn with matplotlib (the optional extra `plots`: pip install -e '.[plots]'), headless (Agg,
no window), each on its own Figure object rather than pyplot's global one. Every PNG is
written atomically (a temporary file, then os.replace), so a reader never sees half a file.

    plots.write_evaluation(directory, result, signs)  # confusion, top confusions, per class
    plots.write_cv(out / "cv.png", runs)
"""

import io
import os
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
                    axes.text(
                        p,
                        t,
                        str(counts[t, p]),
                        ha="center",
                        va="center",
                        color=color,
                        fontsize="small" if K <= 15 else "x-small",
                    )
    if K <= NAMES_UP_TO:
        names = [signs[i] for i in order]
        axes.set_xticks(range(K), names, rotation=90, fontsize="small")
        axes.set_yticks(range(K), names, fontsize="small")
    else:
        axes.set(xticks=[], yticks=[])
    axes.set(
        xlabel="predicted",
        ylabel="true",
        title=f"confusion matrix, {int(confusion.sum())} clips (confused signs together)",
    )
    return figure, order


def top_confusions(confusion, signs: list[str], limit: int = TOP_CONFUSIONS) -> list[tuple]:
    """The most frequent mistakes: (true sign, predicted sign, count, share of the true
    sign's clips), most clips first."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(1)
    pairs = [
        (int(confusion[t, p]), t, p) for t, p in zip(*np.nonzero(confusion), strict=True) if t != p
    ]
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
    shown = sorted(
        (a, s, n) for a, s, n in zip(accuracy, signs, counts, strict=True) if a is not None
    )
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
        axes.plot(
            [folds.index(run["fold"]) + offset for run in chosen],
            [run["accuracy"] for run in chosen],
            "o",
            label=f"seed {seed}",
        )
    names = {run["fold"]: signer_lines(run["test_signers"]) for run in runs}
    axes.set_xticks(range(len(folds)), [f"fold {f}\n{names[f]}" for f in folds], fontsize="x-small")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set(
        ylabel="test accuracy",
        xlim=(-0.6, len(folds) - 0.4),
        title=f"cross-validation: {mean:.1%} ± {std:.1%} over {len(runs)} runs",
    )
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def signer_lines(signers: list[str], per_line: int = 3) -> str:
    """Test signers under a fold's tick, a few per line."""
    lines = [", ".join(signers[i : i + per_line]) for i in range(0, len(signers), per_line)]
    return "\n".join(lines)


def write_cv(path: Path, runs: list[dict]) -> None:
    write_png(path, cv_figure(runs))
