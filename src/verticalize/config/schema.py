"""One pydantic schema for verticalize.yaml; sections are the pipeline's stages.

`load_config` turns every problem (unknown key, wrong type, missing file, a label outside
the label set) into one `ConfigError` naming the file, line, field, bad value and fix.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from verticalize.errors import ConfigError
from verticalize.plugins import get_task, task_names


class Section(BaseModel):
    """Strict base: unknown keys are errors, never silently ignored (P1)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


FORMATS = (
    "jsonl",
    "csv",
    "tsv",
    "lines",
    "parquet",
    "txt_folder",
    "labelstudio",
    "doccano",
    "conll",
)


CHAT_LAYOUTS = ("alpaca", "sharegpt", "messages")


class InstructionTemplate(Section):
    name: str = Field(description="Shown in label counts and the report (e.g. 'condition').")
    instruction: str = Field(description="The user turn, e.g. 'Which condition? {review}'.")
    output: str = Field(description="The assistant turn, e.g. '{condition}'.")
    system: str | None = None


class Source(Section):
    path: str = Field(
        description="File (or folder for txt_folder) relative to the YAML, or "
        "pkg:<module>/<file>[#<zip member>] for data shipped inside an installed package."
    )
    format: Literal[FORMATS] | None = Field(
        None,
        description="Inferred from the suffix when omitted; 'lines' = one text per line, "
        "'txt_folder' = one document per .txt file, 'labelstudio' = Label Studio JSON or "
        "JSON_MIN export, 'doccano' = Doccano JSONL (classification or [[start,end,TAG]] spans), "
        "'conll' = one token and its tag a line, a blank line between sentences (.conll, .bio).",
    )
    text: str = Field("text", description="Field holding the text.")
    label: str = Field("label", description="Field holding the label.")
    label_value: str | None = Field(
        None, description="Fixed label for every record of this source."
    )
    spans: str | None = Field(
        None, description="Field holding [[start, end, TAG]] character spans (sequence labels)."
    )
    fields: list[str] | None = Field(
        None, description="Other fields kept as record metadata; None = all of them."
    )
    item: str | None = Field(
        None, description="Field naming the item when several annotators label the same item."
    )
    annotator: str | None = Field(None, description="Field naming the annotator.")
    group: str | None = Field(
        None, description="Records sharing this field's value stay in one split (e.g. patient)."
    )
    sample: int | None = Field(None, gt=0, description="Keep a seeded random sample of N records.")
    encoding: str = "utf-8"
    chat: Literal[CHAT_LAYOUTS] | None = Field(
        None,
        description="generation: the record is a conversation — alpaca (instruction/input/"
        "output/system/history), sharegpt (conversations: [{from, value}]) or messages "
        "(OpenAI messages: [{role, content}]).",
    )
    templates: list[InstructionTemplate] | None = Field(
        None,
        description="generation: build one instruction record per template from each row's "
        "fields (Python format strings, e.g. '{review:.400}' keeps 400 characters).",
    )
    pretrain: bool = Field(
        False, description="generation: unlabelled domain text for continued pre-training."
    )
    tag_scheme: Literal["auto", "bio", "iob1", "bioes", "bmes"] = Field(
        "auto",
        description="conll: the file's tag scheme; auto = bmes if M- tags occur, bioes if E-/S-, "
        "else bio. Tags become character spans on load.",
    )


# ---------------------------------------------------------------- validation rules (D2)


class _RuleBase(Section):
    field: str = Field("text", description="text, label, or a metadata field of the record.")
    name: str | None = Field(None, description="Shown in quarantine.jsonl; default: the rule kind.")


class RequiredRule(_RuleBase):
    rule: Literal["required"]


class TypeRule(_RuleBase):
    rule: Literal["type"]
    type: Literal["int", "float", "bool", "str"]


class RegexRule(_RuleBase):
    rule: Literal["regex"]
    pattern: str = Field(description="Python regular expression the whole value must match.")


class DateRule(_RuleBase):
    rule: Literal["date"]
    format: str = Field(description="strptime format, e.g. '%Y-%m-%d' or '%B %d, %Y'.")


class RangeRule(_RuleBase):
    rule: Literal["range"]
    min: float | None = None
    max: float | None = None


class LabelInSetRule(_RuleBase):
    rule: Literal["label_in_set"]
    field: str = "label"


class LengthRule(_RuleBase):
    rule: Literal["length"]
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)


class ScriptRule(_RuleBase):
    rule: Literal["script"]
    script: Literal["han", "latin", "cyrillic", "arabic", "kana", "hangul"]
    min_share: float = Field(0.3, ge=0.0, le=1.0, description="Share of letters in the script.")


class GarbageRule(_RuleBase):
    rule: Literal["garbage"]
    max_repeat: int = Field(20, ge=2, description="Longest run of one repeated character.")
    max_control_share: float = Field(0.01, ge=0.0, le=1.0)
    max_mojibake_share: float = Field(0.02, ge=0.0, le=1.0)


Rule = Annotated[
    RequiredRule
    | TypeRule
    | RegexRule
    | DateRule
    | RangeRule
    | LabelInSetRule
    | LengthRule
    | ScriptRule
    | GarbageRule,
    Field(discriminator="rule"),
]


# ---------------------------------------------------------------- normalize / dedup / pii


class BoilerplateConfig(Section):
    enabled: bool = False
    min_docs: int = Field(5, ge=2, description="A line is boilerplate when this many documents…")
    min_share: float = Field(0.01, ge=0.0, le=1.0, description="…and this share of them repeat it.")
    max_line_chars: int = Field(300, ge=1, description="Longer lines are never boilerplate.")


class CleanConfig(Section):
    html: bool = True
    nfkc: bool = True
    lowercase: bool = False
    traditional_to_simplified: bool = Field(False, description="OpenCC t2s conversion.")
    numbers: bool = Field(
        False, description="Chinese numbers → digits ('100万' → '1000000'), '1,000' → '1000'."
    )
    boilerplate: BoilerplateConfig = BoilerplateConfig()
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, gt=0)


class NearDedupConfig(Section):
    enabled: bool = False
    threshold: float = Field(0.5, gt=0.0, le=1.0, description="Jaccard of character n-grams.")
    ngram: int = Field(3, ge=1, le=10, description="Character n-gram size (shingles).")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    action: Literal["drop", "group"] = Field(
        "drop", description="drop = keep one record per cluster; group = keep all in one split."
    )


class DedupConfig(Section):
    exact: bool = True
    near: NearDedupConfig = NearDedupConfig()


PII_KINDS = (
    "id_card",
    "mobile",
    "landline",
    "email",
    "bank_card",
    "ipv4",
    "passport",
    "cn_name",
    "en_name",
)


class PiiConfig(Section):
    enabled: bool = False
    kinds: list[Literal[PII_KINDS]] = list(PII_KINDS)
    action: Literal["mask", "redact", "hash", "pseudonym"] = "mask"
    fields: list[str] | None = Field(
        None, description="Metadata fields scanned besides text; None = every text field."
    )
    quasi_identifiers: list[str] = Field(
        [], description="Metadata fields for the k-anonymity check."
    )
    k_anonymity: int = Field(5, ge=1, description="Smallest acceptable equivalence class.")


class SegmentConfig(Section):
    enabled: bool = False
    user_dicts: list[str] = Field([], description="jieba user dictionaries (one term a line).")
    stop_words: str | None = Field(None, description="Stop-word file (one word a line).")


class AgreementConfig(Section):
    alpha_target: float = Field(0.85, ge=-1.0, le=1.0, description="Krippendorff's alpha goal.")
    item_threshold: float = Field(
        0.67,
        ge=0.0,
        le=1.0,
        description="Items whose share agreeing with the majority is lower go to review.",
    )
    review_share: float = Field(0.1, ge=0.0, le=1.0, description="Cross-review sample share.")


class BackTranslationConfig(Section):
    url: str = Field(
        description="Base URL of an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    )
    model: str = "default"
    pivot: str = Field("English", description="Language translated into and back from.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    timeout: float = Field(30.0, gt=0)


class AugmentConfig(Section):
    enabled: bool = False
    copies: int = Field(1, ge=1, le=20, description="Augmented copies per chosen train record.")
    share: float = Field(1.0, gt=0.0, le=1.0, description="Share of train records augmented.")
    ops: list[Literal["synonym", "insert", "delete", "swap", "back_translation"]] = [
        "synonym",
        "swap",
        "delete",
    ]
    rate: float = Field(0.1, gt=0.0, le=0.5, description="Share of words an op touches.")
    thesaurus: list[str] = Field([], description="Files: a word and its synonyms on each line.")
    protect: list[str] = Field(
        [], description="Term files never altered (plus segment.user_dicts)."
    )
    back_translation: BackTranslationConfig | None = None


class SplitConfig(Section):
    validation: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = True
    folds: int | None = Field(
        None, ge=2, le=20, description="Also assign train+validation records to k folds."
    )

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation + test = {self.validation + self.test:.2f} leaves under 10% for "
                "training; lower them (e.g. validation: 0.1, test: 0.2)"
            )
        return self


class RayConfig(Section):
    address: str | None = Field(None, description="None = start a local Ray; or ray://host:port.")
    num_cpus: int | None = Field(None, ge=1)


class DataConfig(Section):
    sources: list[Source] = Field(min_length=1)
    labels: list[str] | None = Field(None, description="The label set; inferred when omitted.")
    label_bins: dict[str, tuple[float, float]] | None = Field(
        None, description="Map a numeric label field to classes: {class: [low, high]} inclusive."
    )
    rules: list[Rule] = Field(
        default_factory=lambda: [GarbageRule(rule="garbage")],
        description="Validation rules; a record breaking one is quarantined with the rule.",
    )
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    pii: PiiConfig = PiiConfig()
    segment: SegmentConfig = SegmentConfig()
    agreement: AgreementConfig = AgreementConfig()
    augment: AugmentConfig = AugmentConfig()
    split: SplitConfig = SplitConfig()
    key_file: str | None = Field(
        None,
        description="Secret key for pseudonyms and encryption; must live outside the run folder. "
        "Created (mode 600) when missing.",
    )
    sensitive: list[Literal["train", "validation", "test", "quarantine"]] = Field(
        [], description="Outputs written AES-256-GCM encrypted as <name>.jsonl.enc."
    )
    engine: Literal["local", "ray"] = "local"
    ray: RayConfig = RayConfig()
    on_bad_record: Literal["quarantine", "error"] = "quarantine"


class FreezeConfig(Section):
    layers: int = Field(0, ge=0, description="Freeze the first N encoder layers.")
    embeddings: bool = True
    head_only: bool = Field(False, description="Train only the classification head.")


class LoraConfig(Section):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        None, description="None = PEFT's default for the model."
    )


class LayerReductionConfig(Section):
    keep: int = Field(6, ge=1, description="Transformer layers kept; the others are removed.")
    which: Literal["first", "spread"] = Field(
        "first", description="first = the lowest N layers; spread = N evenly spaced layers."
    )


class VirtualTokensConfig(Section):
    virtual_tokens: int = Field(20, ge=1, description="Trainable virtual tokens (PEFT).")
    init_text: str | None = Field(
        None, description="prompt tuning: initialise the virtual tokens from this text."
    )


METHODS = ("full", "freeze", "layer_reduction", "lora", "prompt_tuning", "prefix_tuning")


class ModelConfig(Section):
    base: str | None = Field(
        None,
        description="A bundled model name, a Hugging Face model folder, or a hub id (offline: "
        "cached). Default: all-MiniLM-L6-v2 (classification), SmolLM2-135M-Instruct (generation).",
    )
    method: Literal[METHODS] = "full"
    max_length: int = Field(128, gt=0, le=8192)
    freeze: FreezeConfig = FreezeConfig()
    lora: LoraConfig = LoraConfig()
    layer_reduction: LayerReductionConfig = LayerReductionConfig()
    prompt: VirtualTokensConfig = VirtualTokensConfig()


class GenerationConfig(Section):
    stages: list[Literal["continued_pretraining", "sft"]] = Field(
        ["sft"],
        min_length=1,
        description="Run in order: continued_pretraining on the `pretrain: true` sources, "
        "then sft on the conversations.",
    )
    packing: bool = Field(
        True, description="Pack several sequences into one row (no attention across them)."
    )
    block_size: int = Field(
        1024, ge=16, le=32768, description="Tokens per packed row (and per pre-training block)."
    )
    chat_template: str | None = Field(
        None,
        description="A Jinja chat template (text, or a .jinja file next to the YAML) for "
        "tokenizers without one; default: the tokenizer's own.",
    )
    pretrain_epochs: int = Field(1, ge=1)
    pretrain_lr: float | None = Field(None, gt=0, description="Default: train.lr.")
    incremental_from: str | None = Field(
        None,
        description="A previous run folder: start from its model/ and train only on records "
        "its training split did not have.",
    )
    max_new_tokens: int = Field(48, ge=1, le=4096)
    eval_generations: int = Field(
        100, ge=1, description="Test conversations generated for BLEU / ROUGE / exact match."
    )
    report_samples: int = Field(10, ge=0, description="Generations shown before vs after.")


class NerConfig(Section):
    scheme: Literal["bio", "bioes"] = Field(
        "bio", description="Tags the model predicts (whatever scheme the data came in)."
    )
    head: Literal["linear", "bilstm", "crf", "bilstm_crf"] = Field(
        "crf", description="linear, BiLSTM, CRF (Viterbi, no I-X after O) or BiLSTM-CRF (M4)."
    )
    fuse_with: Literal["linear", "bilstm"] | None = Field(
        None, description="A second emission head fused with the first (M4); none = off."
    )
    fusion: Literal["weighted", "gate"] = Field(
        "weighted",
        description="weighted = learned weighted sum of the two heads' scores; gate = a "
        "per-token attention gate over them.",
    )
    lstm_hidden: int = Field(256, ge=8, description="BiLSTM units per direction.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    head_lr: float | None = Field(
        1e-3, gt=0, description="Learning rate of the head (BiLSTM, CRF); None = train.lr."
    )


class EarlyStopping(Section):
    metric: str | None = Field(
        None,
        description="Default: macro_f1 (classification), loss (generation), entity_f1_micro (ner).",
    )
    patience: int = Field(5, ge=1, description="Evaluations without improvement before stopping.")


class DistributedConfig(Section):
    """How several processes share training (T7); the process count comes from the launcher
    (`verticalize train --nproc N`, torchrun, srun, a Kubernetes PyTorchJob), never from
    this file, so the same YAML runs on 1 or N processes."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp",
        description="ddp: every process holds the whole model. fsdp: parameters, gradients "
        "and AdamW states are sharded across the processes (PyTorch FSDP2, like ZeRO-3), one "
        "transformer block gathered at a time; checkpoints and model/ hold the full weights. "
        "Both run over gloo (CPU) or NCCL (GPU). deepspeed is refused: use fsdp.",
    )
    timeout_s: int = Field(1800, ge=10, description="Collective-operation timeout.")


class TrainConfig(Section):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="Decoupled L2 weight decay (AdamW).")
    l1: float = Field(0.0, ge=0, description="L1 penalty on trainable weights.")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    schedule: Literal["cosine", "linear", "step", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    step_size: int = Field(
        100, ge=1, description="step schedule: multiply LR by gamma every N steps"
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    eval_every: int | None = Field(None, ge=1, description="Optimizer steps; None = each epoch.")
    checkpoint_every: int | None = Field(None, ge=1, description="Steps; None = at each eval.")
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping: EarlyStopping = EarlyStopping()
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: much less memory, ~30% slower.",
    )
    tensorboard: bool = True
    mlflow: bool = Field(
        True, description="Track params, per-step metrics and artifacts with MLflow (T5)."
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI. Default: registry.tracking_uri, else "
        "$MLFLOW_TRACKING_URI, else sqlite:///<runs folder>/mlflow.db.",
    )
    mlflow_experiment: str | None = Field(None, description="Default: the project `name`.")
    memory_guard: Literal["refuse", "warn", "off"] = Field(
        "refuse",
        description="Before training, compare the plan's peak-memory estimate with the memory "
        "available: refuse (the default; `--ignore-memory-guard` forces), warn, or off.",
    )
    memory_limit_gb: float | None = Field(
        None, gt=0, description="Memory this run may use. Default: what is available now."
    )
    distributed: DistributedConfig = DistributedConfig()


# Fields that change how a run is watched or launched, not what it learns.
TRAIN_RUNTIME_FIELDS = {
    "tensorboard",
    "mlflow",
    "mlflow_uri",
    "mlflow_experiment",
    "memory_guard",
    "memory_limit_gb",
    "distributed",
}


class Target(Section):
    metric: str
    target: float
    direction: Literal["max", "min"] | None = Field(
        None, description="max = higher is better; default: min for latency/loss, else max."
    )


NOISE_KINDS = ("insert", "delete", "replace", "swap", "homophone", "similar_shape", "traditional")


class RobustnessConfig(Section):
    enabled: bool = False
    rate: float = Field(0.1, gt=0.0, le=1.0, description="Share of characters edited.")
    kinds: list[Literal[NOISE_KINDS]] | None = Field(
        None,
        description="Default: insert, delete, replace, swap; plus homophone, similar_shape, "
        "traditional for Chinese text.",
    )


class FgsmConfig(Section):
    enabled: bool = False
    epsilon: float = Field(
        0.05, ge=0.0, description="Step on the input embeddings, in units of their RMS value."
    )


class SubstitutionConfig(Section):
    enabled: bool = False
    max_words: int = Field(3, ge=1, description="Words an attack may replace per text.")
    candidates: int = Field(8, ge=1, description="Embedding neighbours tried per word.")
    n: int = Field(100, ge=1, description="Correctly classified test texts attacked.")


class AdversarialConfig(Section):
    fgsm: FgsmConfig = FgsmConfig()
    substitution: SubstitutionConfig = SubstitutionConfig()


class CvConfig(Section):
    enabled: bool = False
    epochs: int | None = Field(
        None, ge=1, description="Epochs per fold; default: train.epochs (fewer = faster)."
    )
    max_length: int | None = Field(
        None, gt=0, description="Tokens per text in the folds; default: model.max_length."
    )
    lr: float | None = Field(
        None, gt=0, description="Learning rate in the folds; default: train.lr."
    )


class EvalConfig(Section):
    targets: list[Target] = []
    baselines: list[Literal["tfidf_lr", "lightgbm", "feature_crf"]] | None = Field(
        None,
        description="Default: tfidf_lr + lightgbm (classification), feature_crf (ner), "
        "none (generation).",
    )
    tfidf_analyzer: Literal["auto", "word", "char", "jieba"] = Field(
        "auto",
        description="auto = jieba words for Chinese, words otherwise; char = character 1-3-grams.",
    )
    cv: CvConfig = Field(
        CvConfig(), description="k-fold cross-validation over data.split.folds (classification)."
    )
    robustness: RobustnessConfig = RobustnessConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    batch_size: int = Field(64, ge=1)


class SearchParam(Section):
    """One tuned field: a float / int range, or a list of choices (T8)."""

    type: Literal["float", "int", "categorical"] | None = Field(
        None, description="Default: categorical over `values` (or `choices`)."
    )
    low: float | None = Field(None, description="float / int: smallest value tried.")
    high: float | None = Field(None, description="float / int: largest value tried.")
    log: bool = Field(False, description="float / int: sample on a log scale (low > 0).")
    step: float | None = Field(
        None, gt=0, description="float / int: only low, low + step, … (int default: 1)."
    )
    choices: list[Any] | None = Field(None, description="categorical: the values tried.")
    values: list[Any] | None = Field(
        None,
        description="The grid sampler's points (float needs them; int and categorical "
        "default to every value); alone, a categorical choice for every sampler.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            allowed = list(cls.model_fields)
            for key in raw:
                if key not in allowed:
                    near = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f"did you mean '{near[0]}'? " if near else ""
                    raise ValueError(
                        f"unknown key '{key}' in a search space entry. Fix: {hint}"
                        f"use {', '.join(allowed)}, e.g. {{type: float, low: 1.0e-5, "
                        "high: 1.0e-3, log: true}"
                    )
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        kind = self.kind
        if kind == "categorical":
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError(
                    "low / high / log / step need type: float or int. Fix: add type: float "
                    "(or int), or drop them and list the candidates under choices:"
                )
            if not (self.choices or self.values):
                raise ValueError(
                    "a categorical entry needs a non-empty list. Fix: give choices: [a, b] "
                    "(or type: float / int with low and high)"
                )
            return self
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            raise ValueError(
                f"choices are for type: categorical, not type: {kind}. Fix: use values: "
                "(grid points) with a float / int range, or type: categorical"
            )
        if not ranged:
            if not self.values:
                raise ValueError(
                    f"type: {kind} needs low and high (or values: [...]). Fix: e.g. "
                    f"{{type: {kind}, low: 1, high: 3}}"
                )
        elif self.low is None or self.high is None:
            raise ValueError(f"type: {kind} needs both low and high. Fix: give the missing one")
        elif self.low >= self.high:
            raise ValueError(
                f"low ({self.low:g}) must be below high ({self.high:g}). Fix: swap them, or "
                "drop the field from the space to keep one value"
            )
        if self.log and (self.low is None or self.low <= 0):
            raise ValueError("log: true needs low > 0. Fix: raise low (e.g. 1.0e-6), or log: false")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined. Fix: drop one of them")
        if kind == "int":
            for name in ("low", "high", "step"):
                v = getattr(self, name)
                if v is not None and not float(v).is_integer():
                    raise ValueError(f"type: int needs a whole {name} (got {v:g}). Fix: e.g. 3")
            for v in self.values or []:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"type: int values must be whole numbers (got {v!r})")
        if kind == "float":
            for v in self.values or []:
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ValueError(f"type: float values must be numbers (got {v!r})")
        if ranged:
            outside = [v for v in self.values or [] if not self.low <= v <= self.high]
            if outside:
                raise ValueError(
                    f"values {outside} lie outside [low, high] = [{self.low:g}, {self.high:g}]. "
                    "Fix: widen the range or drop those values"
                )
        return self

    @property
    def kind(self) -> str:
        return self.type or "categorical"


class TuneConfig(Section):
    """`verticalize tune`: search over any config field (T8)."""

    sampler: Literal["grid", "random", "tpe"] = Field(
        "tpe", description="grid = every combination of `values`; random; tpe = Optuna's TPE."
    )
    trials: int = Field(8, ge=1, le=10000, description="Budget (grid: at most the grid size).")
    metric: str | None = Field(
        None,
        description="Scored on the VALIDATION split. Default: train.early_stopping.metric; "
        "another metric also replaces train.early_stopping.metric in the trials and best.yaml.",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Default: minimize for loss / latency metrics, else maximize."
    )
    space: dict[str, SearchParam] = Field(
        {},
        description="Dotted config field → its search range, e.g. "
        "train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}.",
    )


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
    runtime: Literal["torch", "onnx"] = Field(
        "torch", description="onnx = the exported INT8 model (classification)."
    )
    max_batch_size: int = Field(32, ge=1, description="Requests merged into one forward pass.")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill.")
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


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    domain: str = "general"
    task: str = Field(
        "classification",
        description="A task plugin's name: classification, ner, generation, multilabel, regression, or an installed plugin's.",
    )
    seed: int = 42
    run_dir: str | None = Field(None, description="Default: runs/<name> under the current folder.")
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    generation: GenerationConfig = GenerationConfig()
    ner: NerConfig = NerConfig()
    tune: TuneConfig = TuneConfig()
    export: ExportConfig = ExportConfig()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()

    # where the YAML lives; relative source paths are resolved against it
    source_file: Path | None = Field(None, exclude=True)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in task_names():
            raise ValueError(
                f"unknown task {value!r}; known tasks: {', '.join(task_names())} (or install a "
                "plugin that registers it in the verticalize.tasks entry-point group)"
            )
        return value

    @model_validator(mode="after")
    def _task_defaults(self) -> Config:
        plugin = get_task(self.task)
        if self.model.base is None:
            self.model.base = plugin.default_base
        if self.train.early_stopping.metric is None:
            self.train.early_stopping.metric = plugin.default_stop_metric
        if self.eval.baselines is None:
            self.eval.baselines = list(plugin.baselines)
        for i, name in enumerate(self.eval.baselines):
            if name not in plugin.baselines:
                raise BaselineError(("eval", "baselines", i), name, self.task, plugin.baselines)
        for i, src in enumerate(self.data.sources):
            kinds = [k for k in ("chat", "templates", "pretrain") if getattr(src, k)]
            if plugin.source_kinds and len(kinds) != 1:
                raise SourceKindError(("data", "sources", i), kinds, True, self.task)
            if not plugin.source_kinds and kinds:
                raise SourceKindError(("data", "sources", i, kinds[0]), kinds, False, self.task)
        if self.model.method not in plugin.methods:
            takers = [n for n in task_names() if self.model.method in get_task(n).methods]
            raise ValueError(
                f"model.method: {self.model.method} is available for task: "
                f"{' / '.join(takers)}. Fix: use {_or_list(plugin.methods)} for task: {self.task}"
            )
        if not plugin.augment and self.data.augment.enabled:
            raise ValueError(
                "data.augment: augmentation edits classification texts; it is not available "
                f"for task: {self.task}. Fix: set data.augment.enabled: false"
            )
        return self

    @model_validator(mode="after")
    def _labels_are_consistent(self) -> Config:
        plugin = get_task(self.task)
        ev = self.eval
        asked = {
            "cv": ev.cv.enabled,
            "robustness": ev.robustness.enabled,
            "attacks": ev.adversarial.fgsm.enabled or ev.adversarial.substitution.enabled,
        }
        switch = {
            "cv": "eval.cv.enabled",
            "robustness": "eval.robustness.enabled",
            "attacks": "eval.adversarial.fgsm.enabled / substitution.enabled",
        }
        for extra, on in asked.items():
            if on and not plugin.supports(extra):
                takers = [n for n in task_names() if get_task(n).supports(extra)]
                raise ValueError(
                    f"{extra} is available for task: {' / '.join(takers)}, not for task: "
                    f"{self.task}. Fix: set {switch[extra]}: false"
                )
        plugin.check_config(self)
        return self

    def task_section(self) -> Any:
        """The task plugin's own YAML section (TaskPlugin.section), or None."""
        plugin = get_task(self.task)
        return getattr(self, plugin.section[0]) if plugin.section else None


def _or_list(items) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def config_model(task: str) -> type[Config]:
    """The Config schema for `task`: Config plus the task plugin's own section, if any."""
    if task not in task_names():
        return Config
    plugin = get_task(task)
    if not plugin.section or plugin.section[0] in Config.model_fields:
        return Config
    return _with_section(task, *plugin.section)


@cache
def _with_section(task: str, name: str, schema: type[BaseModel]) -> type[Config]:
    return create_model("Config", __base__=Config, **{name: (schema, schema())})


def validate_config(raw: dict) -> Config:
    """A Config from a raw mapping (the task's section included); raises ValidationError."""
    task = raw.get("task", "classification")
    return config_model(task if isinstance(task, str) else "").model_validate(raw)


AGGREGATE_METRICS = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "weighted_precision",
    "weighted_recall",
)
LATENCY_METRICS = ("latency_ms_per_example", "ece")


class SourceKindError(ValueError):
    def __init__(self, loc: tuple, kinds: list[str], needed: bool, task: str):
        self.loc, self.value = loc, kinds
        if needed:
            msg = f"a {task} source needs exactly one of chat, templates, pretrain (got {kinds})"
            fix = (
                "add `chat: alpaca|sharegpt|messages` for conversations, `templates:` to build "
                "instructions from fields, or `pretrain: true` for unlabelled text"
            )
        else:
            msg = f"{kinds[0]} is for task: generation"
            fix = "remove it, or set task: generation"
        self.fix = fix
        super().__init__(msg)


class BaselineError(ValueError):
    def __init__(self, loc: tuple, value: str, task: str, allowed: tuple[str, ...]):
        self.loc, self.value = loc, value
        self.fix = f"use {list(allowed) or 'none'} for task: {task}, or remove eval.baselines"
        super().__init__(f"baseline {value!r} does not apply to task: {task}")


class LabelError(ValueError):
    def __init__(self, loc: tuple, value: str, labels: list[str]):
        self.loc, self.value, self.labels = loc, value, labels
        super().__init__(f"label {value!r} is not in the label set {labels}")


class MetricError(ValueError):
    def __init__(self, loc: tuple, value: str, known: list[str]):
        self.loc, self.value, self.known = loc, value, known
        super().__init__(f"unknown metric {value!r}")


def check_metric_name(name: str, labels: list[str] | None, loc: tuple) -> None:
    """Metric names are aggregate names or per-class `f1:<label>` / `precision:<label>` …"""
    if name in AGGREGATE_METRICS or name in LATENCY_METRICS:
        return
    kind, _, label = name.partition(":")
    if kind in ("f1", "precision", "recall") and label:
        if labels is not None and label not in labels:
            raise LabelError(loc, label, labels)
        return
    raise MetricError(loc, name, list(AGGREGATE_METRICS + LATENCY_METRICS) + ["f1:<label>"])


def yaml_dir(cfg: Config) -> Path | None:
    """The folder of the YAML the config came from (relative paths start there)."""
    return cfg.source_file.parent if cfg.source_file else None


def default_config_text(name: str = "my-domain-model") -> str:
    """The commented YAML `verticalize init` writes."""
    from importlib.resources import files

    text = (files("verticalize") / "templates" / "verticalize.yaml").read_text(encoding="utf-8")
    return text.replace("{{name}}", name)


# ---------------------------------------------------------------- loading + error messages


def _line_index(text: str) -> dict[tuple, int]:
    """Map every key / list-item path in the YAML to its 1-based line number."""
    index: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = path + (key.value,)
                index[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(index: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return None


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return [k for k in model.model_fields if k != "source_file"]


def _fix_for(err: dict, loc: tuple, root: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc, root)
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        return f"{hint}remove or rename it; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"add '{loc[-1]}:' to this section (see `verticalize init` for an example)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "give a whole number, e.g. 3"
    if kind in ("float_parsing", "float_type"):
        return "give a number, e.g. 0.1 or 5e-5"
    if kind in ("bool_parsing", "bool_type"):
        return "give true or false"
    if kind in ("string_type",):
        return "give a text value"
    if kind in ("list_type",):
        return "give a YAML list (lines starting with '- ')"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "give a YAML mapping (indented 'key: value' lines)"
    if kind == "literal_error":
        return "use one of the values listed above"
    if kind == "string_pattern_mismatch":
        return "use letters, digits, '-', '_' or '.' (it becomes a folder name)"
    return "correct the value (see `verticalize init` for a commented example)"


def _format_validation_error(
    exc: ValidationError, file: str, index: dict, raw: dict | None = None
) -> str:
    task = (raw or {}).get("task", "classification")
    root = config_model(task if isinstance(task, str) else "")
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, LabelError):
            loc, value = ctx_err.loc, ctx_err.value
            msg = f"label {value!r} is not in the label set {ctx_err.labels}"
            fix = "use one of those labels, or add it to data.labels"
        elif isinstance(ctx_err, SourceKindError | BaselineError):
            loc, value = ctx_err.loc, ctx_err.value
            msg, fix = str(ctx_err), ctx_err.fix
        elif isinstance(ctx_err, MetricError):
            loc, value = ctx_err.loc, ctx_err.value
            msg = f"unknown metric {value!r}"
            fix = f"use one of: {', '.join(ctx_err.known)}"
        else:
            value = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'"
            fix = _fix_for(err, loc, root)
        line = _line_for(index, loc)
        where = f"{file}:{line}" if line else file
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {value!r})"
        lines.append(f"{where}: {_dotted(loc)}: {msg}{shown}. Fix: {fix}.")
    return "\n".join(lines)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to the raw config mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=1")
        node: Any = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {item!r}: '{part}' does not name a section or list index")
        last = parts[-1]
        parsed = yaml.safe_load(value)
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = parsed
        else:
            node[last] = parsed
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, validate and cross-check verticalize.yaml. Raises ConfigError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found. Fix: pass the path to a verticalize.yaml, "
            f"or create one with `verticalize init {path.parent}`."
        )
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"{where}: not valid YAML ({problem}). Fix: check indentation and quoting there."
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping with sections data, model, train, eval.")
    raw = apply_overrides(raw, overrides or [])
    index = _line_index(text)
    try:
        cfg = validate_config(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, str(path), index, raw)) from None
    cfg.source_file = path.resolve()
    from verticalize.source_paths import check_sources_exist

    check_sources_exist(cfg, lambda loc: f"{path}:{_line_for(index, loc) or 1}")
    return cfg
