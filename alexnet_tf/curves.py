"""TensorBoard's view of a run as it trains, beside Keras's one point an epoch: every `log_every` steps the loss, top-1
and top-5 over those steps (not since the epoch began), the learning rate and images/s; conv1's kernels as an image
once an epoch (figures.kernel_figure, the paper's Figure 3); the run's config.json as text when it starts.

    LOG_DIR/steps/   steps/loss, steps/top1, steps/top5, steps/learning_rate, steps/images_per_second,
                     conv1_kernels, config (beside Keras's own train/ and validation/, one point an epoch)

The figures come from the logs Keras reads after each call of the training step (up to training.STEPS_PER_EXECUTION
steps), so they cost no host sync of their own; a point is written at the first call's end at or past each multiple
of `log_every`, tagged with that step, and is on disk at once (leaving the writer's as_default flushes it). A resumed
run continues at its saved step: -resume writes again the points a killed run wrote after its last checkpoint, and
TensorBoard's default loader shows the later point of a step (it drops the points at or past a step written anew).
"""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import figures, progress

LOG_EVERY = 100  # steps between points of the curves (the issue's; an ImageNet epoch is 10,008 steps)
RUN_NAME = "steps"  # TensorBoard's run of these summaries, in the log folder
WINDOWED = ("loss", "top1", "top5")  # Keras's running means over the epoch, turned into means over each window


class StepCurves(keras.callbacks.Callback):
    """Writes the per-step curves, the kernels and the config (see the module's docstring) into `log_dir`/steps. It
    works with any compiled model (benchmarks/ time it on a tiny one): the curves of the metrics its logs hold, the
    kernels of a layer named conv1."""

    def __init__(self, log_dir, *, log_every, batch_size, groups, config_json):
        super().__init__()
        self.log_dir, self.log_every, self.batch_size = log_dir, log_every, batch_size
        self.groups, self.config_json = groups, config_json
        self.writer = None
        self.epoch_start = self.next_point = 0
        self.seen = dict.fromkeys(WINDOWED, 0.0)  # this epoch's sums up to the last call, and its steps
        self.seen_steps = 0
        self.window = dict.fromkeys(WINDOWED, 0.0)  # the sums since the last point, and their steps and seconds
        self.window_steps, self.window_seconds, self.mark = 0, 0.0, None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, RUN_NAME))
        step = self.current_step()
        self.next_point = (step // self.log_every + 1) * self.log_every
        if step == 0:
            with self.writer.as_default():
                tf.summary.text("config", f"```\n{json.dumps(self.config_json, indent=1)}\n```", step=0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.current_step()
        self.seen, self.seen_steps, self.mark = dict.fromkeys(WINDOWED, 0.0), 0, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        steps = batch + 1  # of this epoch: Keras's logs are means over them
        for name in WINDOWED:
            if name not in logs:
                continue
            total = logs[name] * steps
            self.window[name] += total - self.seen[name]
            self.seen[name] = total
        self.window_steps += steps - self.seen_steps
        self.window_seconds += now - self.mark
        self.seen_steps, self.mark = steps, now
        step = self.epoch_start + steps
        if step >= self.next_point:
            self.write_point(step, logs)

    def write_point(self, step, logs):
        values = {name: self.window[name] / self.window_steps for name in WINDOWED if name in logs}
        if "lr" in logs:
            values["learning_rate"] = logs["lr"]
        values["images_per_second"] = self.window_steps * self.batch_size / max(self.window_seconds, 1e-9)
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(f"steps/{name}", value, step=step)
        if not progress.to_a_terminal():
            print(f"step {step}: " + ", ".join(f"{name} {value:.4g}" for name, value in values.items()), flush=True)
        self.window = dict.fromkeys(WINDOWED, 0.0)
        self.window_steps, self.window_seconds = 0, 0.0
        self.next_point = (step // self.log_every + 1) * self.log_every

    def on_epoch_end(self, epoch, logs=None):
        if any(layer.name == "conv1" for layer in self.model.layers):
            kernel = self.model.get_layer("conv1").get_weights()[0]
            picture = np.asarray(figures.kernel_figure(kernel, self.groups))
            with self.writer.as_default():
                tf.summary.image("conv1_kernels", picture[None], step=self.current_step())
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()

    def current_step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
