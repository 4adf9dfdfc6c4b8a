"""The Keras callbacks that keep a run safe in its run folder: checkpoints every few steps and at every epoch's end
(never of weights that are not finite), and the stop on SIGINT or SIGTERM with a checkpoint of the step reached."""

import contextlib
import math
import os
import signal
import threading

import keras
import tensorflow as tf

from alexnet_tf.errors import Stopped
from alexnet_tf.run_folder import CHECKPOINT_PREFIX, CheckpointWriteError, DivergedError, remove, unfinished_saves


@tf.function(autograph=False)
def _all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(variable)) for variable in variables])


class Checkpointer(keras.callbacks.Callback):
    """Saves every `save_every` steps and at the end of every epoch, after validation and the plateau rule; stops
    at a NaN or infinite loss, and never saves weights that are not finite. Keras's BackupAndRestore keeps neither
    the plateau memory nor the position within an epoch; a TF checkpoint of everything does, and
    tf.train.CheckpointManager writes it atomically and keeps the last few.

    Keras calls it between its calls of the training step (training.STEPS_PER_EXECUTION steps each): it checks the
    loss there, and saves there; every save checks first that the weights are finite."""

    SAVE_FAILURES = {
        tf.errors.ResourceExhaustedError: "no space left on the device, or over quota",
        tf.errors.OutOfRangeError: "a file size limit was reached",
    }

    def __init__(self, manager, *, save_every):
        super().__init__()
        self.manager, self.save_every, self.epoch_start, self.saved_at = manager, save_every, 0, 0

    def current_step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.saved_at = self.current_step()

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch_start + batch
        if step // self.save_every > self.saved_at // self.save_every:  # a multiple of save_every was reached
            self.save(step)

    def on_train_batch_end(self, batch, logs=None):
        if not math.isfinite(logs["loss"]):
            raise DivergedError(
                f"the loss is {logs['loss']} by step {self.epoch_start + batch + 1}: training "
                f"stopped; {self.last_good()}"
            )

    def on_epoch_end(self, epoch, logs=None):
        self.save(self.current_step())

    def last_good(self):
        latest = self.manager.latest_checkpoint
        return (
            f"the latest checkpoint ({latest}) is the last good one; start again with a lower --lr"
            if latest
            else "no checkpoint was written; start again with a lower --lr"
        )

    def save(self, step):
        if not _all_finite(self.model.trainable_variables):
            raise DivergedError(
                f"the loss diverged: the weights are not finite at step {step}, and were not saved; {self.last_good()}"
            )
        try:
            self.manager.save(checkpoint_number=step)
            self.saved_at = step
        except (tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError) as error:  # be specific: what SaveV2
            # raises for a full disk or quota (ENOSPC, EDQUOT) and for a file size limit (EFBIG)
            path = os.path.join(self.manager.directory, f"{CHECKPOINT_PREFIX}-{step}")
            remove(unfinished_saves(self.manager.directory))
            then = (
                f"continue with -resume from {self.manager.latest_checkpoint}"
                if self.manager.latest_checkpoint
                else "start again with -scratch --overwrite"
            )
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: {self.SAVE_FAILURES[type(error)]} "
                f"({type(error).__name__}): free space, then {then}"
            ) from None


class StopOnSignal(keras.callbacks.Callback):
    """Stops the run as asked by SIGINT (Ctrl-C) or SIGTERM (`kill`, a scheduler's preemption), its state saved by
    the `checkpointer`: after the current call of the training step, as a checkpoint of the step reached; asked during
    an epoch's last call, once the epoch has ended (validation, plateau rule, its checkpoint), so that resuming
    finds the epoch whole. After the first signal the default handlers are back: a second one stops at once. Placed
    after the callbacks of the epoch's end (training.callbacks)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpointer):
        super().__init__()
        self.checkpointer, self.signum = checkpointer, None

    @contextlib.contextmanager
    def listening(self):
        """The handlers, while the run trains (only the main thread may install them; a run in another thread, as
        the tests run scripts, keeps the default ones)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.ask) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def ask(self, signum, frame):
        # Python runs a handler between any two bytecodes of the main thread, even inside a print: it only notes.
        self.signum = signum
        for each in self.SIGNALS:
            signal.signal(each, signal.SIG_DFL)

    def on_train_batch_end(self, batch, logs=None):
        if not self.signum:
            return
        step = self.checkpointer.current_step()
        if step < self.checkpointer.epoch_start + self.params["steps"]:  # not the epoch's last call
            self.checkpointer.save(step)
            self.stop(step)

    def on_epoch_end(self, epoch, logs=None):
        if self.signum:
            self.model.stop_training = True  # Keras lets the epoch's callbacks run, then ends fit

    def on_train_end(self, logs=None):
        if self.signum:
            self.stop(self.checkpointer.current_step())

    def stop(self, step):
        raise Stopped(
            f"stopped by {signal.Signals(self.signum).name} at step {step}, saved as "
            f"{self.checkpointer.manager.latest_checkpoint}: continue with -resume",
            self.signum,
        )
