"""The request and response bodies of `POST /predict`, one request model per input kind (for /docs
and for checking bodies), and how a body's mistakes are told: the field, and what is valid."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from litforge.utils.errors import UserError

TOP_K = Field(None, ge=1, description="classification: the k most probable classes; null: every class")


class ImagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(description="image files (PNG, JPEG, ...), each base64-encoded (a data: URL too)")
    top_k: int | None = TOP_K


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str | list[str] | dict[str, str]] = Field(
        description='texts; NER also lists of words; a text-pair classifier {"text": ..., "text_pair": ...}'
    )
    top_k: int | None = TOP_K


class RowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(description="{column: value} per row, null for a missing value")
    top_k: int | None = TOP_K


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description="one record per input, as litforge.predict writes them")


REQUESTS: dict[str, type[BaseModel]] = {"image": ImagesRequest, "text": TextsRequest, "rows": RowsRequest}
EXAMPLES = {
    "image": '{"images": ["<base64 of a PNG>"], "top_k": 3}',
    "text": '{"texts": ["a text"], "top_k": 2}',
    "rows": '{"rows": [{"<column>": 1.5}]}',
}


def parse_body(kind: str, body: bytes) -> BaseModel:
    """The JSON body as the input kind's request, or a UserError naming the first bad field."""
    try:
        return REQUESTS[kind].model_validate_json(body or b"null")
    except ValidationError as err:
        errors = err.errors(include_url=False)
        # an unknown field first: its error explains the others (a misspelt field is also a missing one)
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        # the field and list positions; a union's member names (texts[0].str) say nothing to a client
        loc = error["loc"][:1] + tuple(part for part in error["loc"][1:] if isinstance(part, int))
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        fields = ", ".join(REQUESTS[kind].model_fields)
        raise UserError(
            f"{where or 'body'}: {error['msg']}. This model takes a JSON body like {EXAMPLES[kind]} (fields: {fields})"
            + (", or multipart/form-data with image files as `files`." if kind == "image" else ".")
        ) from err
