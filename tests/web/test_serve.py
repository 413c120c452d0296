"""serve: the web page's API (FastAPI's TestClient) and the page itself in headless Chromium.

The browser tests drive Debian's chromium through Playwright, with the selfie clip of
../shared/data/videos as the fake camera; they skip where chromium is missing
(apt-get install -y chromium). ISLR_SCREENSHOT=docs/serve.png keeps the page's screenshot;
ISLR_SERVE_CKPT=runs/<name>/model.safetensors serves that model instead of the tiny one.
"""

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import SELFIE, run, write_gislr
from served import serving, write_camera

import checkpoint
from web import limits, routes, serve

pytest.importorskip("fastapi", reason="serve needs its extra: pip install -e '.[video,serve]'")
pytest.importorskip("mediapipe", reason="serve needs the video extra: pip install -e '.[video]'")
from fastapi.testclient import TestClient  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent.parent
SIGNS = ("hello", "thankyou", "please", "sorry", "yes", "no")


def require_selfie() -> Path:
    if not SELFIE.is_file():
        pytest.skip(f"real video not found at {SELFIE} (it lives in ../shared/data)")
    return SELFIE


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 6-sign checkpoint trained for 2 epochs on random tracks (or ISLR_SERVE_CKPT)."""
    if os.environ.get("ISLR_SERVE_CKPT"):
        return Path(os.environ["ISLR_SERVE_CKPT"])  # as given: the page shows it
    root = tmp_path_factory.mktemp("serve")
    data_dir = write_gislr(root / "data", signs=SIGNS)
    result = run(
        "train", "--data", data_dir, "--out", root / "run", "--epochs", "2", "--batch-size", "8"
    )
    assert result.exit_code == 0, result.output
    return root / "run" / "model.safetensors"


def client(ckpt: Path, **overrides) -> TestClient:
    app = serve.create_app(ckpt, checkpoint.load(ckpt), limits.Limits(**overrides))
    return TestClient(app, raise_server_exceptions=False)


def jpeg_frames(path: Path) -> list[bytes]:
    """The frames of a video as the page sends them: JPEG at quality 80."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())


@pytest.fixture(scope="module")
def predicted(model, tmp_path_factory) -> list[dict]:
    """`python islr.py predict CKPT signer-selfie.mp4 --top-k 5`'s predictions (its --json)."""
    report = tmp_path_factory.mktemp("predict") / "predict.json"
    result = run("predict", model, require_selfie(), "--top-k", "5", "--json", report)
    assert result.exit_code == 0, result.output
    return json.loads(report.read_text())[0]["predictions"]


def still_serving(api: TestClient) -> None:
    response = api.get("/api/info")
    assert response.status_code == 200 and response.json()["signs"]


# ---------------------------------------------------------------------------------------------
# The API


def test_page_info_and_nothing_else(model):
    """The three assets and /api/info are served; any other path, traversals too, is a 404."""
    api = client(model)
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/app.js">' in page.text and "cdn" not in page.text.lower()
    assert api.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert api.get("/style.css").text == (REPO / "web" / "style.css").read_text()
    info = api.get("/api/info").json()
    assert info["signs"] == checkpoint.load(model).signs and info["checkpoint"] == str(model)
    assert info["top_k"] == 5 and info["fps"] == limits.Limits.fps
    for path in (
        "/../serve.py",
        "/%2e%2e/serve.py",
        "/..%2fislr.py",
        "/web/app.js",
        "/serve.py",
        "/app.js/../../islr.py",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
    ):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "no such page" in response.json()["error"], path
    assert api.post("/").status_code == 405  # the page is read-only
    # Another site's page, open in the same browser, is refused the camera API and uploads.
    evil = {"origin": "http://evil.example", "content-type": "video/mp4"}
    response = api.post("/api/upload", content=b"x", headers=evil)
    assert response.status_code == 403 and "own page" in response.json()["error"]
    from starlette.websockets import WebSocketDisconnect

    with api.websocket_connect("/api/live", headers={"origin": "http://evil.example"}) as socket:
        assert "own page" in socket.receive_json()["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 1008
    with api.websocket_connect("/api/live", headers={"origin": "http://testserver"}) as socket:
        assert socket.receive_json()["type"] == "ready"
    still_serving(api)


def test_upload_equals_predict(model, predicted):
    """An uploaded video gets exactly the top 5 that `predict` prints for the file."""
    video = require_selfie()
    api = client(model)
    response = api.post(
        "/api/upload", content=video.read_bytes(), headers={"content-type": "video/mp4"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["frames"] == 58 and result["landmarks_seen"] and "note" not in result
    assert result["predictions"] == predicted
    probabilities = [p["probability"] for p in result["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6


def test_a_cut_short_upload_says_how_many_frames_were_read(model):
    """The first 100 kB of the clip are predicted from the frames that decode, with a note
    saying how many of the container's 58 frames were read."""
    response = client(model).post(
        "/api/upload",
        content=require_selfie().read_bytes()[:100_000],
        headers={"content-type": "video/mp4"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["frames"] < 58
    assert result["note"] == f"read {result['frames']} of 58 frames: the file may be cut short"


def test_bad_uploads_get_a_message(model, monkeypatch):
    """Not a video, too large (declared or streamed), empty, too long: one message each."""
    api = client(model, upload_bytes=100_000)
    cases = [
        (b"hello", "text/plain", 415, "upload a video file"),
        (b"hello", "", 415, "upload a video file"),
        (b"\x00" * 1000, "video/mp4", 400, "the upload"),
        (b"", "video/webm", 400, "empty"),
        (b"x" * 200_000, "video/mp4", 413, "larger than"),
    ]
    for body, kind, status, message in cases:
        response = api.post("/api/upload", content=body, headers={"content-type": kind})
        assert response.status_code == status, (kind, response.text)
        error = response.json()["error"]
        assert message in error and "Traceback" not in error and "/tmp" not in error
    # Streamed without a length: cut off at the limit.
    chunks = (b"x" * 50_000 for _ in range(4))
    response = api.post("/api/upload", content=chunks, headers={"content-type": "video/mp4"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]
    if SELFIE.is_file():  # longer than the frame bound
        monkeypatch.setattr(limits, "UPLOAD_FRAMES", 10)
        response = client(model).post(
            "/api/upload", content=SELFIE.read_bytes(), headers={"content-type": "video/mp4"}
        )
        assert response.status_code == 413 and "longer than 10 frames" in response.json()["error"]
    still_serving(api)


def test_internal_failure_is_a_message_not_a_trace(model, monkeypatch):
    """A failure inside the server, on an upload or a frame, reaches the page as one sentence;
    the server and the camera session go on."""
    video = require_selfie()

    def broken(*args, **kwargs):
        raise KeyError("deep inside")

    monkeypatch.setattr(routes, "video_track", broken)
    api = client(model)
    response = api.post(
        "/api/upload", content=video.read_bytes(), headers={"content-type": "video/mp4"}
    )
    assert response.status_code == 500
    assert response.json() == {"error": "the server failed on this request (its console says why)"}
    still_serving(api)

    frame = jpeg_frames(video)[0]
    failures = iter([KeyError("deep inside")])

    def points_once(landmarks):
        failure = next(failures, None)
        if failure:
            raise failure
        return [None] * len(landmarks)

    monkeypatch.setattr(routes, "points_of", points_once)
    with api.websocket_connect("/api/live") as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_bytes(frame)
        answer = socket.receive_json()
        assert answer == {
            "type": "error",
            "message": "the server failed on this frame (its console says why)",
        }
        time.sleep(0.2)
        socket.send_bytes(frame)  # the session goes on
        assert socket.receive_json()["type"] == "frame"


def test_live_session_answers_frames_and_signs(model):
    """Each frame gets its 543 landmarks and the state; garbage gets a message; a sign its top 5."""
    frames = jpeg_frames(require_selfie())
    api = client(model, fps=100)  # garbage counts against the rate as well: 10 ms apart
    with api.websocket_connect("/api/live") as socket:
        assert socket.receive_json() == {"type": "ready"}
        socket.send_bytes(b"not a jpeg")
        assert socket.receive_json() == {"type": "error", "message": "a frame must be a JPEG image"}
        time.sleep(0.01)
        socket.send_bytes(frames[0][:200])  # cut short: the header is there, the pixels not
        assert socket.receive_json()["type"] == "error"
        huge = b"\xff\xd8\xff\xc0\x00\x11\x08" + (4000).to_bytes(2, "big") * 2 + b"\x00" * 20
        time.sleep(0.01)
        socket.send_bytes(huge)
        assert "4000x4000" in socket.receive_json()["message"]
        time.sleep(0.01)
        socket.send_text("hello")
        assert "binary JPEG" in socket.receive_json()["message"]
        states, signs, points = [], [], []
        # The clip, then 60 frames of its first one (no hand) so that the sign ends.
        for frame in frames + frames[:1] * 60:
            time.sleep(0.01)
            socket.send_bytes(frame)
            answer = socket.receive_json()
            assert answer["type"] == "frame", answer
            assert (answer["width"], answer["height"]) == (540, 720)
            states.append(answer["state"])
            points.append(answer["points"])
            signs += [answer["sign"]] if answer["sign"] else []
    assert len(points[0]) == 543 and all(p is None or 0 <= p[0] <= 1.5 for p in points[0])
    assert sum(p is not None for p in points[10][489:522]) == 33  # the whole pose is tracked
    assert "signing" in states and states[-1] == "waiting"
    assert signs, "no sign recognised"
    for sign in signs:
        assert sign["frames"] >= 5 and len(sign["predictions"]) == 5
        assert {p["sign"] for p in sign["predictions"]} <= set(SIGNS)
    still_serving(api)


def test_session_limit_and_vanishing_client(model):
    """A second session over the bound is told the server is busy; a client that vanishes
    mid-stream frees its place for the next."""
    from starlette.websockets import WebSocketDisconnect

    frame = jpeg_frames(require_selfie())[0]
    api = client(model, sessions=1, fps=1000)
    with api.websocket_connect("/api/live") as first:
        assert first.receive_json()["type"] == "ready"
        with api.websocket_connect("/api/live") as second:
            assert "busy" in second.receive_json()["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013
        first.send_bytes(frame)  # and leave without reading the answer
    for _ in range(50):  # the first session's end runs on the server's loop
        with api.websocket_connect("/api/live") as third:
            if third.receive_json()["type"] == "ready":
                third.send_bytes(frame)
                assert third.receive_json()["type"] == "frame"
                break
        time.sleep(0.1)
    else:
        pytest.fail("the vanished session never freed its place")
    still_serving(api)


def test_frame_rate_is_bounded(model):
    """Frames sent faster than --fps are dropped, with a message, and the session goes on."""
    frame = jpeg_frames(require_selfie())[0]
    api = client(model, fps=2)
    with api.websocket_connect("/api/live") as socket:
        assert socket.receive_json()["type"] == "ready"
        kinds = []
        for _ in range(6):
            socket.send_bytes(frame)
            kinds.append(socket.receive_json()["type"])
    assert kinds.count("frame") in (2, 3) and kinds.count("dropped") >= 3
    assert kinds[:2] == ["frame", "frame"]  # the burst


def test_serve_refuses_bad_input(model, tmp_path):
    """A missing checkpoint or a port in use is one line, exit 1."""
    result = run("serve", tmp_path / "none.safetensors")
    assert result.exit_code == 1 and "does not exist" in result.output
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("serve", model, "--port", taken.getsockname()[1])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.output


# ---------------------------------------------------------------------------------------------
# The page in a real browser


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("the browser tests need Debian's chromium: apt-get install -y chromium")
    pytest.importorskip("playwright", reason="pip install -e '.[serve-test]'")


def write_y4m(video: Path, out: Path, still: int = 45) -> Path:
    """The clip as a fake camera, with `still` frames of its first frame (hands down) first."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return write_camera(frames, frames[0], out, held=still)


@pytest.fixture(scope="module")
def address(model, tmp_path_factory):
    """`islr.py serve` on a free port, as a user starts it; stopped after the tests."""
    with serving(model, "--workspace", tmp_path_factory.mktemp("workspace"), stop_within=10) as at:
        yield at


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian chromium with the selfie clip as its camera."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    camera = write_y4m(require_selfie(), tmp_path_factory.mktemp("camera") / "camera.y4m")
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        yield chromium
        chromium.close()


def watch_console(page) -> list[str]:
    """The page's console errors and uncaught exceptions, collected as they happen."""
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda problem: errors.append(str(problem)))
    return errors


def test_server_survives_garbage_and_vanishing_clients(address):
    """Against the real server (uvicorn): bytes that are not HTTP, a WebSocket dropped without
    a goodbye mid-frame, a frame over the size bound; each time the next client is served."""
    import socket
    from urllib.request import urlopen

    from websockets.sync.client import connect

    frame = jpeg_frames(require_selfie())[0]
    host, port = re.search(r"//([\d.]+):(\d+)/", address).groups()
    live = f"ws://{host}:{port}/api/live"
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")

    @contextmanager
    def session(**options):
        """A live session, once the server has noticed that earlier ones went away."""
        for _ in range(100):
            with connect(live, **options) as client_:
                if json.loads(client_.recv(timeout=30))["type"] == "ready":
                    yield client_
                    return
            time.sleep(0.1)
        pytest.fail("sessions that went away still hold their places")

    for _ in range(3):
        with session() as client_:
            client_.send(frame)
            client_.socket.close()  # gone, without a close frame, while the server works
    with session(max_size=None) as client_:
        client_.send(b"\xff\xd8" + bytes(limits.MAX_FRAME_BYTES + 10_000))
        with pytest.raises(Exception) as closed:
            client_.recv(timeout=30)
        assert "1009" in str(closed.value)  # message too big
    with session() as client_:
        client_.send(frame)
        assert json.loads(client_.recv(timeout=30))["type"] == "frame"
    with urlopen(address + "api/info", timeout=30) as response:
        assert json.loads(response.read())["signs"]


def test_page_shows_skeleton_and_signs(browser, address, tmp_path):
    """The camera's frames come back as a skeleton drawn over the video, and the clip's sign
    as a top 5 with probability bars; the page's speed is printed."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    console_errors = watch_console(page)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda socket: requested.append(socket.url))
    page.goto(address)
    page.wait_for_function("window.islr.info !== null")
    model_name = page.inner_text("#model")
    assert model_name.startswith("model: ")
    assert page.inner_text("#count") == str(len(page.evaluate("window.islr.info.signs")))
    page.click("#start")
    page.wait_for_function("window.islr.signs.length >= 1", timeout=60_000)
    started = page.evaluate("[window.islr.frames, performance.now()]")
    time.sleep(4)  # a steady stretch for the speed figures
    stats = page.evaluate(
        "[window.islr.frames, performance.now(), window.islr.delays, window.islr.server]"
    )
    drawn = page.evaluate("""() => {
        const c = document.getElementById('overlay');
        const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < pixels.length; i += 4) n += pixels[i] > 0;
        return n;
    }""")
    assert page.evaluate("window.islr.drawn") > 5 and drawn > 500  # skeleton pixels
    bars = page.query_selector_all("#current .bar")
    assert len(bars) == min(5, len(page.evaluate("window.islr.info.signs")))
    probabilities = [float(bar.get_attribute("data-probability")) for bar in bars]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    assert page.inner_text("#history").strip() and page.evaluate("window.islr.errors") == []
    assert page.inner_text("#state") in ("waiting", "signing", "recognised")
    host = address.replace("http://", "")  # the page asked nothing of any other address
    assert {url.split("//")[1].split("/")[0] for url in requested} == {host.rstrip("/")}
    assert any(url.endswith("/app.js") for url in requested)
    assert any(url.startswith("ws://") and url.endswith("/api/live") for url in requested)
    assert console_errors == []  # a 404 (a favicon, say) is logged as one

    frames, elapsed = stats[0] - started[0], (stats[1] - started[1]) / 1000
    delays, server = (np.array(figures[-frames:] if frames else figures) for figures in stats[2:])
    print(
        f"\npage: {frames / elapsed:.1f} frames/s updated; frame to skeleton "
        f"{np.median(delays):.0f} ms median, {np.percentile(delays, 95):.0f} ms p95 (server "
        f"{np.median(server):.0f} ms median) over {frames} frames; load average {os.getloadavg()[0]:.1f} ({model_name})"
    )
    assert frames / elapsed > 1

    page.wait_for_function("window.islr.hands > 0", timeout=10_000)  # a hand in the picture
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ISLR_SCREENSHOT"):  # for the README: 128 colours keep it near 100 kB
        try:
            from PIL import Image  # pillow, as mediapipe's matplotlib brings it

            picture = Image.open(shot).convert("RGB")
            picture = picture.quantize(128, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            picture.save(os.environ["ISLR_SCREENSHOT"], optimize=True)
        except ImportError:
            shutil.copy(shot, os.environ["ISLR_SCREENSHOT"])
    page.close()


def test_page_upload_equals_predict(browser, address, predicted):
    """Uploading the clip on the page shows the top 5 that `predict` prints for it."""
    video = require_selfie()
    page = browser.new_page()
    console_errors = watch_console(page)
    page.goto(address)
    page.set_input_files("#file", str(video))
    page.click("#upload")
    page.wait_for_selector("#upload-result .bar", timeout=60_000)
    shown = [
        {
            "sign": bar.get_attribute("data-sign"),
            "probability": float(bar.get_attribute("data-probability")),
        }
        for bar in page.query_selector_all("#upload-result .bar")
    ]
    assert shown == predicted
    texts = page.query_selector_all("#upload-result .bar .value")
    assert [t.inner_text() for t in texts] == [f"{p['probability']:.1%}" for p in predicted]
    page.set_input_files(
        "#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a video"}
    )
    page.click("#upload")
    page.wait_for_selector("#message:not([hidden])")
    assert "upload a video file" in page.inner_text("#message")
    # The refused upload's 415 is the one error the browser logs (as a failed resource).
    assert [e for e in console_errors if "415" not in e] == []
    page.close()
