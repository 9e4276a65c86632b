"""The HTTP app in-process: for every task the records litforge.predict writes, bad requests answered
422 with the field and what is valid (the server serving on), and concurrent requests batched."""

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from litforge.serving.app import create_app
from litforge.serving.predictor import Predictor
from tests.serving.models import TRAIN, png_bytes, same_records, sample_inputs

TASKS = sorted(TRAIN)
FIELDS = {"image_classification": "images", "regression": "rows", "tabular_classification": "rows"}


def body(task: str, items: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON body of `items` (default: the task's sample inputs), images base64-encoded."""
    items = sample_inputs(task) if items is None else items
    if task == "image_classification":
        items = [base64.b64encode(item).decode() if isinstance(item, bytes) else item for item in items]
    return {FIELDS.get(task, "texts"): items, **extra}


@pytest.fixture(scope="module")
def client_of(checkpoint_of: Callable[[str], Path]) -> Iterator[Callable[..., TestClient]]:
    clients: dict[tuple, TestClient] = {}

    def client(task: str, **settings: Any) -> TestClient:
        key = (task, *sorted(settings.items()))
        if key not in clients:
            app = create_app(Predictor.from_checkpoint(checkpoint_of(task)), settings)
            clients[key] = TestClient(app).__enter__()
        return clients[key]

    yield client
    for opened in clients.values():
        opened.__exit__(None, None, None)


@pytest.mark.parametrize("task", TASKS)
def test_predict_answers_the_records_of_litforge_predict(
    task: str, client_of: Callable[..., TestClient], expected_of: Callable[..., list[dict[str, Any]]]
) -> None:
    answer = client_of(task).post("/predict", json=body(task))
    assert answer.status_code == 200, answer.text
    same_records(answer.json()["predictions"], expected_of(task))
    if task != "regression":
        answer = client_of(task).post("/predict", json=body(task, top_k=1))
        same_records(answer.json()["predictions"], expected_of(task, 1))


def test_images_also_come_as_multipart_uploads(
    client_of: Callable[..., TestClient], expected_of: Callable[..., list[dict[str, Any]]]
) -> None:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(sample_inputs("image_classification"))]
    answer = client_of("image_classification").post("/predict", files=files, data={"top_k": "1"})
    assert answer.status_code == 200, answer.text
    same_records(answer.json()["predictions"], expected_of("image_classification", 1))
    # an upload to a model of texts is told what it takes
    text = client_of("text_classification").post("/predict", files=files)
    assert text.status_code == 422 and "multipart uploads are for image models" in text.json()["detail"]


BAD_REQUESTS = [
    ("image_classification", {"images": ["%%%"]}, r"images[0]: not base64"),
    ("image_classification", body("image_classification", [base64.b64encode(b"GIF89a?").decode()]), "images[0]: not a"),
    ("image_classification", {"image": []}, "image: Extra inputs are not permitted"),
    ("text_classification", {"texts": ["good", ""]}, "texts[1] is an empty text: give a non-empty string"),
    ("text_classification", {"texts": "good"}, "texts: Input should be a valid array"),
    ("text_classification", {"texts": ["good"], "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
    ("token_classification", {"texts": ["   "]}, "texts[0]: give a text with at least one word"),
    ("masked_lm", {"texts": ["no mask here"]}, "texts[0]: 'no mask here' has no [MASK]"),
    ("regression", {"rows": [{"rooms": 1, "area": 40}]}, "rows[0] lacks the column(s) ['town']"),
    ("regression", {"rows": [{"rooms": 1, "area": "big", "town": "town0"}]}, "rows[0] holds 'big'"),
    ("tabular_classification", {"rows": [[1, 2, "N"]]}, "rows[0]: Input should be an object"),
    ("tabular_classification", {"rows": []}, "rows: give a non-empty list"),
    ("tabular_classification", None, "body: Invalid JSON"),
]


@pytest.mark.parametrize(("task", "sent", "message"), BAD_REQUESTS)
def test_bad_requests_get_422_naming_the_field_and_the_server_serves_on(
    task: str, sent: dict[str, Any] | None, message: str, client_of: Callable[..., TestClient]
) -> None:
    client = client_of(task)
    answer = client.post("/predict", json=sent) if sent is not None else client.post("/predict", content=b"{rows")
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert client.get("/health").json() == {"status": "ok", "task": task}
    assert client.post("/predict", json=body(task)).status_code == 200


def test_limits_on_items_and_body_size_are_told(client_of: Callable[..., TestClient]) -> None:
    client = client_of("image_classification", max_items=3, max_body_mb=0.01)
    answer = client.post("/predict", json=body("image_classification", sample_inputs("image_classification") * 2))
    assert answer.status_code == 422 and "images: 4 items, over serve.max_items=3" in answer.json()["detail"]
    answer = client.post("/predict", json=body("image_classification", [png_bytes(0, (80, 80))]))
    assert answer.status_code == 413 and "over serve.max_body_mb=0.01" in answer.json()["detail"]
    answer = client.post("/predict", files=[("files", ("big.png", png_bytes(0, (80, 80))))])
    assert answer.status_code == 413
    uploads = [("files", (f"{i}.png", png_bytes(i, (4, 4)))) for i in range(5)]
    answer = client.post("/predict", files=uploads)
    expected = "upload at most serve.max_items=3 image files as form field `files`"
    assert answer.status_code == 422 and expected in answer.json()["detail"], answer.text
    assert client.get("/health").status_code == 200


def test_metadata_stats_and_docs(client_of: Callable[..., TestClient]) -> None:
    client = client_of("masked_lm")
    meta = client.get("/metadata").json()
    assert meta["task"] == "masked_lm" and meta["input"]["mask_token"] == "[MASK]" and meta["batching"] is True
    assert meta["serve"] == {"max_batch_size": 32, "max_wait_ms": 5, "max_body_mb": 16, "max_items": 256}
    schema = client.get("/openapi.json").json()
    request = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(request["properties"]) == {"texts", "top_k"}
    assert client.get("/docs").status_code == 200
    assert set(client.get("/stats").json()) == {"requests", "forward_passes", "items"}


async def _concurrently(app: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))


@pytest.mark.parametrize("wait_ms", [20, 0])
def test_concurrent_requests_share_forward_passes_unless_batching_is_off(
    wait_ms: int, checkpoint_of: Callable[[str], Path]
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of("text_classification"))
    app = create_app(predictor, {"max_batch_size": 32, "max_wait_ms": wait_ms})
    texts = [f"text number {i} was good" for i in range(16)]
    # every other request asks for one label only: it is batched with its own kind
    bodies = [{"texts": [text], **({"top_k": 1} if i % 2 else {})} for i, text in enumerate(texts)]
    answers = asyncio.run(_concurrently(app, bodies))
    alone = [predictor.predict([text], top_k=1 if i % 2 else None) for i, text in enumerate(texts)]
    for answer, expected in zip(answers, alone, strict=True):
        assert answer.status_code == 200
        same_records(answer.json()["predictions"], expected, ids=True)
    passes = predictor.forward_passes - len(texts)
    if wait_ms:
        assert passes < len(texts) / 2
    else:
        assert passes == len(texts)


def test_a_bad_request_batched_with_good_ones_fails_alone(checkpoint_of: Callable[[str], Path]) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of("regression"))
    app = create_app(predictor, {"max_wait_ms": 50})
    good = sample_inputs("regression")
    bad = {"rows": [{"rooms": "many", "area": 50, "town": "town1"}]}
    answers = asyncio.run(_concurrently(app, [{"rows": good}, bad, {"rows": good[:1]}]))
    assert [a.status_code for a in answers] == [200, 422, 200]
    same_records(answers[0].json()["predictions"], predictor.predict(good), ids=True)
    assert answers[2].json()["predictions"][0]["id"] == "0"


def test_a_request_that_finds_the_model_idle_does_not_wait_for_others(checkpoint_of: Callable[[str], Path]) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of("text_classification"))
    # a wait of 5 s would show in every answer if a lone request waited it out
    app = create_app(predictor, {"max_wait_ms": 5000})
    started = time.perf_counter()
    (answer,) = asyncio.run(_concurrently(app, [{"texts": ["a lone text"]}]))
    assert answer.status_code == 200 and time.perf_counter() - started < 2.5
    # those that come while its pass runs still share the next one
    answers = asyncio.run(_concurrently(app, [{"texts": [f"text {i}"]} for i in range(12)]))
    assert all(a.status_code == 200 for a in answers)
    assert predictor.forward_passes - 1 < 12
