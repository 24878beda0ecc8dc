"""Request and response bodies of the OpenAI-compatible routes (chat, completions, embeddings,
models) and of the task routes. Unknown fields are ignored, as OpenAI does; fields that would
change the answer but are not supported are refused with a 400 by `unsupported`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SEED = Field(None, ge=0, le=2**63 - 1)
STOP = Field(None, description="Up to 4 strings; the text ends before the first one.")


class Lenient(BaseModel):
    """Unknown fields are ignored (as OpenAI does); known ones must have their JSON type."""

    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(Lenient):
    type: str = Field(description='Only "text" parts are supported.')
    text: str | None = None


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(Lenient):
    include_usage: bool = False


class Sampled(Lenient):
    """Fields chat and completions share."""

    model: str = Field("", description="A served version (GET /v1/models) or any name.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(1, ge=1, le=128)
    stop: str | list[str] | None = STOP
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: int | None = SEED
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None


class ChatCompletionRequest(Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(Sampled):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool | None = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None


class EmbeddingRequest(Lenient):
    input: str | list[str]
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class TextsRequest(Lenient):
    """/v1/classify and /v1/ner: one text or a list of texts."""

    input: str | list[str] = Field(description="A text or a list of texts (serve.max_texts).")
    model: str = ""


class FeedbackRequest(Lenient):
    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (good).")
    request_id: str | None = Field(
        None, description="The x-request-id of the answer being rated (recent answers only)."
    )
    index: int | None = Field(None, ge=0, description="Which text of a batch request.")
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
    """The first set option that would change the answer but is not supported, or None."""
    checks = {
        "n": lambda v: v not in (None, 1),
        "presence_penalty": lambda v: v not in (None, 0),
        "frequency_penalty": lambda v: v not in (None, 0),
        "logit_bias": bool,
        "logprobs": lambda v: v not in (None, False, 0),
        "top_logprobs": lambda v: v not in (None, 0),
        "tools": bool,
        "functions": bool,
        "tool_choice": lambda v: v not in (None, "none", "auto"),
        "response_format": lambda v: bool(v) and v.get("type") != "text",
        "echo": bool,
        "suffix": bool,
        "best_of": lambda v: v not in (None, 1),
    }
    for name, is_set in checks.items():
        if name in type(req).model_fields and is_set(getattr(req, name)):
            return name
    return None
