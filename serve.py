"""The `serve` command: a local web page that recognises signs from the browser's camera.

    python islr.py serve runs/<name>/model.safetensors      # then open the address it prints

The page (web/index.html, web/app.js, web/style.css: the only files served, read once at
start) sends camera frames as JPEG over a WebSocket (/api/live), at most `--fps` a second,
one at a time. For each frame the server extracts the landmarks with video.Holistic (the
settings of `extract`, `predict` and `live`), cuts signs out of the stream with
live.Segmenter, and answers with the frame's landmarks (the page draws the skeleton) and the
segmenter's state, and, with the frame that ends a sign, the sign's top 5 from `classify`
(the checkpoint's own preprocessing and model, as `predict` computes them). An uploaded video
(POST /api/upload, the file as the body) gets exactly what `predict` prints for that file
(at the default --complexity 1). Nothing leaves the machine: the server binds to 127.0.0.1
unless told otherwise, the page loads nothing from elsewhere, and pages of other sites are
refused the API (their Origin header).

Limits: `--sessions` live sessions at once (each holds a MediaPipe graph and most of a core),
`--fps` frames a second per session (a faster client's extra frames are dropped, and told
so), frames of at most MAX_FRAME_BYTES and MAX_FRAME_PIXELS, uploads of at most
`--max-upload-mb` and UPLOAD_FRAMES frames, one upload decoded at a time, written under a
temporary name the server picks. Every error reaches the page as {"error": message}
(HTTP) or {"type": "error", "message": ...} (WebSocket); none stops the server.

Needs the extras `video` and `serve`: pip install -e '.[video,serve]'.
"""

import asyncio
import math
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import numpy as np
import torch
import typer

import checkpoint
import data
import loops
from cli import Threads, console, note, use_threads, user_errors

WEB = Path(__file__).resolve().parent / "web"
ASSETS = {  # URL path -> (file in WEB, media type); nothing else is ever read from disk
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Upload media types and the suffix the temporary file gets (OpenCV picks its demuxer by it).
VIDEO_TYPES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/x-matroska": ".mkv",
    "video/x-m4v": ".m4v",
}
INSTALL = "pip install -e '.[video,serve]'"
TOP_K = 5
MAX_FRAME_BYTES = 2_000_000  # one JPEG frame; a 1280x720 camera frame is ~100 kB
MAX_FRAME_PIXELS = 1920 * 1080  # larger frames cost MediaPipe time and gain nothing
UPLOAD_FRAMES = 1_800  # a minute at 30 fps: extraction takes about as long again on 2 cores
FRAME_BURST = 2  # frames a session may send back to back before --fps applies
FOREIGN = "only this server's own page may use its API"


class ServeError(Exception):
    """A request the server refuses; `status` is its HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    sessions: int = 2  # live camera sessions at once: each holds a MediaPipe graph
    fps: float = 15.0  # frames a second one session may send
    upload_bytes: int = 50_000_000  # the largest upload taken
    uploads: int = 1  # uploads decoded at once (each keeps a core busy)


# ---------------------------------------------------------------------------------------------
# Recognition: the same steps as `predict`


def classify(loaded: checkpoint.Checkpoint, track: np.ndarray, top_k: int = TOP_K) -> dict:
    """The top `top_k` signs for one landmark track (T, 543, 3), as `predict` computes them.

    Returns {"frames": T, "landmarks_seen": bool, "predictions": [{"sign", "probability"}]}.
    """
    features = np.ascontiguousarray(track.transpose(2, 0, 1), dtype=np.float32)  # (3, T, 543)
    prepared = data.prepare_arrays([features], [0], loaded.data_config)
    with torch.inference_mode():
        logits, _, _ = loops.predict(loaded.model, prepared.batches(loops.EVAL_BATCH))
    probabilities = logits.softmax(-1)[0]  # (K,)
    top = probabilities.topk(min(top_k, len(loaded.signs)))
    return {
        "frames": int(track.shape[0]),
        # Preprocessing leaves a missing landmark at exactly 0 (as predict's note says).
        "landmarks_seen": bool(prepared.frames.any()),
        "predictions": [
            {"sign": loaded.signs[i], "probability": p}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ],
    }


def video_track(path: Path, complexity: int) -> np.ndarray:
    """Landmarks (T, 543, 3) of a video file, extracted as `predict` extracts them; a video
    longer than UPLOAD_FRAMES is refused."""
    import video

    max_frames = UPLOAD_FRAMES

    def bounded(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for count, frame in enumerate(frames, 1):
            if count > max_frames:
                raise ServeError(
                    f"the video is longer than {max_frames} frames: cut it to the sign", 413
                )
            yield frame

    return video.extract_frames(bounded(video.read_frames(path)), complexity=complexity)


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, read before any pixel is decoded."""
    if jpeg[:2] != b"\xff\xd8":
        raise ServeError("a frame must be a JPEG image")
    at = 2
    while at + 9 <= len(jpeg):
        if jpeg[at] != 0xFF:
            break
        marker, length = jpeg[at + 1], int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height = int.from_bytes(jpeg[at + 5 : at + 7], "big")
            width = int.from_bytes(jpeg[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    raise ServeError("the frame is not a readable JPEG image")


def decode_frame(jpeg: bytes) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame from a JPEG the browser sent, within the frame limits."""
    import video

    cv2 = video.opencv()
    if len(jpeg) > MAX_FRAME_BYTES:
        raise ServeError(f"a frame is at most {MAX_FRAME_BYTES:,} bytes")
    width, height = jpeg_size(jpeg)
    if not 0 < width * height <= MAX_FRAME_PIXELS:
        raise ServeError(f"a frame of {width}x{height} pixels: at most {MAX_FRAME_PIXELS:,}")
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ServeError("the frame is not a readable JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def foreign(headers) -> bool:
    """True for a request a page of another site sent (its Origin is not this server): a
    WebSocket or a POST from any open tab could otherwise use the camera API and the uploads."""
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != headers.get("host")


def points_of(landmarks: np.ndarray) -> list[list[float] | None]:
    """The (x, y) of each of the 543 landmarks for the page, None where not detected."""
    rounded = np.round(landmarks[:, :2].astype(np.float64), 4)
    return [None if math.isnan(x) else [x, y] for x, y in rounded.tolist()]


# ---------------------------------------------------------------------------------------------
# The web application


def create_app(
    ckpt: Path, loaded: checkpoint.Checkpoint, limits: Limits = Limits(), complexity: int = 1
):
    """The FastAPI application serving the page and its API for one loaded checkpoint."""
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.websockets import WebSocketDisconnect, WebSocketState

    import live
    import video

    assets = {route: ((WEB / name).read_bytes(), kind) for route, (name, kind) in ASSETS.items()}
    metrics = loaded.metadata.get("metrics", {})
    info = {
        "checkpoint": str(ckpt),
        "signs": loaded.signs,
        "test_accuracy": metrics.get("test", {}).get("accuracy") if metrics else None,
        "top_k": TOP_K,
        "complexity": complexity,
        **asdict(limits),
    }
    busy = {"sessions": 0, "uploads": 0}  # one event loop: plain counters are race-free
    app = FastAPI(title="islr", docs_url=None, redoc_url=None, openapi_url=None)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, problem: HTTPException) -> JSONResponse:
        if problem.status_code == 404:
            return error(f"{request.url.path}: no such page (this server has only / and /api)", 404)
        return error(str(problem.detail), problem.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, problem: Exception) -> JSONResponse:
        console.print(f"error in {request.url.path}: {type(problem).__name__}: {problem}")
        return error("the server failed on this request (its console says why)", 500)

    def page(route: str):
        body, kind = assets[route]

        async def asset() -> Response:
            return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

        return asset

    for route in assets:
        app.get(route, include_in_schema=False)(page(route))

    @app.get("/api/info")
    async def describe() -> dict:
        return info

    @app.post("/api/upload")
    async def upload(request: Request) -> JSONResponse:
        if foreign(request.headers):
            return error(FOREIGN, 403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in VIDEO_TYPES:
            return error(
                f"upload a video file (mp4, mov, webm, avi, mkv), not {kind or 'this'}", 415
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.upload_bytes:
            return error(f"the video is larger than {limits.upload_bytes // 1_000_000} MB", 413)
        if busy["uploads"] >= limits.uploads:
            return error("another video is being read: try again in a moment", 503)
        busy["uploads"] += 1
        try:
            with tempfile.TemporaryDirectory(prefix="islr-serve-") as folder:
                path = Path(folder) / f"upload{VIDEO_TYPES[kind]}"  # never the client's name
                size = 0
                with path.open("wb") as file:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limits.upload_bytes:
                            raise ServeError(
                                f"the video is larger than {limits.upload_bytes // 1_000_000} MB",
                                413,
                            )
                        file.write(chunk)
                if not size:
                    raise ServeError("the upload is empty")
                started = time.perf_counter()
                track = await asyncio.to_thread(video_track, path, complexity)
                result = await asyncio.to_thread(classify, loaded, track)
                result["seconds"] = round(time.perf_counter() - started, 2)
                return JSONResponse(result)
        except ServeError as problem:
            return error(str(problem), problem.status)
        except video.VideoError as problem:  # named by its temporary path: say "the upload"
            return error(str(problem).replace(str(path), "the upload"), 400)
        finally:
            busy["uploads"] -= 1

    @app.websocket("/api/live")
    async def live_session(socket_: WebSocket) -> None:
        await socket_.accept()
        if foreign(socket_.headers):
            await socket_.send_json({"type": "error", "message": FOREIGN})
            await socket_.close(code=1008)
            return
        if busy["sessions"] >= limits.sessions:
            await socket_.send_json(
                {
                    "type": "error",
                    "message": f"the server is busy: {limits.sessions} camera sessions at once",
                }
            )
            await socket_.close(code=1013)
            return
        busy["sessions"] += 1
        holistic = None
        try:
            holistic = await asyncio.to_thread(video.Holistic, complexity=complexity)
            segmenter = live.Segmenter(fps=limits.fps)
            await socket_.send_json({"type": "ready"})
            tokens, refilled = float(FRAME_BURST), time.monotonic()
            opened = refilled  # frames are timed as they arrive: the page's rate varies
            while True:
                message = await socket_.receive()
                if message["type"] == "websocket.disconnect":
                    break
                now = time.monotonic()
                tokens = min(FRAME_BURST, tokens + (now - refilled) * limits.fps)
                refilled = now
                if message.get("bytes") is None:
                    await socket_.send_json(
                        {"type": "error", "message": "send camera frames as binary JPEG messages"}
                    )
                    continue
                if tokens < 1:
                    await socket_.send_json(
                        {"type": "dropped", "message": f"over {limits.fps:g} frames a second"}
                    )
                    continue
                tokens -= 1
                started = time.perf_counter()
                try:
                    frame = decode_frame(message["bytes"])
                    landmarks = await asyncio.to_thread(holistic.landmarks, frame)
                    segment = segmenter.push(landmarks, time=time.monotonic() - opened)
                    sign = None
                    if segment is not None:
                        sign = await asyncio.to_thread(classify, loaded, segment)
                    answer = {
                        "type": "frame",
                        "width": frame.shape[1],
                        "height": frame.shape[0],
                        "points": points_of(landmarks),
                        "state": segmenter.state,
                        "sign": sign,  # the top 5 of a sign this frame ended, else None
                        "ms": round(1000 * (time.perf_counter() - started), 1),
                    }
                except ServeError as problem:
                    await socket_.send_json({"type": "error", "message": str(problem)})
                    continue
                except Exception as problem:  # a bug, not the client's doing: say so, go on
                    console.print(f"error in /api/live: {type(problem).__name__}: {problem}")
                    await socket_.send_json(
                        {
                            "type": "error",
                            "message": "the server failed on this frame (its console says why)",
                        }
                    )
                    continue
                await socket_.send_json(answer)
        except video.VideoError as problem:  # MediaPipe could not start
            await socket_.send_json({"type": "error", "message": str(problem)})
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away mid-answer: nothing to tell it
        finally:
            busy["sessions"] -= 1
            if holistic is not None:
                holistic.close()
            if socket_.application_state == WebSocketState.CONNECTED:
                try:
                    await socket_.close()
                except (OSError, RuntimeError):
                    pass

    return app


# ---------------------------------------------------------------------------------------------
# The command


def serve(
    ckpt: Annotated[Path, typer.Argument(help="A model.safetensors written by train.")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the page on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    sessions: Annotated[
        int, typer.Option(min=1, help="Camera sessions at once.")
    ] = Limits.sessions,
    fps: Annotated[
        float, typer.Option(min=1, max=60, help="Frames a second one session may send.")
    ] = Limits.fps,
    max_upload_mb: Annotated[
        int, typer.Option(min=1, help="The largest video upload, in MB.")
    ] = Limits.upload_bytes // 1_000_000,
    complexity: Annotated[
        int,
        typer.Option(
            min=0, max=2, help="MediaPipe Holistic model complexity (extract and predict use 1)."
        ),
    ] = 1,
    threads: Threads = 0,
) -> None:
    """A local web page: sign to the camera (or upload a video) and see the top 5."""
    with user_errors(ServeError):
        try:
            import fastapi  # noqa: F401
            import uvicorn

            import live  # noqa: F401
            import video
        except ImportError as missing:
            raise ServeError(f"serve needs {missing.name}: {INSTALL}") from None
        use_threads(threads)
        loaded = checkpoint.load(ckpt)
        video.quiet_native_output()  # MediaPipe's C++ log lines, a dozen per session
        try:  # the video extra and the model of --complexity, checked before anyone connects
            video.Holistic(complexity=complexity).close()
        except video.VideoError as problem:
            raise ServeError(str(problem)) from None
        limits = Limits(sessions=sessions, fps=fps, upload_bytes=max_upload_mb * 1_000_000)
        app = create_app(ckpt, loaded, limits, complexity)
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(128)  # connections wait for uvicorn from now on, not refused
        except OSError as problem:
            listener.close()
            raise ServeError(f"cannot listen on {host}:{port} ({problem.strerror})") from None
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"serving {ckpt} ({len(loaded.signs)} signs) at http://{shown}:{bound}/ (Ctrl-C stops)"
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        note(
            f"anyone who can reach {host} can use this page; browsers give the camera only to "
            "pages on localhost or https"
        )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws_max_size=MAX_FRAME_BYTES + 1024,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[listener])
