"""A run's config as one typed object: what train.py and import_weights.py decide once, and every later command
(resume, test, classify, export, fine-tune) reads. `run_folder` alone turns it into config.json and back:

    config.json
        version          run_folder.CONFIG_VERSION
        architecture     Architecture: the builder's arguments (network.alexnet)
        classes          [ClassName]: fc8's rows in order (WNID or folder name, and words)
        preprocessing    preprocessing.Preprocessing: sizes, resize rule, channel order, the mean
        settings         RunSettings: train.py's hyper-parameters; null for imported weights
        unreadable       Unreadable: the images found undecodable at -scratch, relative to the dataset folder
        layout           "image folders" or "prepared shards"
        data_dir         the dataset folder of the machine that trained (absolute)
        log_dir          TensorBoard's folder when not the run's own logs/ (absolute), else null
        images           ImageCounts: the images of each set at -scratch
        source           WeightsSource: for imported weights, the file they came from

Reading checks every field's type and that the fields agree (fc8's classes and the architecture's), so that a
damaged or edited file is one error naming the field, not a traceback later.
"""

import dataclasses
import types
import typing

from alexnet_tf import datasets, network
from alexnet_tf.preprocessing import Preprocessing

LAYOUTS = ("image folders", "prepared shards", "TFDS shards")


class ConfigFieldError(ValueError):
    """A field of config.json that does not have the type or value the run needs; the message names it."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The network's shape: network.alexnet's arguments (the paper's unless a variant, such as CAFFE_BVLC, says)."""

    num_classes: int = network.NUM_CLASSES
    groups: int = network.GROUPS
    dropout: float = network.DROPOUT
    image_size: int = network.IMAGE_SIZE
    conv1_padding: int = network.CONV1_PADDING
    lrn: dict = dataclasses.field(default_factory=lambda: dict(network.PAPER_LRN))

    def build(self, **kwargs):
        """The Keras model of this architecture (in the dtype policy in force)."""
        return network.alexnet(**dataclasses.asdict(self), **kwargs)


@dataclasses.dataclass(frozen=True)
class ClassName:
    wnid: str  # a WordNet ID, or the folder name of your own class
    words: str


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """train.py's hyper-parameters of a run (train_options resolves them; -resume may change a few)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    dropout: float
    augment: str
    groups: int
    steps_per_epoch: int | None  # None only before -scratch counted the training set
    seed: int
    deterministic: bool
    precision: str
    save_every: int
    val_fraction: float = datasets.VAL_FRACTION  # runs from before the field had it
    init_from: str | None = None
    train_layers: str = "all"
    split_rule: str = "permutation"  # your own images without val/ (datasets.SPLIT_RULES); runs that recorded none
    log_every: int = 100  # steps between points of the curves (curves.LOG_EVERY); runs from before them

    def split_args(self):
        """How datasets.read_split draws this run's validation images from a folder of your own without val/."""
        return {"val_fraction": self.val_fraction, "seed": self.seed, "split_rule": self.split_rule}


@dataclasses.dataclass(frozen=True)
class Unreadable:
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ImageCounts:
    train: int
    val: int


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    weights: str  # the imported file's absolute path
    sha256: str
    format: str


@dataclasses.dataclass(frozen=True)
class RunConfig:
    architecture: Architecture
    classes: tuple[ClassName, ...]
    preprocessing: Preprocessing
    settings: RunSettings | None  # None: weights imported by import_weights.py, not trained here
    unreadable: Unreadable = Unreadable()
    layout: str = "image folders"  # runs from before prepared shards
    data_dir: str | None = None
    log_dir: str | None = None
    images: ImageCounts | None = None  # runs from before config.json kept the numbers
    source: WeightsSource | None = None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def portable(self):
        """The config without the training machine's folders: what an exported model carries."""
        return self.replace(data_dir=None, log_dir=None)

    def to_json(self):
        """The JSON object of config.json (without its version): "source" only for imported weights, the machine's
        folders only when it has one (an imported or exported run has neither)."""
        values = dataclasses.asdict(self, dict_factory=lambda items: {name: _listed(value) for name, value in items})
        absent = {"source"} if self.source is None else set()
        absent |= {"data_dir", "log_dir"} if self.data_dir is None and self.log_dir is None else set()
        return {name: value for name, value in values.items() if name not in absent}

    @classmethod
    def from_json(cls, values):
        """The config of a JSON object; a ConfigFieldError naming the first field that does not fit."""
        config = read_dataclass(cls, values, "")
        if len(config.classes) != config.architecture.num_classes:
            raise ConfigFieldError(
                f'"classes" lists {len(config.classes)} classes for the {config.architecture.num_classes} outputs of '
                '"architecture"'
            )
        lrn = config.architecture.lrn
        if set(lrn) != set(network.PAPER_LRN) or not all(_is_number(value) for value in lrn.values()):
            raise ConfigFieldError(f'"architecture.lrn" is {lrn}, not numbers named {", ".join(network.PAPER_LRN)}')
        if config.settings and config.settings.split_rule not in datasets.SPLIT_RULES:
            raise ConfigFieldError(
                f'"settings.split_rule" is {config.settings.split_rule!r}, not one of {", ".join(datasets.SPLIT_RULES)}'
            )
        if config.layout not in LAYOUTS:
            raise ConfigFieldError(f'"layout" is {config.layout!r}, not one of {", ".join(LAYOUTS)}')
        if config.preprocessing.crop_size != config.architecture.image_size:
            raise ConfigFieldError(
                f'"preprocessing" crops {config.preprocessing.crop_size} pixels for a network of input '
                f"{config.architecture.image_size}"
            )
        return config


def read_dataclass(cls, values, where):
    """An instance of the dataclass `cls` from the JSON object `values`, each field checked against its annotation;
    fields missing from `values` take their defaults (older files), unknown ones are refused."""
    if not isinstance(values, dict):
        raise ConfigFieldError(f"{_name(where)} is {_shown(values)}, not an object")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigFieldError(f"{_name(where)} has a field this code does not know: {unknown[0]!r}")
    hints = typing.get_type_hints(cls)
    read = {}
    for name, field in fields.items():
        if name in values:
            read[name] = _read_value(hints[name], values[name], f"{where}.{name}" if where else name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigFieldError(f"{_name(where)} lacks the field {name!r}")
    try:
        return cls(**read)
    except (TypeError, ValueError) as error:  # be specific: what a dataclass's own checks say (Preprocessing)
        raise ConfigFieldError(f"{_name(where)} is not valid ({error})") from None


def _read_value(annotation, value, where):
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (annotation,) = [argument for argument in arguments if argument is not type(None)]
        return _read_value(annotation, value, where)
    if dataclasses.is_dataclass(annotation):
        return read_dataclass(annotation, value, where)
    if origin is tuple or annotation is tuple:
        if not isinstance(value, list):
            raise ConfigFieldError(f"{_name(where)} is {_shown(value)}, not a list")
        item = arguments[0] if arguments else float
        return tuple(_read_value(item, each, f"{where}[{index}]") for index, each in enumerate(value))
    if annotation is dict:
        if not isinstance(value, dict):
            raise ConfigFieldError(f"{_name(where)} is {_shown(value)}, not an object")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigFieldError(f"{_name(where)} is {_shown(value)}, not {_KINDS.get(annotation, annotation)}")
    return value


def _listed(value):
    """JSON's lists for the tuples of a dataclass."""
    return [_listed(each) for each in value] if isinstance(value, tuple | list) else value


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _name(where):
    return f'"{where}"' if where else "the file"


def _shown(value):
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
