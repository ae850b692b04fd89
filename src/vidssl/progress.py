"""Progress for logs, not terminals: a line at least every ~30 s when output is not a terminal.

Progress bars redraw one line with carriage returns; in a log file or a batch job's output they are
either invisible until the end or thousands of overwritten fragments. When stderr is not a
terminal, long commands use :class:`Heartbeat` (feature extraction, `vidssl data` probing and
checks) or :class:`HeartbeatCallback` (pretraining) instead: one plain line every ``every`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["Heartbeat", "HeartbeatCallback", "is_terminal", "progress_bar", "quiet_lightning"]

DEFAULT_EVERY = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Heartbeat:
    """Prints ``"<what>: done/total (x %), elapsed, ~remaining"`` at most every ``every`` seconds (and
    at the end). ``advance(n)`` / ``update(done)``; usable as a context manager."""

    def __init__(self, what: str, total: int | None = None, every: float = DEFAULT_EVERY,
                 write: Callable[[str], Any] | None = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.every = what, total, every
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.clock = clock
        self.start = self.last = clock()
        self.done = 0

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc) -> bool:
        if exc[0] is None and self.done and self.clock() - self.start >= self.every:
            self._emit()
        return False

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        if self.clock() - self.last >= self.every:
            self._emit(extra)

    def _emit(self, extra: str = "") -> None:
        now = self.clock()
        self.last = now
        elapsed = now - self.start
        line = f"{self.what}: {self.done}"
        if self.total:
            line += f"/{self.total} ({100 * self.done / self.total:.0f} %)"
            if self.done:
                line += f", ~{elapsed * (self.total - self.done) / self.done:.0f} s left"
        self.write(line + f", {elapsed:.0f} s elapsed" + (f", {extra}" if extra else ""))


def progress_bar(total: int, description: str, enabled: bool):
    """A rich progress bar (or a no-op) with an ``advance(n)`` method; a plain line every ~30 s when
    stderr is not a terminal (a log file or a batch job)."""
    if enabled and not is_terminal():
        return Heartbeat(description, total)
    if not enabled:

        class _Silent:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def advance(self, n: int) -> None:
                pass

        return _Silent()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class _Bar:
        def __enter__(self):
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(description, total=total)
            return self

        def __exit__(self, *exc):
            return self.progress.__exit__(*exc)

        def advance(self, n: int) -> None:
            self.progress.advance(self.task, n)

    return _Bar()


def _callback_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class HeartbeatCallback(_callback_base()):
    """Pretraining's heartbeat: the step, the run's length and the last logged loss, every ~30 s."""

    def __init__(self, every: float = DEFAULT_EVERY, write: Callable[[str], Any] | None = None):
        self.every, self.write = every, write
        self.beat: Heartbeat | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        total = int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else None
        self.beat = Heartbeat("pretraining step", total, self.every, self.write)
        self.beat.done = int(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.beat is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        # converting the logged loss syncs with the device: only when a line is due
        due = self.beat.clock() - self.beat.last >= self.beat.every
        self.beat.update(int(trainer.global_step), f"loss {float(loss):.4g}" if due and loss is not None else "")


# Lightning messages that are false or noise for a vidssl run, silenced while vidssl drives a Trainer:
_FALSE_WARNINGS = (
    # vidssl's samplers are positioned by the optimiser step, so a resume mid-epoch IS exact
    # (vidssl.data.samplers); Lightning cannot see that and warns on every resume
    r".*your dataloader is not resumable.*",
    # vidssl's CSV logger keeps the rows before the resumed step (vidssl.methods.train._csv_logger)
    r".*Previous log files in this directory will be deleted.*",
    # a resumed run writes into its own checkpoint folder on purpose
    r".*Checkpoint directory .* exists and is not empty.*",
    # training_step returns None for a step skipped for a non-finite loss (vidssl.methods.guards)
    r".*`training_step` returned `None`.*",
)
_NOISE = ("Total FLOPs", "Total Flops")
# whole messages dropped: an advertisement, and the note that vidssl's own (plain) summary replaces Rich's
_DROP = ("litlogger", "Skipping setting a default `ModelSummary`")


class _DropNoise:
    """A logging filter: drops advertising lines and removes the FLOP lines (always 0 here) of summaries."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        if any(d in message for d in _DROP):
            return False
        if any(n in message for n in _NOISE):
            record.msg = "\n".join(line for line in message.splitlines() if not any(n in line for n in _NOISE))
            record.args = ()
        return True


class quiet_lightning:
    """Context manager: silence :data:`_FALSE_WARNINGS` and Lightning's noise while it is active."""

    LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.callbacks.model_summary",
               "lightning.pytorch.utilities.model_summary.model_summary")

    def __enter__(self) -> "quiet_lightning":
        import logging
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for pattern in _FALSE_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        self._filter = _DropNoise()
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        return self

    def __exit__(self, *exc) -> bool:
        import logging

        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        self._warnings.__exit__(*exc)
        return False
