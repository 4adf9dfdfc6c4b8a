"""Progress into a log file: plain lines a minute, on a fake clock; Keras's bar at a terminal."""

import io

import keras
import pytest

from alexnet_tf import progress


@pytest.fixture
def clock(monkeypatch):
    """The seconds progress.py reads, set by the test."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_training_into_a_log_file_gets_a_line_a_minute_and_none_at_the_epoch_s_last_step(clock, capsys):
    lines = progress.Lines()
    lines.set_params({"steps": 100, "epochs": 90})
    lines.on_epoch_begin(2)
    for batch, seconds in ((7, 30), (15, 61), (23, 90), (31, 125), (99, 500)):  # calls of 8 steps, at these seconds
        clock[0] = 1000.0 + seconds
        lines.on_train_batch_end(batch, {"loss": 6.123456, "top1": 0.0125, "img/s": 25.6})
        lines.on_test_batch_end(0, {"loss": 1.0})  # fit's validation: no lines
    assert capsys.readouterr().out.splitlines() == [
        "epoch 3/90, step 16/100: loss 6.123, top1 0.0125, img/s 25.6, ETA 0:05:20",
        "epoch 3/90, step 32/100: loss 6.123, top1 0.0125, img/s 25.6, ETA 0:04:26",
    ]


def test_an_evaluation_into_a_log_file_gets_a_line_a_minute(clock, capsys):
    lines = progress.Lines()
    lines.set_params({"steps": 50})
    clock[0] = 2000.0
    lines.on_test_begin()
    for batch, seconds in ((9, 59), (19, 120), (49, 300)):
        clock[0] = 2000.0 + seconds
        lines.on_test_batch_end(batch, {"top1": 0.5})
    assert capsys.readouterr().out.splitlines() == ["step 20/50: top1 0.5, ETA 0:03:00"]


def test_a_pass_into_a_log_file_gets_a_line_a_minute_and_one_at_its_end(clock, capsys, monkeypatch):
    monkeypatch.setattr(progress.sys, "stdout", io.StringIO())  # a log file, not a terminal
    bar = progress.bar(10_000, unit_name="image")
    assert isinstance(bar, progress.PlainBar) and isinstance(progress.callbacks()[0], progress.Lines)
    clock[0] = 1061.0
    bar.add(0)  # a minute with nothing done yet
    for seconds in (90, 121, 150, 210):
        clock[0] = 1000.0 + seconds
        bar.add(2048)
    clock[0] = 1220.0
    bar.add(1808)
    bar.update(10_000, finalize=True)  # as the scan closes a bar that stopped short: no second closing line
    assert progress.sys.stdout.getvalue().splitlines() == [
        "0/10000 images, 0.0 images/s, ETA unknown",
        "4096/10000 images, 33.9 images/s, ETA 0:02:54",
        "8192/10000 images, 39.0 images/s, ETA 0:00:46",
        "10000/10000 images, 45.5 images/s, done",
    ]


def test_a_terminal_gets_keras_s_bar(monkeypatch):
    monkeypatch.setattr(progress.sys.stdout, "isatty", lambda: True)
    assert isinstance(progress.bar(10, unit_name="image"), keras.utils.Progbar)
    assert progress.keras_verbose() == 1 and progress.callbacks() == []
