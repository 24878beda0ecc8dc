"""The `regression:` section of verticalize.yaml (TaskPlugin.section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from verticalize.config import Config, Section


class RegressionConfig(Section):
    loss: Literal["mse", "huber"] = Field(
        "mse",
        description="mse = mean squared error; huber = squared near the target, linear beyond "
        "huber_delta (robust to a few extreme values).",
    )
    huber_delta: float = Field(
        1.0,
        gt=0,
        description="Where Huber turns linear, in standard deviations of the training targets "
        "(in the target's unit when standardize is false).",
    )
    standardize: bool = Field(
        True,
        description="Train on (y - mean) / std of the training targets; the saved model's "
        "output layer is rescaled, so it predicts in the original unit.",
    )
    transform: Literal["none", "log1p"] = Field(
        "none",
        description="log1p: learn and score log(1 + y), for counts and prices whose few huge "
        "values would dominate squared errors; predictions come back as y. Every metric "
        "(mae, rmse, r2, spearman) is then measured on log1p(y).",
    )
    ridge_alphas: list[PositiveFloat] = Field(
        [0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
        min_length=1,
        description="The tfidf_ridge baseline's L2 strengths; the best on the validation "
        "split is refit on train + validation.",
    )


def settings_of(cfg: Config) -> RegressionConfig:
    """The run's regression section (defaults for a Config built without it)."""
    found = getattr(cfg, "regression", None)
    return found if isinstance(found, RegressionConfig) else RegressionConfig()
