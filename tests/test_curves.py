"""TensorBoard's per-step curves, read back with TensorBoard's own reader: the steps, the window, a resume without
gap or repeat; conv1's kernels once an epoch; the config once."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import flags, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow


def read_back(folder):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }


def test_curves_every_n_steps_over_the_window_and_on_across_a_resume(tiny_data, tmp_path):
    run = ("--data-dir", tiny_data, "--ckpt-dir", tmp_path / "run")
    scratch = flags(epochs=1, steps_per_epoch=4, batch_size=8, save_every=2, log_every=2)
    assert run_script("train.py", "-scratch", *run, *scratch, cwd=tmp_path).returncode == 0
    assert run_script("train.py", "-resume", *run, "--epochs", 2, cwd=tmp_path).returncode == 0
    tags = {**read_back(tmp_path / "run" / "logs" / "train"), **read_back(tmp_path / "run" / "logs" / "steps")}
    for name in ("loss", "top1", "top5", "learning_rate", "images_per_second"):
        assert [step for step, _ in tags[f"steps/{name}"]] == [2, 4, 6, 8], name  # no gap, no repeat
    loss = dict(tags["steps/loss"])
    epoch_loss = [float(value) for _, value in tags["epoch_loss"]]
    for epoch, (first, second) in enumerate(((2, 4), (6, 8))):  # two windows of 2 steps make each epoch's mean
        assert (float(loss[first]) + float(loss[second])) / 2 == pytest.approx(epoch_loss[epoch], rel=1e-5)
        assert float(loss[second]) != pytest.approx(epoch_loss[epoch])  # not the running mean since the epoch began
    assert all(float(value) == pytest.approx(0.01 * 8 / 128) for _, value in tags["steps/learning_rate"])  # 10 classes
    assert [step for step, _ in tags["conv1_kernels"]] == [4, 8]
    [(step, text)] = tags["config"]
    config = json.loads(text.item().decode().strip("`\n"))
    assert step == 0 and config["settings"]["log_every"] == 2 and np.isfinite(float(loss[8]))
