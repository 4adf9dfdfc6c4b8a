"""train.py's flags, resolved once into one frozen TrainOptions: the command's own options, and the run's settings
(run_config.RunSettings) from the recipe's defaults, then --sample's or fine-tuning's, then the saved run's on
-resume, then the flags given; validated once.

A run keeps its settings (config.json's "settings"): -resume takes them from there and refuses a flag that differs,
except --epochs, --save-every, --log-every and --precision, which may extend a run, change how often it saves or
logs, or move it between float32 and bf16.
"""

import dataclasses
import math

import tensorflow as tf

from alexnet_tf import curves, datasets, distribute, network, preprocessing, run_folder, sample_dataset, training
from alexnet_tf.run_config import RunSettings
from alexnet_tf.errors import CheckpointError, UsageError, check_flag, check_seed, check_writable

SAVE_EVERY = 1000  # steps between mid-epoch checkpoints (ours; a tenth of an ImageNet epoch at batch 128)
MAX_BAD_FRACTION = 0.01  # unreadable training images tolerated by default (ours)
SEED = 0

# --sample: small defaults suited to the generated sample (under 5 minutes on 2 CPU cores)
SAMPLE_EPOCHS = 8
SAMPLE_BATCH_SIZE = 32
SAMPLE_SAVE_EVERY = 10
SAMPLE_LR = 3e-4  # with 10 classes, each fc8 row gets ~100x its ImageNet share of the gradient: 0.01 diverges

# --init-from (fine-tuning on a few hundred images a class): Caffe's finetune_flickr_style example starts at a tenth of
# the paper's rate; small batches and few epochs, since the features are already learnt (README, Your own images)
FINETUNE_LR = 1e-3

# A folder of your own classes from scratch, without --lr: the paper's rate scaled linearly with the batch (Goyal et
# al. 2017, "Accurate, large minibatch SGD"), at most this. Ours, measured (docs/training.md): 3 classes of 30 images
# trained at batch 8, 16 and 32 without diverging, where the paper's 0.01 diverged by step 16 at batch 8
OWN_CLASSES_MAX_LR = 1e-3
FINETUNE_BATCH_SIZE = 32
FINETUNE_EPOCHS = 10

RUN_DEFAULTS = {
    "epochs": training.EPOCHS,
    "batch_size": training.BATCH_SIZE,
    "lr": training.LEARNING_RATE,
    "momentum": training.MOMENTUM,
    "weight_decay": training.WEIGHT_DECAY,
    "dropout": network.DROPOUT,
    "augment": training.AUGMENT,
    "groups": network.GROUPS,
    "steps_per_epoch": None,
    "seed": SEED,
    "deterministic": False,
    "precision": None,
    "save_every": SAVE_EVERY,
    "val_fraction": datasets.VAL_FRACTION,
    "init_from": None,
    "train_layers": training.ALL_LAYERS,
    "split_rule": datasets.SPLIT_RULE,  # not a flag: new runs split by name, resumed ones as they did
    "log_every": curves.LOG_EVERY,
}  # precision: the hardware's
SAMPLE_DEFAULTS = {
    "epochs": SAMPLE_EPOCHS,
    "batch_size": SAMPLE_BATCH_SIZE,
    "lr": SAMPLE_LR,
    "save_every": SAMPLE_SAVE_EVERY,
}
FINETUNE_DEFAULTS = {"epochs": FINETUNE_EPOCHS, "batch_size": FINETUNE_BATCH_SIZE, "lr": FINETUNE_LR}
CHANGEABLE_ON_RESUME = (
    "epochs",
    "save_every",
    "precision",
    "log_every",
)  # precision: float32 <-> bf16, the same checkpoints


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything a train.py command does: where and how it runs, and the run's settings (which config.json keeps)."""

    mode: str  # "scratch" or "resume"
    data_dir: str | None  # as given (None: not given): sample_dataset.data_dir_for resolves it
    sample: bool
    ckpt_dir: str
    log_dir: str  # resolved: the flag, the run's own, or the run folder's logs/
    overwrite: bool
    xla: bool
    strategy: str
    cpu_replicas: int
    max_bad_images: int | None  # None: MAX_BAD_FRACTION of the training set
    settings: RunSettings
    lr_to_scale: bool = False  # -scratch with no --lr, --sample or --init-from: own_classes_lr may set it

    def max_bad(self, num_images):
        if self.max_bad_images is not None:
            return self.max_bad_images
        return math.ceil(MAX_BAD_FRACTION * num_images)

    def settings_for(self, num_classes):
        """The run's settings for a dataset of `num_classes`: the learning rate own_classes_lr gives a folder of your
        own classes when none was asked for; ILSVRC2012's 1000 keep the paper's."""
        if not self.lr_to_scale or num_classes >= network.NUM_CLASSES:
            return self.settings
        return dataclasses.replace(self.settings, lr=own_classes_lr(self.settings.batch_size))


def own_classes_lr(batch_size):
    """The learning rate of a folder of your own classes trained from scratch: the paper's at batch 128, scaled
    linearly with the batch, at most OWN_CLASSES_MAX_LR (with few classes each fc8 row takes a larger share of the
    gradient, and the paper's rate diverges)."""
    return min(training.LEARNING_RATE * batch_size / training.BATCH_SIZE, OWN_CLASSES_MAX_LR)


def paper_settings(**changes):
    """The run settings of train.py without flags (the paper's recipe, this hardware's precision), with `changes`:
    for programs that build training as train.py does (benchmarks/)."""
    return RunSettings(**{**RUN_DEFAULTS, "precision": network.default_precision(), **changes})


def resolve(args, *, saved=None, source=None, replicas=1):
    """This command's TrainOptions from the parsed flags and, on -resume, the `saved` RunConfig, or, with
    --init-from, the `source` run's; a UsageError (or a CheckpointError naming what differs from the saved run) when
    they cannot work."""
    values = {
        **RUN_DEFAULTS,
        "precision": network.default_precision(),
        **(SAMPLE_DEFAULTS if args.sample else {}),
        **(FINETUNE_DEFAULTS if args.init_from else {}),
    }
    given = {name: getattr(args, name) for name in RUN_DEFAULTS if getattr(args, name, None) is not None}
    if source is not None:
        groups = source.architecture.groups
        if given.get("groups", groups) != groups:
            raise UsageError(
                f"--init-from {args.init_from} has groups {groups}: fine-tuning keeps the source's architecture; "
                "leave out --groups"
            )
        values["groups"] = groups
    if saved is not None:
        if saved.settings is None:
            raise UsageError(
                f"{args.ckpt_dir} holds weights imported from {saved.source.weights if saved.source else 'a file'}, "
                "not a run of train.py: -resume continues train.py's runs"
            )
        kept = dataclasses.asdict(saved.settings)
        differing = [
            f"{name} {kept[name]}, not {value}"
            for name, value in given.items()
            if name not in CHANGEABLE_ON_RESUME and name in kept and kept[name] != value
        ]
        if differing:
            raise CheckpointError(
                f"the run in {args.ckpt_dir} has {'; '.join(differing)}: -resume continues a run as "
                "it was started; start another with -scratch --ckpt-dir NEW_DIR"
            )
        precisions = {kept["precision"], given.get("precision", kept["precision"])}
        if len(precisions) > 1 and "fp16" in precisions:
            raise CheckpointError(
                f"the run in {args.ckpt_dir} has precision {kept['precision']}, not {given['precision']}: -resume "
                "switches between float32 and bf16 only (fp16's checkpoints hold a loss scale); start another with "
                "-scratch --ckpt-dir NEW_DIR"
            )
        values.update(kept)
    values.update(given)
    options = TrainOptions(
        mode=args.mode,
        data_dir=args.data_dir,
        sample=args.sample,
        ckpt_dir=args.ckpt_dir,
        log_dir=run_folder.log_dir_for(args.ckpt_dir, args.log_dir, run=saved),
        overwrite=args.overwrite,
        xla=args.xla or bool(tf.config.list_physical_devices("GPU")),
        strategy=args.strategy,
        cpu_replicas=args.cpu_replicas,
        max_bad_images=args.max_bad_images,
        settings=RunSettings(**values),
        lr_to_scale=args.mode == "scratch" and args.lr is None and not args.sample and not args.init_from,
    )
    validate(options, replicas=replicas, resumed=saved is not None, given=given)
    return options


def validate(options, *, replicas, resumed, given=()):
    """A UsageError naming the first setting that cannot work, and the fix: the flag when the user `given` it (or at
    -scratch), else the run's config.json, whose value it is."""
    settings = options.settings
    bounds = [
        ("epochs", settings.epochs >= 1, "at least 1"),
        ("batch-size", settings.batch_size >= 1, "at least 1"),
        ("lr", settings.lr > 0, "positive"),
        ("momentum", 0 <= settings.momentum < 1, "in [0, 1)"),
        ("weight-decay", settings.weight_decay >= 0, "0 or more"),
        ("dropout", 0 <= settings.dropout < 1, "in [0, 1)"),
        ("steps-per-epoch", settings.steps_per_epoch is None or settings.steps_per_epoch >= 1, "at least 1"),
        ("save-every", settings.save_every >= 1, "at least 1"),
        ("log-every", settings.log_every >= 1, "at least 1"),
        ("max-bad-images", options.max_bad_images is None or options.max_bad_images >= 0, "0 or more"),
        ("cpu-replicas", options.cpu_replicas >= 1, "at least 1"),
        ("val-fraction", 0 < settings.val_fraction < 1, "in (0, 1)"),
    ]
    for flag, holds, bound in bounds:
        name = flag.replace("-", "_")
        value = getattr(settings if hasattr(settings, name) else options, name)
        if resumed and not holds and hasattr(settings, name) and name not in given:
            raise CheckpointError(
                f"the run in {options.ckpt_dir} has {name} {value} in its config.json, which cannot work: it must be "
                f"{bound}; the file was edited: start another with -scratch"
            )
        check_flag(flag, value, holds, bound)
    check_seed(settings.seed)
    check_writable(options.ckpt_dir, "--ckpt-dir")
    check_writable(options.log_dir, "--log-dir")
    if settings.augment not in preprocessing.AUGMENTATIONS or settings.precision not in network.PRECISIONS:
        raise UsageError(
            f"the run's augment {settings.augment!r} or precision {settings.precision!r} is unknown: "
            "its config.json was edited; start another with -scratch"
        )
    trained = training.trained_layers(settings.train_layers)
    if not trained or any(name not in network.LAYER_NAMES for name in trained):
        raise UsageError(
            f"--train-layers {settings.train_layers}: name layers of {','.join(network.LAYER_NAMES)}, or say all"
        )
    if settings.batch_size % replicas:
        whose = f"the run's batch size {settings.batch_size}" if resumed else f"--batch-size {settings.batch_size}"
        raise UsageError(
            f"{whose} does not split evenly across the {replicas} replicas: "
            + ("resume it with a number of replicas that divides it" if resumed else "make it a multiple of them")
        )


def add_arguments(parser):
    """train.py's flags; the run settings default to None, so that resolve() tells given from default."""
    parser.add_argument(
        "--data-dir",
        help="ILSVRC2012 folder, a folder of your own classes, or prepared shards (default: -resume's the run's own, "
        f"-scratch's {datasets.DATA_DIR}; {sample_dataset.SAMPLE_DIR} with --sample)",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="train on the generated sample dataset (made on first use) with small defaults",
    )
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help=f"run folder (default: {run_folder.CKPT_DIR})")
    parser.add_argument(
        "--log-dir",
        help=f"TensorBoard folder (default: {run_folder.LOGS_NAME}/ in --ckpt-dir; on -resume, the run's own)",
    )
    parser.add_argument("--overwrite", action="store_true", help="let -scratch replace a run already in --ckpt-dir")
    hyper = parser.add_argument_group(
        "hyper-parameters (on -resume the run's own; only --epochs, --save-every, --log-every and --precision may "
        "change)"
    )
    hyper.add_argument("--epochs", type=int, help=f"epochs (default: {training.EPOCHS}; {SAMPLE_EPOCHS} with --sample)")
    hyper.add_argument(
        "--batch-size",
        type=int,
        help=f"images a step, across all replicas (default: {training.BATCH_SIZE}; {SAMPLE_BATCH_SIZE} with --sample)",
    )
    hyper.add_argument(
        "--lr",
        type=float,
        help=f"initial learning rate (default: {training.LEARNING_RATE}; {SAMPLE_LR} with --sample; for a folder of "
        f"your own classes, {training.LEARNING_RATE} x batch / {training.BATCH_SIZE}, at most {OWN_CLASSES_MAX_LR})",
    )
    hyper.add_argument("--momentum", type=float, help=f"SGD momentum (default: {training.MOMENTUM})")
    hyper.add_argument(
        "--weight-decay", type=float, help=f"weight decay through momentum (default: {training.WEIGHT_DECAY})"
    )
    hyper.add_argument("--dropout", type=float, help=f"dropout on fc6 and fc7 (default: {network.DROPOUT})")
    hyper.add_argument(
        "--augment",
        choices=preprocessing.AUGMENTATIONS,
        help=f"none: random crops (the seed); flip: + mirrors; paper: + PCA lighting (default: {training.AUGMENT})",
    )
    hyper.add_argument(
        "--groups",
        type=int,
        choices=(1, 2),
        help=f"1: single tower (the seed); 2: the paper's two columns (default: {network.GROUPS})",
    )
    hyper.add_argument("--steps-per-epoch", type=int, help="steps an epoch (default: one pass over the training set)")
    hyper.add_argument("--seed", type=int, help=f"seed of initialisation, shuffling and augmentation (default: {SEED})")
    hyper.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="TF op determinism and images batched in stream order: a resumed run ends with the "
        "same weights as an uninterrupted one (default: off, faster)",
    )
    hyper.add_argument(
        "--precision",
        choices=tuple(network.PRECISIONS),
        help=f"float32, or mixed precision with bf16 or fp16 (default: {network.default_precision()} "
        "here: bf16 on GPUs of compute capability 8.0+ and CPUs with AVX512-BF16/AMX; fp16 is for older GPUs, "
        "and emulated, slowly, on CPUs)",
    )
    hyper.add_argument(
        "--log-every",
        type=int,
        help=f"steps between points of TensorBoard's per-step curves (default: {curves.LOG_EVERY}; -resume may "
        "change it)",
    )
    hyper.add_argument(
        "--save-every",
        type=int,
        help=f"steps between checkpoints (default: {SAVE_EVERY}; {SAMPLE_SAVE_EVERY} with --sample)",
    )
    tuning = parser.add_argument_group(
        "your own images and fine-tuning (README: Your own images)",
    )
    tuning.add_argument(
        "--val-fraction",
        type=float,
        help="share of each class's images kept for validation when --data-dir has no val/ folder "
        f"(default: {datasets.VAL_FRACTION})",
    )
    tuning.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="start from this run's weights (ours, or import_weights.py's), architecture and preprocessing; fc8 is "
        "new unless the classes are the same (shared classes keep their rows). Defaults then suit small data: "
        f"--lr {FINETUNE_LR}, --batch-size {FINETUNE_BATCH_SIZE}, --epochs {FINETUNE_EPOCHS}",
    )
    tuning.add_argument(
        "--train-layers",
        help=f"comma-separated layers that train, e.g. fc8,fc7 (the others stay frozen), or {training.ALL_LAYERS} "
        f"(default: {training.ALL_LAYERS})",
    )
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile the training step with XLA (default: on with a GPU; off on CPU, where it makes the step slower)",
    )
    parser.add_argument(
        "--strategy",
        choices=distribute.STRATEGIES,
        default="auto",
        help="tf.distribute strategy: default (one device), mirrored (all GPUs of this machine, or "
        "--cpu-replicas logical CPUs without one), multi-worker (several machines, from "
        "TF_CONFIG or Slurm; docs/training.md); auto: multi-worker when TF_CONFIG is set, mirrored with "
        "more than one GPU (default: auto). --batch-size is the global batch, split across the "
        "replicas; with a larger global batch, scale --lr with it",
    )
    parser.add_argument(
        "--cpu-replicas",
        type=int,
        default=distribute.CPU_REPLICAS,
        help=f"logical CPU devices of --strategy mirrored on a machine without GPUs "
        f"(default: {distribute.CPU_REPLICAS})",
    )
    parser.add_argument(
        "--max-bad-images",
        type=int,
        help="unreadable training images skipped before -scratch refuses the dataset "
        f"(default: {100 * MAX_BAD_FRACTION:g}%% of the training set)",
    )
