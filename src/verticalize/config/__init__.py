"""One pydantic schema for verticalize.yaml; sections are the pipeline's stages.

`load_config` turns every problem (unknown key, wrong type, missing file, a label outside
the label set) into one `ConfigError` naming the file, line, field, bad value and fix.

Each section lives in the module named for its stage (data, model, train, evaluate, tune,
serving; the built-in tasks' sections in tasks); `schema` holds the root `Config` and
`loader` reads the YAML. Import from here: `from verticalize.config import Config`.
"""

from verticalize.config.base import Section
from verticalize.config.data import (
    CHAT_LAYOUTS,
    FORMATS,
    PII_KINDS,
    AgreementConfig,
    AugmentConfig,
    BackTranslationConfig,
    BoilerplateConfig,
    CleanConfig,
    ContaminationConfig,
    DataConfig,
    DateRule,
    DedupConfig,
    GarbageRule,
    InstructionTemplate,
    LabelInSetRule,
    LengthRule,
    NearDedupConfig,
    PiiConfig,
    RangeRule,
    RayConfig,
    RegexRule,
    RequiredRule,
    Rule,
    ScriptRule,
    SegmentConfig,
    Source,
    SourceKindError,
    SplitConfig,
    TypeRule,
)
from verticalize.config.evaluate import (
    AGGREGATE_METRICS,
    LATENCY_METRICS,
    NOISE_KINDS,
    AdversarialConfig,
    BaselineError,
    CvConfig,
    EvalConfig,
    FgsmConfig,
    LabelError,
    MetricError,
    RobustnessConfig,
    SubstitutionConfig,
    Target,
    check_metric_name,
)
from verticalize.config.loader import (
    apply_overrides,
    format_validation_error,
    is_serve_only,
    line_for,
    line_index,
    load_config,
    load_serve_config,
)
from verticalize.config.model import (
    METHODS,
    FreezeConfig,
    LayerReductionConfig,
    LoraConfig,
    ModelConfig,
    VirtualTokensConfig,
)
from verticalize.config.schema import (
    Config,
    config_model,
    default_config_text,
    validate_config,
    yaml_dir,
)
from verticalize.config.serving import (
    AbConfig,
    CardConfig,
    ExportConfig,
    RegistryConfig,
    ServeConfig,
    ServeOnlyConfig,
)
from verticalize.config.tasks import GenerationConfig, NerConfig
from verticalize.config.train import (
    TRAIN_RUNTIME_FIELDS,
    ContinuedPretrainingConfig,
    DistributedConfig,
    EarlyStopping,
    PretrainSetupError,
    TrainConfig,
)
from verticalize.config.tune import SearchParam, TuneConfig

__all__ = [
    # the root schema and the loader
    "Config",
    "config_model",
    "validate_config",
    "yaml_dir",
    "default_config_text",
    "load_config",
    "load_serve_config",
    "is_serve_only",
    "apply_overrides",
    "line_index",
    "line_for",
    "format_validation_error",
    "Section",
    # data
    "CHAT_LAYOUTS",
    "FORMATS",
    "PII_KINDS",
    "AgreementConfig",
    "AugmentConfig",
    "BackTranslationConfig",
    "BoilerplateConfig",
    "CleanConfig",
    "ContaminationConfig",
    "DataConfig",
    "DateRule",
    "DedupConfig",
    "GarbageRule",
    "InstructionTemplate",
    "LabelInSetRule",
    "LengthRule",
    "NearDedupConfig",
    "PiiConfig",
    "RangeRule",
    "RayConfig",
    "RegexRule",
    "RequiredRule",
    "Rule",
    "ScriptRule",
    "SegmentConfig",
    "Source",
    "SourceKindError",
    "SplitConfig",
    "TypeRule",
    # model
    "METHODS",
    "FreezeConfig",
    "LayerReductionConfig",
    "LoraConfig",
    "ModelConfig",
    "VirtualTokensConfig",
    # train
    "TRAIN_RUNTIME_FIELDS",
    "ContinuedPretrainingConfig",
    "DistributedConfig",
    "PretrainSetupError",
    "EarlyStopping",
    "TrainConfig",
    # eval and metric names
    "AGGREGATE_METRICS",
    "LATENCY_METRICS",
    "NOISE_KINDS",
    "AdversarialConfig",
    "BaselineError",
    "CvConfig",
    "EvalConfig",
    "FgsmConfig",
    "LabelError",
    "MetricError",
    "RobustnessConfig",
    "SubstitutionConfig",
    "Target",
    "check_metric_name",
    # the built-in tasks' sections
    "GenerationConfig",
    "NerConfig",
    # tune
    "SearchParam",
    "TuneConfig",
    # export, registry, serve
    "AbConfig",
    "CardConfig",
    "ExportConfig",
    "RegistryConfig",
    "ServeConfig",
    "ServeOnlyConfig",
]
