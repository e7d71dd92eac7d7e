"""The progress bar: Keras 3's look on a terminal, quiet non-terminal output, throttling, formats."""

import io
import re
import sys
import types

import pytest

from keramic.training import progress
from keramic.training.progress import Progbar

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BAR = "━" * 20


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class CountingValue:
    """A log value that counts how often it is turned into a number."""

    def __init__(self, value):
        self.value = value
        self.conversions = 0

    def __float__(self):
        self.conversions += 1
        return self.value


def make_bar(tty, **kwargs):
    stream, clock = Stream(tty), Clock()
    kwargs.setdefault("stateful_metrics", ["loss"])
    return Progbar(10, stream=stream, clock=clock, **kwargs), stream, clock


def run_ten_steps(bar, clock, loss=0.3428):
    for step in range(1, 11):
        clock.now = step * 0.1  # 0.1 s per step
        bar.update(step, [("loss", loss)])


def test_terminal_redraws_in_place_and_ends_with_the_keras_line():
    bar, stream, clock = make_bar(tty=True)
    run_ten_steps(bar, clock)
    out = stream.getvalue()
    assert out.count("\r") == 10 and out.endswith("\n") and out.count("\n") == 1
    assert "\x1b[1m" in out and "\x1b[32m" in out  # bold counts, green bar
    first, final = (part.rstrip("\b") for part in (out.split("\r")[1], out.split("\r")[-1]))  # Keras backs over each drawing
    assert ANSI.sub("", first) == " 1/10 ━━━━━━━━━━━━━━━━━━━━ 0s 100ms/step - loss: 0.3428"
    assert ANSI.sub("", final) == f"10/10 {BAR} 1s 100ms/step - loss: 0.3428\n"


def test_eta_counts_the_remaining_steps():
    bar, stream, clock = make_bar(tty=True)
    clock.now = 1.0
    bar.update(1)
    clock.now = 3.0
    bar.update(3)  # 1 s per step after the first, 7 steps left
    assert ANSI.sub("", stream.getvalue().split("\r")[-1]).startswith(" 3/10 ━━━━━━━━━━━━━━━━━━━━ 7s 1s/step")


def test_not_a_terminal_writes_only_the_final_plain_line(monkeypatch):
    monkeypatch.delitem(sys.modules, "posix", raising=False)  # as Keras, POSIX systems redraw on any stream
    bar, stream, clock = make_bar(tty=False)
    run_ten_steps(bar, clock)
    assert stream.getvalue() == f"10/10 {BAR} 1s 100ms/step - loss: 0.3428\n"


def test_a_posix_non_terminal_redraws_as_a_terminal_does():
    outputs = []
    for tty in (True, False):
        bar, stream, clock = make_bar(tty=tty)
        run_ten_steps(bar, clock)
        outputs.append(stream.getvalue())
    assert outputs[0] == outputs[1] if "posix" in sys.modules else outputs[0] != outputs[1]


def test_verbose_2_writes_one_compact_line_and_verbose_0_nothing():
    bar, stream, clock = make_bar(tty=True, verbose=2)
    run_ten_steps(bar, clock)
    assert stream.getvalue() == "10/10 - 1s - 100ms/step - loss: 0.3428\n"
    bar, stream, clock = make_bar(tty=True, verbose=0)
    run_ten_steps(bar, clock)
    assert stream.getvalue() == ""


def test_redraws_are_throttled_by_interval():
    bar, stream, clock = make_bar(tty=True, interval=1.0)
    for step in range(1, 10):
        clock.now = step * 0.3
        bar.update(step)
    # drawn at 0.3 s (first), then at 1.5 s and 2.7 s: the first updates at least 1 s after the last drawing
    assert stream.getvalue().count("\r") == 3
    bar.update(10)  # the final update is never throttled
    assert stream.getvalue().count("\r") == 4 and stream.getvalue().endswith("\n")


def test_values_become_numbers_only_when_drawn(monkeypatch):
    monkeypatch.delitem(sys.modules, "posix", raising=False)  # a stream that is not redrawn
    bar, stream, clock = make_bar(tty=False)
    value = CountingValue(0.25)
    for step in range(1, 10):
        bar.update(step, [("loss", value)])
    assert value.conversions == 0
    bar.update(10, [("loss", value)])
    assert value.conversions == 1 and stream.getvalue().endswith("loss: 0.2500\n")


def test_a_shorter_redraw_blanks_the_rest_of_the_previous_line():
    bar, stream, clock = make_bar(tty=True, interval=0)
    bar.update(1, [("loss", -12.5)])
    bar.update(2, [("loss", 0.5)])
    first, second = (ANSI.sub("", line.rstrip("\b")) for line in stream.getvalue().split("\r")[1:])
    assert first.endswith("loss: -12.5000") and second.endswith("loss: 0.5000  ")
    assert len(second) == len(first)


def test_unknown_target_counts_steps_then_finalizes():
    stream, clock = Stream(True), Clock()
    bar = Progbar(None, stream=stream, clock=clock)
    clock.now = 0.5
    bar.update(3)
    assert ANSI.sub("", stream.getvalue()) == "\r      3/Unknown 0s 167ms/step"
    clock.now = 1.5
    bar.target = 4
    bar.update(4, finalize=True)
    assert ANSI.sub("", stream.getvalue().split("\r")[-1]) == f"4/4 {BAR} 2s 1s/step\n"


def test_unlisted_metrics_are_averaged_over_steps_and_stateful_ones_shown_as_given():
    stream, clock = Stream(True), Clock()
    bar = Progbar(10, stream=stream, clock=clock, stateful_metrics=["acc"], interval=0)
    bar.update(1, [("loss", 1.0), ("acc", 0.1)])
    bar.update(3, [("loss", 4.0), ("acc", 0.3)])  # covers steps 2 and 3: weight 2
    assert stream.getvalue().endswith("loss: 3.0000 - acc: 0.3000")
    bar.add(2, [("loss", 0.0)])
    assert bar._seen_so_far == 5 and stream.getvalue().endswith("loss: 1.8000 - acc: 0.3000")


def test_stateless_metrics_averages_only_the_named_ones():
    stream, clock = Stream(True), Clock()
    bar = Progbar(10, stream=stream, clock=clock, stateless_metrics=["loss"], interval=0)
    bar.update(1, [("loss", 1.0), ("acc", 0.1)])
    bar.update(2, [("loss", 3.0), ("acc", 0.3)])
    assert stream.getvalue().endswith("loss: 2.0000 - acc: 0.3000")
    with pytest.raises(ValueError, match="only one"):
        Progbar(1, stateful_metrics=["a"], stateless_metrics=["b"])


@pytest.mark.parametrize(
    "seconds, text",
    [(5.9, "5s"), (125, "2:05"), (3725, "1:02:05")],
)
def test_eta_formats(seconds, text):
    assert progress._format_duration(seconds) == text


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s/step"), (2.4, "2s/step"), (0.0021, "2ms/step"), (0.000042, "42us/step")],
)
def test_step_time_formats(seconds, text):
    assert progress._format_per_unit(seconds, "step") == text


@pytest.mark.parametrize("value, text", [(0.34281, "0.3428"), (-2.5, "-2.5000"), (0.00001234, "1.2340e-05"), (0.0, "0.0000e+00")])
def test_metric_number_formats(value, text):
    assert progress._format_number(value) == text


@pytest.mark.interop
def test_final_line_matches_keras_progbar(keras, monkeypatch):
    """Same steps, same clock: every visible line is Keras's, character for character."""
    from keras.src.utils import progbar as keras_progbar

    clock = Clock()
    monkeypatch.setattr(keras_progbar, "time", types.SimpleNamespace(time=clock))
    keras_stream = Stream(True)
    monkeypatch.setattr("sys.stdout", keras_stream)
    reference = keras.utils.Progbar(10, stateful_metrics=["loss"])
    for step in range(1, 11):
        clock.now = step * 0.1
        reference.update(step, [("loss", 0.3428), ("acc", 0.9 + step / 1000)])
    bar, stream, clock = make_bar(tty=True)
    for step in range(1, 11):
        clock.now = step * 0.1
        bar.update(step, [("loss", 0.3428), ("acc", 0.9 + step / 1000)])

    def visible_lines(text):
        return [ANSI.sub("", line) for line in text.replace("\b", "").split("\r")[1:]]

    lines = visible_lines(stream.getvalue())
    assert lines == visible_lines(keras_stream.getvalue())
    assert lines[4] == " 5/10 ━━━━━━━━━━━━━━━━━━━━ 0s 100ms/step - loss: 0.3428 - acc: 0.9030"  # acc averaged
    assert lines[-1] == f"10/10 {BAR} 1s 100ms/step - loss: 0.3428 - acc: 0.9100\n"  # final values as given
