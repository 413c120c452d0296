"""Training curves: curves.png, and the drawing process that keeps it up to date in training.

    curves.write_curves(run / "curves.png", history, kept_epoch=12, first_candidate=6)
    on_saved = curves.writer(run / "curves.png", first_candidate=6, planned_epochs=50)
    ...                                   # trainer.train_run(..., on_saved=on_saved)
    curves.wait_for_drawing()             # before the run directory is let go

Drawn with matplotlib (the `plots` extra) through plots.py's headless figures.
"""

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pictures.plots import available, new_figure, require, write_png


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
    planned_epochs: int | None = None,
) -> None:
    write_png(path, curves_figure(history, kept_epoch, first_candidate, planned_epochs))


class CurvesWriter:
    """The callback trainer.train_run calls once each epoch's files are written: it sends the
    history to a drawing process that redraws `path`, so training goes on meanwhile.

    A process, not a thread: matplotlib holds the GIL for most of a drawing, and a training
    loop waiting for it at every PyTorch call was measured 43% slower (BENCHMARKS.md). The
    process runs at a lower priority (nice 19), draws only the latest request it has, and
    ends once its input is closed and that is drawn (`wait_for_drawing`); it survives Ctrl-C
    (its own session) to draw the last request, and a broken one only costs the picture.
    """

    def __init__(self, path: Path, first_candidate: int, planned_epochs: int | None = None):
        self.path, self.first_candidate = Path(path), first_candidate
        self.planned_epochs = planned_epochs
        self.process: subprocess.Popen | None = None

    def __call__(self, history: list[dict], best: dict | None) -> None:
        request = {
            "path": str(self.path),
            "history": history,
            "kept": best["epoch"] if best else None,
            "first": self.first_candidate,
            "epochs": self.planned_epochs,
        }
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pictures.curves", "serve"],
                cwd=Path(__file__).resolve().parent.parent,  # the repository: `pictures` imports
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
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
                write_curves(
                    Path(request["path"]),
                    request["history"],
                    request["kept"],
                    request["first"],
                    request["epochs"],
                )
            except OSError:
                pass  # a full disk, a removed folder: the training files matter, not this
        if not chunk:
            return


def writer(
    path: Path, first_candidate: int, planned_epochs: int | None = None
) -> Callable[[list[dict], dict | None], None]:
    """A CurvesWriter for `path`; without matplotlib, a callback that does nothing (islr.py
    says so once)."""
    if not available():
        return lambda history, best: None
    return CurvesWriter(path, first_candidate, planned_epochs)


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
