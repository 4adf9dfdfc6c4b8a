"""Trains AlexNet on ILSVRC2012 with the paper's recipe, resumably: checkpoints and config.json in --ckpt-dir,
TensorBoard summaries in --log-dir.

    python train.py -scratch --sample
"""
import argparse
import contextlib
import fcntl
import glob
import json
import math
import os
import shutil
import tempfile
import time
import types
import zlib

import keras
import numpy as np
import tensorflow as tf

import alexnet
import data_reader

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

# Run keeping
LOG_DIR = "summary"
SAVE_EVERY = 1000  # steps between mid-epoch checkpoints (ours; a tenth of an ImageNet epoch at batch 128)
KEEP_CHECKPOINTS = 3  # ours
MAX_BAD_FRACTION = 0.01  # unreadable training images tolerated by default (ours)
LOCK_NAME = "train.lock"
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
CPU_REPLICAS = 2  # logical devices --strategy mirrored splits a GPU-less machine into, to exercise the path
SEED = 0

# --sample: small defaults suited to the generated sample (under 5 minutes on 2 CPU cores)
SAMPLE_EPOCHS = 8
SAMPLE_BATCH_SIZE = 32
SAMPLE_SAVE_EVERY = 10
SAMPLE_LR = 3e-4  # with 10 classes, each fc8 row gets ~100x its ImageNet share of the gradient: 0.01 diverges

# Settings a run keeps: -resume takes them from config.json, except --epochs, which may extend the run.
RUN_SETTINGS = ("batch_size", "lr", "momentum", "weight_decay", "dropout", "augment", "groups",
                "steps_per_epoch", "seed", "deterministic", "precision")


class DivergedError(Exception):
    """The loss became NaN or infinite."""


class UsageError(Exception):
    """Flags that cannot work together."""


class CheckpointWriteError(Exception):
    """A checkpoint could not be written: the disk is full or a size limit was hit."""


def value_of(variable):
    """A scalar variable's value as a Python number, mirrored across replicas or not."""
    return keras.ops.convert_to_numpy(variable).item()


def global_step(model):
    return int(value_of(model.optimizer.iterations))


class PaperSGD(keras.optimizers.SGD):
    """SGD with momentum and the paper's weight decay, which goes through the momentum (paper §5):
    v <- m v - wd lr w - lr g;  w <- w + v.  Keras's own `weight_decay` is decoupled from momentum, so this adds
    wd * w to the gradient of every weight matrix and kernel (rank >= 2), and to no bias."""

    def __init__(self, coupled_weight_decay=WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) >= 2:
            gradient = gradient + tf.cast(self.coupled_weight_decay, gradient.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


class PlateauSchedule(keras.callbacks.Callback):
    """Divides the learning rate by 10 when the validation loss has not improved for `patience` epochs, at most
    `max_drops` times (paper §5). Keras's ReduceLROnPlateau forgets its memory at every fit() and cannot be
    checkpointed; this one keeps it in variables that the training checkpoint saves."""

    def __init__(self, patience=PLATEAU_PATIENCE, factor=LR_DROP_FACTOR, max_drops=LR_MAX_DROPS):
        super().__init__()
        self.patience, self.factor, self.max_drops = patience, factor, max_drops
        self.state = tf.train.Checkpoint(best=tf.Variable(np.inf, dtype=tf.float64),
                                         wait=tf.Variable(0, dtype=tf.int64), drops=tf.Variable(0, dtype=tf.int64))

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
            print(f"\nValidation loss has not improved for {self.patience} epochs: "
                  f"learning rate now {value_of(lr):.2e}")


class ThroughputLogs(keras.callbacks.Callback):
    """Adds the learning rate, images/s and the unreadable images skipped to the logs, so that Keras's progress
    bar and TensorBoard show them."""

    def __init__(self, batch_size, unreadable):
        super().__init__()
        self.batch_size, self.unreadable = batch_size, unreadable

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.images += self.batch_size
        logs["lr"] = value_of(self.model.optimizer.learning_rate)
        logs["img/s"] = self.images / (time.perf_counter() - self.start)

    def on_epoch_end(self, epoch, logs=None):
        logs["images_per_second"] = self.images / (time.perf_counter() - self.start)
        logs["unreadable_skipped"] = self.unreadable


class Checkpointer(keras.callbacks.Callback):
    """Saves every `save_every` steps and at the end of every epoch, after validation and the plateau rule; stops
    at a NaN or infinite loss before it is saved. Keras's BackupAndRestore keeps neither the plateau memory nor the
    position within an epoch; a TF checkpoint of everything does, and tf.train.CheckpointManager writes it
    atomically (the `checkpoint` index names only complete files) and keeps the last few."""

    SAVE_FAILURES = {tf.errors.ResourceExhaustedError: "no space left on the device, or over quota",
                     tf.errors.OutOfRangeError: "a file size limit was reached"}

    def __init__(self, manager, save_every, steps_per_epoch):
        super().__init__()
        self.manager, self.save_every, self.steps_per_epoch = manager, save_every, steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if not math.isfinite(logs["loss"]):
            raise DivergedError(f"the loss is {logs['loss']} at step {step}: training stopped; the latest checkpoint "
                                f"({self.manager.latest_checkpoint}) is the last good one; start again with a lower "
                                "--lr")
        if step % self.save_every == 0 and step % self.steps_per_epoch != 0:
            self.save(step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(global_step(self.model))

    def save(self, step):
        try:
            self.manager.save(checkpoint_number=step)
        except (tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError) as error:  # be specific: what SaveV2
            # raises for a full disk or quota (ENOSPC, EDQUOT) and for a file size limit (EFBIG)
            path = os.path.join(self.manager.directory, f"{alexnet.CHECKPOINT_PREFIX}-{step}")
            shutil.rmtree(path + "_temp", ignore_errors=True)  # TF writes a checkpoint there, then renames it
            then = f"continue with -resume from {self.manager.latest_checkpoint}" if self.manager.latest_checkpoint \
                else "start again with -scratch --overwrite"
            raise CheckpointWriteError(f"could not write checkpoint {path}: {self.SAVE_FAILURES[type(error)]} "
                                       f"({type(error).__name__}): free space, then {then}") from None


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-scratch", "--scratch", dest="mode", action="store_const", const="scratch",
                      help="start a new run in --ckpt-dir")
    mode.add_argument("-resume", "--resume", dest="mode", action="store_const", const="resume",
                      help="continue the run in --ckpt-dir from its latest checkpoint, with its own settings")
    parser.add_argument("--data-dir", default=data_reader.DATA_DIR,
                        help=f"ILSVRC2012 folder, or its prepared shards (default: {data_reader.DATA_DIR}; "
                             f"{data_reader.SAMPLE_DIR} with --sample)")
    parser.add_argument("--sample", action="store_true",
                        help="train on the generated sample dataset (made on first use) with small defaults")
    parser.add_argument("--ckpt-dir", default=alexnet.CKPT_DIR, help=f"run folder (default: {alexnet.CKPT_DIR})")
    parser.add_argument("--log-dir", default=LOG_DIR, help=f"TensorBoard folder (default: {LOG_DIR})")
    parser.add_argument("--overwrite", action="store_true", help="let -scratch replace a run already in --ckpt-dir")
    hyper = parser.add_argument_group("hyper-parameters (on -resume the run's own; only --epochs may change)")
    hyper.add_argument("--epochs", type=int, help=f"epochs (default: {EPOCHS}; {SAMPLE_EPOCHS} with --sample)")
    hyper.add_argument("--batch-size", type=int,
                       help=f"images a step (default: {BATCH_SIZE}; {SAMPLE_BATCH_SIZE} with --sample)")
    hyper.add_argument("--lr", type=float,
                       help=f"initial learning rate (default: {LEARNING_RATE}; {SAMPLE_LR} with --sample)")
    hyper.add_argument("--momentum", type=float, help=f"SGD momentum (default: {MOMENTUM})")
    hyper.add_argument("--weight-decay", type=float, help=f"weight decay through momentum (default: {WEIGHT_DECAY})")
    hyper.add_argument("--dropout", type=float, help=f"dropout on fc6 and fc7 (default: {alexnet.DROPOUT})")
    hyper.add_argument("--augment", choices=data_reader.AUGMENTATIONS,
                       help=f"none: random crops (the seed); flip: + mirrors; paper: + PCA lighting "
                            f"(default: {AUGMENT})")
    hyper.add_argument("--groups", type=int, choices=(1, 2),
                       help=f"1: single tower (the seed); 2: the paper's two columns (default: {alexnet.GROUPS})")
    hyper.add_argument("--steps-per-epoch", type=int, help="steps an epoch (default: one pass over the training set)")
    hyper.add_argument("--seed", type=int, help=f"seed of initialisation, shuffling and augmentation (default: {SEED})")
    hyper.add_argument("--deterministic", action="store_true", default=None,
                       help="TF op determinism and images batched in stream order: a resumed run ends with the "
                            "same weights as an uninterrupted one (default: off, faster)")
    hyper.add_argument("--precision", choices=tuple(alexnet.PRECISIONS),
                       help=f"float32, or mixed precision with bf16 or fp16 (default: {alexnet.default_precision()} "
                            "here: bf16 on GPUs of compute capability 8.0+ and CPUs with AVX512-BF16/AMX)")
    parser.add_argument("--xla", action="store_true",
                        help="compile the training step with XLA (default: on with a GPU; off on CPU, where it made "
                             "its training step 1.2x slower)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="tf.distribute strategy: default (one device), mirrored (all GPUs of this machine, or "
                             "--cpu-replicas logical CPUs without one), multi-worker (several machines, from "
                             "TF_CONFIG or Slurm; README); auto: multi-worker when TF_CONFIG is set, mirrored with "
                             "more than one GPU (default: auto). --batch-size is the global batch, split across the "
                             "replicas; with a larger global batch, scale --lr with it")
    parser.add_argument("--cpu-replicas", type=int, default=CPU_REPLICAS,
                        help=f"logical CPU devices of --strategy mirrored on a machine without GPUs "
                             f"(default: {CPU_REPLICAS})")
    parser.add_argument("--max-bad-images", type=int,
                        help="unreadable training images skipped before -scratch refuses the dataset "
                             f"(default: {100 * MAX_BAD_FRACTION:g}%% of the training set)")
    parser.add_argument("--save-every", type=int,
                        help=f"steps between checkpoints (default: {SAVE_EVERY}; {SAMPLE_SAVE_EVERY} with --sample)")
    return parser


def main(args):
    strategy = make_strategy(args.strategy, args.cpu_replicas)
    settings = default_settings(args)
    check_replicas(settings["batch_size"], strategy)
    data_dir = data_reader.resolve_data_dir(args.data_dir, args.sample)
    synsets = data_reader.load_synsets(os.path.join(data_dir, data_reader.META_MAT))
    with worker_folders(args, strategy) as (ckpt_dir, log_dir), run_lock(ckpt_dir):
        config, train_split, val_split = run_config(args, settings, strategy, data_dir, synsets)
        xla = args.xla or bool(tf.config.list_physical_devices("GPU"))
        model, plateau, checkpoint = build_training(config, jit_compile=xla, strategy=strategy)
        manager = checkpoint_manager(checkpoint, ckpt_dir, strategy, checkpoint_bytes(model))
        alexnet.save_config(ckpt_dir, config)
        if args.mode == "resume":
            restore(checkpoint, model, args.ckpt_dir, config)
        fit(model, config, plateau, manager, train_split, val_split, log_dir, strategy)


def default_settings(args):
    """The hyper-parameters given on the command line, the rest from the named constants."""
    defaults = {"epochs": SAMPLE_EPOCHS if args.sample else EPOCHS,
                "batch_size": SAMPLE_BATCH_SIZE if args.sample else BATCH_SIZE,
                "lr": SAMPLE_LR if args.sample else LEARNING_RATE, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                "dropout": alexnet.DROPOUT, "augment": AUGMENT, "groups": alexnet.GROUPS,
                "steps_per_epoch": None, "seed": SEED, "deterministic": False,
                "precision": alexnet.default_precision(),
                "save_every": SAMPLE_SAVE_EVERY if args.sample else SAVE_EVERY}
    return {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in defaults.items()}


def make_strategy(name, cpu_replicas):
    """The tf.distribute strategy; it must come before TensorFlow runs anything, since splitting the CPU into
    logical devices and joining a cluster are only possible then."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "multi-worker" if os.environ.get("TF_CONFIG") else "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi-worker":
        return multi_worker_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy over the cluster of TF_CONFIG, or of the Slurm job train.py runs in."""
    if os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])["cluster"]
        except (ValueError, KeyError, TypeError) as error:  # be specific: not JSON, or no cluster in it
            raise UsageError(f"TF_CONFIG is not a cluster description ({error}): see README, Scaling out") from None
        resolver = None
    elif "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    else:
        raise UsageError("--strategy multi-worker needs TF_CONFIG, or a Slurm job (srun): see README, Scaling out")
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    _mend_keras_multi_worker_reduction()
    return strategy


def _mend_keras_multi_worker_reduction():
    """Keras 3.15 averages the step's logs across workers with strategy.reduce(..., axis=0), which fails on
    scalars (keras-team/keras#20585); the logs are replica-synchronised metric results, so a plain mean is right.
    Only this strategy needs Keras's private trainer module, so only it imports it."""
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    keras_reduce = keras_tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean"):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def _build_on_a_local_batch(model):
    """Keras 3.15 builds the model on a batch reduced across workers, which MultiWorkerMirroredStrategy refuses for
    (images, labels) pairs (keras-team/keras#20585); this builds it on this worker's first replica's batch."""
    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0], next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)


def worker_scratch(ckpt_dir, task_type, task_id):
    """The temporary folder a worker other than the chief writes its copy of the run to: one name per run and
    worker, so that a worker started again after a kill removes what the killed one left."""
    run = zlib.crc32(os.path.abspath(ckpt_dir).encode())
    return os.path.join(tempfile.gettempdir(), f"alexnet-worker-{task_type}-{task_id}-{run:08x}")


@contextlib.contextmanager
def worker_folders(args, strategy):
    """The run and TensorBoard folders this process writes: the real ones on the chief; on the other workers,
    which must save too (saving is a collective operation), temporary ones, removed however the run ends."""
    if strategy.extended.should_checkpoint:
        yield args.ckpt_dir, args.log_dir
        return
    scratch = worker_scratch(args.ckpt_dir, strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        yield os.path.join(scratch, "ckpt"), os.path.join(scratch, "logs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_replicas(batch_size, strategy):
    """Refuses a global batch that does not split across the replicas; says what runs where."""
    if batch_size % strategy.num_replicas_in_sync:
        raise UsageError(f"--batch-size {batch_size} does not split evenly across the "
                         f"{strategy.num_replicas_in_sync} replicas: make it a multiple of them")
    print(f"tf.distribute: {type(strategy).__name__.lstrip('_')}, {strategy.num_replicas_in_sync} replica(s)"
          + ("" if strategy.extended.should_checkpoint else "; the chief writes the run"))


@contextlib.contextmanager
def run_lock(ckpt_dir):
    """Holds a lock on the run folder while training: a second train.py there is refused. The kernel drops the lock
    when the process ends, however it ends, so a killed run leaves nothing stuck."""
    os.makedirs(ckpt_dir, exist_ok=True)
    with open(os.path.join(ckpt_dir, LOCK_NAME), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise alexnet.CheckpointError(f"another train.py is training in {ckpt_dir}: let it finish or stop it, "
                                          "or pass another --ckpt-dir") from None
        yield


def checkpoint_bytes(model):
    """The size of one checkpoint: the weights and the optimizer's momentum."""
    return sum(math.prod(variable.shape) * np.dtype(variable.dtype).itemsize
               for variable in model.variables + model.optimizer.variables)


def checkpoint_manager(checkpoint, ckpt_dir, strategy, size):
    """The checkpoint manager of this process, once there is room for what it keeps: the run's last
    KEEP_CHECKPOINTS on the chief, the last one on the other workers, whose copy nobody reads."""
    chief = strategy.extended.should_checkpoint
    kept = KEEP_CHECKPOINTS if chief else 1
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, kept, checkpoint_name=alexnet.CHECKPOINT_PREFIX)
    check_free_space(ckpt_dir, size, kept, saved=len(manager.checkpoints),
                     elsewhere="choose another --ckpt-dir" if chief else "set TMPDIR to a larger disk on this worker")
    return manager


def check_free_space(ckpt_dir, size, kept, saved, elsewhere="choose another --ckpt-dir"):
    """Refuses to start a run whose checkpoints will not fit, rather than failing at its first save, hours in.
    tf.train.CheckpointManager writes a checkpoint before it deletes the oldest: a run needs room for one more
    than it keeps."""
    needed = (kept + 1 - saved) * size
    free = shutil.disk_usage(ckpt_dir).free
    if free < needed:
        raise alexnet.CheckpointError(
            f"{ckpt_dir} has {free / 1e9:.2f} GB free, and the run needs {needed / 1e9:.2f} GB more for its "
            f"checkpoints ({kept} kept and the next one, {size / 1e9:.2f} GB each): free space, or {elsewhere}")


def new_run(args, settings, synsets, data_dir, train_split, val_split, write=True):
    """The config of a new run, less its mean: refuses to train over an existing run unless --overwrite (`write`:
    this process writes the run, the chief of a cluster), and finds the unreadable images once, so that the run
    and its resumes train on the same files."""
    existing = [path for pattern in (alexnet.CONFIG_NAME, alexnet.CHECKPOINT_PREFIX + "-*", "checkpoint")
                for path in glob.glob(os.path.join(args.ckpt_dir, pattern))] if write else []
    if existing and not args.overwrite:
        raise alexnet.CheckpointError(f"{args.ckpt_dir} already holds a run: continue it with -resume, "
                                      "or pass --overwrite to start again, or choose another --ckpt-dir")
    for path in existing:
        os.remove(path)
    unreadable = unreadable_images(data_dir, train_split, val_split)
    num_images = train_split.num_images - len(unreadable["train"])
    max_bad = math.ceil(MAX_BAD_FRACTION * train_split.num_images) if args.max_bad_images is None else \
        args.max_bad_images
    if len(unreadable["train"]) > max_bad:
        raise data_reader.DataError(
            f"{len(unreadable['train'])} of {train_split.num_images} training images are unreadable, more than the "
            f"{max_bad} allowed (--max-bad-images), e.g. {os.path.join(data_dir, unreadable['train'][0])}: check "
            "the dataset's extraction")
    if settings["steps_per_epoch"] is None:
        settings["steps_per_epoch"] = num_images // settings["batch_size"]
    if settings["steps_per_epoch"] < 1:
        raise data_reader.DataError(f"{num_images} training images make no batch of {settings['batch_size']}: "
                                    "lower --batch-size")
    return {
        "architecture": {"num_classes": len(synsets), "groups": settings["groups"], "dropout": settings["dropout"]},
        "classes": [{"wnid": s.wnid, "words": s.words} for s in synsets],
        "layout": train_split.layout,
        "settings": settings,
        "unreadable": unreadable,
    }


def unreadable_images(data_dir, train_split, val_split):
    """The training and validation images that do not decode, as paths relative to `data_dir`."""
    return {part: [os.path.relpath(path, data_dir) for path in data_reader.find_unreadable(split, f"{part} images")]
            for part, split in (("train", train_split), ("val", val_split))}


def run_config(args, settings, strategy, data_dir, synsets):
    """The run's config and its readable training and validation images: a new config at -scratch, with the
    training set's mean; the saved one at -resume."""
    train_split = data_reader.read_split(data_dir, synsets, "train")
    val_split = data_reader.read_split(data_dir, synsets, "val")
    if args.mode == "scratch":
        config = new_run(args, settings, synsets, data_dir, train_split, val_split,
                         write=strategy.extended.should_checkpoint)
    else:
        config = continued_run(args, synsets, data_dir)
        if config.get("layout", train_split.layout) != train_split.layout:
            switch_layout(config, data_dir, train_split, val_split)
    train_split = data_reader.without_unreadable(train_split, _absolute(data_dir, config["unreadable"]["train"]))
    val_split = data_reader.without_unreadable(val_split, _absolute(data_dir, config["unreadable"]["val"]))
    if args.mode == "scratch":
        print(f"Computing the training set's mean on up to {data_reader.MEAN_MAX_IMAGES} images ...")
        config["mean"] = data_reader.compute_mean(train_split, seed=settings["seed"])
    return config, train_split, val_split


def _absolute(data_dir, relative_paths):
    return [os.path.join(data_dir, path) for path in relative_paths]


def continued_run(args, synsets, data_dir):
    """The run's config, checked against what this command asks; --epochs and --save-every may change."""
    config = alexnet.load_config(args.ckpt_dir)
    alexnet.check_classes(config, [s.wnid for s in synsets], args.ckpt_dir, data_dir)
    asked = {name: getattr(args, name) for name in RUN_SETTINGS if getattr(args, name) is not None}
    differing = [f"{name} {config['settings'][name]}, not {value}" for name, value in asked.items()
                 if config["settings"][name] != value]
    if differing:
        raise alexnet.CheckpointError(f"the run in {args.ckpt_dir} has {'; '.join(differing)}: -resume continues a "
                                      "run as it was started; start another with -scratch --ckpt-dir NEW_DIR")
    for name in ("epochs", "save_every"):
        if getattr(args, name) is not None:
            config["settings"][name] = getattr(args, name)
    return config


def switch_layout(config, data_dir, train_split, val_split):
    """Continues a run on the other data layout: prepared shards hold the same images and labels as the folders,
    in another order, and none that is unreadable; the folders are searched for those again."""
    print(f"The run was trained on {config['layout']} and continues on {train_split.layout}: the same images and "
          "labels in another order, so the epoch it resumes in may repeat or skip some images")
    config["layout"] = train_split.layout
    config["unreadable"] = unreadable_images(data_dir, train_split, val_split)


def build_training(config, jit_compile=False, strategy=None):
    """The compiled model, built in the strategy's scope, and a checkpoint of everything a resume needs: weights,
    momentum, step, learning rate, the plateau rule's memory and the dropout RNG."""
    settings = config["settings"]
    strategy = strategy or tf.distribute.get_strategy()
    if settings["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings["seed"])
    alexnet.set_precision(settings["precision"])
    with strategy.scope():
        model, plateau, checkpoint = _build_training(config, jit_compile)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_on_a_local_batch(model)
    return model, plateau, checkpoint


def _build_training(config, jit_compile):
    settings = config["settings"]
    model = alexnet.alexnet(**config["architecture"])
    optimizer = PaperSGD(learning_rate=settings["lr"], momentum=settings["momentum"],
                         coupled_weight_decay=settings["weight_decay"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                           keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
                  jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)
    plateau = PlateauSchedule()
    dropout_rng = [layer.seed_generator.state for layer in model.layers if hasattr(layer, "seed_generator")]
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, plateau=plateau.state,
                                     dropout_rng=dropout_rng)
    return model, plateau, checkpoint


def restore(checkpoint, model, ckpt_dir, config):
    path = alexnet.latest_checkpoint(ckpt_dir)
    alexnet.restore(checkpoint, path)
    step = global_step(model)
    print(f"Resuming from {path} at step {step} (epoch {step // config['settings']['steps_per_epoch'] + 1})")


def fit(model, config, plateau, manager, train_split, val_split, log_dir, strategy):
    """Model.fit from the saved step to the last epoch. A run resumed mid-epoch first finishes that epoch in a fit
    of its own, so that epochs keep their boundaries and the data stream continues where it stopped."""
    settings = config["settings"]
    batch_size, steps_per_epoch, epochs = settings["batch_size"], settings["steps_per_epoch"], settings["epochs"]
    epoch, offset = divmod(global_step(model), steps_per_epoch)
    if epoch >= epochs:
        print(f"The run has done its {epochs} epochs: pass a larger --epochs to -resume to train on")
        return
    print(f"Training on {train_split.num_images} images, validating on {val_split.num_images}: "
          f"epochs {epoch + 1}..{epochs} of {steps_per_epoch} steps x {batch_size} images, " + ", ".join(
              f"{name} {settings[name]}" for name in ("lr", "momentum", "weight_decay", "dropout", "augment",
                                                      "groups", "seed", "deterministic", "precision", "save_every")))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    val = data_reader.eval_dataset(val_split, config["mean"], batch_size).map(
        lambda crops, label: (crops[:, 0], label)).with_options(options)
    callbacks = [plateau, ThroughputLogs(batch_size, len(config["unreadable"]["train"])),
                 Checkpointer(manager, settings["save_every"], steps_per_epoch), keras.callbacks.TensorBoard(log_dir)]
    phases = [(epoch, epoch + 1, offset), (epoch + 1, epochs, 0)] if offset else [(epoch, epochs, 0)]
    for first, last, skip in phases:
        if first == last:
            continue
        train = strategy.distribute_datasets_from_function(
            lambda context, first=first, last=last, skip=skip: data_reader.train_dataset(
                train_split, config["mean"], batch_size, steps_per_epoch, first, last, settings["augment"],
                settings["seed"], skip, context.input_pipeline_id, context.num_input_pipelines,
                context.get_per_replica_batch_size(batch_size), settings["deterministic"]))
        model.fit(train, initial_epoch=first, epochs=last, steps_per_epoch=steps_per_epoch - skip,
                  validation_data=val, callbacks=callbacks, shuffle=False)


if __name__ == "__main__":
    parser = get_args_parser()
    args = parser.parse_args()
    if args.mode is None:
        parser.exit(2, f"{parser.prog}: error: say -scratch to start a new run, or -resume to continue the one in "
                       f"{args.ckpt_dir}\n")
    try:
        main(args)
    except (data_reader.DataError, alexnet.CheckpointError, UsageError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except (DivergedError, CheckpointWriteError) as error:
        parser.exit(1, f"\n{parser.prog}: error: {error}\n")
    except tf.errors.UnavailableError as error:  # be specific: what the collectives raise when a worker is gone
        parser.exit(1, f"\n{parser.prog}: error: a worker of the cluster stopped or cannot be reached ("
                       f"{type(error).__name__}): start all workers again with -resume\n")
