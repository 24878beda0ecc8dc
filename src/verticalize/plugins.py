"""Tasks are plugins, chosen by name (M5): `task:` in the YAML → a `TaskPlugin`.

The built-in tasks live in `verticalize.tasks.<name>`; third-party tasks register through the
`verticalize.tasks` entry-point group (a `TaskPlugin` object, or a function returning one):

    [project.entry-points."verticalize.tasks"]
    sentiment-scale = "my_package.task:plugin"

Stages never branch on a task's name: they ask its plugin. A plugin is a dataclass of
functions and settings (no base class to inherit); the stages import this module, never the
plugins, so the core does not depend on any task and a plugin may use every layer below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from verticalize.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import BaseModel

# verticalize.config.Config: the config validates `task:` through this module, so this module
# does not import the config (not even for type checking) and names its type loosely
Config = Any

GROUP = "verticalize.tasks"
BUILTIN = {
    "classification": "verticalize.tasks.classification:plugin",
    "ner": "verticalize.tasks.ner:plugin",
    "generation": "verticalize.tasks.generation:plugin",
    "multilabel": "verticalize.tasks.multilabel:plugin",
    "regression": "verticalize.tasks.regression:plugin",
    "embedding": "verticalize.tasks.embedding:plugin",
}
# evaluation extras a plugin may support (E2, E4, E5, E7): the stages run only these;
# "imbalance": its training honours train.class_weights / loss / sampler / tune_thresholds
EXTRAS = (
    "cv",
    "robustness",
    "attacks",
    "calibration",
    "compare",
    "error_analysis",
    "onnx_runtime",
    "imbalance",
)


def _nothing(*args, **kwargs) -> None:
    return None


@dataclass(frozen=True)
class TaskPlugin:
    """What a task tells the pipeline. Required: name, defaults, and the stage hooks
    (train, evaluate, workload, engine). The rest has defaults that fit a text task."""

    name: str
    description: str  # one line, for `verticalize tasks` and the docs
    # --- config (U2) ---
    default_base: str  # model.base when the YAML names none
    main_metric: str  # the headline metric: verdict, export gate, promotion
    default_stop_metric: str  # train.early_stopping.metric when the YAML names none
    summary_metrics: list[str]  # the report's headline table
    # (cfg) -> None: the task's own checks of eval.targets / early stopping / tune metric;
    # raise ValueError (verticalize.config's MetricError, LabelError …) naming the field
    check_config: Callable[[Config], None] = _nothing
    # (tune.metric, cfg) -> (the metric trials are scored by, error text or None)
    tune_metric: Callable[[str, Config], tuple[str, str | None]] = lambda m, cfg: (m, None)
    section: tuple[str, type[BaseModel]] | None = None  # a YAML section the task adds
    baselines: tuple[str, ...] = ()  # names allowed in eval.baselines (all by default)
    methods: tuple[str, ...] = ("full", "freeze", "layer_reduction", "lora")
    source_kinds: tuple[str, ...] = ()  # data.sources[] kinds it takes (chat/templates/pretrain)
    augment: bool = False  # data.augment applies (it edits texts, keeping the label)
    extras: tuple[str, ...] = ()  # of EXTRAS
    # --- data (D1–D8) ---
    # what every record must carry: "label", "spans" or None (the source kind says)
    target: str | None = "label"
    target_detail: str = "needs a label on every record"
    # (row fields, data.sources[] entry, data section, section=the task's own YAML section or
    # None) -> (label string or None, quarantine reason or None); None: the data engine's own
    # (one label, data.labels / label_bins). Rows with spans reach it too (it may read labels
    # from them; a "label" task's records then do not keep the spans).
    parse_label: Callable[..., tuple[str | None, str | None]] | None = None
    # (labels of kept records, entity types seen) -> the run's label list (data manifest)
    labels_of: Callable[[list, list], list[str]] | None = None
    min_classes: int = 0  # fewer distinct labels after curation is an error
    # (cfg) -> config sections whose change means redoing the data stage (what parse_label
    # reads of the task's section)
    data_sections: Callable[[Config], list[dict]] = lambda cfg: []
    # (the record's label, or for spans its main entity type) -> what stratified splits
    # balance; None: the label itself
    stratify_key: Callable[[Any], Any] | None = None
    # (kept record) -> a key: records sharing it stay in one split, as with a source's
    # `group` (retrieval: every query of one passage); None: no such key
    split_group: Callable[[dict], str | None] | None = None
    # --- train (T1–T9) ---
    # (cfg) -> config sections whose change means retraining (fingerprint)
    fingerprint_sections: Callable[[Config], list[dict]] = lambda cfg: []
    # (cfg, folder, out_dir, labels, tracker, memory_check) -> the train manifest's fields
    train: Callable[..., dict] | None = None
    # (cfg) -> sub-folders of train/ holding metrics.jsonl, in order ("" = train/ itself)
    train_logs: Callable[[Config], list[str]] = lambda cfg: [""]
    lm_logits: bool = False  # a causal LM: full-vocabulary logits dominate memory (plan)
    # an encoder task whose fine-tuning loads model.base: `pretrain: true` sources are kept
    # out of its splits and feed masked-LM training first (train.continued_pretraining)
    masked_lm: bool = False
    # --- plan (P3) ---
    # (cfg, train records, validation records, labels) -> plan.workload.Workload
    workload: Callable[..., Any] | None = None
    # --- evaluate (E1–E8) ---
    # (cfg, folder, data manifest, train manifest, test records, out_dir) -> (report, infer s)
    evaluate: Callable[..., tuple[dict, float]] | None = None
    # (cfg) -> config sections (and digests of files) whose change means evaluating again
    # though data and model are the same (retrieval: the extra corpus ranked against)
    eval_sections: Callable[[Config], list] = lambda cfg: []
    # (cfg, rows of eval/predictions.jsonl, data manifest) -> the model's metrics on just those
    # rows, as in report["model"]["metrics"] (the contamination section scores the test split
    # without its contaminated records); None: the task cannot score a subset
    score_predictions: Callable[[Config, list[dict], dict], dict] | None = None
    # (report, loss chart SVG) -> the report page; None: evaluate's basic page
    render_report: Callable[[dict, str], str] | None = None
    # --- export / registry (H1–H3) ---
    # (cfg, folder, model_out, test records) -> fields for export's manifest (ONNX, …)
    export_formats: Callable[..., dict] | None = None
    export_labels: Callable[[Config, Path, dict], list[str]] = lambda cfg, out, data_m: []
    card_usage: Callable[[Config, dict], list[str]] | None = None
    card_limitations: tuple[str, ...] = ()
    card_words: str = ""  # the model card's "A <words> model for …" (default: the name)
    pipeline_tag: str | None = None  # the Hugging Face Hub pipeline tag of the model card
    # (cfg, labels) -> what the model is for, one phrase (the card's intended use)
    intended_use: Callable[[Config, list[str]], str] | None = None
    # the test metric a share of answers users did not call wrong compares with (serve)
    accuracy_metric: str | None = None
    # (feedback record with a correction) -> (a training record, or None and why)
    feedback_record: Callable[[dict], tuple[dict | None, str | None]] | None = None
    # --- serve / predict (S1–S8) ---
    detect: Callable[[Path], bool] = lambda folder: False  # is this model folder of the task?
    # (folder, runtime, version) -> serve.engines.Engine
    engine: Callable[..., Any] | None = None
    routes: tuple[str, ...] = ()  # /v1/<route> the engine answers (classify, ner); () = chat
    # (folder, batch size) -> texts -> one result dict per text
    predictor: Callable[..., Callable[[list[str]], list[dict]]] | None = None
    extra: dict = field(default_factory=dict)  # anything a later stage wants to read

    def supports(self, extra: str) -> bool:
        return extra in self.extras

    def hook(self, name: str, doing: str) -> Callable:
        """The hook `name`, or a clear error when this task leaves it out."""
        fn = getattr(self, name)
        if fn is None:
            raise ConfigError(
                f"task: {self.name} cannot {doing}: its plugin has no `{name}` hook. Fix: skip "
                f"that command for this task, or add `{name}` to the plugin."
            )
        return fn


def _load(name: str, target: str | Any) -> TaskPlugin:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    plugin = target() if callable(target) and not isinstance(target, TaskPlugin) else target
    if not isinstance(plugin, TaskPlugin):
        raise ConfigError(
            f"task plugin {name!r} ({GROUP} entry point) is a {type(plugin).__name__}, not a "
            "verticalize.plugins.TaskPlugin. Fix: point the entry point at a TaskPlugin object."
        )
    if plugin.name != name:
        raise ConfigError(
            f"task plugin registered as {name!r} calls itself {plugin.name!r}. Fix: make the "
            "entry point's name and TaskPlugin.name the same."
        )
    return plugin


@cache
def _registered() -> dict[str, Any]:
    """name -> "module:attr" or a loaded entry point; built-ins first, then entry points."""
    found: dict[str, Any] = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in BUILTIN and ep.value == BUILTIN[ep.name]:
            continue
        if ep.name in found:
            raise ConfigError(
                f"two task plugins are named {ep.name!r} ({ep.value} and {found[ep.name]}). "
                "Fix: uninstall one, or rename its entry point."
            )
        found[ep.name] = ep.value
    return found


def task_names() -> list[str]:
    """Every task `task:` may name: built-in and installed plugins."""
    return list(_registered())


@cache
def get_task(name: str) -> TaskPlugin:
    """The plugin for `task: name`; a ConfigError naming the known tasks otherwise."""
    known = _registered()
    if name not in known:
        raise ConfigError(
            f"task: {name!r} is not a known task. Fix: use one of {', '.join(known)}, or "
            f"install a plugin that registers it in the {GROUP!r} entry-point group."
        )
    return _load(name, known[name])


def refresh() -> None:
    """Forget what was discovered (after installing a plugin in this process)."""
    _registered.cache_clear()
    get_task.cache_clear()
