"""Exception types shared by the whole package.

``UserError`` (and subclasses) mean "the user can fix this": the CLI prints the
message on one line (no traceback unless ``--debug``) and exits with status 2.
"""

from __future__ import annotations


class VidsslError(Exception):
    """Base class of every error vidssl raises on purpose."""


class UserError(VidsslError):
    """Caused by the user's input (a path, a flag, a config key); the message says what to fix."""


class ConfigError(UserError):
    """A config file, preset name or ``key=value`` override is wrong."""


class DataError(UserError):
    """A dataset root, split file or manifest is missing or malformed."""


class TrainingDiverged(UserError):
    """The loss or the weights of a run stopped being finite; the message names the step and what to change."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long command; the message says how to continue (the CLI exits 130)."""


class VideoDecodeError(VidsslError):
    """One video file could not be read. Carries the path so it can be reported and skipped."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")
