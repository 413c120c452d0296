"""The `serve` command: a local web page that recognises signs from the browser's camera.

    python islr.py serve runs/<name>/model.safetensors      # then open the address it prints

The page (web/index.html, web/app.js, web/style.css: the only files served, read once at
start) sends camera frames as JPEG over a WebSocket (/api/live), at most `--fps` a second,
one at a time. For each frame the server extracts the landmarks with video.Holistic (the
settings of `extract`, `predict` and `live`), cuts signs out of the stream with
segment.Segmenter, and answers with the frame's landmarks (the page draws the skeleton) and the
segmenter's state, and, with the frame that ends a sign, the sign's top 5 from recognise.classify
(the checkpoint's own preprocessing and model, as `predict` computes them). An uploaded video
(POST /api/upload, the file as the body) gets exactly what `predict` prints for that file
(at the default --complexity 1). Nothing leaves the machine: the server binds to 127.0.0.1
unless told otherwise, the page loads nothing from elsewhere, and pages of other sites are
refused the API (their Origin header).

Limits (limits.py): `--sessions` live sessions at once (each holds a MediaPipe graph and most of a core),
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
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import checkpoint
import recognise
from cli import Threads, console, note, use_threads, user_errors
from video import segment, video
from web.limits import (
    FOREIGN,
    MAX_FRAME_BYTES,
    VIDEO_TYPES,
    Limits,
    ServeError,
    decode_frame,
    foreign,
    video_track,
)

WEB = Path(__file__).resolve().parent
ASSETS = {  # URL path -> (file in WEB, media type); nothing else is ever read from disk
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
INSTALL = "pip install -e '.[video,serve]'"
TOP_K = 5
DEFAULT_LIMITS = Limits()
FRAME_BURST = 2  # frames a session may send back to back before --fps applies


# ---------------------------------------------------------------------------------------------
# Answers


def points_of(landmarks: np.ndarray) -> list[list[float] | None]:
    """The (x, y) of each of the 543 landmarks for the page, None where not detected."""
    rounded = np.round(landmarks[:, :2].astype(np.float64), 4)
    return [None if math.isnan(x) else [x, y] for x, y in rounded.tolist()]


# ---------------------------------------------------------------------------------------------
# The web application


def create_app(
    ckpt: Path, loaded: checkpoint.Checkpoint, limits: Limits = DEFAULT_LIMITS, complexity: int = 1
):
    """The FastAPI application serving the page and its API for one loaded checkpoint."""
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.websockets import WebSocketDisconnect, WebSocketState

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
                f"upload a video file ({', '.join(sorted({t[1:] for t in VIDEO_TYPES.values()}))}), "
                f"not {kind or 'this'}",
                415,
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
                result = await asyncio.to_thread(recognise.classify, loaded, track, TOP_K)
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
            segmenter = segment.Segmenter(fps=limits.fps)
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
                    ended = segmenter.push(landmarks, time=time.monotonic() - opened)
                    sign = None
                    if ended is not None:
                        sign = await asyncio.to_thread(recognise.classify, loaded, ended, TOP_K)
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
    complexity: video.Complexity = 1,
    threads: Threads = 0,
) -> None:
    """A local web page: sign to the camera (or upload a video) and see the top 5."""
    with user_errors(ServeError):
        try:
            import fastapi  # noqa: F401
            import uvicorn
        except ImportError as missing:
            raise ServeError(f"serve needs {missing.name}: {INSTALL}") from None
        use_threads(threads)
        loaded = checkpoint.load(ckpt)
        video.quiet_native_output()  # MediaPipe's C++ log lines, a dozen per session
        try:  # the video extra and the model of --complexity, checked before anyone connects
            video.check_complexity(complexity)
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
