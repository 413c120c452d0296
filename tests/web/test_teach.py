"""The teach panel's API (FastAPI's TestClient): signs, examples, training, models, bad input.

Training runs a stand-in for `islr.py train` here (FAKE_TRAIN: it writes history.json epoch by
epoch and copies a checkpoint), so that progress, cancel and restarts are tested in seconds.
The browser test at the end (slow, Debian's chromium through Playwright) teaches two signs from
two fake cameras and trains for real, with the personal preset.
"""

import csv
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SELFIE, one_line_error, run, write_gislr
from served import serving, write_camera

import checkpoint
from raw import kaggle
from web import limits, serve, training
from web.training import Training
from web.workspace import TeachLimits, Workspace

pytest.importorskip("fastapi", reason="serve needs its extra: pip install -e '.[video,serve]'")
pytest.importorskip("pyarrow", reason="the workspace needs the kaggle extra")
from fastapi.testclient import TestClient  # noqa: E402

from web.teach import Teach  # noqa: E402

FOREIGN = {"origin": "http://evil.example"}

# A stand-in for `islr.py train --data WS --preset P --out RUN --threads N`: EPOCHS epochs of
# SECONDS each, each recorded in history.json, then the checkpoint CKPT copied as the model.
FAKE_TRAIN = """
import json, shutil, sys, time
out, ckpt, epochs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
history = []
for epoch in range(1, epochs + 1):
    time.sleep(seconds)
    history.append({"epoch": epoch, "train": {"loss": 1.0 / epoch, "accuracy": 0.5},
                    "val": {"loss": 1.0, "accuracy": 0.25 * epoch}})
    open(out + "/history.json", "w").write(json.dumps(history))
if ckpt == "fail":
    print("error: the data is not usable")
    sys.exit(1)
shutil.copy(ckpt, out + "/model.safetensors")
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 3-sign checkpoint trained for 1 epoch on random tracks."""
    root = tmp_path_factory.mktemp("teach")
    result = run(
        "train", "--data", write_gislr(root / "data"), "--out", root / "run", "--epochs", "1"
    )
    assert result.exit_code == 0, result.output
    return root / "run" / "model.safetensors"


def fake_train(ckpt: Path | str, epochs: int = 3, seconds: float = 0.2):
    def command(workspace: Path, out: Path, threads: int) -> list[str]:
        return [sys.executable, "-c", FAKE_TRAIN, str(out), str(ckpt), str(epochs), str(seconds)]

    return command


def teach_client(
    model: Path, root: Path, command=None, serving: limits.Limits | None = None, **most
) -> TestClient:
    teach = Teach(root, TeachLimits(**most), command=command or fake_train(model))
    app = serve.create_app(model, checkpoint.load(model), serving or limits.Limits(), 1, teach)
    return TestClient(app, raise_server_exceptions=False)


def track(frames: int = 20, hands: bool = True, seed: int = 0) -> np.ndarray:
    """Landmarks (T, 543, 3) of a made-up recording, with or without hands."""
    points = np.random.default_rng(seed).uniform(0.2, 0.8, (frames, 543, 3)).astype(np.float32)
    if not hands:
        points[:, 468:489] = np.nan
        points[:, 522:] = np.nan
    return points


def add(api: TestClient, sign: str, examples: int = 2) -> list[int]:
    assert api.post("/api/teach/signs", json={"name": sign}).status_code == 201
    workspace = api.app.state.islr.teach.workspace
    return [workspace.add_example(sign, track(seed=i))["id"] for i in range(examples)]


def refused(response, status: int, words: str) -> None:
    """A one-line JSON error of `status` containing `words`."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


def wait_for(api: TestClient, status: str, seconds: float = 30) -> dict:
    for _ in range(int(seconds * 10)):
        runs = api.get("/api/teach").json()["runs"]
        if runs and runs[0]["status"] == status:
            return runs[0]
        time.sleep(0.1)
    pytest.fail(f"no run became {status}: {runs}")


def test_examples_are_kept_in_the_raw_kaggle_layout(model, tmp_path):
    """Signs and examples land in train.csv, the map and one parquet file each; a restart finds
    them; the replay, the delete and the zip see the same examples."""
    api = teach_client(model, tmp_path / "ws")
    hello = add(api, "hello", 2)
    add(api, "thank you", 1)
    rows, known, bad = kaggle.read_train_csv(tmp_path / "ws")
    assert known == {"hello": 0, "thank you": 1} and bad == []
    assert [(r.sign, r.sequence_id) for r in rows][:2] == [("hello", hello[0]), ("hello", hello[1])]
    np.testing.assert_array_equal(
        kaggle.read_sequence(tmp_path / "ws" / rows[0].path), track(seed=0).transpose(2, 0, 1)
    )
    replay = api.get(f"/api/teach/examples/{hello[0]}").json()
    assert len(replay["frames"]) == 20 and len(replay["frames"][0]) == 75 and replay["first"] == 468
    assert api.delete(f"/api/teach/examples/{hello[1]}").status_code == 200
    again = Workspace(tmp_path / "ws")  # a restart
    assert again.describe() == [
        {"name": "hello", "examples": [hello[0]]},
        {"name": "thank you", "examples": [hello[1] + 1]},
    ]
    archive = zipfile.ZipFile(io.BytesIO(api.get("/api/teach/examples.zip").content))
    assert sorted(archive.namelist()) == [
        "ws/sign_to_prediction_index_map.json",
        "ws/train.csv",
        f"ws/train_landmark_files/1/{hello[0]}.parquet",
        f"ws/train_landmark_files/1/{hello[1] + 1}.parquet",
    ]
    assert api.delete("/api/teach/signs/hello").status_code == 200
    assert [s["name"] for s in api.get("/api/teach").json()["signs"]] == ["thank you"]


def test_examples_recorded_from_the_command_line_meanwhile_are_kept(model, tmp_path):
    """`record` adding to the workspace the server has open: the page sees its examples, and the
    page's next example keeps them in train.csv, its source column too."""
    from video import record

    api = teach_client(model, tmp_path / "ws")
    add(api, "hello", 1)
    add(api, "yes", 0)
    recorder = record.Workspace(tmp_path / "ws", "thankyou", 2, "hands.mp4")
    recorder.add(track(seed=5))  # as `record --signer 2 --video hands.mp4` writes it
    signs = {s["name"]: len(s["examples"]) for s in api.get("/api/teach").json()["signs"]}
    assert signs == {"hello": 1, "yes": 0, "thankyou": 1}  # "yes" has no row: kept all the same
    api.app.state.islr.teach.workspace.add_example("yes", track(seed=6), "serve camera")
    with open(tmp_path / "ws" / "train.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(r["sign"], r["participant_id"], r["source"]) for r in rows] == [
        ("hello", "1", "serve"),
        ("yes", "1", "serve camera"),
        ("thankyou", "2", "hands.mp4#1"),
    ]


def _page_adds(root: Path, count: int) -> None:
    page = Workspace(root)
    for i in range(count):
        page.add_example("hello", track(seed=i), "serve camera")


def _record_adds(root: Path, count: int) -> None:
    from video import record

    recorder = record.Workspace(root, "thankyou", 2, "hands.mp4")
    for i in range(count):
        recorder.add(track(seed=100 + i))


def test_record_and_the_page_adding_at_once_lose_no_row(tmp_path):
    """`record` and the page's workspace appending to one folder at the same time, 25 examples
    each in two processes: train.csv lists all 50 (kaggle.index_lock; without it most runs
    lost rows or failed on the other writer's temporary file)."""
    import multiprocessing

    root = tmp_path / "ws"
    Workspace(root).add_sign("hello")
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=f, args=(root, 25)) for f in (_page_adds, _record_adds)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    with open(root / "train.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 50 and {r["sign"] for r in rows} == {"hello", "thankyou"}


def test_a_writer_waits_while_another_process_holds_the_index(tmp_path):
    """While one process holds a folder's index lock, `record`'s index writer in another waits
    for it, and goes on once it is released."""
    import multiprocessing

    from video import extract_jobs

    root = tmp_path / "ws"
    context = multiprocessing.get_context("fork")
    writer = context.Process(target=extract_jobs.write_dataset_index, args=(root, []))
    with kaggle.index_lock(root):
        writer.start()
        writer.join(1.0)
        assert writer.is_alive()  # waiting for the lock
    writer.join(30)
    assert writer.exitcode == 0 and (root / "train.csv").is_file()


def test_bad_sign_names_and_limits_get_one_line(model, tmp_path):
    """Path characters, empty, too long, duplicate names; too many signs, examples or bytes;
    a full disk; an example with no hands: each a one-line JSON error, nothing written."""
    api = teach_client(model, tmp_path / "ws", signs=3, examples=3)
    for name, words in [
        ("../etc", "letters, digits"),
        ("a/b", "letters, digits"),
        ("a\\b", "letters, digits"),
        ("", "needs a name"),
        ("   ", "needs a name"),
        (None, "needs a name"),
        ("x" * 41, "at most 40 characters"),
    ]:
        refused(api.post("/api/teach/signs", json={"name": name}), 400, words)
    refused(api.post("/api/teach/signs", content=b"nope"), 400, "JSON object")
    add(api, "hello", 3)
    refused(api.post("/api/teach/signs", json={"name": "Hello"}), 409, "already")
    add(api, "yes", 0)
    assert api.post("/api/teach/signs", json={"name": "no"}).status_code == 201
    refused(api.post("/api/teach/signs", json={"name": "maybe"}), 413, "at most 3 signs")
    workspace = api.app.state.islr.teach.workspace
    with pytest.raises(limits.ServeError, match="at most 3 examples"):
        workspace.add_example("yes", track())
    workspace.delete_example(workspace.describe()[0]["examples"][0])
    with pytest.raises(limits.ServeError, match="no hand was seen"):
        workspace.add_example("yes", track(hands=False))
    for field, value, words in [
        ("workspace_bytes", 1, "max-workspace-mb"),
        ("free_bytes", 10**18, "MB free"),
    ]:
        full = Workspace(tmp_path / "ws", TeachLimits(**{field: value}))
        with pytest.raises(limits.ServeError, match=words):
            full.add_example("yes", track())
    refused(api.get("/api/teach/examples/999"), 404, "no example 999")
    refused(api.get("/api/teach/examples/..%2F..%2Fetc"), 404, "no such page")
    refused(api.delete("/api/teach/signs/nothing"), 404, "no sign named")
    assert len(kaggle.read_train_csv(tmp_path / "ws")[0]) == 2  # nothing refused was written


def test_training_refuses_too_few_signs_and_empty_signs(model, tmp_path):
    """Train needs two signs, each with an example, and refuses a second run while one runs."""
    api = teach_client(model, tmp_path / "ws", command=fake_train(model, epochs=50, seconds=0.2))
    refused(api.post("/api/teach/train"), 400, "at least two signs")
    add(api, "hello", 2)
    refused(api.post("/api/teach/train"), 400, "at least two signs")
    add(api, "yes", 0)
    refused(api.post("/api/teach/train"), 400, "'yes' has no example")
    add(api, "no", 1)
    api.delete("/api/teach/signs/yes")
    assert api.post("/api/teach/train").status_code == 202
    refused(api.post("/api/teach/train"), 409, "a training is running")
    assert api.post("/api/teach/cancel").json()["status"] == "cancelled"
    refused(api.post("/api/teach/cancel"), 409, "no training is running")


def test_another_sites_page_is_refused(model, tmp_path):
    """Every request that changes the workspace or the model refuses a foreign Origin."""
    api = teach_client(model, tmp_path / "ws")
    add(api, "hello", 1)
    example = api.get("/api/teach").json()["signs"][0]["examples"][0]
    for method, path in [
        ("post", "/api/teach/signs"),
        ("delete", "/api/teach/signs/hello"),
        ("post", "/api/teach/signs/hello/examples"),
        ("delete", f"/api/teach/examples/{example}"),
        ("post", "/api/teach/train"),
        ("post", "/api/teach/cancel"),
        ("post", "/api/teach/model"),
    ]:
        response = api.request(method, path, json={"name": "x"}, headers=FOREIGN)
        refused(response, 403, "own page")
    assert api.get("/api/teach").json()["signs"][0]["examples"] == [example]


def test_training_progress_models_and_switching(model, tmp_path):
    """A run's progress comes from its history.json; once done its model is served, downloaded,
    and the first model is served again on asking."""
    api = teach_client(model, tmp_path / "ws", command=fake_train(model, epochs=3, seconds=0.3))
    add(api, "hello", 1)
    add(api, "yes", 1)
    started = api.post("/api/teach/train").json()
    assert started["status"] == "running" and started["signs"] == ["hello", "yes"]
    for _ in range(100):
        runs = api.get("/api/teach").json()["runs"]
        if runs[0]["done_epochs"] >= 1:
            break
        time.sleep(0.05)
    assert runs[0]["loss"] == pytest.approx(1.0) and runs[0]["accuracy"] == pytest.approx(0.25)
    done = wait_for(api, "done")
    assert done["done_epochs"] == 3 and done["model"] and done["accuracy"] == pytest.approx(0.75)
    metrics = checkpoint.load(model).metadata["metrics"]  # what the checkpoint itself records
    assert done["measured"] == {
        "val": metrics["val"]["accuracy"],
        "test": metrics["test"]["accuracy"],
    }
    served = api.post("/api/teach/model", json={"run": done["name"]}).json()
    assert served["serving"] == done["name"] and served["checkpoint"].startswith(str(tmp_path))
    assert api.get("/api/info").json()["checkpoint"] == served["checkpoint"]
    body = api.get(f"/api/teach/runs/{done['name']}/model.safetensors").content
    assert body == model.read_bytes()
    refused(api.post("/api/teach/model", json={"run": "../../etc"}), 404, "no trained model")
    refused(api.get("/api/teach/runs/nothing/model.safetensors"), 404, "no trained model")
    assert api.post("/api/teach/model", json={"run": None}).json()["checkpoint"] == str(model)


def test_a_failed_run_says_why(model, tmp_path):
    """A training that fails is marked failed with its last line as the message."""
    api = teach_client(model, tmp_path / "ws", command=fake_train("fail", epochs=1, seconds=0))
    add(api, "hello", 1)
    add(api, "yes", 1)
    api.post("/api/teach/train")
    failed = wait_for(api, "failed")
    assert failed["message"] == "error: the data is not usable" and not failed["model"]


def test_a_restart_mid_training_marks_the_run_interrupted(model, tmp_path):
    """A server that stops mid-training leaves the workspace intact and the run interrupted."""
    api = teach_client(model, tmp_path / "ws", command=fake_train(model, epochs=100, seconds=0.2))
    add(api, "hello", 2)
    add(api, "yes", 1)
    name = api.post("/api/teach/train").json()["name"]
    api.app.state.islr.teach.training.process.kill()  # the server and its child die at once
    restarted = teach_client(model, tmp_path / "ws")
    overview = restarted.get("/api/teach").json()
    assert overview["runs"][0]["name"] == name and overview["runs"][0]["status"] == "interrupted"
    assert [len(s["examples"]) for s in overview["signs"]] == [2, 1]
    assert restarted.post("/api/teach/train").status_code == 202  # and it trains again
    wait_for(restarted, "done")


def test_the_servers_end_stops_a_training(model, tmp_path):
    """Stopping the server stops its training (marked interrupted); one that had ended already
    keeps the status it ended with."""
    slow = Training(tmp_path / "ws", 1, command=fake_train(model, epochs=100, seconds=0.2))
    slow.start(["a", "b"], 2)
    process = slow.process
    slow.close()
    assert process.poll() is not None and slow.runs()[0]["status"] == "interrupted"
    quick = Training(tmp_path / "ws2", 1, command=fake_train("fail", epochs=1, seconds=0))
    quick.start(["a", "b"], 2)
    quick.process.wait()
    quick.close()
    assert quick.runs()[0]["status"] == "failed"


def test_training_gets_a_share_of_the_cores(tmp_path, monkeypatch):
    """The real command: the personal preset on the workspace, --threads, into runs/NAME, with
    OpenMP's threads waiting passively unless the user set OMP_WAIT_POLICY."""
    command = training.train_command(tmp_path, tmp_path / "runs" / "x", 1)
    assert command[-8:] == [
        "--data", str(tmp_path), "--preset", training.PRESET,
        "--out", str(tmp_path / "runs" / "x"), "--threads", "1",
    ]  # fmt: skip
    assert training.training_threads() >= 1
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert training.training_environment()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own setting wins
    assert training.training_environment()["OMP_WAIT_POLICY"] == "ACTIVE"


def test_serve_refuses_a_workspace_that_is_a_file(model, tmp_path):
    """`serve --workspace FILE` is one line, exit 1; a train.csv that is not Kaggle's too."""
    (tmp_path / "file").write_text("not a folder")
    result = run("serve", model, "--workspace", tmp_path / "file", "--port", "0")
    one_line_error(result, "as the workspace")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "train.csv").write_text("a,b\n1,2\n")
    result = run("serve", model, "--workspace", tmp_path / "foreign", "--port", "0")
    one_line_error(result, "the workspace cannot be read")


def test_uploads_and_recordings_become_examples(model, tmp_path):
    """A video uploaded to a sign, and the signs the camera session cuts while recording one,
    become its examples; an upload with no hand in it is refused."""
    if not SELFIE.is_file():
        pytest.skip(f"real video not found at {SELFIE} (it lives in ../shared/data)")
    from test_serve import jpeg_frames

    api = teach_client(model, tmp_path / "ws", serving=limits.Limits(fps=100))
    add(api, "hello", 0)
    video = {"content-type": "video/mp4"}
    response = api.post(
        "/api/teach/signs/hello/examples", content=SELFIE.read_bytes(), headers=video
    )
    assert response.status_code == 201 and response.json()["frames"] == 58
    refused(api.post("/api/teach/signs/nope/examples", content=b"x", headers=video), 404, "no sign")
    frames = jpeg_frames(SELFIE)
    blank = blank_video(tmp_path / "blank.mp4")
    refused(
        api.post("/api/teach/signs/hello/examples", content=blank, headers=video), 400, "no hand"
    )
    with api.websocket_connect("/api/live") as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_text(json.dumps({"record": "nope"}))
        assert "no sign named" in socket.receive_json()["message"]
        socket.send_text(json.dumps({"record": "hello"}))
        assert socket.receive_json() == {"type": "recording", "sign": "hello"}
        kept = []
        for frame in frames + frames[:1] * 20:
            time.sleep(0.01)
            socket.send_bytes(frame)
            answer = socket.receive_json()
            kept += [answer["example"]] if answer.get("example") else []
    # Frames are timed as they arrive, so a loaded machine cuts shorter signs: count them only.
    assert kept and all(example["sign"] == "hello" and example["frames"] > 0 for example in kept)
    assert len(api.get("/api/teach").json()["signs"][0]["examples"]) == 1 + len(kept)


def blank_video(path: Path) -> bytes:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for _ in range(10):
        writer.write(np.full((240, 320, 3), 200, np.uint8))
    writer.release()
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# The teach panel in a real browser


@pytest.fixture
def teach_server(model, tmp_path):
    """`islr.py serve` with a fresh workspace, on a free port; stopped after the test."""
    with serving(model, "--workspace", tmp_path / "workspace") as address:
        yield address


def record(page, sign: str, examples: int) -> None:
    """Add `sign` on the page, start the camera and record until it has `examples`."""
    page.fill("#sign-name", sign)
    page.click("#add-sign")
    card = f'.sign[data-sign="{sign}"]'
    page.wait_for_selector(card)
    page.click("#start")
    page.wait_for_function("window.islr.frames > 0", timeout=60_000)
    page.click(f"{card} .record")
    page.wait_for_function(
        f"document.querySelectorAll('{card} .example').length >= {examples}", timeout=180_000
    )
    page.click(f"{card} .record")  # stop recording
    page.click("#stop")


def recognised(page) -> str:
    """The sign the live view names next, after a sign in progress has ended."""
    page.evaluate("window.islr.signs = []")
    page.click("#start")
    page.wait_for_function("window.islr.signs.length >= 2", timeout=120_000)
    name = page.evaluate("window.islr.signs[1].predictions[0].sign")
    page.click("#stop")
    return name


@pytest.mark.slow
def test_page_teaches_two_signs_and_recognises_them(teach_server, tmp_path):
    """Two fake cameras (the selfie clip, and the clip backwards) each teach a sign on the page;
    Train makes a model the page then serves, and the live view names each camera's sign."""
    import cv2
    from test_serve import CHROMIUM, require_chromium, require_selfie, watch_console

    require_chromium()
    from playwright.sync_api import sync_playwright

    capture, frames = cv2.VideoCapture(str(require_selfie())), []
    while (read := capture.read())[0]:
        frames.append(read[1])
    cameras = {
        "forward": write_camera(frames, frames[0], tmp_path / "forward.y4m"),
        "backward": write_camera(frames[::-1], frames[0], tmp_path / "backward.y4m"),
    }
    flags = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream"]
    flags += ["--use-fake-device-for-media-stream", "--disable-background-networking"]
    with sync_playwright() as playwright:
        pages, errors = {}, []
        for sign, camera in cameras.items():
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[*flags, f"--use-file-for-fake-video-capture={camera}"],
            )
            pages[sign] = chromium.new_page(viewport={"width": 1100, "height": 1000})
            errors += [watch_console(pages[sign])]
            pages[sign].goto(teach_server)
            pages[sign].wait_for_selector("#teach:not([hidden])")
            record(pages[sign], sign, 3)
        page = pages["backward"]
        page.click("#train")
        page.wait_for_function("window.islr.teach.serving !== null", timeout=300_000)
        page.wait_for_function("window.islr.info.signs.length === 2")
        assert sorted(page.evaluate("window.islr.info.signs")) == ["backward", "forward"]
        assert "done" in page.inner_text("#progress")
        if os.environ.get("ISLR_TEACH_SCREENSHOT"):  # docs/teach.png
            page.locator("#teach").screenshot(path=os.environ["ISLR_TEACH_SCREENSHOT"])
        for sign, shown in pages.items():
            assert recognised(shown) == sign
        assert errors == [[], []]
