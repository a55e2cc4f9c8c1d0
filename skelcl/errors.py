"""Errors a user sees: each names what was wrong, where, and what was expected."""

from __future__ import annotations

from pathlib import Path


class SkelclError(Exception):
    """Base class: the CLI prints these as one clear message instead of a traceback."""


class DataFormatError(SkelclError):
    """A data file is malformed. Carries the file (and line, when it applies)."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class ConfigError(SkelclError):
    """A configuration value, protocol name or option is not valid."""


class SettingError(ConfigError, ValueError):
    """A model or learner setting is out of range (also a ValueError, for library callers)."""
