"""The `data:` section: sources, validation rules, clean / dedup / pii / segment /
agreement / augment / split, and the Ray engine."""

from __future__ import annotations

import codecs
import re
from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from verticalize.config.base import Section

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
    "sqlite",
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
        "'conll' = one token and its tag a line, a blank line between sentences (.conll, .bio), "
        "'sqlite' = the rows of a table or SELECT query (.db, .sqlite, .sqlite3).",
    )
    table: str | None = Field(
        None, description="sqlite: the table (or view) to read; its columns are the fields."
    )
    query: str | None = Field(
        None,
        description='sqlite: a read-only SELECT instead of table, e.g. "SELECT * FROM articles '
        "WHERE status = 'in force'\"; its result columns are the fields.",
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
    reviewed: bool = Field(
        False,
        description="An expert's review of records the other sources also hold (the console's "
        "review/labelstudio.json): where a record of this source has an exact copy in another "
        "source, this copy wins and the other is quarantined as superseded_by_review.",
    )
    sample: int | None = Field(None, gt=0, description="Keep a seeded random sample of N records.")
    encoding: str = Field(
        "auto",
        description="The file's codec (utf-8, gb18030, big5, utf-16, …); auto = detect it "
        "(a byte-order mark always decides; the detection and its confidence go to the data "
        "manifest).",
    )
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
        False,
        description="Unlabelled domain text for continued pre-training: generation's "
        "continued_pretraining stage, or an encoder task's masked-LM training "
        "(train.continued_pretraining), kept out of its splits in data/pretrain.jsonl.",
    )
    tag_scheme: Literal["auto", "bio", "iob1", "bioes", "bmes"] = Field(
        "auto",
        description="conll: the file's tag scheme; auto = bmes if M- tags occur, bioes if E-/S-, "
        "else bio. Tags become character spans on load.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value.lower() != "auto":
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(
                    f"unknown encoding {value!r}; use auto, or a codec such as utf-8, gb18030, "
                    "big5, utf-16, latin-1"
                ) from None
        return value


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
    threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Jaccard of the n-gram sets at which two records are near-duplicates; "
        "default: each script's own (measured by bench/dedup.py).",
    )
    ngram: int | None = Field(
        None,
        ge=1,
        le=10,
        description="n-gram size in the script's units: CJK characters, words elsewhere; "
        "default: each script's own.",
    )
    vocab_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Jaccard of the records' unit sets (their vocabularies) they must also "
        "reach; it keeps apart documents of one template with other names and figures. "
        "0 turns the check off; default: each script's own.",
    )
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
    "ipv6",
    "passport",
    "cn_name",
    "en_name",
    "cn_address",
    "plate",
    "ssn",
    "hk_id",
    "mo_id",
    "tw_id",
    "uscc",
)


class CustomPiiKind(Section):
    """A kind of personal data the built-in detectors do not know, e.g. medical record numbers."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="e.g. mrn; shown as [MRN].")
    pattern: str | None = Field(None, description="Python regular expression of one value.")
    dictionary: str | None = Field(
        None, description="File (relative to the YAML) with one value a line, matched whole."
    )
    ignore_case: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> CustomPiiKind:
        if (self.pattern is None) == (self.dictionary is None):
            raise ValueError(f"custom kind {self.name!r}: give exactly one of pattern, dictionary")
        if self.name in PII_KINDS:
            raise ValueError(f"custom kind {self.name!r} is a built-in kind; pick another name")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as e:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {e}"
                ) from None
            if compiled.match(""):
                raise ValueError(f"pattern {self.pattern!r} matches empty text")
        return self


class PiiConfig(Section):
    enabled: bool = False
    kinds: list[Literal[PII_KINDS]] = list(PII_KINDS)
    custom: list[CustomPiiKind] = Field(
        [], description="Your own kinds, each from a regex or a dictionary file (always on)."
    )
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


BENCHMARK_SUFFIXES = (".jsonl", ".csv", ".tsv", ".parquet", ".txt")


def _benchmark_file(path: str) -> str:
    suffix = PurePath(path.partition("#")[2] or path).suffix.lower()
    if suffix not in BENCHMARK_SUFFIXES:
        raise ValueError(
            f"a benchmark file is read as one text per row or line, from a "
            f"{', '.join(BENCHMARK_SUFFIXES)} file; {suffix or 'no suffix'!r} is none of these"
        )
    return path


class ContaminationConfig(Section):
    enabled: bool = Field(
        True,
        description="After the split, list the test records that share a long n-gram with a "
        "train record (data/contamination.jsonl); eval scores the test split with and without "
        "them.",
    )
    ngram: int = Field(
        13,
        ge=5,
        le=64,
        description="N-gram length in units: words for Latin-script text, characters for "
        "Chinese and Japanese (13, as in GPT-3's contamination check).",
    )
    benchmarks: list[Annotated[str, AfterValidator(_benchmark_file)]] = Field(
        [],
        description="Public benchmark files (relative to the YAML, or pkg:…) the test records "
        "are checked against too: .jsonl, .csv, .tsv or .parquet (one text per row) or .txt "
        "(one text per line).",
    )
    fields: list[str] | None = Field(
        None,
        description="The fields of a benchmark row that hold its text; None = every text "
        "field of the row.",
    )


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
    contamination: ContaminationConfig = ContaminationConfig()
    key_file: str | None = Field(
        None,
        description="Secret key for pseudonyms and encryption; must live outside the run folder. "
        "Created (mode 600) when missing.",
    )
    sensitive: list[Literal["train", "validation", "test", "quarantine", "pretrain"]] = Field(
        [], description="Outputs written AES-256-GCM encrypted as <name>.jsonl.enc."
    )
    engine: Literal["local", "ray"] = "local"
    ray: RayConfig = RayConfig()
    on_bad_record: Literal["quarantine", "error"] = "quarantine"


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
