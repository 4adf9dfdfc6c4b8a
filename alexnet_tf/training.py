"""The paper's training recipe in Keras: the optimizer with weight decay through momentum, the ÷10 plateau rule,
the compiled model and everything a resume restores, and `fit` from a saved step to the last epoch.

train.py is the command line around it; benchmarks/bench.py and the tests build the same model with
`build_training`.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import callbacks, curves, distribute, input_pipeline, network, progress, run_folder, startup
from alexnet_tf.errors import RunError

# Optimisation, paper §5
EPOCHS = 90  # "roughly 90 cycles through the training set"
BATCH_SIZE = 128  # paper §5
LEARNING_RATE = 0.01  # paper §5, initial
MOMENTUM = 0.9  # paper §5
WEIGHT_DECAY = 5e-4  # paper §5, through momentum: v <- 0.9 v - 0.0005 lr w - lr dL/dw
LR_DROP_FACTOR = 0.1  # paper §5: divided by 10 when the validation error stops improving
LR_MAX_DROPS = 3  # paper §5: "reduced three times prior to termination"
PLATEAU_PATIENCE = 3  # ours: the paper does not say how long "stops improving" is
AUGMENT = "paper"  # paper §4.1: random crops, mirrors, PCA lighting; the seed had random crops only
TOP_K = 5  # the paper's top-5, shown while training
# Ours: training steps that one Keras call runs on the device before the host reads the logs (Keras with TensorFlow
# reads them, and so waits for the device, after every call); saves fall between calls, so it divides SAVE_EVERY.
STEPS_PER_EXECUTION = 8
MAX_DROPPED_STEPS = 0.01  # ours: the fraction of an epoch's steps dropped to keep it a multiple of a call
ALL_LAYERS = "all"  # --train-layers: every layer trains (fine-tuning may freeze some)


def value_of(variable):
    """A scalar variable's value as a Python number, mirrored across replicas or not."""
    return keras.ops.convert_to_numpy(variable).item()


def global_step(model):
    return int(value_of(model.optimizer.iterations))


class PaperSGD(keras.optimizers.SGD):
    """SGD with momentum and the paper's weight decay, which goes through the momentum (paper §5):
    v <- m v - wd lr w - lr g;  w <- w + v.  Keras's own `weight_decay` is decoupled from momentum, so this adds
    wd * w to the gradient of every weight matrix and kernel (rank >= 2), and to no bias. The momentum defaults to
    the paper's; without momentum, or with Nesterov's, Keras's own update runs on the decayed gradient."""

    def __init__(self, coupled_weight_decay=WEIGHT_DECAY, momentum=MOMENTUM, **kwargs):
        super().__init__(momentum=momentum, **kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        decay = self.coupled_weight_decay if len(variable.shape) >= 2 else 0.0
        if not self.momentums or self.nesterov:
            super().update_step(gradient + tf.cast(decay, gradient.dtype) * variable, variable, learning_rate)
            return
        velocity = self.momentums[self._get_variable_index(variable)]
        new_velocity, new_variable = paper_sgd_step(
            variable=tf.convert_to_tensor(variable),
            velocity=tf.convert_to_tensor(velocity),
            gradient=tf.cast(gradient, variable.dtype),
            learning_rate=tf.cast(learning_rate, variable.dtype),
            momentum=tf.constant(self.momentum, variable.dtype),
            decay=tf.constant(decay, variable.dtype),
        )
        self.assign(velocity, new_velocity)
        self.assign(variable, new_variable)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


# Keras's SGD runs the update as separate ops, each a pass over the 62 M weights; compiled, it is one pass
# (docs/performance.md).
@tf.function(jit_compile=True, autograph=False)
def paper_sgd_step(*, variable, velocity, gradient, learning_rate, momentum, decay):
    """One weight's update of PaperSGD as new values: (velocity, variable)."""
    new_velocity = momentum * velocity - learning_rate * (gradient + decay * variable)
    return new_velocity, variable + new_velocity


class PlateauSchedule(keras.callbacks.Callback):
    """Divides the learning rate by 10 when the validation loss has not improved for `patience` epochs, at most
    `max_drops` times (paper §5). Keras's ReduceLROnPlateau forgets its memory at every fit() and cannot be
    checkpointed; this one keeps it in variables that the training checkpoint saves."""

    def __init__(self, patience=PLATEAU_PATIENCE, factor=LR_DROP_FACTOR, max_drops=LR_MAX_DROPS):
        super().__init__()
        self.patience, self.factor, self.max_drops = patience, factor, max_drops
        self.state = tf.train.Checkpoint(
            best=tf.Variable(np.inf, dtype=tf.float64),
            wait=tf.Variable(0, dtype=tf.int64),
            drops=tf.Variable(0, dtype=tf.int64),
        )

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        if logs["val_loss"] < state.best:
            state.best.assign(logs["val_loss"])
            state.wait.assign(0)
            return
        state.wait.assign_add(1)
        if state.wait >= self.patience and state.drops < self.max_drops:
            lr = self.model.optimizer.learning_rate
            lr.assign(value_of(lr) * self.factor)
            state.drops.assign_add(1)
            state.wait.assign(0)
            print(
                f"\nValidation loss has not improved for {self.patience} epochs: learning rate now {value_of(lr):.2e}"
            )


class ThroughputLogs(keras.callbacks.Callback):
    """Adds the learning rate and images/s to the progress bar's logs, and to every epoch's (and so TensorBoard's):
    `images_per_second` over the training steps alone, `validation_seconds`, and the unreadable images skipped.
    The learning rate changes only between epochs: it is read once an epoch, not at every call."""

    def __init__(self, batch_size, unreadable):
        super().__init__()
        self.batch_size, self.unreadable = batch_size, unreadable
        self.start = self.training_seconds = self.lr = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.training_seconds = time.perf_counter(), None
        self.lr = value_of(self.model.optimizer.learning_rate)

    def on_train_batch_end(self, batch, logs=None):
        logs["lr"] = self.lr
        logs["img/s"] = (batch + 1) * self.batch_size / (time.perf_counter() - self.start)

    def on_test_begin(self, logs=None):
        self.training_seconds = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        training_seconds = self.training_seconds or elapsed
        logs["lr"] = value_of(self.model.optimizer.learning_rate)
        logs["images_per_second"] = self.params["steps"] * self.batch_size / training_seconds
        logs["validation_seconds"] = elapsed - training_seconds
        logs["unreadable_skipped"] = self.unreadable


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard, once an epoch, without its batch hooks: with update_freq="epoch" they write nothing, yet
    cost every call time on the host."""

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, log_dir):
        super().__init__(log_dir, update_freq="epoch", write_graph=False)


def steps_per_execution(settings):
    """The steps of one Keras call for a run's RunSettings: STEPS_PER_EXECUTION, or fewer, so that calls end at every
    save and at every epoch's end (a call must not run into the next epoch's data)."""
    return math.gcd(STEPS_PER_EXECUTION, settings.save_every, settings.steps_per_epoch)


def epoch_steps(num_images, batch_size, save_every):
    """The steps of an epoch, one pass over `num_images`, less the few that make it a multiple of the steps of a
    Keras call when they are at most MAX_DROPPED_STEPS of it (on ImageNet at batch 128: 10,008 steps, not 10,009;
    each epoch draws its own order, so no image is left out for good)."""
    steps, call = num_images // batch_size, math.gcd(STEPS_PER_EXECUTION, save_every)
    whole = steps // call * call
    return whole if steps - whole <= MAX_DROPPED_STEPS * steps else steps


def build_training(config, jit_compile=False, strategy=None, steps_per_execution=1):
    """The compiled model of the RunConfig `config`, built in the strategy's scope and the run's precision, the
    plateau rule, and a checkpoint of everything a resume needs: weights, momentum, step, learning rate, the plateau
    rule's memory and the dropout RNG. (Op determinism, for the whole process, is train.py's to ask.)"""
    settings = config.settings
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope(), network.precision(settings.precision):
        model = config.architecture.build()
        trained = trained_layers(settings.train_layers)
        for layer in model.layers:
            layer.trainable = layer.name in trained or not layer.weights
        model.compile(
            optimizer=PaperSGD(
                learning_rate=settings.lr,
                momentum=settings.momentum,
                coupled_weight_decay=settings.weight_decay,
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[
                keras.metrics.SparseCategoricalAccuracy(name="top1"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=TOP_K, name=f"top{TOP_K}"),
            ],
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
        model.optimizer.build(model.trainable_variables)
        plateau = PlateauSchedule()
        dropout_rng = [layer.seed_generator.state for layer in model.layers if hasattr(layer, "seed_generator")]
        checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, plateau=plateau.state, dropout_rng=dropout_rng
        )
    if distribute.is_multi_worker(strategy):
        distribute.mend_keras_build(model)
    return model, plateau, checkpoint


def trained_layers(train_layers):
    """The layers a run trains, from its train_layers setting: ALL_LAYERS, or comma-separated names."""
    return network.LAYER_NAMES if train_layers == ALL_LAYERS else tuple(train_layers.split(","))


def transfer_weights(model, source_dir, classes):
    """Fine-tuning's start: the weights of the run in `source_dir` wherever their shapes fit `model`; fc8's rows of
    the classes both runs have (matched by WNID, or by folder name), fc8 new for the others."""
    source, source_config = run_folder.load_trained(source_dir)
    for name in network.LAYER_NAMES[:-1]:
        weights = source.get_layer(name).get_weights()
        if [w.shape for w in weights] == [w.shape for w in model.get_layer(name).get_weights()]:
            model.get_layer(name).set_weights(weights)
        else:
            print(f"{name}: shapes differ from {source_dir}'s, so it starts from the paper's initialisation")
    row = {c.wnid: index for index, c in enumerate(source_config.classes)}
    kernel, bias = model.get_layer("fc8").get_weights()
    source_kernel, source_bias = source.get_layer("fc8").get_weights()
    shared = [(index, row[c.wnid]) for index, c in enumerate(classes) if c.wnid in row]
    for index, source_index in shared:
        kernel[:, index], bias[index] = source_kernel[:, source_index], source_bias[source_index]
    model.get_layer("fc8").set_weights([kernel, bias])
    print(
        f"Fine-tuning from {source_dir}: conv1..fc7 copied; fc8 keeps the rows of {len(shared)} of the "
        f"{len(classes)} classes, which {source_dir} has too, and starts the others anew"
    )


def run_callbacks(*, config, plateau, manager, log_dir):
    """train.py's callbacks, in order: the plateau rule before the epoch's checkpoint, which must save its memory;
    a stop asked by a signal after everything of the epoch's end."""
    checkpointer = callbacks.Checkpointer(manager, save_every=config.settings.save_every)
    return [
        plateau,
        ThroughputLogs(config.settings.batch_size, len(config.unreadable.train)),
        curves.StepCurves(
            log_dir,
            log_every=config.settings.log_every,
            batch_size=config.settings.batch_size,
            groups=config.architecture.groups,
            config_json=config.to_json(),
        ),
        *progress.callbacks(),
        checkpointer,
        EpochTensorBoard(log_dir),
        callbacks.StopOnSignal(checkpointer),
    ]


def fit(model, *, config, plateau, manager, train_split, val_split, log_dir, strategy):
    """Model.fit from the saved step to the last epoch. A run resumed mid-epoch first finishes that epoch in a fit
    of its own, so that epochs keep their boundaries and the data stream continues where it stopped."""
    settings = config.settings
    batch_size, steps_per_epoch, epochs = settings.batch_size, settings.steps_per_epoch, settings.epochs
    epoch, offset = divmod(global_step(model), steps_per_epoch)
    if epoch >= epochs:
        print(f"The run has done its {epochs} epochs: pass a larger --epochs to -resume to train on")
        return
    print(
        f"Training on {train_split.num_images} images, validating on {val_split.num_images}: "
        f"epochs {epoch + 1}..{epochs} of {steps_per_epoch} steps x {batch_size} images, "
        + ", ".join(
            f"{name} {getattr(settings, name)}"
            for name in (
                "lr",
                "momentum",
                "weight_decay",
                "dropout",
                "augment",
                "groups",
                "seed",
                "deterministic",
                "precision",
                "save_every",
            )
        )
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Keras opens the next validation pass's iterator at the end of each and drops it when that pass starts, within
    # the epoch's training time (docs/performance.md)
    val = startup.read_once(
        input_pipeline.eval_dataset(val_split, spec=config.preprocessing, batch_size=batch_size)
        .map(lambda crops, label: (crops[:, 0], label))
        .with_options(options)
    )
    epoch_callbacks = run_callbacks(config=config, plateau=plateau, manager=manager, log_dir=log_dir)
    stop_on_signal = next(each for each in epoch_callbacks if isinstance(each, callbacks.StopOnSignal))
    phases = [(epoch, epoch + 1, offset), (epoch + 1, epochs, 0)] if offset else [(epoch, epochs, 0)]
    with stop_on_signal.listening():
        for first, last, skip in phases:
            if first == last:
                continue
            train = strategy.distribute_datasets_from_function(
                lambda context, first=first, last=last, skip=skip: input_pipeline.train_dataset(
                    train_split,
                    spec=config.preprocessing,
                    batch_size=batch_size,
                    steps_per_epoch=steps_per_epoch,
                    first_epoch=first,
                    epochs=last,
                    augment=settings.augment,
                    seed=settings.seed,
                    skip_batches=skip,
                    pipeline=context.input_pipeline_id,
                    pipelines=context.num_input_pipelines,
                    replica_batch_size=context.get_per_replica_batch_size(batch_size),
                    deterministic=settings.deterministic,
                )
            )
            try:
                with input_pipeline.as_prepared(train_split):  # val_split is read from the same folder
                    model.fit(
                        train,
                        initial_epoch=first,
                        epochs=last,
                        steps_per_epoch=steps_per_epoch - skip,
                        validation_data=val,
                        callbacks=epoch_callbacks,
                        verbose=progress.keras_verbose(),
                        shuffle=False,
                    )
            except tf.errors.UnavailableError as error:  # be specific: what the collectives raise when a worker is gone
                raise RunError(
                    f"a worker of the cluster stopped or cannot be reached ({type(error).__name__}): start "
                    "all workers again with -resume"
                ) from None
