"""Request and response bodies of the OpenAI-compatible routes (chat, completions, embeddings,
models) and of the task routes. Unknown fields are ignored, as OpenAI does; fields that would
change the answer but are not supported are refused with a 400 by `unsupported`.

The JSON schema of a request says what the server accepts, not only what parses: an option
served at one value lists that value (`Served`), texts must not be blank, lists not empty.
The server checks those itself and answers a 400 that names the field (not pydantic's 422),
so the schema constraints here are declared with WithJsonSchema, not enforced by pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# a text the server works on has a non-blank character (Python's \s is str.isspace)
NOT_BLANK = r"\S"
STOP = Field(None, description="Up to 4 strings; the text ends before the first one.")
# more than 4 stop strings get a 400 naming the limit (openai_api._gen_request)
STOPS = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            {"type": "null"},
        ]
    }
)


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer includes 3.0: take it as 3 (strict mode refuses floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def whole(**bounds: int) -> Any:
    """An integer field's type: ints, or floats without a fraction; `bounds` are ge / le."""
    return Annotated[int, Field(**bounds), BeforeValidator(_whole_number)]


@dataclass(frozen=True)
class Served:
    """Marks an OpenAI option this server takes at some values only: `schema` (the field's
    JSON schema) lists them, `refused(value)` is true for the others, which get a 400."""

    schema: dict
    refused: Callable[[Any], bool]

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict:
        return dict(self.schema)


def only(*values: Any) -> Served:
    """Served at exactly these JSON values (None is null)."""
    return Served({"enum": list(values)}, lambda v: v not in values)


NONE_OR_EMPTY = Served({"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}, bool)


def texts_schema(item: dict) -> WithJsonSchema:
    """One text or a non-empty list of texts, each matching `item` (the app adds the
    list's maxItems, serve.max_texts)."""
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]})


TEXTS = texts_schema({"type": "string", "pattern": NOT_BLANK})


class Lenient(BaseModel):
    """Unknown fields are ignored (as OpenAI does); known ones must have their JSON type."""

    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(Lenient):
    type: str = Field(description='Only "text" parts are supported.')
    text: str | None = None


# the schema of a content part: the server renders text parts only, others get a 400
TEXT_PART = WithJsonSchema(
    {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
)


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart, TEXT_PART]] | None = None
    name: str | None = None


class StreamOptions(Lenient):
    include_usage: bool = False


class Sampled(Lenient):
    """Fields chat and completions share."""

    model: str = Field("", description="A served version (GET /v1/models) or any name.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: Annotated[whole(ge=1, le=128) | None, only(1, None)] = 1
    stop: Annotated[str | list[str] | None, STOPS] = STOP
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # 2**53 - 1: the largest integer every JSON parser reads exactly (RFC 7493)
    seed: whole(ge=0, le=2**53 - 1) | None = None
    user: str | None = None
    presence_penalty: Annotated[float | None, only(0, None)] = Field(None, ge=-2, le=2)
    frequency_penalty: Annotated[float | None, only(0, None)] = Field(None, ge=-2, le=2)
    logit_bias: Annotated[
        dict[str, float] | None,
        Served({"anyOf": [{"type": "null"}, {"type": "object", "maxProperties": 0}]}, bool),
    ] = None


class ChatCompletionRequest(Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: whole(ge=1) | None = None
    max_completion_tokens: whole(ge=1) | None = None
    logprobs: Annotated[bool | None, only(False, None)] = None
    top_logprobs: Annotated[whole() | None, only(0, None)] = None
    tools: Annotated[list[Any] | None, NONE_OR_EMPTY] = None
    tool_choice: Annotated[Any, only("none", "auto", None)] = None
    functions: Annotated[list[Any] | None, NONE_OR_EMPTY] = None
    response_format: Annotated[
        dict[str, Any] | None,
        Served(
            {
                "anyOf": [
                    {"type": "null"},
                    {"type": "object", "maxProperties": 0},
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"const": "text"}},
                    },
                ]
            },
            lambda v: bool(v) and v.get("type") != "text",
        ),
    ] = None


class CompletionRequest(Sampled):
    model_config = ConfigDict(  # a stream carries one prompt
        json_schema_extra={
            "anyOf": [
                {"properties": {"stream": {"enum": [False, None]}}},
                {"properties": {"prompt": {"anyOf": [{"type": "string"}, {"maxItems": 1}]}}},
            ]
        }
    )

    prompt: Annotated[str | list[str], texts_schema({"type": "string", "minLength": 1})]
    max_tokens: whole(ge=1) | None = 16
    echo: Annotated[bool | None, only(False, None)] = False
    suffix: Annotated[str | None, only("", None)] = None
    logprobs: Annotated[whole() | None, only(0, None)] = None
    best_of: Annotated[whole() | None, only(1, None)] = None


class EmbeddingRequest(Lenient):
    input: Annotated[str | list[str], TEXTS] = Field(
        description="A text or a list of texts (serve.max_texts), none of them blank."
    )
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: whole(ge=1) | None = Field(
        None, description="Only the model's own embedding size; leave it out."
    )
    user: str | None = None


class TextsRequest(Lenient):
    """/v1/classify and /v1/ner: one text or a list of texts."""

    input: Annotated[str | list[str], TEXTS] = Field(
        description="A text or a list of texts (serve.max_texts), none of them blank."
    )
    model: str = ""


class FeedbackRequest(Lenient):
    model_config = ConfigDict(  # what is rated: an earlier answer, or a text given here
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["request_id"],
                    "properties": {"request_id": {"type": "string", "minLength": 1}},
                },
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
            ]
        }
    )

    rating: whole(ge=1, le=5) = Field(description="1 (bad) to 5 (good).")
    request_id: str | None = Field(
        None, description="The x-request-id of the answer being rated (recent answers only)."
    )
    index: whole(ge=0) | None = Field(None, description="Which text of a batch request.")
    text: str | None = Field(None, description="The input, when request_id is not given.")
    prediction: Any = Field(None, description="What the model answered (with text).")
    correction: Any = Field(None, description="The right answer: a label, spans or a text.")
    comment: str | None = Field(None, max_length=4000)


class ReloadRequest(Lenient):
    role: Literal["champion", "challenger"] = "champion"
    target: str | None = Field(
        None, description="A run/model folder or models:/name@alias; default: the one served."
    )
    force: bool = False


# ---------------------------------------------------------------- responses (for the schema)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "verticalize"
    task: str
    role: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ClassifyItem(BaseModel):
    """One text's answer. classification: label, score (its probability), probs; multilabel:
    labels over their thresholds, probs per label, label / score of the likeliest; regression:
    score (the predicted value) only."""

    index: int
    label: str | None = None
    score: float
    probs: dict[str, float] | None = None
    labels: list[str] | None = None


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[ClassifyItem]
    usage: Usage


class Entity(BaseModel):
    start: int
    end: int
    type: str
    text: str
    score: float


class NerItem(BaseModel):
    index: int
    entities: list[Entity]


class NerResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[NerItem]
    usage: Usage


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Invalid request (malformed JSON, limits, unsupported option)."),
        (401, "Missing or invalid API key."),
        (403, "Client address not allowed, or not an admin key."),
        (404, "Unknown request id or route."),
        (413, "Request body too large."),
        (422, "Request body does not match the schema."),
        (429, "Rate limit reached (see Retry-After)."),
        (503, "Queue full or model reloading (see Retry-After)."),
    )
}


def unsupported(req: BaseModel) -> str | None:
    """The first option set to a value this server does not serve (see `Served`), or None."""
    for name, info in type(req).model_fields.items():
        for mark in info.metadata:
            if isinstance(mark, Served) and mark.refused(getattr(req, name)):
                return name
    return None
