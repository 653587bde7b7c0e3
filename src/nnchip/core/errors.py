"""Errors that nnchip raises for bad input; the CLI prints their one-line message and exits non-zero."""


class NnchipError(ValueError):
    """Base class: a one-line message that names the culprit (config field, module path and type, file)."""


class ConfigError(NnchipError):
    """A config field is invalid; the message names the field."""


class UnsupportedError(NnchipError):
    """A module or op that a stage cannot handle; the message names its path in the model and its type."""


class DataError(NnchipError):
    """Missing, empty, corrupt or non-finite data; the message names the path or the tensor."""


class ConversionError(NnchipError):
    """The integer lowering cannot honour the contract (e.g. an accumulator that does not fit)."""
