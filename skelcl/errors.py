"""Errors a user sees: each names what was wrong, where, and what was expected."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence


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


class FolderBusy(SkelclError):
    """A run folder is being written by another process (:func:`skelcl.store.hold_folder`)."""


class SkelclWarning(UserWarning):
    """A setting that runs but most likely not as meant; the CLI prints it as one line."""


class ScheduleWarning(SkelclWarning):
    """An lr milestone that the schedule never reaches."""


def warn_unreached_milestones(section: str, milestones: Sequence[int], epochs: int) -> None:
    """Warn (:class:`ScheduleWarning`) when milestones lie at or beyond the epochs: a schedule
    shortened with ``--set SECTION.epochs=N`` alone would then never lower its lr."""
    late = [int(m) for m in milestones if int(m) >= int(epochs)]
    if late:
        warnings.warn(f"{section}.milestones {late} are at or beyond {section}.epochs={epochs}: the lr is never "
                      f"lowered there; set {section}.milestones for the shorter schedule", ScheduleWarning,
                      stacklevel=3)
