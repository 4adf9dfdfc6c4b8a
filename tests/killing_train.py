"""train.py, killed with SIGKILL by itself at a moment the test chooses by step, the same on any hardware, or sent
another signal once at such a moment:

KILL_AT=before-step:4 python tests/killing_train.py -scratch ...   killed when step 3 is done, before step 4 runs
KILL_AT=saving:6 python tests/killing_train.py -resume ...        killed in the middle of saving checkpoint 6:
                                                                  its files written, the index not yet naming it
KILL_AT=SIGTERM-before-step:8 python tests/killing_train.py ...   sent SIGTERM when step 7 is done, before step 8
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import os
import runpy
import signal
import sys

import keras
import tensorflow as tf

from alexnet_tf import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def killed(signum=signal.SIGKILL):
    os.kill(os.getpid(), signum)


class KillBeforeStep(keras.callbacks.Callback):
    def __init__(self, step, signum):
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_begin(self, batch, logs=None):
        if not self.sent and int(self.model.optimizer.iterations.numpy()) >= self.step - 1:
            self.sent = True
            killed(self.signum)


def main():
    moment, step = os.environ["KILL_AT"].split(":")
    if moment.endswith("before-step"):
        signum = signal.Signals[moment.removesuffix("-before-step")] if moment != "before-step" else signal.SIGKILL
        train_callbacks = training.run_callbacks
        training.run_callbacks = lambda **kwargs: [*train_callbacks(**kwargs), KillBeforeStep(int(step), signum)]
    else:
        record_state = tf.train.CheckpointManager._record_state

        def record_state_or_die(manager):
            if manager.latest_checkpoint.endswith(f"-{step}"):
                killed()
            record_state(manager)

        tf.train.CheckpointManager._record_state = record_state_or_die
    sys.argv = [os.path.join(ROOT, "train.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
