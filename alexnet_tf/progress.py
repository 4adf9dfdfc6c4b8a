"""Progress of the long passes (training, evaluation, the unreadable-image scan, the mean, --prepare): Keras's bar at
a terminal; into a log file (a cluster job, nohup), plain lines once a minute.

Keras's progress bar takes any POSIX system for a terminal and redraws itself in place with backspaces and carriage
returns, which a log file keeps as one ever longer line: about 310 bytes a redraw, up to 20 redraws a second (on a
GPU, a redraw every call of the training step: megabytes an hour).
"""

import datetime
import sys
import time

import keras

LINE_SECONDS = 60  # ours: a progress line a minute into a log file


def to_a_terminal():
    return sys.stdout.isatty()


def keras_verbose():
    """fit's and evaluate's `verbose`: the bar at a terminal; into a log file Keras's one line at the end of each
    epoch or evaluation (Lines adds the minutes between)."""
    return 1 if to_a_terminal() else 2


def callbacks():
    """fit's and evaluate's callbacks of progress: Lines into a log file, none at a terminal."""
    return [] if to_a_terminal() else [Lines()]


def eta(elapsed, done, total):
    return datetime.timedelta(seconds=round(elapsed / done * (total - done)))


def bar(target, unit_name):
    """Keras's Progbar at a terminal; into a log file, PlainBar: its `add` and `update`, as plain lines."""
    return keras.utils.Progbar(target, unit_name=unit_name) if to_a_terminal() else PlainBar(target, unit_name)


class PlainBar:
    """A line every LINE_SECONDS of the units done, their rate and the ETA, and one when the pass ends."""

    def __init__(self, target, unit_name):
        self.target, self.unit_name = target, unit_name
        self.start = self.last = time.monotonic()
        self.seen, self.ended = 0, False

    def add(self, count):
        self.update(self.seen + count)

    def update(self, current, finalize=None):
        self.seen = current
        now = time.monotonic()
        ending = current >= self.target if finalize is None else finalize
        if self.ended or not (ending or now - self.last >= LINE_SECONDS):
            return
        self.last, self.ended = now, ending
        rate = current / max(now - self.start, 1e-9)
        if ending:
            left = "done"
        elif current:
            left = f"ETA {eta(now - self.start, current, self.target)}"
        else:
            left = "ETA unknown"
        print(f"{current}/{self.target} {self.unit_name}s, {rate:.1f} {self.unit_name}s/s, {left}", flush=True)


class Lines(keras.callbacks.Callback):
    """For a log file, beside Keras's line at the end (keras_verbose): a plain line of the running figures and the
    ETA every LINE_SECONDS of an epoch (fit) or an evaluation; none at the last step, whose line Keras prints."""

    def __init__(self):
        super().__init__()
        self.epoch = self.start = self.last = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start = epoch, time.monotonic()
        self.last = self.start

    def on_test_begin(self, logs=None):
        if self.epoch is None:  # evaluate; fit's validation passes are short and go without lines
            self.start = self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.line(f"epoch {self.epoch + 1}/{self.params['epochs']}, step", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if self.epoch is None:
            self.line("step", batch, logs)

    def line(self, what, batch, logs):
        now, steps = time.monotonic(), self.params["steps"]
        if now - self.last < LINE_SECONDS or batch + 1 == steps:
            return
        self.last = now
        values = ", ".join(f"{name} {float(value):.4g}" for name, value in logs.items())
        if steps is None:  # a dataset of unknown length
            print(f"{what} {batch + 1}: {values}", flush=True)
        else:
            print(f"{what} {batch + 1}/{steps}: {values}, ETA {eta(now - self.start, batch + 1, steps)}", flush=True)
