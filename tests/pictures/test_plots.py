"""The pictures: what each must contain (sizes, marks, order, frame counts), not only files."""

import gc
import io
import json
import os
import re

import h5py
import numpy as np
import pytest
from conftest import REAL_RAW, require_real_data, run

import checkpoint
import data
import loops
from pictures import curves, plots, show

pytest.importorskip("matplotlib", reason="the `plots` extra is not installed")
from PIL import Image  # noqa: E402  (comes with matplotlib)


def history_of(epochs: int) -> list[dict]:
    """A made-up history: losses fall, validation accuracy rises to 0.9 at epoch 4, then 0.8."""
    accuracy = [0.3, 0.5, 0.7, 0.9, 0.8, 0.8][:epochs]
    return [
        {
            "epoch": e,
            "train": {"loss": 2 / e, "accuracy": a, "learning_rate": 1e-3 * e / epochs},
            "val": {"loss": 2.2 / e, "accuracy": a},
        }
        for e, a in zip(range(1, epochs + 1), accuracy, strict=True)
    ]


def labelled(axes, label: str):
    return [artist for artist in axes.lines + axes.patches if artist.get_label() == label]


def test_curves_mark_the_kept_epoch_and_shade_the_ineligible_ones(tmp_path):
    """Every panel has the kept epoch's line at that epoch and a shade over epochs 1-2; the
    accuracy panel a star on the kept epoch's validation accuracy; the PNG is 1200 x 360."""
    history = history_of(6)
    figure = curves.curves_figure(history, kept_epoch=4, first_candidate=3)
    loss, accuracy, rate = figure.axes
    for axes in (loss, accuracy, rate):
        [line] = labelled(axes, "kept epoch 4")
        assert list(line.get_xdata()) == [4, 4]
        [shade] = labelled(axes, "not eligible")
        x0, x1 = shade.get_bbox().x0, shade.get_bbox().x1
        assert (x0, x1) == (0.5, 2.5)
    [star] = labelled(accuracy, "kept")
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([4], [0.9])
    [_, val] = [line for line in accuracy.lines if line.get_label() in ("train", "validation")]
    assert list(val.get_ydata()) == [r["val"]["accuracy"] for r in history]
    # A run in progress: the axis spans the planned epochs.
    early = curves.curves_figure(history[:2], kept_epoch=None, first_candidate=3, planned_epochs=10)
    assert early.axes[0].get_xlim() == (0.5, 10.5)
    # No shade when every epoch may be kept, no mark before one is kept.
    bare = curves.curves_figure(history[:2], kept_epoch=None, first_candidate=1)
    assert not any(labelled(bare.axes[0], name) for name in ("not eligible", "kept epoch 1"))
    path = tmp_path / "curves.png"
    curves.write_curves(path, history, 4, 3)
    assert Image.open(path).size == (1200, 360)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left


def test_curves_writer_draws_the_latest_history_in_another_process(tmp_path):
    """Requests sent one after another end in the picture of the last one, pixel for pixel
    what drawing it here gives, once drawing is waited for."""
    writer = curves.CurvesWriter(tmp_path / "curves.png", first_candidate=2)
    history = history_of(6)
    for epochs in range(1, 7):
        writer(history[:epochs], {"epoch": min(epochs, 4)} if epochs >= 2 else None)
    pid = writer.process.pid
    curves.wait_for_drawing()
    assert writer.process.returncode == 0 and pid != os.getpid()
    curves.write_curves(tmp_path / "here.png", history, 4, 2)
    drawn, here = (np.asarray(Image.open(tmp_path / name)) for name in ("curves.png", "here.png"))
    assert drawn.shape == (360, 1200, 4) and np.array_equal(drawn, here)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "here.png"]


def test_train_keeps_curves_png_of_its_history(trained):
    """`train` leaves curves.png in the run directory, drawn from the whole history."""
    _, out, _ = trained
    assert Image.open(out / "curves.png").size == (1200, 360)
    assert not list(out.glob(".*.tmp"))


def test_confused_order_puts_confused_signs_side_by_side():
    """Signs 0 and 4, and 2 and 5, are confused: each pair ends up adjacent; the others
    (never confused) follow in their own order."""
    confusion = np.diag([10] * 6)
    confusion[0, 4], confusion[4, 0], confusion[5, 2] = 3, 1, 4
    order = plots.confused_order(confusion)
    assert sorted(order) == list(range(6))
    assert abs(order.index(0) - order.index(4)) == 1 and abs(order.index(2) - order.index(5)) == 1
    assert order[4:] == [1, 3]
    assert plots.confused_order(np.diag([5, 5, 5])) == [0, 1, 2]


def test_confusion_matrix_counts_names_and_size():
    """At 4 signs the cells hold the counts and the axes the names, rows normalised; at 250
    there are neither (the ranked chart names the confusions) and the image stays <= 1720 px."""
    confusion = np.array([[8, 2, 0, 0], [0, 10, 0, 0], [1, 0, 9, 0], [0, 0, 0, 10]])
    signs = ["a", "b", "c", "d"]
    figure, order = plots.confusion_figure(confusion, signs)
    axes = figure.axes[0]
    assert sorted(int(t.get_text()) for t in axes.texts) == sorted(confusion[confusion > 0])
    assert [t.get_text() for t in axes.get_yticklabels()] == [signs[i] for i in order]
    rates = axes.images[0].get_array()
    assert np.allclose(rates.sum(1), 1)
    big = np.diag(np.full(250, 4))
    big[7, 9] = 3
    figure, _ = plots.confusion_figure(big, [f"s{i}" for i in range(250)])
    assert not figure.axes[0].texts and not figure.axes[0].get_yticklabels()
    width, height = Image.open(io.BytesIO(plots.png_bytes(figure))).size
    assert width <= 1720 and height <= 1600
    ranked = plots.top_confusions(big, [f"s{i}" for i in range(250)])
    assert ranked == [("s7", "s9", 3, 3 / 7)]


def test_per_class_bars_worst_first():
    """Bars go worst first with their accuracy; beyond 60 signs only the 40 worst."""
    figure = plots.per_class_figure([0.5, None, 1.0, 0.25], [4, 0, 2, 4], ["a", "b", "c", "d"])
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["d", "a", "c"]
    assert [bar.get_width() for bar in axes.patches] == [0.25, 0.5, 1.0]
    many = plots.per_class_figure(
        list(np.linspace(0, 1, 100)), [5] * 100, [f"s{i}" for i in range(100)]
    )
    assert len(many.axes[0].patches) == plots.WORST_CLASSES
    assert many.axes[0].get_title() == "per-class accuracy: the 40 worst of 100 signs"
    assert max(bar.get_width() for bar in many.axes[0].patches) < 0.4


def test_cv_figure_shows_every_run_and_the_mean():
    """One point per run at its accuracy, the mean line at the mean, the band at ± std."""
    runs = [
        {"fold": f, "seed": s, "accuracy": a, "test_signers": [str(f)]}
        for (f, s), a in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0.8, 0.9, 0.7, 1.0], strict=True)
    ]
    axes = plots.cv_figure(runs).axes[0]
    points = [
        y for line in axes.lines if line.get_label().startswith("seed") for y in line.get_ydata()
    ]
    assert sorted(points) == [0.7, 0.8, 0.9, 1.0]
    [mean] = [line for line in axes.lines if line.get_label().startswith("mean")]
    assert list(mean.get_ydata()) == pytest.approx([0.85, 0.85])
    [band] = labelled(axes, "mean ± std")
    assert band.get_bbox().y1 - band.get_bbox().y0 == pytest.approx(
        2 * np.std([0.8, 0.9, 0.7, 1.0], ddof=1)
    )


def sequence_with_missing_left_hand(frames: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    points = rng.uniform(0.3, 0.7, (frames, 543, 3)).astype(np.float32)
    points[2, 468:489] = np.nan
    return points


@pytest.mark.filterwarnings("ignore:Animation was deleted")  # its frames are drawn by hand here
def test_animation_draws_parts_and_leaves_missing_ones_out(tmp_path):
    """One GIF frame per sequence frame, 400 x 450; a frame without the left hand draws no
    left-hand bone and says so; every bone of a present part is drawn."""
    points = sequence_with_missing_left_hand()
    figure, animated = show.animation(points, "sign: x")
    collections = {c.get_label(): c for c in figure.axes[0].collections}
    animated._func(2)
    assert len(collections["left hand"].get_segments()) == 0
    assert len(collections["right hand"].get_segments()) == len(show.HAND_EDGES)
    assert "frame 3/7 · missing: left hand" in [t.get_text() for t in figure.texts]
    animated._func(0)
    assert len(collections["left hand"].get_segments()) == len(show.HAND_EDGES)
    assert figure._suptitle.get_text() == "sign: x"
    del figure, animated  # drawn by hand above: its "never rendered" warning is due now
    gc.collect()
    path = tmp_path / "clip.gif"
    show.write_animation(path, points, "sign: x")
    with Image.open(path) as gif:
        assert (gif.size, gif.n_frames) == ((400, 450), 7)


def test_show_npy_and_its_mistakes(tmp_path):
    """`show` on an .npy writes a GIF of its length; wrong inputs are one-line errors."""
    array = tmp_path / "clip.npy"
    np.save(array, sequence_with_missing_left_hand(5))
    result = run("show", array, "--out", tmp_path / "a.gif", "--sign", "hello")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "a.gif").n_frames == 5
    for args, message in (
        ((array, "--out", tmp_path / "a.png"), "name a .gif or .mp4 file"),
        ((array, "123"), "a sequence id goes with an .hdf5 file"),
        ((tmp_path / "none.npy",), "does not exist"),
    ):
        failed = run("show", *args)
        assert failed.exit_code == 1 and message in failed.output, failed.output


def test_show_a_video_draws_its_frames_under_the_landmarks(tmp_path):
    """A video input: one animation frame per video frame, extracted by video.py."""
    from conftest import SELFIE, require_videos

    require_videos()
    result = run("show", SELFIE, "--out", tmp_path / "selfie.gif")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "selfie.gif").n_frames == 58
    failed = run("show", tmp_path / "none.mp4")
    assert failed.exit_code == 1 and "does not exist" in failed.output, failed.output


def test_show_a_real_sequence_with_its_sign(tmp_path):
    """On ../shared/data: one frame per recorded frame, the sign read from the folder's map."""
    root = require_real_data()
    with h5py.File(root / "16069.hdf5") as file:
        sequence_id = sorted(file)[0]
        frames = file[sequence_id]["feature"].shape[1]
    clip = show.read_clip(root / "16069.hdf5", sequence_id)
    assert clip.points.shape == (frames, 543, 3) and clip.sign in ("hello", "thankyou")
    out = tmp_path / "real.gif"
    result = run("show", root / "16069.hdf5", sequence_id, "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).n_frames == frames
    failed = run("show", root / "16069.hdf5")
    assert failed.exit_code == 1 and "holds 36 sequences" in failed.output


def test_show_a_kaggle_parquet_with_its_sign_from_train_csv(tmp_path):
    """A parquet file of the raw Kaggle layout: its sign comes from train.csv above it."""
    pytest.importorskip("pyarrow", reason="the `kaggle` extra is not installed")
    parquet = REAL_RAW / "train_landmark_files" / "2044" / "1148566480.parquet"
    if not parquet.is_file():
        pytest.skip(f"raw Kaggle data not found at {REAL_RAW} (../shared/data beside the repo)")
    clip = show.read_clip(parquet, None)
    assert clip.sign == "hello" and clip.points.shape[1:] == (543, 3)
    out = tmp_path / "kaggle.gif"
    assert run("show", parquet, "--out", out).exit_code == 0
    assert Image.open(out).n_frames == len(clip.points)


def test_evaluate_plots_and_error_animations(trained, tmp_path):
    """evaluate --plots writes the three pictures; --errors one GIF per misclassified clip,
    ranked from 001 by the true sign's probability, each as long as its clip."""
    data_dir, out, _ = trained
    report = tmp_path / "metrics.json"
    result = run(
        "evaluate",
        out / "model.safetensors",
        "--json",
        report,
        "--plots",
        tmp_path / "pictures",
        "--errors",
        tmp_path / "errors",
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert names == ["confusion.png", "per_class.png", "top_confusions.png"]
    metrics = json.loads(report.read_text())
    confusion = np.array(metrics["confusion"])
    gifs = sorted((tmp_path / "errors").glob("*.gif"))
    assert len(gifs) == confusion.sum() - np.trace(confusion)
    assert [int(p.name[:3]) for p in gifs] == list(range(1, len(gifs) + 1))
    # Worst first: the true sign's probability never falls from one name to the next.
    loaded = checkpoint.load(out / "model.safetensors")
    dataset = data.load_dataset(data_dir, signers={"16069"})
    prepared = data.prepare(dataset, loaded.data_config)
    logits, labels, indices = loops.predict(loaded.model, prepared.batches(64))
    true_probability = logits.softmax(-1)[range(len(labels)), labels]
    by_id = {
        dataset.sequence_ids[i]: p
        for i, p in zip(indices.tolist(), true_probability.tolist(), strict=True)
    }
    ranked = [by_id[gif.stem.rsplit("-", 1)[1]] for gif in gifs]
    assert ranked == sorted(ranked)
    with h5py.File(data_dir / "16069.hdf5") as file:
        for gif in gifs:
            true, guess, signer, sequence = re.match(
                r"\d+-(\w+)-as-(\w+)-(\d+)-(\d+)", gif.stem
            ).groups()
            assert true != guess and signer == "16069"
            assert Image.open(gif).n_frames == file[sequence]["feature"].shape[1]


def test_report_is_one_page_with_every_section_and_no_url(trained, tmp_path):
    """report writes one HTML page holding every section, its pictures embedded, no URL."""
    _, out, _ = trained
    page = tmp_path / "report.html"
    result = run("report", out, "--out", page, "--errors", "2")
    assert result.exit_code == 0, result.output
    html = page.read_text()
    for name in ("configuration", "metrics", "curves", "confusion", "per-class", "errors"):
        assert f'<section id="{name}">' in html
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == 4  # curves, confusion, top confusions, per class
    assert html.count("data:image/gif;base64,") <= 2
    assert '<img src="data:' in html and 'src="/' not in html
    failed = run("report", tmp_path / "nothing")
    assert failed.exit_code == 1 and "is not a run directory" in failed.output


def test_show_writes_mp4_where_ffmpeg_is_installed(tmp_path):
    """An .mp4 out has one video frame per sequence frame (ffprobe counts them)."""
    import shutil
    import subprocess

    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg): .gif only")
    array = tmp_path / "clip.npy"
    np.save(array, sequence_with_missing_left_hand(9))
    assert run("show", array, "--out", tmp_path / "clip.mp4").exit_code == 0
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
            tmp_path / "clip.mp4",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "400,450,9"
