"""The explorer's web app: FastAPI endpoints over an :class:`~.session.Explorer`.

Every request body is a pydantic model with its sizes and ranges declared, so a malformed
request is refused before the engine sees it; the engine's own checks (an index past the
split's end, a feature the SAE does not have) raise :class:`~.session.RequestError`.
Both become a 400 with a one-line message, as does a body over :data:`MAX_BODY` bytes.
No endpoint takes a path: the only files read are the page itself and the directories
the explorer was started with.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explore.session import MAX_SCALE, SIZE, Explorer, ImageSpec

MAX_BODY = 64 * 1024  # a drawing is 784 numbers: a few KiB of JSON
MAX_ID = 2**31 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ImageBody(Strict):
    split: str | None = Field(None, max_length=32)
    index: int | None = Field(None, ge=0, le=MAX_ID)
    gray: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        None, min_length=SIZE * SIZE, max_length=SIZE * SIZE)
    color: int | None = Field(None, ge=0, le=MAX_ID)
    style: str | None = Field(None, max_length=64)
    texture: int = Field(0, ge=0, le=MAX_ID)

    def spec(self) -> ImageSpec:
        return ImageSpec(self.split, self.index,
                         tuple(self.gray) if self.gray is not None else None,
                         self.color, self.style, self.texture)


class Edit(Strict):
    feature: int = Field(ge=0, le=MAX_ID)
    scale: float = Field(ge=0.0, le=MAX_SCALE)


Edits = Annotated[dict[Annotated[str, Field(max_length=200)],
                       Annotated[list[Edit], Field(max_length=64)]],
                  Field(max_length=16)]


class SampleBody(Strict):
    split: str = Field(max_length=32)
    label: int | None = Field(None, ge=0, le=MAX_ID)
    index: int | None = Field(None, ge=0, le=MAX_ID)
    seed: int = Field(0, ge=0, le=MAX_ID)


class AnalyzeBody(Strict):
    image: ImageBody
    target: int | None = Field(None, ge=0, le=MAX_ID)
    edits: Edits = Field(default_factory=dict)


class PredictBody(Strict):
    image: ImageBody
    edits: Edits = Field(default_factory=dict)


class AttackBody(Strict):
    image: ImageBody
    model: str = Field(max_length=200)
    target: int = Field(ge=0, le=MAX_ID)
    eps: float = Field(ge=0.0, le=1.0)


class MinimalBody(Strict):
    image: ImageBody
    target: int = Field(ge=0, le=MAX_ID)


def edit_lists(edits: dict[str, list[Edit]]) -> dict[str, list[tuple[int, float]]]:
    return {label: [(e.feature, e.scale) for e in items] for label, items in edits.items()}


def page_html() -> str:
    return resources.files("shortcutlab.explore").joinpath("page.html").read_text("utf-8")


def create_app(explorer: Explorer) -> Any:
    """The ASGI app serving the page and its JSON API for ``explorer``."""
    app = FastAPI(title="shortcutlab explorer", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"error": f"a request body is at most {MAX_BODY} bytes"},
                                status_code=400)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe_validation(exc.errors())}, status_code=400)

    @app.exception_handler(ShortcutlabError)
    async def refused(_: Request, exc: ShortcutlabError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A fault of ours, not of the request: say what, never how (no traceback).
        return JSONResponse({"error": f"the explorer failed on this request "
                                      f"({type(exc).__name__})"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return explorer.info()

    @app.post("/api/sample")
    def sample(body: SampleBody) -> dict[str, Any]:
        return explorer.sample(body.split, body.label, body.index, body.seed)

    @app.post("/api/analyze")
    def analyze(body: AnalyzeBody) -> dict[str, Any]:
        return explorer.analyze(body.image.spec(), body.target, edit_lists(body.edits))

    @app.post("/api/predict")
    def predict(body: PredictBody) -> dict[str, Any]:
        x, _, _ = explorer.image(body.image.spec())
        return {"models": explorer.predict(x, edit_lists(body.edits))}

    @app.post("/api/attack")
    def attack(body: AttackBody) -> dict[str, Any]:
        x, _, _ = explorer.image(body.image.spec())
        return explorer.attack(x, body.model, body.target, body.eps)

    @app.post("/api/minimal-epsilon")
    def minimal(body: MinimalBody) -> dict[str, Any]:
        x, _, _ = explorer.image(body.image.spec())
        return {"target": body.target, "confidence": explorer.confidence,
                "precision": explorer.precision,
                "models": explorer.minimal_epsilons(x, body.target)}

    return app


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """pydantic's errors as one line: ``image.gray: List should have at least 784 items``."""
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


class BackgroundServer:
    """The app served by uvicorn on a thread of this process (for screenshots, tests and
    benchmarks); ``port=0`` picks a free port. Use it as a context manager."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: Any = None
        self._thread: Any = None

    def __enter__(self) -> BackgroundServer:
        import socket
        import threading
        import time

        import uvicorn

        if self.port == 0:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                self.port = probe.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=self.port,
                                                     log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ShortcutlabError(f"the explorer did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
