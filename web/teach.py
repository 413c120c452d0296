"""The page's teach panel: its API over the workspace (workspace.py) and the training (training.py).

    GET    /api/teach                           signs, examples, runs, the model served
    POST   /api/teach/signs                     {"name": ...}: a new sign
    DELETE /api/teach/signs/{name}              the sign and its examples
    POST   /api/teach/signs/{name}/examples     a video (the body) as an example of the sign
    GET    /api/teach/examples/{id}             an example's hands and pose, for its replay
    DELETE /api/teach/examples/{id}
    POST   /api/teach/train                     start training; POST /api/teach/cancel stops it
    POST   /api/teach/model                     {"run": NAME} serves that run's model, null the first
    GET    /api/teach/runs/{name}/model.safetensors    a trained checkpoint
    GET    /api/teach/examples.zip              the workspace's examples, raw Kaggle layout

The camera's examples arrive through the live session (routes.Session: each sign the
segmenter cuts while a sign is being recorded). Every change refuses another site's page.
"""

import asyncio
from pathlib import Path

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import checkpoint
from web.limits import FOREIGN, ServeError, foreign
from web.routes import State, error, state_of, uploaded_track
from web.training import Training
from web.workspace import TeachLimits, Workspace, check_disk


class Teach:
    """The workspace, its training and the model the server started with."""

    def __init__(self, root: Path, limits: TeachLimits, threads: int = 0, **training) -> None:
        self.workspace = Workspace(root, limits)
        self.training = Training(root, threads, **training)
        self.original: tuple[Path, checkpoint.Checkpoint] | None = None
        self.serving: str | None = None  # the run whose model is served; None: the original

    async def record(self, sign: str, track: np.ndarray) -> dict:
        """Keep a sign the camera session cut as an example; a refusal comes back as its error."""
        try:
            return await asyncio.to_thread(self.workspace.add_example, sign, track, "serve camera")
        except ServeError as problem:
            return {"error": str(problem), "sign": sign}

    def describe(self) -> dict:
        return {
            "workspace": str(self.workspace.root),
            "signs": self.workspace.describe(),
            "runs": self.training.runs(),
            "training": self.training.running(),
            "serving": self.serving,
        }

    def check_trainable(self) -> tuple[list[str], int]:
        """The signs and example count to train on; refused with fewer than two signs or a
        sign without examples."""
        counts = self.workspace.counts()
        if len(counts) < 2:
            raise ServeError("training needs at least two signs: add another")
        empty = [sign for sign, count in counts.items() if not count]
        if empty:
            raise ServeError(f"{empty[0]!r} has no example: record one or delete the sign")
        check_disk(self.workspace.root, self.workspace.limits.free_bytes)
        return list(counts), sum(counts.values())


def teach_of(request: Request) -> Teach:
    teach = state_of(request).teach
    if teach is None:
        raise ServeError("teaching needs a workspace: serve --workspace DIR", 404)
    return teach


def changing(request: Request) -> Teach:
    """The Teach of a request that changes something: never another site's page."""
    if foreign(request.headers):
        raise ServeError(FOREIGN, 403)
    return teach_of(request)


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ServeError("send a JSON object") from None
    if not isinstance(body, dict):
        raise ServeError("send a JSON object")
    return body


def example_id(request: Request) -> int:
    text = request.path_params["id"]
    if not text.isdigit():
        raise ServeError(f"no example {text}", 404)
    return int(text)


def answering(route):
    """A route whose ServeError becomes its JSON error."""

    async def answer(request: Request):
        try:
            return await route(request)
        except ServeError as problem:
            return error(str(problem), problem.status)

    answer.__name__ = route.__name__
    return answer


# ---------------------------------------------------------------------------------------------
# Routes


@answering
async def overview(request: Request) -> JSONResponse:
    return JSONResponse(teach_of(request).describe())


@answering
async def add_sign(request: Request) -> JSONResponse:
    teach = changing(request)
    name = teach.workspace.add_sign((await json_body(request)).get("name"))
    return JSONResponse({"name": name, "examples": []}, status_code=201)


@answering
async def delete_sign(request: Request) -> JSONResponse:
    teach = changing(request)
    name = request.path_params["name"]
    await asyncio.to_thread(teach.workspace.delete_sign, name)
    return JSONResponse({"deleted": name})


@answering
async def upload_example(request: Request) -> JSONResponse:
    teach = changing(request)
    sign = request.path_params["name"]
    teach.workspace.check_known(sign)
    teach.workspace.check_room()
    track, cut = await uploaded_track(request)
    example = await asyncio.to_thread(teach.workspace.add_example, sign, track, "serve upload")
    return JSONResponse({**example, **({"note": cut} if cut else {})}, status_code=201)


@answering
async def example_points(request: Request) -> JSONResponse:
    teach = teach_of(request)
    return JSONResponse(await asyncio.to_thread(teach.workspace.points, example_id(request)))


@answering
async def delete_example(request: Request) -> JSONResponse:
    teach, number = changing(request), example_id(request)
    await asyncio.to_thread(teach.workspace.delete_example, number)
    return JSONResponse({"deleted": number})


@answering
async def train(request: Request) -> JSONResponse:
    teach = changing(request)
    signs, examples = teach.check_trainable()
    record = await asyncio.to_thread(teach.training.start, signs, examples)
    return JSONResponse(record, status_code=202)


@answering
async def cancel(request: Request) -> JSONResponse:
    teach = changing(request)
    return JSONResponse(await asyncio.to_thread(teach.training.cancel))


@answering
async def use_model(request: Request) -> JSONResponse:
    """Serve a run's model ({"run": NAME}) or the one the server started with ({"run": null})."""
    teach, state = changing(request), state_of(request)
    name = (await json_body(request)).get("run")
    if teach.original is None:
        teach.original = (state.ckpt, state.loaded)
    if name is None:
        state.ckpt, state.loaded = teach.original
    else:
        path = teach.training.model(str(name))
        try:
            loaded = await asyncio.to_thread(checkpoint.load, path)
        except Exception as problem:  # noqa: BLE001 - a checkpoint is a file: say which and why
            raise ServeError(f"the model of {name} cannot be loaded: {problem}") from None
        state.ckpt, state.loaded = path, loaded
    teach.serving = name
    return JSONResponse(
        {"serving": name, "checkpoint": str(state.ckpt), "signs": state.loaded.signs}
    )


@answering
async def download_model(request: Request) -> Response:
    name = request.path_params["name"]
    path = teach_of(request).training.model(name)
    return Response(
        await asyncio.to_thread(path.read_bytes),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}.safetensors"'},
    )


@answering
async def download_examples(request: Request) -> Response:
    teach = teach_of(request)
    body = await asyncio.to_thread(teach.workspace.zipped)
    name = teach.workspace.root.name or "workspace"
    return Response(
        body,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )


def add_routes(app, state: State, teach: Teach) -> None:
    """Register the teach API on `app`."""
    state.teach = teach
    state.extra["teach"] = True
    for path, route, method in [
        ("/api/teach", overview, "GET"),
        ("/api/teach/signs", add_sign, "POST"),
        ("/api/teach/signs/{name}", delete_sign, "DELETE"),
        ("/api/teach/signs/{name}/examples", upload_example, "POST"),
        ("/api/teach/examples.zip", download_examples, "GET"),
        ("/api/teach/examples/{id}", example_points, "GET"),
        ("/api/teach/examples/{id}", delete_example, "DELETE"),
        ("/api/teach/train", train, "POST"),
        ("/api/teach/cancel", cancel, "POST"),
        ("/api/teach/model", use_model, "POST"),
        ("/api/teach/runs/{name}/model.safetensors", download_model, "GET"),
    ]:
        app.add_route(path, route, methods=[method])
