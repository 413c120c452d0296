"""What `evaluate --plots DIR --errors DIR` writes: the evaluation's pictures (plots.py) and
one animation per misclassified clip (show.py), worst first.

    python islr.py evaluate runs/<name>/model.safetensors --plots runs/<name> --errors runs/<name>/errors
"""

import re
from pathlib import Path

import data
import loops
from cli import console, note, output_directory, tracked
from pictures import plots, show


def check_picture_directories(plots_dir: Path | None, errors_dir: Path | None) -> None:
    """Before an evaluation: the picture folders can be made, and matplotlib is there."""
    for path, flag in ((plots_dir, "--plots"), (errors_dir, "--errors")):
        if path is not None:
            output_directory(path, flag)
            plots.require()


def file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_errors(
    directory: Path, loaded, dataset, prepared, device, data_dir: Path, limit: int | None = None
) -> list[Path]:
    """One animation per misclassified clip (the `limit` worst), named
    RANK-TRUE-as-PREDICTED-SIGNER-ID.gif with RANK 001 for the clip whose true sign got the
    lowest probability (the worst). `dataset` names each clip's signer and sequence id (a
    data.Dataset or cache.Features); its landmarks are read again from `data_dir`."""
    files = data.signer_files(Path(data_dir))
    logits, labels, indices = loops.predict(loaded.model.to(device), prepared.batches(128), device)
    probabilities = logits.softmax(-1)
    guesses = probabilities.argmax(-1)
    wrong = (guesses != labels).nonzero().flatten().tolist()
    wrong.sort(key=lambda row: probabilities[row, labels[row]].item())
    wrong = wrong[:limit]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, row in enumerate(tracked(wrong, len(wrong), "error animations"), 1):
        index = int(indices[row])
        true, guess = loaded.signs[int(labels[row])], loaded.signs[int(guesses[row])]
        signer, sequence = dataset.signers[index], dataset.sequence_ids[index]
        name = file_name(f"{rank:03d}-{true}-as-{guess}-{signer}-{sequence}") + ".gif"
        confidence = probabilities[row].max().item()
        title = f"{signer}/{sequence}\n" + show.title_of(true, (guess, confidence))
        clip = show.read_hdf5(files[str(signer)], str(sequence))
        show.write_animation(directory / name, clip.points, title)
        paths.append(directory / name)
    return paths


def evaluation_pictures(
    plots_dir, errors_dir, result, loaded, dataset, prepared, device, data_dir
) -> None:
    """What `evaluate --plots DIR --errors DIR` writes, each folder only when asked for."""
    if plots_dir is not None:
        written = plots.write_evaluation(plots_dir, result, loaded.signs)
        console.print(f"pictures: {', '.join(str(path) for path in written)}")
    if errors_dir is not None:
        written = write_errors(errors_dir, loaded, dataset, prepared, device, data_dir)
        if written:
            console.print(f"{len(written)} error animations in {errors_dir} (worst first)")
        else:
            note(f"no clip was misclassified: nothing written to {errors_dir}")
