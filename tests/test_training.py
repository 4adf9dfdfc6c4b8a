"""The training recipe (alexnet_tf/training.py): the paper's SGD with weight decay through momentum, the plateau
rule, a resume's checkpoint of everything, throughput logs, and Keras's calls of several steps."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import alexnet
from alexnet_tf import callbacks, run_folder, training


def test_resume_restores_learning_rate_momentum_and_plateau_memory(tmp_path, training_config):
    config = training_config()
    model, plateau, checkpoint = training.build_training(config)
    images, labels = np.random.default_rng(0).normal(0, 50, (2, 224, 224, 3)), np.array([0, 2])
    model.train_on_batch(images, labels)
    model.optimizer.learning_rate.assign(0.001)
    plateau.state.best.assign(1.5)
    plateau.state.wait.assign(2)
    tf.train.CheckpointManager(checkpoint, str(tmp_path), 3).save(checkpoint_number=1)

    model2, plateau2, checkpoint2 = training.build_training(training_config(seed=1))
    run_folder.restore(checkpoint2, tf.train.latest_checkpoint(str(tmp_path)))
    assert float(model2.optimizer.learning_rate) == pytest.approx(0.001)
    assert int(model2.optimizer.iterations) == 1
    assert float(plateau2.state.best) == 1.5 and int(plateau2.state.wait) == 2
    for v, v2 in zip(model.optimizer.variables, model2.optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), v2.numpy())
    for w, w2 in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(w, w2)


def test_weight_decay_goes_through_momentum():
    weight, bias = tf.Variable([[1.0, -2.0]]), tf.Variable([3.0])
    optimizer = training.PaperSGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=0.5)
    gradients = [tf.constant([[0.2, 0.2]]), tf.constant([0.2])]
    optimizer.apply(gradients, [weight, bias])
    optimizer.apply(gradients, [weight, bias])
    v, w = np.zeros(2), np.array([1.0, -2.0])
    for _ in range(2):  # paper §5: v <- 0.9 v - wd lr w - lr g; w <- w + v
        v = 0.9 * v - 0.5 * 0.1 * w - 0.1 * 0.2
        w = w + v
    np.testing.assert_allclose(weight.numpy()[0], w, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), [3.0 - 0.02 - (0.9 * 0.02 + 0.02)], rtol=1e-6)  # no decay on biases


def test_weight_decay_without_momentum_is_plain_sgd_on_the_decayed_gradient():
    weight, bias = tf.Variable([[1.0, -2.0]]), tf.Variable([3.0])
    optimizer = training.PaperSGD(learning_rate=0.1, momentum=0.0, coupled_weight_decay=0.5)
    optimizer.apply([tf.constant([[0.2, 0.2]]), tf.constant([0.2])], [weight, bias])
    np.testing.assert_allclose(weight.numpy()[0], [1.0 - 0.1 * (0.2 + 0.5), -2.0 - 0.1 * (0.2 - 1.0)], rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), [3.0 - 0.02], rtol=1e-6)


def test_plateau_divides_by_ten_at_most_three_times():
    model = alexnet.alexnet(num_classes=2)
    model.compile(optimizer=training.PaperSGD(learning_rate=0.01))
    plateau = training.PlateauSchedule(patience=2)
    plateau.set_model(model)
    for epoch, val_loss in enumerate([1.0, 0.9, 0.95, 0.93] + [0.99] * 10):
        plateau.on_epoch_end(epoch, {"val_loss": val_loss})
        if epoch == 3:
            assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)
    assert int(plateau.state.drops) == 3


@pytest.fixture
def clock(monkeypatch):
    """The seconds time.perf_counter gives (what training.py times with), set by the test."""
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    return now


def test_throughput_counts_training_time_alone(clock):
    """images_per_second over the training steps alone, the validation pass timed apart; the bar's learning rate
    read at the epoch's start, the epoch's at its end (after the plateau rule)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=training.PaperSGD(learning_rate=0.01), loss="mse")
    logs = training.ThroughputLogs(batch_size=8, unreadable=2)
    logs.set_model(model)
    logs.set_params({"steps": 4})
    logs.on_epoch_begin(0)
    batch_logs = []
    for batch, now in ((1, 100.5), (3, 102.0)):  # calls of 2 steps ending at these seconds
        clock[0] = now
        batch_logs.append({"loss": 1.0})
        logs.on_train_batch_end(batch, batch_logs[-1])
    logs.on_test_begin()
    model.optimizer.learning_rate.assign(0.001)  # the plateau rule, at the epoch's end
    clock[0] = 102.75
    epoch_logs = {}
    logs.on_epoch_end(0, epoch_logs)
    assert [entry["img/s"] for entry in batch_logs] == [2 * 8 / 0.5, 4 * 8 / 2]  # the images of the steps so far
    assert [entry["lr"] for entry in batch_logs] == pytest.approx([0.01, 0.01])
    assert epoch_logs == {
        "lr": pytest.approx(0.001),
        "images_per_second": 4 * 8 / 2,
        "validation_seconds": 0.75,
        "unreadable_skipped": 2,
    }
    clock[0] = 110.0
    logs.on_epoch_begin(1)
    clock[0] = 114.0
    epoch_logs = {}
    logs.on_epoch_end(1, epoch_logs)  # an epoch without a validation pass
    assert epoch_logs["images_per_second"] == 4 * 8 / 4 and epoch_logs["validation_seconds"] == 0


def test_keras_reads_the_logs_once_a_call_of_several_steps(tmp_path, training_config):
    imagenet = training_config(save_every=1000, steps_per_epoch=10008).settings
    assert training.steps_per_execution(imagenet) == 8
    assert training.steps_per_execution(training_config(save_every=10, steps_per_epoch=12).settings) == 2
    assert training.epoch_steps(1_281_167, 128, save_every=1000) == 10008
    assert training.epoch_steps(400, 32, save_every=10) == 12
    assert training.epoch_steps(40, 8, save_every=2) == 5  # dropping 1 of 5 steps would be too many
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=training.PaperSGD(learning_rate=0.01),
        steps_per_execution=2,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    manager = run_folder.checkpoint_manager(tf.train.Checkpoint(model=model), str(tmp_path), chief=True)
    checkpointer = callbacks.Checkpointer(manager, save_every=4)
    reads = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: reads.append(batch))
    data = tf.data.Dataset.from_tensors((tf.ones((2, 3)), tf.zeros((2,), tf.int32))).repeat(16)
    model.fit(data, epochs=2, steps_per_epoch=8, callbacks=[checkpointer, counter], verbose=0)
    assert reads == [1, 3, 5, 7] * 2  # the last step of each call of 2, not every step
    assert [int(path.rsplit("-", 1)[1]) for path in manager.checkpoints] == [8, 12, 16]  # saves at 4, 8, 12, 16
