"""The root `Config`: every section, the task plugin's defaults and cross-checks, and
the schema for a task with its own section."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model, field_validator, model_validator

from verticalize.config.base import Section
from verticalize.config.data import DataConfig, SourceKindError
from verticalize.config.evaluate import BaselineError, EvalConfig
from verticalize.config.model import ModelConfig
from verticalize.config.serving import ExportConfig, RegistryConfig, ServeConfig
from verticalize.config.tasks import GenerationConfig, NerConfig
from verticalize.config.train import PretrainSetupError, TrainConfig
from verticalize.config.tune import TuneConfig
from verticalize.plugins import get_task, task_names


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    domain: str = "general"
    task: str = Field(
        "classification",
        description="A task plugin's name: classification, ner, generation, multilabel, regression, embedding, or an installed plugin's.",
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
            if plugin.masked_lm and kinds == ["pretrain"]:  # masked-LM text (T6)
                continue
            if not plugin.source_kinds and kinds:
                raise SourceKindError(("data", "sources", i, kinds[0]), kinds, False, self.task)
        _check_continued_pretraining(self, plugin.masked_lm)
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
        ev, tr = self.eval, self.train
        asked = {
            "imbalance": tr.class_weights != "none"
            or tr.loss != "cross_entropy"
            or tr.sampler != "shuffle"
            or tr.tune_thresholds,
            "cv": ev.cv.enabled,
            "robustness": ev.robustness.enabled,
            "attacks": ev.adversarial.fgsm.enabled or ev.adversarial.substitution.enabled,
        }
        switch = {
            "imbalance": "train.class_weights: none, loss: cross_entropy, sampler: shuffle and "
            "tune_thresholds: false",
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


def _check_continued_pretraining(cfg: Config, masked_lm: bool) -> None:
    """`pretrain: true` sources of an encoder task and train.continued_pretraining come
    together; generation pre-trains through generation.stages instead."""
    section = cfg.train.continued_pretraining
    loc = ("train", "continued_pretraining")
    if section is not None and not masked_lm:
        takers = [n for n in task_names() if get_task(n).masked_lm]
        raise PretrainSetupError(
            loc,
            section.model_dump(),
            f"masked-LM continued pre-training is for the encoder tasks ({', '.join(takers)}),"
            f" not task: {cfg.task}",
            "remove train.continued_pretraining"
            + (
                "; generation pre-trains with generation.stages: [continued_pretraining, sft]"
                if get_task(cfg.task).source_kinds
                else ""
            ),
        )
    if not masked_lm:
        return
    sources = [i for i, s in enumerate(cfg.data.sources) if s.pretrain]
    if section is not None and not sources:
        raise PretrainSetupError(
            loc,
            section.model_dump(),
            "continued pre-training is on but no data source has `pretrain: true`, so there "
            "is no unlabelled text to pre-train on",
            "add a source of unlabelled domain text with `pretrain: true` to data.sources, or "
            "remove train.continued_pretraining",
        )
    if section is None and sources:
        raise PretrainSetupError(
            ("data", "sources", sources[0], "pretrain"),
            True,
            f"a `pretrain: true` source is unlabelled text for masked-LM continued "
            f"pre-training, which is off for task: {cfg.task}",
            "turn it on with `train: {continued_pretraining: {epochs: 1}}`, or remove the "
            "source (or its `pretrain: true`)",
        )


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


def yaml_dir(cfg: Config) -> Path | None:
    """The folder of the YAML the config came from (relative paths start there)."""
    return cfg.source_file.parent if cfg.source_file else None


def default_config_text(name: str = "my-domain-model") -> str:
    """The commented YAML `verticalize init` writes."""
    from importlib.resources import files

    text = (files("verticalize") / "templates" / "verticalize.yaml").read_text(encoding="utf-8")
    return text.replace("{{name}}", name)
