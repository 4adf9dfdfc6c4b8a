"""The run folder (`--ckpt-dir`): its config.json, its checkpoints, and the rules that keep them safe.

    ckpt-alexnet/
        config.json                  the run: architecture, classes (WNID, words; fc8's order), preprocessing
                                     (sizes, resize rule, channel order, mean), settings (null for imported
                                     weights, with their "source"), the unreadable images found at -scratch, the
                                     data layout, its dataset folder and the number of images in each set;
                                     versioned
        checkpoint                   TensorFlow's index: names only complete checkpoints
        ckpt-1000.index, ckpt-1000.data-00000-of-00001 ...   weights, momentum, step, learning rate, plateau
                                     memory, dropout RNG; the last KEEP_CHECKPOINTS are kept
        train.lock                   held by the train.py that trains here
        logs/train, logs/validation  TensorBoard's summaries, one point an epoch, and logs/steps, the per-step
                                     curves (unless train.py's --log-dir puts them elsewhere; config.json then keeps
                                     that folder)

config.json and the checkpoints are written atomically (a temporary name, then a rename), so that a kill at any
instant leaves the last complete state; `ckpt-N_temp` folders are what a kill in the middle of a save leaves, and are
removed by the next train.py.
"""

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import socket
import tempfile
import zlib

import numpy as np
import tensorflow as tf

from alexnet_tf import run_config
from alexnet_tf.errors import CheckpointError, RunError, check_size

CKPT_DIR = "ckpt-alexnet"  # the default run folder of all scripts
IMPORTED_CKPT_DIR = "ckpt-bvlc"  # import_weights.py's
CONFIG_NAME = "config.json"
CONFIG_VERSION = 3  # 1: before the version field; 2: adds "version"; 3: "mean" moves into "preprocessing"
CONFIG_KEYS = ("architecture", "classes", "preprocessing", "settings", "unreadable")
CONFIG_MAX_BYTES = 256 * 2**20  # ours: 1,000 classes and 1% of ImageNet's paths unreadable take about 1 MB
CHECKPOINT_PREFIX = "ckpt"
CHECKPOINT_INDEX = "checkpoint"
CHECKPOINT_NAME = re.compile(rf"{CHECKPOINT_PREFIX}-\d+")  # a checkpoint as the index names it
INDEX_MAX_BYTES = 2**20  # ours: the index names the last few checkpoints, a few hundred bytes
CHECKPOINT_FILE = re.compile(rf"{CHECKPOINT_PREFIX}-\d+(\.index|\.data-\d+-of-\d+|_temp)")  # TensorFlow's names: a
# checkpoint's files, and the folder of a save not yet finished
LOCK_NAME = "train.lock"
TENSORBOARD_PARTS = ("train", "validation", "steps")  # what Keras's TensorBoard callback and curves.py write there
LOGS_NAME = "logs"  # TensorBoard's folder inside the run: each run's curves apart, and replaced with it
KEEP_CHECKPOINTS = 3  # ours
SAVED_MODEL_FILE = "saved_model.pb"  # what export.py writes: a SavedModel folder, mistaken for a run


class DivergedError(RunError):
    """The loss or the weights became NaN or infinite."""


class CheckpointWriteError(RunError):
    """A checkpoint could not be written: the disk is full or a size limit was hit."""


def save_config(ckpt_dir, config):
    """Writes the RunConfig `config` as config.json, atomically: a kill at any moment leaves the old or the new file,
    never half of one."""
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, CONFIG_NAME)
    with os.fdopen(created_here(path + ".tmp"), "w") as f:
        json.dump({"version": CONFIG_VERSION, **config.to_json()}, f, indent=1)
    os.replace(path + ".tmp", path)  # a config.json that is a symlink is replaced, not followed


def created_here(path):
    """A file descriptor of `path` created anew for writing: whatever stood there (a leftover, or a symlink that a
    run folder from elsewhere planted to have us overwrite its target) is removed, not followed."""
    if os.path.lexists(path) and not os.path.isdir(path):
        os.remove(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


@contextlib.contextmanager
def staging_beside(target, what):
    """A temporary folder beside `target` (on its disk, so that moving the result in is a rename), removed when the
    block ends however it ends; a full disk or a size limit while writing `what` is a CheckpointWriteError. The
    folders that killed writers of this machine left beside `target` are removed first, each named."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    prefix = f".staging-{name}-{socket.gethostname()}-"
    for left in left_by_killed_writers(parent, prefix):
        shutil.rmtree(left, ignore_errors=True)
        print(f"Removed {left}, left by a killed writer of {what}")
    # os.mkdir, not tempfile.mkdtemp: mkdtemp's mode is 0700, and the folder becomes the export or the run, which
    # should be as readable as any other folder of the user's (a TF Serving container runs as another user)
    staging = os.path.join(parent, f"{prefix}{os.getpid()}")
    os.mkdir(staging)
    try:
        yield staging
    except (OSError, tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError) as error:  # be specific: a full
        # disk or a size limit, as Python and TensorFlow report them
        raise CheckpointWriteError(
            f"cannot write {what} beside {target} ({error}): free space, or write it elsewhere"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def left_by_killed_writers(parent, prefix):
    """The folders in `parent` named `prefix` and a process number that is no longer running (or is this process's:
    a number reused): what SIGKILL, SIGTERM or a power cut left of an export or an import, a model's size each. The
    prefix holds the machine's name, so that a writer running on another machine sharing the disk is not one."""
    left = []
    for entry in os.scandir(parent):
        number = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and number.isdigit() and not running_elsewhere(int(number)):
            left.append(entry.path)
    return sorted(left)


def running_elsewhere(pid):
    """Whether process `pid` of this machine, other than this one, is running."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def config_path(ckpt_dir):
    """The path of the run's config.json; a CheckpointError for a folder without a run."""
    path = os.path.join(ckpt_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"no trained run at {ckpt_dir} ({CONFIG_NAME} not found): train one with `python train.py -scratch` "
            "(--sample for a small one), or import the published weights (README: Pretrained weights) and pass "
            f"--ckpt-dir {IMPORTED_CKPT_DIR}, or the --ckpt-dir of another run"
        )
    return path


def load_config(ckpt_dir):
    """The run's RunConfig, from config.json of any version; a CheckpointError for a folder without a run, or a file
    that is not a run's config (naming the field that does not fit)."""
    path = config_path(ckpt_dir)
    check_size(path, CONFIG_MAX_BYTES, CheckpointError, "pass another --ckpt-dir")
    try:
        with open(path) as f:
            values = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # be specific: a damaged or foreign file
        raise CheckpointError(f"{path} is not a run's config ({error}): pass another --ckpt-dir") from None
    version = values.pop("version", 1) if isinstance(values, dict) else None
    missing = [key for key in CONFIG_KEYS if key not in values] if isinstance(values, dict) else CONFIG_KEYS
    if isinstance(version, int) and version < 3 and "mean" in values:
        values["preprocessing"] = {"mean": values.pop("mean")}  # version 1 and 2: the paper's preprocessing
        missing = [key for key in missing if key != "preprocessing"]
    if not isinstance(version, int) or isinstance(version, bool) or missing:
        raise CheckpointError(
            f"{path} is not a run's config (it lacks {', '.join(missing) or 'a version'}): pass another --ckpt-dir"
        )
    if version > CONFIG_VERSION:
        raise CheckpointError(
            f"{path} has version {version}, newer than this code's {CONFIG_VERSION}: update the project (git pull)"
        )
    try:
        return run_config.RunConfig.from_json(values)
    except run_config.ConfigFieldError as error:
        raise CheckpointError(f"{path} is not a run's config as written by this project: {error}") from None


def class_order(config, wnids, ckpt_dir, data_dir):
    """The run's index of each of the dataset's classes `wnids` (dataset label -> fc8 row), None when both orders
    are the same; a CheckpointError unless the run has exactly these classes."""
    run_wnids = [c.wnid for c in config.classes]
    if run_wnids == list(wnids):
        return None
    if sorted(run_wnids) != sorted(wnids):
        extra = sorted(set(run_wnids) ^ set(wnids))
        raise CheckpointError(
            f"the run in {ckpt_dir} has other classes than {data_dir}'s meta.mat ({len(run_wnids)} against "
            f"{len(wnids)}, e.g. {', '.join(extra[:3]) or 'a class twice'} in one only): pass the --data-dir it was "
            "trained on, or another --ckpt-dir"
        )
    row = {wnid: index for index, wnid in enumerate(run_wnids)}
    return np.array([row[wnid] for wnid in wnids], np.int32)


def checkpoint_state(ckpt_dir):
    """TensorFlow's checkpoint index of `ckpt_dir` (None without one), each name in it checked to be a checkpoint of
    this folder: a CheckpointManager deletes the older names of its index as old checkpoints, so a name leading
    elsewhere (a run folder comes from other people) would have it delete files outside the run."""
    index = os.path.join(ckpt_dir, CHECKPOINT_INDEX)
    if not os.path.lexists(index):
        return None
    check_size(index, INDEX_MAX_BYTES, CheckpointError, "remove it (the checkpoints stay) or pass another --ckpt-dir")
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
    except (tf.errors.OpError, ValueError) as error:  # be specific: what TF's text-proto parser raises
        raise CheckpointError(
            f"{index} is not a checkpoint index ({error}): remove it, or pass another --ckpt-dir"
        ) from None
    if state is None:
        return None
    folder = os.path.realpath(ckpt_dir)
    for path in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:  # relative ones joined to ckpt_dir
        if os.path.realpath(os.path.dirname(path)) != folder or not CHECKPOINT_NAME.fullmatch(os.path.basename(path)):
            raise CheckpointError(
                f"{index} names {path!r}, not a checkpoint of {ckpt_dir}: the index of a run lists only its own "
                "ckpt-N; remove the file (-resume then starts from step 0) or pass another --ckpt-dir"
            )
    return state


def latest_checkpoint(ckpt_dir):
    """The path of the run's latest complete checkpoint; a CheckpointError for a folder without a run or without
    a checkpoint."""
    config_path(ckpt_dir)
    path = latest_or_none(ckpt_dir)
    if path is None:
        check_not_an_export(
            ckpt_dir,
            "pass the run it was exported from as --ckpt-dir, or load it with tf.saved_model.load (README, Serve it)",
        )
        raise CheckpointError(
            f"no checkpoint in {ckpt_dir}: the run saved none yet; "
            "train with `python train.py -scratch` (or -resume) first"
        )
    return path


def named_checkpoint(ckpt_dir, name=None):
    """The path of the run's checkpoint `name` (ckpt-N, one its index keeps), or of its latest without a name; a
    CheckpointError naming those it keeps."""
    if name is None:
        return latest_checkpoint(ckpt_dir)
    config_path(ckpt_dir)
    state = checkpoint_state(ckpt_dir)
    kept = {os.path.basename(path): path for path in (state.all_model_checkpoint_paths if state else [])}
    if name not in kept:
        raise CheckpointError(
            f"{ckpt_dir} has no checkpoint {name}: it keeps {', '.join(sorted(kept, key=checkpoint_step)) or 'none'}"
        )
    return kept[name]


def checkpoint_step(path):
    """The training step a checkpoint was saved at, from its name (ckpt-N)."""
    return int(os.path.basename(path).rsplit("-", 1)[1])


def latest_or_none(ckpt_dir):
    """The latest checkpoint of the folder's checked index whose files exist, or None."""
    state = checkpoint_state(ckpt_dir)
    return tf.train.latest_checkpoint(ckpt_dir) if state else None


def restore(checkpoint, path, partial=False):
    """Restores `checkpoint` from `path`; a CheckpointError when the file does not fit (another architecture or
    class count than config.json says, or a damaged file)."""
    try:
        status = checkpoint.restore(path)
        (status.expect_partial() if partial else status).assert_existing_objects_matched()
    except (ValueError, AssertionError, IndexError, tf.errors.OpError) as error:  # be specific: shapes, objects,
        # damaged files (TF's checkpoint reader raises IndexError for a truncated one)
        tf.get_logger().setLevel("ERROR")  # else the half-restored checkpoint lists every unmatched value at exit
        raise CheckpointError(
            f"{path} does not fit the model of its config.json ({str(error).splitlines()[0]}): "
            "the folder mixes runs; train anew with -scratch --overwrite"
        ) from None


def load_trained(ckpt_dir, checkpoint=None):
    """The model of the run in `ckpt_dir` with the weights of `checkpoint` (default: its latest), and the run's
    config. A CheckpointError when the folder holds no finished run."""
    config = load_config(ckpt_dir)
    model = config.architecture.build()
    restore(tf.train.Checkpoint(model=model), checkpoint or latest_checkpoint(ckpt_dir), partial=True)
    return model, config


def check_not_an_export(ckpt_dir, fix):
    """A CheckpointError naming `fix` when `ckpt_dir` is export.py's SavedModel folder, which holds the run's
    config.json and no checkpoint."""
    if os.path.exists(os.path.join(ckpt_dir, SAVED_MODEL_FILE)):
        raise CheckpointError(f"{ckpt_dir} is a SavedModel written by export.py, not a run folder: {fix}")


def run_files(ckpt_dir):
    """Everything a run wrote, as its config.json says: config.json, the checkpoint index, checkpoints and
    unfinished saves in `ckpt_dir`, and its TensorBoard curves (the run folder's logs/, or train/ and validation/ of
    the --log-dir it was given: a logs/ of the user's beside a run that logged elsewhere is not the run's). Nothing in
    a folder without config.json (which a run writes before any other file), so that a folder of the user's given as
    --ckpt-dir, such as the clone with its ckpt-alexnet/ and logs/, holds no run and loses nothing to --overwrite. A
    config.json that is not a run's (another program's), or a SavedModel's (export.py's copy), is a CheckpointError:
    the folder is not ours to write or clear."""
    if not os.path.isfile(os.path.join(ckpt_dir, CONFIG_NAME)):
        return []
    config = load_config(ckpt_dir)
    check_not_an_export(ckpt_dir, "choose another --ckpt-dir")
    own_logs = (LOGS_NAME,) if config.log_dir is None else ()
    written = sorted(
        entry.path
        for entry in os.scandir(ckpt_dir)
        if entry.name in (CONFIG_NAME, CHECKPOINT_INDEX, *own_logs) or CHECKPOINT_FILE.fullmatch(entry.name)
    )
    curves = [os.path.join(config.log_dir, part) for part in TENSORBOARD_PARTS] if config.log_dir else []
    return written + [path for path in curves if os.path.lexists(path)]


def check_apart(*, ckpt_dir, log_dir, data_dir):
    """A CheckpointError when the run folder or its TensorBoard folder lies inside the dataset folder, or the dataset
    inside the run folder: a folder of classes would read the run's logs/ as one more class at its next read."""
    data = os.path.realpath(data_dir)
    for flag, folder in (("--ckpt-dir", ckpt_dir), ("--log-dir", log_dir)):
        real = os.path.realpath(folder)
        if os.path.commonpath([real, data]) in (real, data):
            raise CheckpointError(
                f"{flag} {folder} and the dataset {data_dir} lie one inside the other: the run would write among its "
                f"images; choose a {flag} outside it"
            )


def log_dir_for(ckpt_dir, log_dir, run=None):
    """TensorBoard's folder of the run in `ckpt_dir`: `log_dir` when given, else the one the `run` was given (its
    config.json keeps it), else the run folder's own."""
    return log_dir or (run.log_dir if run else None) or os.path.join(ckpt_dir, LOGS_NAME)


def log_dir_to_keep(ckpt_dir, log_dir):
    """What config.json keeps of TensorBoard's folder: None for the run folder's own (which moves with it), else
    the absolute path."""
    in_run = os.path.abspath(os.path.join(ckpt_dir, LOGS_NAME))
    return None if os.path.abspath(log_dir) == in_run else os.path.abspath(log_dir)


def unfinished_saves(ckpt_dir):
    """The `ckpt-N_temp` folders that a kill in the middle of a save leaves behind."""
    return [
        entry.path
        for entry in os.scandir(ckpt_dir)
        if entry.name.endswith("_temp") and entry.is_dir() and CHECKPOINT_FILE.fullmatch(entry.name)
    ]


def size_on_disk(paths):
    """The bytes that removing `paths` frees: a symlink frees nothing of what it leads to."""
    return sum(
        os.lstat(os.path.join(root, name)).st_size
        for path in paths
        for root, _, names in (
            os.walk(path) if os.path.isdir(path) and not os.path.islink(path) else [("", None, [path])]
        )
        for name in names
    )


def remove(paths):
    """Removes files and folders; a symlink is removed itself, never what it leads to."""
    for path in paths:
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


@contextlib.contextmanager
def lock(ckpt_dir):
    """Holds a lock on the run folder (which must exist) while training: a second train.py there is refused. The
    kernel drops the lock when the process ends, however it ends, so a killed run leaves nothing stuck."""
    try:
        descriptor = os.open(os.path.join(ckpt_dir, LOCK_NAME), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:  # be specific: ELOOP, a symlink in its place, or a folder there
        raise CheckpointError(
            f"{os.path.join(ckpt_dir, LOCK_NAME)} cannot be the run's lock file ({error.strerror}): remove it"
        ) from None
    with os.fdopen(descriptor, "w") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"another train.py is training in {ckpt_dir}: let it finish or stop it, or pass another --ckpt-dir"
            ) from None
        yield


def checkpoint_bytes(model):
    """The size of one checkpoint: the weights and the optimizer's momentum."""
    return sum(
        math.prod(variable.shape) * np.dtype(variable.dtype).itemsize
        for variable in model.variables + model.optimizer.variables
    )


def check_free_space(ckpt_dir, *, size, kept, saved, reclaimable=0, elsewhere="choose another --ckpt-dir"):
    """Refuses to start a run whose checkpoints will not fit, rather than failing at its first save, hours in.
    tf.train.CheckpointManager writes a checkpoint before it deletes the oldest: a run needs room for one more
    than it keeps. `reclaimable`: bytes of files about to be removed (an overwritten run, unfinished saves)."""
    needed = (kept + 1 - saved) * size
    free = shutil.disk_usage(ckpt_dir).free + reclaimable
    if free < needed:
        raise CheckpointError(
            f"{ckpt_dir} has {free / 1e9:.2f} GB free, and the run needs {needed / 1e9:.2f} GB more for its "
            f"checkpoints ({kept} kept and the next one, {size / 1e9:.2f} GB each): free space, or {elsewhere}"
        )


def kept_checkpoints(chief):
    """The checkpoints a process keeps: the run's last KEEP_CHECKPOINTS on the chief, the last one on the other
    workers, whose copy nobody reads."""
    return KEEP_CHECKPOINTS if chief else 1


def checkpoint_manager(checkpoint, ckpt_dir, *, chief=True):
    """The checkpoint manager of this process, keeping kept_checkpoints(chief), once the folder's index is
    checked."""
    checkpoint_state(ckpt_dir)
    return tf.train.CheckpointManager(checkpoint, ckpt_dir, kept_checkpoints(chief), checkpoint_name=CHECKPOINT_PREFIX)


def worker_scratch(ckpt_dir, task_type, task_id):
    """The temporary folder a worker other than the chief writes its copy of the run to: one name per run and
    worker, so that a worker started again after a kill removes what the killed one left."""
    run = zlib.crc32(os.path.abspath(ckpt_dir).encode())
    return os.path.join(tempfile.gettempdir(), f"alexnet-worker-{task_type}-{task_id}-{run:08x}")


@contextlib.contextmanager
def worker_folders(ckpt_dir, log_dir, strategy):
    """The run and TensorBoard folders this process writes: the real ones on the chief; on the other workers,
    which must save too (saving is a collective operation), temporary ones, removed however the run ends."""
    if strategy.extended.should_checkpoint:
        yield ckpt_dir, log_dir
        return
    scratch = worker_scratch(ckpt_dir, strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.join(scratch, "ckpt"))
    try:
        yield os.path.join(scratch, "ckpt"), os.path.join(scratch, "logs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
