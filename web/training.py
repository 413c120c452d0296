"""Training on the workspace in a process of its own: start it, read its progress, cancel it.

    python islr.py train --data WORKSPACE --preset personal --out WORKSPACE/runs/<name> --threads N

One training at a time. It gets a share of the cores (`--threads`, half of them and at least
one) and OMP_WAIT_POLICY=PASSIVE, so that it and the page's MediaPipe do not spin against each
other (two PyTorch processes with all threads each on two cores were measured 10x slower).
Progress comes from the files the run writes, never from its terminal text: history.json after
each epoch (trainer.py), the accuracies its checkpoint records, and the job's own record,
RUN/job.json (status running, done, failed, cancelled or interrupted). The terminal text goes to RUN/train.log; its last line is the
message of a failed run. A server that starts and finds a run still marked running (its server
stopped mid-training) marks it interrupted and keeps its files.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import checkpoint
import presets
import safely
from web.limits import ServeError

PRESET = "personal"  # the recipe for a handful of clips of one person (presets.py)
ISLR = Path(__file__).resolve().parent.parent / "islr.py"
RUNS = "runs"  # WORKSPACE/runs/<name>/
ENDED = ("done", "failed", "cancelled", "interrupted")
STOP_SECONDS = 20  # a cancelled run's time to stop before it is killed


def training_threads() -> int:
    """Half of the cores, at least one: the page's camera sessions need the rest."""
    return max(1, (os.cpu_count() or 1) // 2)


def train_command(workspace: Path, out: Path, threads: int) -> list[str]:
    """The command line of one training on the workspace."""
    return [
        sys.executable, str(ISLR), "train", "--data", str(workspace), "--preset", PRESET,
        "--out", str(out), "--threads", str(threads),
    ]  # fmt: skip


def training_environment() -> dict[str, str]:
    """The server's environment, with OpenMP's threads waiting passively unless the user said
    otherwise (islr.py's policy), and the run's log written line by line."""
    return {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"}


def planned_epochs() -> int | None:
    preset = presets.PRESETS.get(PRESET)
    return preset.train.epochs if preset else None


def measured(ckpt: Path) -> dict[str, float]:
    """The accuracies a checkpoint records ({"val": 0.9, "leave_one_out": 0.83}, say), read
    from its header alone."""
    try:
        metadata = checkpoint.read_header(ckpt).get("__metadata__") or {}
        metrics = json.loads(metadata.get("metrics", "{}"))
    except (checkpoint.CheckpointError, OSError, ValueError):
        return {}
    return {
        name: values["accuracy"]
        for name, values in metrics.items()
        if isinstance(values, dict) and isinstance(values.get("accuracy"), int | float)
    }


class Training:
    """The runs in WORKSPACE/runs and the one training process, if any."""

    def __init__(
        self,
        workspace: Path,
        threads: int = 0,
        command: Callable[[Path, Path, int], list[str]] = train_command,
    ) -> None:
        self.workspace, self.runs_dir = workspace, workspace / RUNS
        self.threads, self.command = threads or training_threads(), command
        self.process: subprocess.Popen | None = None
        self.name: str | None = None  # the run the process trains
        self.lock = threading.Lock()
        self.mark_interrupted()

    # -- records -----------------------------------------------------------------------------

    def record(self, name: str) -> dict:
        try:
            return json.loads((self.runs_dir / name / "job.json").read_text())
        except (OSError, ValueError):
            return {"name": name, "status": "unknown"}

    def write(self, run: str, **changes) -> dict:
        record = {**self.record(run), **changes}
        safely.write_text(self.runs_dir / run / "job.json", json.dumps(record, indent=1))
        return record

    def mark_interrupted(self) -> None:
        """Runs a stopped server left marked running are interrupted: say so."""
        for name in self.names():
            if self.record(name).get("status") == "running":
                self.write(name, status="interrupted", ended=time.time(), message=(
                    "the server stopped while this run trained; its examples are intact"
                ))  # fmt: skip

    def names(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "job.json").is_file())

    def model(self, name: str) -> Path:
        """The checkpoint of a finished run of this workspace."""
        if name not in self.names() or not (self.runs_dir / name / "model.safetensors").is_file():
            raise ServeError(f"no trained model named {name!r}", 404)
        return self.runs_dir / name / "model.safetensors"

    def runs(self) -> list[dict]:
        """Every run's record and progress, newest first."""
        self.poll()
        return [self.progress(name) for name in reversed(self.names())]

    def progress(self, name: str) -> dict:
        """The run's record with its epochs done, last losses and accuracy, and time left."""
        record = self.record(name)
        run = self.runs_dir / name
        try:
            history = json.loads((run / "history.json").read_text())
        except (OSError, ValueError):
            history = []
        record["done_epochs"] = len(history)
        record["model"] = (run / "model.safetensors").is_file()
        if history:
            last = history[-1]
            record["loss"] = last["train"].get("loss")
            record["accuracy"] = last["val"].get("accuracy")
            record["train_accuracy"] = last["train"].get("accuracy")
        if record["model"]:
            record["measured"] = measured(run / "model.safetensors")
        total, started = record.get("epochs"), record.get("started")
        if record.get("status") == "running" and history and total and started:
            per_epoch = (time.time() - started) / len(history)
            record["seconds_left"] = round(per_epoch * max(0, total - len(history)), 1)
        return record

    # -- the process ------------------------------------------------------------------------

    def running(self) -> str | None:
        self.poll()
        return self.name

    def start(self, signs: list[str], examples: int) -> dict:
        """Start training on the workspace; refused while another training runs."""
        with self.lock:
            self.poll()
            if self.process is not None:
                raise ServeError(f"a training is running ({self.name}): wait or cancel it", 409)
            name = self.new_name()
            run = self.runs_dir / name
            record = self.write(name, name=name, status="running", started=time.time(),
                                epochs=planned_epochs(), signs=signs, examples=examples,
                                preset=PRESET)  # fmt: skip
            env = training_environment()
            with (run / "train.log").open("w") as log:
                self.process = subprocess.Popen(
                    self.command(self.workspace, run, self.threads),
                    cwd=ISLR.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            self.name = name
            return record

    def new_name(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            name = stamp if n == 1 else f"{stamp}-{n}"
            try:
                (self.runs_dir / name).mkdir(parents=True)
                return name
            except FileExistsError:
                continue
        raise ServeError("cannot name a new run in the workspace")

    def poll(self) -> None:
        """Record how the training process ended, once it has."""
        process, name = self.process, self.name
        if process is None or process.poll() is None:
            return
        self.process = self.name = None
        if self.record(name).get("status") != "running":  # cancelled, recorded already
            return
        if process.returncode == 0 and (self.runs_dir / name / "model.safetensors").is_file():
            self.write(name, status="done", ended=time.time())
        else:
            self.write(name, status="failed", ended=time.time(), message=self.last_line(name))

    def last_line(self, name: str) -> str:
        try:
            lines = (self.runs_dir / name / "train.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        lines = [line.strip() for line in lines if line.strip()]
        return lines[-1] if lines else "training stopped without a word"

    def cancel(self) -> dict:
        """Stop the training (SIGTERM: it stops within an epoch's batch, files whole)."""
        with self.lock:
            self.poll()
            process, name = self.process, self.name
            if process is None:
                raise ServeError("no training is running", 409)
            self.write(name, status="cancelled", ended=time.time(), message="cancelled")
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.poll()
        return self.progress(name)

    def close(self) -> None:
        """At the server's end: stop a training and mark it interrupted."""
        self.poll()  # one that ended already is recorded as it ended
        process, name = self.process, self.name
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
        self.write(name, status="interrupted", ended=time.time(), message=(
            "the server stopped while this run trained; its examples are intact"
        ))  # fmt: skip
        self.process = self.name = None
