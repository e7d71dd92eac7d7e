"""The Keras 3 progress bar (`keras.utils.Progbar`): `938/938 ━━━━━━━━━━━━━━━━━━━━ 2s 2ms/step - loss: 0.3428`.

Values are stored as given (floats or 0-d tensors) and turned into numbers only when a line is
drawn, so a training step that does not redraw costs no device synchronisation.
"""

import logging
import os
import sys
import time

import numpy as np

from keramic import config

_BOLD = "\x1b[1m"
_GREEN = "\x1b[32m"
_WHITE = "\x1b[37m"
_RESET = "\x1b[0m"
_BAR_CHAR = "━"


def _supports_redraw(stream):
    """Keras's test for redrawing the line: a terminal, a notebook, PyCharm, or any POSIX system
    (so on Linux and macOS a captured or redirected stdout gets the redraws too, as in Keras)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules or "posix" in sys.modules or "PYCHARM_HOSTED" in os.environ


def print_msg(message: str, line_break: bool = True, stream=None) -> None:
    """Write to stdout (or `stream`), or, after `keras.config.disable_interactive_logging()`, log
    at INFO to the `absl` logger as Keras does (hidden unless logging is set up to show INFO)."""
    if not config.is_interactive_logging_enabled():
        logging.getLogger("absl").info(message)
        return
    stream = sys.stdout if stream is None else stream
    stream.write(f"{message}\n" if line_break else message)
    stream.flush()


def _format_number(value):
    """A scalar as Keras prints it; a per-class array (e.g. F1Score(average=None)) shows its mean, as in Keras."""
    value = float(np.mean(value))
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _format_duration(seconds):
    """An ETA as Keras shows it: `42s`, `3:07`, or `1:02:03`."""
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _format_per_unit(seconds, unit_name):
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit_name}"
    return f"{seconds * 1e6:.0f}us/{unit_name}"


class Progbar:
    """A progress bar for `target` steps (None when the length is unknown).

    `verbose=1` redraws one line on a terminal at most every `interval` seconds; when the
    stream is not a terminal only the final line is written, so log files get one line per
    run instead of a line per redraw. `verbose=2` writes only a compact final line, `0` nothing.

    Metrics named in `stateful_metrics` are shown as given; the others are averaged over the
    steps seen (weighted by how many steps each update covers). Give `stateless_metrics`
    instead to average only those and show all others as given. `clock` and `stream` exist so
    tests can drive time and capture output.
    """

    def __init__(
        self,
        target,
        width=20,
        verbose=1,
        interval=0.05,
        stateful_metrics=None,
        unit_name="step",
        *,
        stateless_metrics=None,
        stream=None,
        clock=time.monotonic,
    ):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Pass only one of `stateful_metrics` and `stateless_metrics`.")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._stateful = set(stateful_metrics or ())
        self._stateless = None if stateless_metrics is None else set(stateless_metrics)
        self._stream = sys.stdout if stream is None else stream
        self._dynamic = _supports_redraw(self._stream)
        self._clock = clock
        self._start = clock()
        # name -> (total, count): shown as total / count. Insertion order is display order.
        self._values = {}
        self._seen_so_far = 0
        self._reference = None  # (step, time) of the first update, excluded from the step time
        self._last_draw = None
        self._drawn_width = 0

    @property
    def live(self):
        """Whether updates before the final one are drawn (verbose 1 on a terminal)."""
        return self.verbose == 1 and self._dynamic

    def _averaged(self, name):
        if self._stateless is not None:
            return name in self._stateless
        return name not in self._stateful

    def update(self, current, values=None, finalize=None):
        """Record progress up to step `current` with `values`, a list of `(name, value)` pairs.

        `finalize` defaults to `current >= target`; a finalizing update always draws and
        takes every value as given.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or ():
            if finalize or not self._averaged(name):
                self._values[name] = (value, 1)
            else:
                steps = max(current - self._seen_so_far, 1)
                total, count = self._values.get(name, (0.0, 0))
                self._values[name] = (total + np.asarray(value, dtype=np.float64) * steps, count + steps)
        self._seen_so_far = current

        draws = (self.verbose == 1 and (finalize or self._dynamic)) or (self.verbose == 2 and finalize)
        if not draws:
            if self._reference is None and current:
                self._reference = (current, self._clock())
            return
        now = self._clock()
        if self._reference is None and current:
            self._reference = (current, now)
        if not finalize and self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        if self.verbose == 1:
            self._draw_line(current, now, finalize)
        elif self.target:
            self._write(self._summary_line(current, now))

    def add(self, n, values=None):
        """Advance by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _step_time(self, current, now):
        if not current:
            return 0.0
        ref_step, ref_time = self._reference
        if current > ref_step:
            # The first step (often a warm-up or compilation) is left out of the estimate.
            return (now - ref_time) / (current - ref_step)
        return (now - self._start) / current

    def _metrics_text(self):
        return "".join(f" - {name}: {_format_number(np.asarray(total, dtype=np.float64) / max(count, 1))}" for name, (total, count) in self._values.items())

    def _draw_line(self, current, now, finalize):
        style = self._dynamic

        def styled(text, code):
            return f"{code}{text}{_RESET}" if style else text  # Keras styles an empty part too

        step_time = self._step_time(current, now)
        if self.target:
            count = f"{current:>{len(str(self.target))}d}/{self.target}"
            filled = min(self.width, int(self.width * current / self.target))
            plain = [count, " ", _BAR_CHAR * self.width]
            shown = [styled(count, _BOLD), " ", styled(_BAR_CHAR * filled, _GREEN), styled(_BAR_CHAR * (self.width - filled), _WHITE)]
        else:
            count = f"{current:7d}/Unknown"
            plain, shown = [count], [count]
        if self.target and not finalize:
            clock_text = _format_duration(step_time * (self.target - current))
        else:
            clock_text = f"{now - self._start:.0f}s"
        info = f" {_format_per_unit(step_time, self.unit_name)}{self._metrics_text()}"
        plain += [" ", clock_text, info]
        shown += [" ", styled(clock_text, _BOLD), info]

        line = "".join(shown)
        if self._dynamic:
            # As Keras: back over the previous drawing, then overwrite it, blanking what a longer one left.
            width = len("".join(plain))
            line = "\b" * self._drawn_width + "\r" + line + " " * max(self._drawn_width - width, 0)
            self._drawn_width = width
        self._write(line + "\n" if finalize else line)

    def _summary_line(self, current, now):
        count = f"{current:>{len(str(self.target))}d}/{self.target}"
        per_unit = _format_per_unit(self._step_time(current, now), self.unit_name)
        return f"{count} - {now - self._start:.0f}s - {per_unit}{self._metrics_text()}\n"

    def _write(self, text):
        print_msg(text, line_break=False, stream=self._stream)
