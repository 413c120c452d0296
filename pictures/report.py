"""A run as one HTML page: `python islr.py report RUN`.

The page holds the configuration, the metrics, the training curves, the confusion matrix, the
per-class accuracy and the animations of the worst misclassified clips, every picture embedded
as base64 (no other file, no network): it opens in any browser offline. The evaluation is
made afresh on the run's test signer(s), from the data the run was trained on.

    python islr.py report runs/<name>                 # writes runs/<name>/report.html
    python islr.py report runs/<name> --out page.html --errors 24
"""

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

import checkpoint
import data
import loops
import safely
from cli import (
    DEFAULT_DATA,
    Device,
    console,
    load_features,
    output_file,
    pick_device,
    tracked,
    user_errors,
)
from pictures import curves, evaluation, plots

SECTIONS = ("configuration", "metrics", "curves", "confusion", "per-class", "errors")
STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
img { max-width: 100%; }
.animations img { width: 300px; margin: 4px; border: 1px solid #ddd; }
code { background: #f4f4f4; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
"""


def image(content: bytes, kind: str, alt: str) -> str:
    encoded = base64.b64encode(content).decode()
    return f'<img src="data:image/{kind};base64,{encoded}" alt="{html.escape(alt)}">'


def table(rows: dict) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(text(value))}</td></tr>"
        for key, value in rows.items()
    )
    return f"<table>{cells}</table>"


def text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def section(name: str, title: str, body: str) -> str:
    return f'<section id="{name}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def metrics_table(loaded: checkpoint.Checkpoint, result: dict | None) -> str:
    """Validation and test figures of the kept epoch, and this evaluation's."""
    metrics = loaded.metadata.get("metrics", {})
    rows = {"kept epoch": loaded.metadata.get("epoch")}
    for split, values in metrics.items():
        for name in ("accuracy", "top5_accuracy", "loss", "samples"):
            if values.get(name) is not None:
                rows[f"{split} {name}"] = values[name]
    if result is not None:
        rows["this evaluation: accuracy"] = result["accuracy"]
        rows["this evaluation: clips"] = result["samples"]
    return table(rows)


def evaluate_run(
    loaded: checkpoint.Checkpoint,
    data_dir: Path,
    signers: list[str],
    device,
    batch_size: int = loops.EVAL_BATCH,
):
    """(result, dataset, prepared) of the checkpoint on the signers' clips, with a progress bar;
    `evaluate` and `report` both evaluate through it."""
    vocabulary = data.read_vocabulary(data_dir)
    if vocabulary != loaded.vocabulary:
        raise ValueError(
            f"{data_dir} has a different vocabulary from the checkpoint: they do not fit together"
        )
    dataset = load_features(data_dir, loaded.data_config, set(signers))
    prepared = dataset.prepared
    batches = tracked(prepared.batches(batch_size), prepared.num_batches(batch_size), "evaluating")
    result = loops.evaluate(loaded.model.to(device), batches, device=device)
    return result, dataset, prepared


def build_page(
    run: Path, loaded, history, result, dataset, prepared, device, errors: int, data_dir: Path
) -> str:
    """The HTML page of a run (result None: no test signer, no evaluation sections' evaluation)."""
    train_config = loaded.metadata.get("train_config", {})
    parts = [
        section("configuration", "Configuration", configuration_html(loaded, train_config)),
        section("metrics", "Metrics", metrics_table(loaded, result)),
        section("curves", "Training curves", curves_html(loaded, history, train_config)),
    ]
    if result is None:
        missing = "<p>The run has no test signer: nothing was evaluated.</p>"
        parts += [
            section(name, title, missing)
            for name, title in (
                ("confusion", "Confusion"),
                ("per-class", "Per-class accuracy"),
                ("errors", "Misclassified clips"),
            )
        ]
        return page(run, parts)
    figures = plots.evaluation_figures(result, loaded.signs)
    images = {name: image(plots.png_bytes(figure), "png", name) for name, figure in figures.items()}
    parts.append(
        section("confusion", "Confusion", images["confusion.png"] + images["top_confusions.png"])
    )
    parts.append(section("per-class", "Per-class accuracy", images["per_class.png"]))
    body = errors_html(loaded, result, dataset, prepared, device, errors, data_dir)
    parts.append(section("errors", "Misclassified clips", body))
    return page(run, parts)


def configuration_html(loaded, train_config: dict) -> str:
    """The command, data and signers of a run, then a box per config."""
    split = loaded.metadata.get("split", {})
    configuration = table(
        {
            "command": loaded.metadata.get("command", "?"),
            "data": loaded.metadata.get("data", "?"),
            **{f"{k} signers": ", ".join(v) for k, v in split.items()},
        }
    )
    boxes = ""
    for name, values in (
        ("data", loaded.data_config.__dict__),
        ("model", loaded.model_config.__dict__),
        ("train", train_config),
        ("augment", loaded.metadata.get("augment_config", {})),
    ):
        boxes += f"<div><h3>{name}</h3>{table(values)}</div>"
    return configuration + f'<div class="row">{boxes}</div>'


def curves_html(loaded, history, train_config: dict) -> str:
    """The training curves of history.json, the epochs that could be kept shaded."""
    if not history:
        return "<p>No history.json in the run.</p>"
    try:
        config = loops.TrainConfig(**train_config)
        first, planned = config.first_candidate, config.epochs
    except (TypeError, ValueError):  # none recorded, or from another islr: shade nothing
        first, planned = 1, None
    figure = curves.curves_figure(history, loaded.metadata.get("epoch"), first, planned)
    return image(plots.png_bytes(figure), "png", "training curves")


def errors_html(loaded, result, dataset, prepared, device, errors: int, data_dir: Path) -> str:
    """Up to `errors` animations of misclassified clips, worst first."""
    with tempfile.TemporaryDirectory() as folder:
        paths = evaluation.write_errors(
            Path(folder), loaded, dataset, prepared, device, data_dir, limit=errors
        )
        animations = "".join(image(path.read_bytes(), "gif", path.stem) for path in paths)
    wrong = result["samples"] - round(result["accuracy"] * result["samples"])
    note = (
        f"<p>{len(paths)} of {wrong} misclassified clips, worst first (lowest probability "
        "of the true sign); <code>evaluate --errors DIR</code> writes them all.</p>"
    )
    return note + f'<div class="animations">{animations}</div>' if wrong else "<p>No errors.</p>"


def page(run: Path, parts: list[str]) -> str:
    title = html.escape(f"islr run {run.resolve().name}")
    links = " · ".join(f'<a href="#{name}">{name}</a>' for name in SECTIONS)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{title}</h1><p>{links}</p>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by train.")],
    out: Annotated[
        Path | None, typer.Option(help="The HTML file (default: RUN/report.html).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data", help="GISLR dataset directory (default: the one it trained on)."),
    ] = None,
    errors: Annotated[
        int, typer.Option(min=0, help="Misclassified clips to animate, the worst first.")
    ] = 12,
    device: Device = "auto",
) -> None:
    """One self-contained HTML page of a run: configuration, metrics, curves, confusion,
    per-class accuracy and the worst misclassified clips."""
    with user_errors():
        plots.require()
        if not run.is_dir():
            raise ValueError(f"{run} is not a run directory")
        out = output_file(out or run / "report.html", "--out")
        loaded = checkpoint.load(run / "model.safetensors")
        history_path = run / "history.json"
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
        data_dir = data_dir or Path(loaded.metadata.get("data", DEFAULT_DATA))
        signers = loaded.metadata.get("split", {}).get("test") or []
        device_ = pick_device(device)
        evaluated = (None, None, None)
        if signers:
            evaluated = evaluate_run(loaded, data_dir, signers, device_)
        content = build_page(run, loaded, history, *evaluated, device_, errors, data_dir)
        safely.write_text(out, content)
    console.print(f"report: {out} ({len(content) / 1e6:.1f} MB)")
