"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations


class VerticalizeError(Exception):
    """Base class: the message names the file / line / field, the bad value and the fix."""

    exit_code = 1


class ConfigError(VerticalizeError):
    """verticalize.yaml is malformed or inconsistent."""

    exit_code = 2


class DataError(VerticalizeError):
    """An input file cannot be read, or no usable records remain."""

    exit_code = 3


class ModelError(VerticalizeError):
    """A base model cannot be found or loaded."""

    exit_code = 4


class TrainingError(VerticalizeError):
    """Training cannot start or continue (e.g. a corrupt checkpoint)."""

    exit_code = 5


class StageOrderError(VerticalizeError):
    """A stage was asked to run before the stage whose files it reads."""

    exit_code = 6


class EvalError(VerticalizeError):
    """Runs cannot be evaluated or compared (e.g. different test sets)."""

    exit_code = 7


class ExportError(VerticalizeError):
    """A model cannot be exported, or its quantized copy lost too much accuracy to publish."""

    exit_code = 8


class RegistryError(VerticalizeError):
    """The model registry refused an action (unknown model / alias, promotion gate failed)."""

    exit_code = 9


class ServeError(VerticalizeError):
    """The service cannot start (bad keys file, port in use, model missing)."""

    exit_code = 10
