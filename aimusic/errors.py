"""The one error type every aimusic failure a user can cause is raised as.

The CLI prints ``str(error)`` as a single line and exits non-zero; ``-v`` adds the
traceback. Messages name the file and the problem, and where it helps, the fix.
"""

from __future__ import annotations

from pathlib import Path


class AimusicError(Exception):
    """A failure caused by input, configuration or missing artifacts (not a bug)."""


class AudioError(AimusicError):
    """An audio file that cannot be used: missing, not audio, corrupt, empty, non-finite."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ArtifactError(AimusicError):
    """A model, codes or token file that is missing, of the wrong kind or version, or mismatched."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(AimusicError):
    """A configuration file or value that does not fit the config it is meant for."""
