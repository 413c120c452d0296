"""The page's routes: its files, /api/info, a video upload and the live camera session.

Each route is a module-level function of the request (or WebSocket); what routes share (the
model served, the limits, the counters of what is busy) is the State on `app.state.islr`.
serve.create_app registers them. Imported only once the `serve` extra is known to be there.
"""

import asyncio
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

import checkpoint
import recognise
from cli import console
from video import segment, video
from web.limits import FOREIGN, VIDEO_TYPES, Limits, ServeError, decode_frame, foreign, video_track

TOP_K = 5
FRAME_BURST = 2  # frames a session may send back to back before --fps applies


@dataclass
class State:
    """What the routes share; one event loop serves them all, so plain counters are race-free."""

    ckpt: Path  # the checkpoint served
    loaded: checkpoint.Checkpoint
    limits: Limits
    complexity: int  # MediaPipe's model, as `extract --complexity`
    assets: dict[str, tuple[bytes, str]]  # URL path -> (body, media type)
    sessions: int = 0  # live sessions open
    uploads: int = 0  # uploads being read
    teach: object = None  # teach.Teach where the page teaches signs (serve --workspace)
    extra: dict = field(default_factory=dict)  # more of /api/info


def state_of(connection: Request | WebSocket) -> State:
    return connection.app.state.islr


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def points_of(landmarks: np.ndarray) -> list[list[float] | None]:
    """The (x, y) of each of the 543 landmarks for the page, None where not detected."""
    rounded = np.round(landmarks[:, :2].astype(np.float64), 4)
    return [None if math.isnan(x) else [x, y] for x, y in rounded.tolist()]


# ---------------------------------------------------------------------------------------------
# Errors, files, info


async def http_error(request: Request, problem: HTTPException) -> JSONResponse:
    if problem.status_code == 404:
        return error(f"{request.url.path}: no such page (this server has only / and /api)", 404)
    return error(str(problem.detail), problem.status_code)


async def internal_error(request: Request, problem: Exception) -> JSONResponse:
    console.print(f"error in {request.url.path}: {type(problem).__name__}: {problem}")
    return error("the server failed on this request (its console says why)", 500)


async def asset(request: Request) -> Response:
    body, kind = state_of(request).assets[request.url.path]
    return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})


async def info(request: Request) -> JSONResponse:
    state = state_of(request)
    metrics = state.loaded.metadata.get("metrics", {})
    return JSONResponse(
        {
            "checkpoint": str(state.ckpt),
            "signs": state.loaded.signs,
            "test_accuracy": metrics.get("test", {}).get("accuracy") if metrics else None,
            "top_k": TOP_K,
            "complexity": state.complexity,
            **asdict(state.limits),
            **state.extra,
        }
    )


# ---------------------------------------------------------------------------------------------
# An uploaded video


def upload_type(request: Request) -> str:
    """The upload's media type, refused unless it is a video of a known kind or too large."""
    if foreign(request.headers):
        raise ServeError(FOREIGN, 403)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in VIDEO_TYPES:
        names = ", ".join(sorted({t[1:] for t in VIDEO_TYPES.values()}))
        raise ServeError(f"upload a video file ({names}), not {kind or 'this'}", 415)
    declared, most = request.headers.get("content-length", ""), state_of(request).limits
    if declared.isdigit() and int(declared) > most.upload_bytes:
        raise ServeError(f"the video is larger than {most.upload_bytes // 1_000_000} MB", 413)
    return kind


async def save_upload(request: Request, path: Path) -> None:
    """Stream the request's body into `path`, within the upload's size limit."""
    most, size = state_of(request).limits.upload_bytes, 0
    with path.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                raise ServeError(f"the video is larger than {most // 1_000_000} MB", 413)
            file.write(chunk)
    if not size:
        raise ServeError("the upload is empty")


async def uploaded_track(request: Request) -> tuple[np.ndarray, str | None]:
    """The landmarks (T, 543, 3) of the video in the request's body, one upload at a time, and
    a note where it decoded to fewer frames than its container declares (a cut-short file)."""
    state = state_of(request)
    kind = upload_type(request)
    if state.uploads >= state.limits.uploads:
        raise ServeError("another video is being read: try again in a moment", 503)
    state.uploads += 1
    try:
        with tempfile.TemporaryDirectory(prefix="islr-serve-") as folder:
            path = Path(folder) / f"upload{VIDEO_TYPES[kind]}"  # never the client's name
            await save_upload(request, path)
            try:
                track = await asyncio.to_thread(video_track, path, state.complexity)
            except video.VideoError as problem:  # named by its temporary path: "the upload"
                raise ServeError(str(problem).replace(str(path), "the upload")) from None
            return track, video.truncation_note(path, len(track))
    finally:
        state.uploads -= 1


async def upload(request: Request) -> JSONResponse:
    """POST /api/upload: the video's top 5, as `predict` prints them."""
    started = time.perf_counter()
    try:
        track, cut = await uploaded_track(request)
    except ServeError as problem:
        return error(str(problem), problem.status)
    state = state_of(request)
    result = await asyncio.to_thread(recognise.classify, state.loaded, track, TOP_K)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if cut:
        result["note"] = cut  # "read 12 of 58 frames: the file may be cut short"
    return JSONResponse(result)


# ---------------------------------------------------------------------------------------------
# The live camera session


class FrameRate:
    """A token bucket: FRAME_BURST frames back to back, then `fps` a second."""

    def __init__(self, fps: float) -> None:
        self.fps, self.tokens, self.refilled = fps, float(FRAME_BURST), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(FRAME_BURST, self.tokens + (now - self.refilled) * self.fps)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One camera session: MediaPipe's graph, the segmenter and the clock of its frames."""

    def __init__(self, state: State, holistic) -> None:
        self.state, self.holistic = state, holistic
        self.segmenter = segment.Segmenter(fps=state.limits.fps)
        self.opened = time.monotonic()  # frames are timed as they arrive: the page's rate varies
        self.recording: str | None = None  # the sign whose examples this session records

    async def answer(self, jpeg: bytes) -> dict:
        """The frame's landmarks and the segmenter's state; a sign's top 5 when it ends."""
        started = time.perf_counter()
        frame = decode_frame(jpeg)
        landmarks = await asyncio.to_thread(self.holistic.landmarks, frame)
        ended = self.segmenter.push(landmarks, time=time.monotonic() - self.opened)
        sign = example = None
        if ended is not None:
            sign = await asyncio.to_thread(recognise.classify, self.state.loaded, ended, TOP_K)
            if self.recording and self.state.teach is not None:
                example = await self.state.teach.record(self.recording, ended)
        return {
            "type": "frame",
            "width": frame.shape[1],
            "height": frame.shape[0],
            "points": points_of(landmarks),
            "state": self.segmenter.state,
            "sign": sign,  # the top 5 of a sign this frame ended, else None
            "example": example,  # the example it was kept as (recording), else None
            "ms": round(1000 * (time.perf_counter() - started), 1),
        }

    async def control(self, text: str) -> dict | None:
        """A text message: {"record": SIGN} records each sign cut as an example of SIGN,
        {"record": null} stops; anything else is an error."""
        import json

        try:
            asked = json.loads(text)
            sign = asked["record"]
        except (ValueError, TypeError, KeyError):
            return {"type": "error", "message": "send camera frames as binary JPEG messages"}
        if sign is not None:
            if self.state.teach is None:
                return {"type": "error", "message": "start serve with --workspace to record"}
            try:
                self.state.teach.workspace.check_known(sign)
            except ServeError as problem:
                return {"type": "error", "message": str(problem)}
        self.recording = sign
        return {"type": "recording", "sign": sign}


async def refused(socket: WebSocket, state: State) -> bool:
    """Tell another site's page, or one over the session limit, why not, and close."""
    if foreign(socket.headers):
        message, code = FOREIGN, 1008
    elif state.sessions >= state.limits.sessions:
        message = f"the server is busy: {state.limits.sessions} camera sessions at once"
        code = 1013
    else:
        return False
    await socket.send_json({"type": "error", "message": message})
    await socket.close(code=code)
    return True


async def converse(socket: WebSocket, session: Session) -> None:
    """Answer each message until the page goes away; a frame over --fps is dropped."""
    rate = FrameRate(session.state.limits.fps)
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is None:
            await socket.send_json(await session.control(message.get("text") or ""))
            continue
        if not rate.take():
            fps = session.state.limits.fps
            await socket.send_json({"type": "dropped", "message": f"over {fps:g} frames a second"})
            continue
        try:
            answer = await session.answer(message["bytes"])
        except ServeError as problem:
            answer = {"type": "error", "message": str(problem)}
        except Exception as problem:  # a bug, not the client's doing: say so, go on
            console.print(f"error in /api/live: {type(problem).__name__}: {problem}")
            answer = {
                "type": "error",
                "message": "the server failed on this frame (its console says why)",
            }
        await socket.send_json(answer)


async def live_session(socket: WebSocket) -> None:
    """WebSocket /api/live: JPEG frames in, landmarks, states and signs out."""
    state = state_of(socket)
    await socket.accept()
    if await refused(socket, state):
        return
    state.sessions += 1
    holistic = None
    try:
        holistic = await asyncio.to_thread(video.Holistic, complexity=state.complexity)
        await socket.send_json({"type": "ready"})
        await converse(socket, Session(state, holistic))
    except video.VideoError as problem:  # MediaPipe could not start
        await socket.send_json({"type": "error", "message": str(problem)})
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away mid-answer: nothing to tell it
    finally:
        state.sessions -= 1
        if holistic is not None:
            holistic.close()
        if socket.application_state == WebSocketState.CONNECTED:
            try:
                await socket.close()
            except (OSError, RuntimeError):
                pass
