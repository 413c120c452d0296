"""The `serve` command: a local web page that recognises signs from the browser's camera.

    python islr.py serve runs/<name>/model.safetensors      # then open the address it prints

The page (web/index.html, web/app.js, web/teach.js, web/style.css: the only files served, read once at
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

The teach panel (teach.py, teach.js) adds signs and examples to a workspace folder
(`--workspace`, workspace.py: the raw Kaggle layout, limited by --max-signs, --max-examples and
--max-workspace-mb) and trains on it in a process of its own (training.py); the live session
then serves the model it made.

Needs the extras `video` and `serve`: pip install -e '.[video,serve]'.
"""

import socket
from pathlib import Path
from typing import Annotated

import typer

import checkpoint
from cli import Threads, console, note, use_threads, user_errors
from video import video
from web.limits import MAX_FRAME_BYTES, Limits, ServeError
from web.workspace import TeachLimits

WEB = Path(__file__).resolve().parent
ASSETS = {  # URL path -> (file in WEB, media type); nothing else is ever read from disk
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/teach.js": ("teach.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
INSTALL = "pip install -e '.[video,serve]'"
DEFAULT_LIMITS = Limits()
DEFAULT_WORKSPACE = Path("workspace")  # beside runs/, in the folder serve starts in


def create_app(
    ckpt: Path,
    loaded: checkpoint.Checkpoint,
    limits: Limits = DEFAULT_LIMITS,
    complexity: int = 1,
    teach=None,
):
    """The FastAPI application serving the page and its API for one loaded checkpoint; with a
    teach.Teach, the teach panel's API over its workspace as well."""
    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    from web import routes

    assets = {route: ((WEB / name).read_bytes(), kind) for route, (name, kind) in ASSETS.items()}
    app = FastAPI(title="islr", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.islr = routes.State(ckpt, loaded, limits, complexity, assets)
    app.add_exception_handler(HTTPException, routes.http_error)
    app.add_exception_handler(Exception, routes.internal_error)
    for route in assets:
        app.add_route(route, routes.asset, methods=["GET"], include_in_schema=False)
    app.add_route("/api/info", routes.info, methods=["GET"])
    app.add_route("/api/upload", routes.upload, methods=["POST"])
    app.router.add_websocket_route("/api/live", routes.live_session)
    if teach is not None:
        from web import teach as teaching

        teaching.add_routes(app, app.state.islr, teach)
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
    workspace: Annotated[
        Path,
        typer.Option(
            help="The teach panel's folder: examples (raw Kaggle layout) and runs/.",
            rich_help_panel="Teach",
        ),
    ] = DEFAULT_WORKSPACE,
    max_signs: Annotated[
        int, typer.Option(min=2, help="Signs a workspace may hold.", rich_help_panel="Teach")
    ] = TeachLimits.signs,
    max_examples: Annotated[
        int, typer.Option(min=1, help="Examples a workspace may hold.", rich_help_panel="Teach")
    ] = TeachLimits.examples,
    max_workspace_mb: Annotated[
        int,
        typer.Option(min=1, help="The examples' files together, in MB.", rich_help_panel="Teach"),
    ] = TeachLimits.workspace_bytes // 1_000_000,
) -> None:
    """A local web page: sign to the camera (or upload a video) and see the top 5; teach it
    your own signs in its teach panel (examples and models kept in --workspace)."""
    with user_errors(ServeError):
        uvicorn = installed()
        use_threads(threads)
        loaded = checkpoint.load(ckpt)
        video.quiet_native_output()  # MediaPipe's C++ log lines, a dozen per session
        try:  # the video extra and the model of --complexity, checked before anyone connects
            video.check_complexity(complexity)
        except video.VideoError as problem:
            raise ServeError(str(problem)) from None
        limits = Limits(sessions=sessions, fps=fps, upload_bytes=max_upload_mb * 1_000_000)
        most = TeachLimits(max_signs, max_examples, max_workspace_mb * 1_000_000)
        teach = open_workspace(workspace, most)
        app = create_app(ckpt, loaded, limits, complexity, teach)
        listener = listen(host, port)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"serving {ckpt} ({len(loaded.signs)} signs) at http://{shown}:{bound}/ (Ctrl-C stops); "
        f"teaching in {workspace}"
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
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        teach.training.close()  # a training stops with the server, marked interrupted


def installed():
    """uvicorn, once the serve extra is known to be there."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as missing:
        raise ServeError(f"serve needs {missing.name}: {INSTALL}") from None
    return uvicorn


def open_workspace(folder: Path, limits: TeachLimits):
    """The teach panel's workspace, made where it is missing."""
    from web.teach import Teach

    try:
        return Teach(folder, limits)
    except OSError as problem:
        raise ServeError(f"cannot use {folder} as the workspace ({problem.strerror})") from None


def listen(host: str, port: int) -> socket.socket:
    """A socket bound and listening: connections wait for uvicorn from now on, not refused."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as problem:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port} ({problem.strerror})") from None
    return listener
