"""The promotion gate and rollback: the champion alias moves only when the challenger beats
it by a margin on the same test set; every earlier champion is kept on a stack."""

from __future__ import annotations

import json
import time

from verticalize.errors import RegistryError
from verticalize.mlflow_store import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG,
    METRIC_TAG,
    ROLLED_BACK,
    TEST_TAG,
    get_model,
    history,
    mlflow_errors,
    require_client,
    version_metrics,
    version_value,
)

_TOLERANCE = 1e-9  # a gain of exactly the margin passes despite float rounding


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _same_test_set(name: str, champion, challenger) -> None:
    a, b = (champion.tags or {}).get(TEST_TAG), (challenger.tags or {}).get(TEST_TAG)
    if not a or a != b:
        raise RegistryError(
            f"{name}: champion version {champion.version} and challenger version "
            f"{challenger.version} were measured on different test sets (test_sha256 "
            f"{(a or 'unknown')[:12]} vs {(b or 'unknown')[:12]}), so their metrics cannot be "
            "compared and nothing was promoted (--force does not skip this). Fix: train the "
            "challenger on the same data (same data: section and seed, so data/test.jsonl is "
            "identical), export and register it again."
        )


def _values(name: str, metric: str, champion, challenger) -> tuple[float, float]:
    vp, vc = version_value(champion, metric), version_value(challenger, metric)
    if vp is None or vc is None:
        both = sorted(set(version_metrics(champion)) & set(version_metrics(challenger)))
        raise RegistryError(
            f"{name}: metric {metric!r} is not recorded for "
            f"{'champion' if vp is None else 'challenger'} version "
            f"{(champion if vp is None else challenger).version}. Fix: pass --metric (or set "
            f"registry.metric) to one both versions have: {', '.join(both) or 'none'}."
        )
    return vp, vc


def promote(
    name: str,
    tracking_uri: str,
    metric: str | None = None,
    margin: float = 0.03,
    force: bool = False,
) -> dict:
    """Move the champion alias to the challenger when, on the same test set, the challenger's
    `metric` (default: its recorded main metric) beats the champion's by at least `margin`
    (lower-is-better metrics such as loss must drop by it). `force` skips the margin, never the
    test-set check. The old champion goes onto the history stack. Refusals raise
    RegistryError (exit 9) with both values."""
    from verticalize.metrics import lower_is_better  # sklearn: only when promoting

    client = require_client(tracking_uri)
    with mlflow_errors(tracking_uri):
        model = get_model(client, name)
        aliases = {a: str(v) for a, v in (model.aliases or {}).items()}
        if CHALLENGER not in aliases:
            raise RegistryError(
                f"{name}: there is no challenger to promote (aliases: "
                f"{aliases or 'none'}). Fix: register a new run of this model with "
                "`verticalize registry register <yaml>`; it becomes the challenger."
            )
        challenger = client.get_model_version(name, aliases[CHALLENGER])
        metric = metric or (challenger.tags or {}).get(METRIC_TAG)
        after_value = version_value(challenger, metric)
        if CHAMPION not in aliases:  # nothing to beat: the challenger simply takes the title
            before, before_value, gain = None, None, None
        else:
            champion = client.get_model_version(name, aliases[CHAMPION])
            _same_test_set(name, champion, challenger)
            before_value, after_value = _values(name, metric, champion, challenger)
            lower = lower_is_better(metric)
            gain = before_value - after_value if lower else after_value - before_value
            if not force and gain < margin - _TOLERANCE:
                need = before_value - margin if lower else before_value + margin
                raise RegistryError(
                    f"{name}: challenger version {challenger.version} ({metric} "
                    f"{after_value:.4f}) does not beat champion version {champion.version} "
                    f"({before_value:.4f}) by the margin {margin:g}: it needs "
                    f"{'<=' if lower else '>='} {need:.4f}. The champion stays. Fix: improve the "
                    "challenger and register it again, lower registry.margin / --margin, or "
                    "promote anyway with --force."
                )
            before = champion.version
            stack = history(model) + [str(before)]
            client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(stack))
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
        client.delete_registered_model_alias(name, CHALLENGER)
        if aliases.get(ROLLED_BACK) == str(challenger.version):
            client.delete_registered_model_alias(name, ROLLED_BACK)
        said = f"{_now()}: promoted over version {before}" + (" (forced)" if force else "")
        client.set_model_version_tag(name, challenger.version, "promoted", said)
    return {
        "name": name,
        "promoted": True,
        "metric": metric,
        "margin": margin,
        "forced": force,
        "gain": gain,
        "before": {"version": None if before is None else str(before), "value": before_value},
        "after": {"version": str(challenger.version), "value": after_value},
    }


def rollback(name: str, tracking_uri: str) -> dict:
    """Give the champion alias back to the previous champion (popped from the history stack);
    the demoted version gets the `rolled_back` alias and a tag saying when and why."""
    client = require_client(tracking_uri)
    with mlflow_errors(tracking_uri):
        model = get_model(client, name)
        aliases = {a: str(v) for a, v in (model.aliases or {}).items()}
        current = aliases.get(CHAMPION)
        stack = history(model)
        while stack and stack[-1] == current:  # left by a promotion cut short
            stack.pop()
        if current is None or not stack:
            raise RegistryError(
                f"{name}: no earlier champion to roll back to (champion: "
                f"{current or 'none'}, history: empty). Fix: nothing to undo — a rollback "
                "restores the champion a promotion replaced; pick a version explicitly with "
                f"`verticalize registry list {name}` and serve models:/{name}/<version>."
            )
        previous = stack.pop()
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(stack))
        client.set_registered_model_alias(name, CHAMPION, previous)
        client.set_registered_model_alias(name, ROLLED_BACK, current)
        client.set_model_version_tag(
            name, current, ROLLED_BACK, f"{_now()}: champion returned to version {previous}"
        )
        before = client.get_model_version(name, current)
        after = client.get_model_version(name, previous)
    return {
        "name": name,
        "rolled_back": current,
        "before": {"version": current, "value": version_value(before)},
        "after": {"version": previous, "value": version_value(after)},
        "history": stack,
    }
