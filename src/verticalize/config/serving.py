"""The `export:`, `registry:` and `serve:` sections: what leaves the run folder and how
it is served."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from verticalize.config.base import Section


class CardConfig(Section):
    """What the model card says beyond what the run measured (X1)."""

    intended_use: str | None = Field(
        None,
        description="Who should use the model for what. Default: a sentence from task + domain.",
    )
    limitations: list[str] = Field([], description="Known limits, one sentence each.")
    license: str | None = Field(None, description="Licence of the fine-tuned weights.")


class ExportConfig(Section):
    """`verticalize export`: merged Hugging Face folder + card; ONNX + INT8 (X1, X2)."""

    onnx: bool = Field(True, description="Write model.onnx (classification).")
    quantize: bool = Field(True, description="INT8 dynamic quantization with ONNX Runtime.")
    metric: str | None = Field(
        None, description="Accuracy measure for the publish gate. Default: the task's main metric."
    )
    max_metric_drop: float = Field(
        0.02,
        ge=0,
        description="Refuse to publish when the quantized model's metric on the test split is "
        "lower than the original's by more than this (absolute, e.g. 0.02 = 2 points).",
    )
    latency_examples: int = Field(
        64, ge=1, description="Test texts timed one at a time for the latency ratio."
    )
    card: CardConfig = CardConfig()


class RegistryConfig(Section):
    """MLflow model registry (S6)."""

    enabled: bool = Field(True, description="`verticalize run` registers each run's model.")
    tracking_uri: str | None = Field(
        None,
        description="Any MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<runs folder>/mlflow.db.",
    )
    model_name: str | None = Field(None, description="Registered model name. Default: `name`.")
    metric: str | None = Field(
        None, description="Promotion metric. Default: the task's main metric."
    )
    margin: float = Field(
        0.03,
        ge=0,
        description="Promote the challenger only if it beats the champion by this much "
        "(absolute, e.g. 0.03 = +3 points of macro-F1) on the same test set.",
    )


class AbConfig(Section):
    """Weighted routing between champion and challenger (S7)."""

    challenger: str | None = Field(
        None, description="Second model: a run folder or models:/name@alias. None = no A/B."
    )
    challenger_weight: float = Field(
        0.0, ge=0, le=1, description="Share of users routed to the challenger (e.g. 0.1 canary)."
    )
    user_header: str = Field("x-user-id", description="Requests with the same value stick.")


class ServeConfig(Section):
    """`verticalize serve` (S1-S5, S7, S8)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="onnx = the exported INT8 model (classification); auto = onnx when the "
        "export published one (it passed export.max_metric_drop), else torch.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="Intra-op threads of the model (torch and ONNX Runtime). 0 = one per "
        "core up to 8, less one core on a machine with 2 to 4 cores (the HTTP side needs it).",
    )
    max_batch_size: int = Field(32, ge=1, description="Requests merged into one forward pass.")
    max_batch_tokens: int = Field(
        1024,
        ge=0,
        description="Cap on a batch's padded tokens (texts x the longest), which bounds how "
        "long a batch holds the model (a request arriving meanwhile waits); 0 = no cap.",
    )
    length_buckets: list[PositiveInt] | None = Field(
        None,
        description="Token-length edges: a batch takes requests of one bucket only, so one "
        "long text does not pad a batch of short ones. None = by runtime: onnx one bucket per "
        "token count (its passes have no fixed cost to share, so any padding is a loss), torch "
        "[8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384] (a pass costs ~64 tokens' worth). "
        "[] = one bucket.",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a batch waits to fill. 0: a batch is what queued while the "
        "last one ran (under load that fills it; measured no slower than 5 ms).",
    )
    max_queue: int = Field(256, ge=1, description="Queued requests per model; more get 503.")
    api_keys_file: str | None = Field(
        None,
        description="Salted key hashes (`verticalize keys add`). None and no "
        "$VERTICALIZE_API_KEYS = no authentication (local use only).",
    )
    rate_limit_per_minute: int = Field(600, ge=0, description="Per API key; 0 = no limit.")
    allow_cidrs: list[str] = Field(
        ["0.0.0.0/0", "::/0"], description="Client IP allow-list, e.g. [10.0.0.0/8]."
    )
    max_body_bytes: int = Field(65536, ge=1024, description="Larger request bodies get 413.")
    max_input_tokens: int = Field(512, ge=1, description="Longer inputs get 400.")
    max_new_tokens: int = Field(256, ge=1, description="Cap on generated tokens per request.")
    max_texts: int = Field(
        64, ge=1, description="Texts per /v1/classify, /v1/ner, embeddings call."
    )
    audit_log: str | None = Field(None, description="Default: <run>/serve/audit.log.")
    audit_rotate_bytes: int = Field(10_000_000, ge=1024)
    audit_backups: int = Field(10, ge=1)
    feedback_dir: str | None = Field(None, description="Default: <run>/serve/feedback.")
    slow_ms: float = Field(200.0, gt=0, description="Latency above which feedback counts as slow.")
    reload_interval_s: float = Field(
        10.0, ge=0, description="Poll the registry alias for a new version; 0 = off."
    )
    ab: AbConfig = AbConfig()


class ServeOnlyConfig(Section):
    """A YAML for `verticalize serve --config` alone: only the serve: section."""

    serve: ServeConfig = ServeConfig()
