"""train.py, killed with SIGKILL by itself at a moment the test chooses by step, the same on any hardware:

KILL_AT=before-step:4 python tests/killing_train.py -scratch ...   killed when step 3 is done, before step 4 runs
KILL_AT=saving:6 python tests/killing_train.py -resume ...        killed in the middle of saving checkpoint 6:
                                                                  its files written, the index not yet naming it
"""

import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import training  # noqa: E402


def killed():
    os.kill(os.getpid(), signal.SIGKILL)


class KillBeforeStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.step - 1:
            killed()


def main():
    moment, step = os.environ["KILL_AT"].split(":")
    if moment == "before-step":
        train_callbacks = training.callbacks
        training.callbacks = lambda **kwargs: [*train_callbacks(**kwargs), KillBeforeStep(int(step))]
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
