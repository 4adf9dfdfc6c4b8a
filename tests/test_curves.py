"""TensorBoard's per-step curves, read back with TensorBoard's own reader: the steps, the window, a resume without
gap or repeat, each point on disk at once; conv1's kernels once an epoch; the config once."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import flags, run_script
from tensorboard_view import tensorboard_points

from alexnet_tf import curves


def test_each_point_is_on_disk_before_the_next_step_runs(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    step_curves = curves.StepCurves(str(tmp_path), log_every=2, batch_size=2, groups=1, config_json={})
    on_disk = {}  # what a run killed as each step begins (SIGKILL, the out-of-memory killer) leaves of its curves

    def look(batch, logs):
        on_disk[batch + 1] = [step for step, _ in tensorboard_points(tmp_path / curves.RUN_NAME).get("steps/loss", [])]

    data = tf.data.Dataset.from_tensors((tf.ones((2, 3)), tf.zeros((2,), tf.int32))).repeat(5)
    model.fit(
        data,
        epochs=1,
        steps_per_epoch=5,
        verbose=0,
        callbacks=[step_curves, keras.callbacks.LambdaCallback(on_train_batch_begin=look)],
    )
    assert on_disk == {1: [], 2: [], 3: [2], 4: [2], 5: [2, 4]}


@pytest.mark.slow
def test_curves_every_n_steps_over_the_window_and_on_across_a_resume(tiny_data, tmp_path):
    run = ("--data-dir", tiny_data, "--ckpt-dir", tmp_path / "run")
    scratch = flags(epochs=1, steps_per_epoch=4, batch_size=8, save_every=2, log_every=2)
    assert run_script("train.py", "-scratch", *run, *scratch, cwd=tmp_path).returncode == 0
    assert run_script("train.py", "-resume", *run, "--epochs", 2, cwd=tmp_path).returncode == 0
    logs = tmp_path / "run" / "logs"
    tags = {**tensorboard_points(logs / "train"), **tensorboard_points(logs / "steps")}
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
