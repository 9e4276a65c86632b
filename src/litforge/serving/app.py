"""The HTTP app of a loaded `Predictor`: `POST /predict` (a list in, a list out, dynamically batched),
`GET /health`, `GET /metadata`, `GET /stats`, and OpenAPI docs at /docs. A bad request gets a 422 naming
the bad field and what is valid (413 for a body over `max_body_mb`); the server keeps serving."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from litforge.serving.batching import Batcher
from litforge.serving.predictor import Predictor
from litforge.serving.schemas import REQUESTS, PredictResponse, parse_body
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

MULTIPART = {
    "type": "object",
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "top_k": {"type": "integer", "minimum": 1},
    },
    "required": ["files"],
}


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_wait_ms: float = 5
    max_body_mb: float = 16
    max_items: int = 256

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ServeSettings:
        """The app's keys of `serve.*` (others, such as host and port, are the server's), checked."""
        values = dict(values or {})
        kept = {key: values[key] for key in cls.__dataclass_fields__ if values.get(key) is not None}
        for key, value in kept.items():
            wrong = isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            if wrong or (value == 0 and key != "max_wait_ms"):
                zero = " (0: no batching)" if key == "max_wait_ms" else ""
                raise UserError(f"serve.{key}={value!r}: give a positive number{zero}")
        for key in ("max_batch_size", "max_items"):
            if key in kept and not isinstance(kept[key], int):
                raise UserError(f"serve.{key}={kept[key]!r}: give a whole number")
        return cls(**kept)


def _image_bytes(text: str, where: str) -> bytes:
    """A base64 string (or data: URL) as bytes."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise UserError(f"{where}: not base64 ({err}); give each image file base64-encoded") from err


async def _read_upload(request: Request, predictor: Predictor, settings: ServeSettings) -> tuple[list, int | None]:
    """A multipart upload's image files (JSON bodies are JSONPredict's, which also checks the size)."""
    if predictor.input_kind != "image":
        raise UserError(f"multipart uploads are for image models; this {predictor.task} model takes JSON {{...}}")
    return await _read_form(request, settings)


def _json_items(body: bytes, predictor: Predictor) -> tuple[list, int | None]:
    parsed = parse_body(predictor.input_kind, body)
    items = getattr(parsed, predictor.field)
    if predictor.input_kind == "image":
        items = [_image_bytes(text, f"images[{i}]") for i, text in enumerate(items)]
    return items, parsed.top_k


async def _answer(
    items: list, top_k: int | None, predictor: Predictor, batcher: Batcher, settings: ServeSettings
) -> list:
    if len(items) > settings.max_items:
        raise UserError(
            f"{predictor.field}: {len(items)} items, over serve.max_items={settings.max_items}; "
            "send them in several requests"
        )
    predictor.validate(items)
    return await batcher.submit(items, top_k)


async def _read_form(request: Request, settings: ServeSettings) -> tuple[list, int | None]:
    from starlette.exceptions import HTTPException

    try:
        form = await request.form(max_files=settings.max_items, max_fields=16)
    except HTTPException as err:
        # starlette's 400 for too many files or fields, or a malformed body
        limit = f"at most serve.max_items={settings.max_items} " if "files" in str(err.detail) else ""
        raise UserError(
            f"files: {str(err.detail).rstrip('.')}; upload {limit}image files as form field `files` "
            "(and top_k) in multipart/form-data, or send them in several requests"
        ) from err
    files = form.getlist("files")
    if not files or any(isinstance(f, str) for f in files):
        raise UserError("files: upload one or more image files as form field `files` (multipart/form-data)")
    top_k = form.get("top_k")
    if top_k is not None and (not str(top_k).isdigit() or int(top_k) < 1):
        raise UserError(f"top_k={top_k!r}: give a positive whole number, or leave it out for every class")
    return [await f.read() for f in files], None if top_k is None else int(top_k)


class BodyTooLarge(Exception):
    def __init__(self, size: int, settings: ServeSettings) -> None:
        super().__init__(
            f"body: {size / 1024 / 1024:.1f} MB, over serve.max_body_mb={settings.max_body_mb}; send fewer or "
            "smaller inputs per request (or start the server with a larger serve.max_body_mb)"
        )


def create_app(predictor: Predictor, settings: ServeSettings | Mapping[str, Any] | None = None) -> FastAPI:
    """The app serving `predictor`; `settings` are ServeSettings or the `serve.*` config."""
    if not isinstance(settings, ServeSettings):
        settings = ServeSettings.from_mapping(settings)
    batcher = Batcher(predictor.predict, settings.max_batch_size, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title=f"litforge {predictor.task}",
        description=f"Predictions of {predictor.path.name} ({predictor.task}); records as litforge.predict writes.",
        lifespan=lifespan,
    )
    app.state.predictor, app.state.batcher, app.state.settings = predictor, batcher, settings

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, err: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=413)

    @app.exception_handler(Exception)
    async def crash(request: Request, err: Exception) -> JSONResponse:
        log.exception("POST %s failed", request.url.path)
        return JSONResponse({"detail": _internal_error(err)}, 500)

    body_schema = REQUESTS[predictor.input_kind].model_json_schema()
    content = {"application/json": {"schema": body_schema}}
    if predictor.input_kind == "image":
        content["multipart/form-data"] = {"schema": MULTIPART}

    @app.post(
        "/predict",
        response_model=PredictResponse,
        openapi_extra={"requestBody": {"required": True, "content": content}},
        summary=f"predict a list of {predictor.field}",
    )
    async def predict(request: Request) -> JSONResponse:
        # multipart uploads: JSON bodies are answered by JSONPredict before they reach FastAPI
        items, top_k = await _read_upload(request, predictor, settings)
        # records are plain JSON values already: answered as they are, without FastAPI re-validating
        # them against the response model, which stays for /docs
        return JSONResponse({"predictions": await _answer(items, top_k, predictor, batcher, settings)})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "task": predictor.task}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {**predictor.metadata(), "serve": asdict(settings), "batching": batcher.enabled}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """Requests answered so far and the forward passes they took (fewer with batching)."""
        return {"requests": batcher.requests, "forward_passes": predictor.forward_passes, "items": predictor.items}

    app.add_middleware(JSONPredict, predictor=predictor, batcher=batcher, settings=settings)
    return app


def _internal_error(err: Exception) -> str:
    return f"internal error ({type(err).__name__}: {err}); see the server log"


class JSONPredict:
    """`POST /predict` with a JSON body, answered at the ASGI level: the same checks, records and
    errors as the FastAPI route, without its routing, request object and exception middleware, which
    cost a single-item request several times what its share of a batched forward pass does. Every
    other request (multipart uploads, /docs, /metadata, ...) goes on to the FastAPI app."""

    def __init__(self, app: Any, predictor: Predictor, batcher: Batcher, settings: ServeSettings) -> None:
        self.app, self.predictor, self.batcher, self.settings = app, predictor, batcher, settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.settings.max_body_mb * 1024 * 1024:
                raise BodyTooLarge(int(declared), self.settings)
            if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
                await self.app(scope, receive, send)
                return
            items, top_k = _json_items(await self._body(receive), self.predictor)
            records = await _answer(items, top_k, self.predictor, self.batcher, self.settings)
            response = JSONResponse({"predictions": records})
        except UserError as err:
            response = JSONResponse({"detail": str(err)}, 422)
        except BodyTooLarge as err:
            response = JSONResponse({"detail": str(err)}, 413)
        except Exception as err:
            log.exception("POST /predict failed")
            response = JSONResponse({"detail": _internal_error(err)}, 500)
        await response(scope, receive, send)

    async def _body(self, receive: Any) -> bytes:
        """The request body, refused (BodyTooLarge) as soon as it is read past max_body_mb."""
        limit = int(self.settings.max_body_mb * 1024 * 1024)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise UserError("body: the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(size, self.settings)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
