"""ImageNet as TensorFlow Datasets prepared it, read with tf.data alone (tensorflow_datasets need not be installed):

    ~/tensorflow_datasets/imagenet2012/5.1.0/
        dataset_info.json                                    "name", and "splits": [{"name", "shardLengths"}, ...]
        label.labels.txt                                     a WNID a line: label i is line i
        imagenet2012-train.tfrecord-00000-of-01024 ...        records of image (the original JPEG), label, file_name
        imagenet2012-validation.tfrecord-00000-of-00064 ...

imagenet_v2's folders are alike, with a "test" split only. The classes come from the folder's label file, never
assumed; shard names follow TFDS's template {name}-{split}.tfrecord-{index:05d}-of-{count:05d} and are checked to
stay in the folder.
"""

import json
import os

from alexnet_tf.errors import DataError, check_size, inside
from alexnet_tf.split import Split, Synset

INFO = "dataset_info.json"
LABELS = "label.labels.txt"
INFO_MAX_BYTES = 16 * 2**20  # ours: ImageNet's lists 1,088 shard lengths, a few hundred KB
LABELS_MAX_BYTES = 2**20  # 1000 WNIDs: 10 KB
SPLITS = {"train": ("train",), "val": ("validation", "test")}  # ours -> TFDS's, the first that the folder has


def is_tfds(data_dir):
    return os.path.isfile(os.path.join(data_dir, INFO)) and os.path.isfile(os.path.join(data_dir, LABELS))


def load_classes(data_dir):
    """The classes of the folder's label file, in label order (each WNID its own words: TFDS keeps no names)."""
    path = os.path.join(data_dir, LABELS)
    check_size(path, LABELS_MAX_BYTES, DataError, "give the folder TFDS prepared")
    with open(path) as f:
        wnids = [line.strip() for line in f if line.strip()]
    if len(set(wnids)) != len(wnids) or len(wnids) < 2:
        raise DataError(f"{path} does not list distinct classes, one a line: give the folder TFDS prepared")
    return [Synset(i + 1, wnid, wnid) for i, wnid in enumerate(wnids)]


def read_split(data_dir, part):
    """The Split of our `part` ("train" or "val": TFDS's validation, or test for imagenet_v2)."""
    path = os.path.join(data_dir, INFO)
    check_size(path, INFO_MAX_BYTES, DataError, "give the folder TFDS prepared")
    try:
        with open(path) as f:
            info = json.load(f)
        splits = {split["name"]: [int(n) for n in split["shardLengths"]] for split in info["splits"]}
        name = info["name"]
    except (ValueError, KeyError, TypeError) as error:  # be specific: not JSON, or not TFDS's fields
        raise DataError(f"{path} is not TFDS's dataset_info.json ({error}): give the folder TFDS prepared") from None
    found = [split for split in SPLITS[part] if split in splits]
    if not found:
        raise DataError(f"{path} has no {' or '.join(SPLITS[part])} split (it has {', '.join(splits)})")
    lengths = splits[found[0]]
    shards = [
        inside(data_dir, f"{name}-{found[0]}.tfrecord-{index:05d}-of-{len(lengths):05d}", path, DataError)
        for index in range(len(lengths))
    ]
    missing = [shard for shard in shards if not os.path.isfile(shard)]
    if missing:
        raise DataError(f"{len(missing)} of the {len(shards)} shards {path} lists are missing, e.g. {missing[0]}")
    return Split(shards, None, lengths, None, "tfds")
