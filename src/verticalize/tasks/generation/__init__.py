"""Text generation: continued pre-training and supervised fine-tuning of a causal LM (M3).

The plugin: conversations through the model's own chat template (`lm`); the stages run one
after another in `train`; perplexity / BLEU / ROUGE against the base model in `evaluate`; the
OpenAI-compatible serving engine in `engine`.
"""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config, MetricError
from verticalize.export.card import usage_lines
from verticalize.plugins import TaskPlugin
from verticalize.serve.feedback import conversation_record
from verticalize.tasks.generation.report import render_generation

GENERATION_METRICS = (
    "perplexity",
    "bleu",
    "rouge_1",
    "rouge_2",
    "rouge_l",
    "exact_match",
    "loss",
    "latency_ms_per_example",
)
SUMMARY = ["perplexity", "rouge_l", "rouge_1", "rouge_2", "bleu", "exact_match"]


def check_config(cfg: Config) -> None:
    for i, t in enumerate(cfg.eval.targets):
        if t.metric not in GENERATION_METRICS:
            raise MetricError(("eval", "targets", i, "metric"), t.metric, list(GENERATION_METRICS))


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    """Trials are scored by their validation loss (the early-stopping metric)."""
    stop = cfg.train.early_stopping.metric
    if metric not in ("loss", stop):
        return metric, (
            f"{metric!r}: generation trials are scored by their validation loss. Fix: use "
            "tune.metric: loss (perplexity ranks the same)."
        )
    return stop, None


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.generation.train import train_generation

    return train_generation(cfg, folder, out_dir, tracker, check)


def workload(cfg: Config, train_records, val_records, labels):
    from verticalize.tasks.generation.workload import generation_workload

    return generation_workload(cfg, train_records, val_records)


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.tasks.generation.evaluate import evaluate_generation

    report = evaluate_generation(cfg, folder.model_dir, train_m["base_model"], test)
    report |= {"baselines": {}, "summary_metrics": SUMMARY}
    return report, report["model"]["metrics"].get("latency_ms_per_example", 0) / 1000


def card_usage(cfg: Config, info: dict) -> list[str]:
    python = [
        "from transformers import pipeline",
        'gen = pipeline("text-generation", model="path/to/this/folder")',
        'gen([{"role": "user", "content": "…"}], max_new_tokens=64)',
    ]
    return usage_lines(info, None, python)


def detect(folder: Path) -> bool:
    import json

    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    archs = config.get("architectures") or [""]
    return archs[0].endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"))


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.generation.engine import GenerationEngine

    return GenerationEngine(folder, version)


def fingerprint_sections(cfg: Config) -> list[dict]:
    """A changed stage list, template or packing means retraining; sampling settings do not."""
    exclude = {"eval_generations", "report_samples", "max_new_tokens"}
    return [cfg.generation.model_dump(mode="json", exclude=exclude)]


plugin = TaskPlugin(
    name="generation",
    description="answers and text: continued pre-training + supervised fine-tuning of a causal LM",
    default_base="SmolLM2-135M-Instruct",
    main_metric="rouge_l",
    default_stop_metric="loss",
    summary_metrics=SUMMARY,
    check_config=check_config,
    tune_metric=tune_metric,
    section=("generation", type(Config.model_fields["generation"].default)),
    baselines=(),
    methods=("full", "freeze", "layer_reduction", "lora", "prompt_tuning", "prefix_tuning"),
    source_kinds=("chat", "templates", "pretrain"),
    augment=False,
    target=None,
    fingerprint_sections=fingerprint_sections,
    train=train,
    train_logs=lambda cfg: list(cfg.generation.stages),
    lm_logits=True,
    workload=workload,
    evaluate=evaluate,
    render_report=render_generation,
    card_usage=card_usage,
    card_limitations=("Generated text can be fluent and wrong; check facts before use.",),
    detect=detect,
    engine=engine,
    routes=(),
    predictor=None,
    card_words="text generation",
    pipeline_tag="text-generation",
    intended_use=lambda cfg, labels: (
        f"answering {cfg.domain} prompts in the style of its training data"
    ),
    feedback_record=conversation_record,
)
