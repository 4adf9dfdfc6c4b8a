"""Prepared shards: the images of an ILSVRC2012 folder written once as TFRecords, which training reads several
times faster than the image files (docs/performance.md).

Every image is decoded, resized to shorter side 256 and re-encoded as a JPEG of quality 95; this is our format, not
tensorflow/models' build_imagenet_data.py's, which keeps the original JPEG bytes, and only the shard names and the
record fields follow theirs. The resize is our runs' (preprocessing.Preprocessing()); a run with another
preprocessing (an imported Caffe run warps to 256x256) resizes the prepared images again. Unreadable images are
skipped and named. The run is resumable: the plan is kept in
OUT_DIR, each shard is written under a temporary name and renamed when complete, and a call after an interruption
writes only the shards missing.

    PREPARED/
        train-00000-of-01024 ... validation-00000-of-00128   tf.train.Example records: image/encoded (JPEG),
                                                              image/class/label (our index, ID - 1),
                                                              image/class/synset (WNID), image/filename
        data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt   copied from the source
        prepared.json                                        shards, their record counts, classes, skipped files

    python prepare_data.py --prepare ILSVRC2012 ILSVRC2012-prepared
"""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from alexnet_tf import datasets, preprocessing, progress, startup
from alexnet_tf.errors import DataError

TRAIN_SHARDS = 1024  # tensorflow/models build_imagenet_data.py
VAL_SHARDS = 128  # tensorflow/models build_imagenet_data.py
SHARD_NAME = "{part}-{index:05d}-of-{count:05d}"  # tensorflow/models' names: train-00000-of-01024
SHARD_PARTS = {"train": "train", "val": "validation"}
JPEG_QUALITY = 95  # ours: keeps the re-encoding error near 1/255 a pixel (see tests)
PLAN = "prepare-plan.json"  # what an interrupted --prepare continues
LOG = "prepare-log.jsonl"  # the shards it completed
SEED = 0  # spreads the classes over the training shards
# What training and evaluation read of a record, and its file's name: the fields of prepare_data.py's records, and of
# TensorFlow Datasets' (imagenet2012, imagenet_v2: image, label, file_name)
RECORD_FIELDS = {
    "prepared": ("image/encoded", "image/class/label", "image/filename"),
    "tfds": ("image", "label", "file_name"),
}


def parse_records(records, record_format="prepared"):
    """(encoded images, labels) of a vector of records of `record_format` (RECORD_FIELDS)."""
    image, label, _ = RECORD_FIELDS[record_format]
    parsed = tf.io.parse_example(
        records, {image: tf.io.FixedLenFeature([], tf.string), label: tf.io.FixedLenFeature([], tf.int64)}
    )
    return parsed[image], tf.cast(parsed[label], tf.int32)


def parse_names(records, record_format="prepared"):
    """The source file names of a vector of records of `record_format`."""
    name = RECORD_FIELDS[record_format][2]
    return tf.io.parse_example(records, {name: tf.io.FixedLenFeature([], tf.string)})[name]


def prepare(source_dir, out_dir, train_shards=TRAIN_SHARDS, val_shards=VAL_SHARDS):
    """Writes the images of `source_dir` (ILSVRC2012 layout) into `out_dir` as prepared shards (layout above)."""
    source, out = os.path.realpath(source_dir), os.path.realpath(out_dir)
    if os.path.commonpath([source, out]) == source:
        raise DataError(
            f"OUT_DIR {out_dir} is inside the dataset {source_dir}, which its shards would change: write them beside "
            f"it, such as {source.rstrip(os.sep)}-prepared"
        )
    if datasets.is_prepared(out_dir):
        print(f"{out_dir} already holds the prepared shards")
        return
    synsets = datasets.load_classes(source_dir)
    plan = preparation_plan(source_dir, synsets, train_shards, val_shards)
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    done = completed_shards(out_dir, plan)
    for name in (datasets.META_MAT, datasets.GROUND_TRUTH):
        if os.path.isfile(os.path.join(source_dir, name)):
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(out_dir, name))
    shards = [(name, entries) for part in SHARD_PARTS for name, entries in plan[part]]
    print(
        f"Preparing {sum(len(entries) for _, entries in shards)} images into {len(shards)} shards in {out_dir} "
        f"({len(done)} shards were already written) ..."
    )
    bar = progress.bar(sum(len(entries) for _, entries in shards), unit_name="image")
    bar.add(sum(len(entries) for name, entries in shards if name in done))
    with open(os.path.join(out_dir, LOG), "a") as log:
        for name, entries in shards:
            if name not in done:
                done[name] = write_shard(source_dir, entries, synsets, os.path.join(out_dir, name), bar)
                log.write(json.dumps({"shard": name, "unreadable": done[name]}) + "\n")
                log.flush()
    manifest = {
        "source": os.path.abspath(source_dir),
        "classes": [s.wnid for s in synsets],
        "resize_shorter": preprocessing.RESIZE_SHORTER,
        "jpeg_quality": JPEG_QUALITY,
        **{
            part: {
                "shards": [name for name, _ in plan[part]],
                "sizes": [len(entries) - len(done[name]) for name, entries in plan[part]],
                "unreadable": [path for name, _ in plan[part] for path in done[name]],
            }
            for part in SHARD_PARTS
        },
    }
    write_json(os.path.join(out_dir, datasets.PREPARED_MANIFEST), manifest)
    for name in (PLAN, LOG):
        os.remove(os.path.join(out_dir, name))
    print(
        f"Prepared {sum(manifest['train']['sizes'])} training and {sum(manifest['val']['sizes'])} validation "
        f"images in {out_dir}; train with --data-dir {out_dir}"
    )


def preparation_plan(source_dir, synsets, train_shards, val_shards):
    """Which images go into which shard, as (shard name, [(path relative to source_dir, label), ...]) for "train"
    and "val": training images shuffled so that every shard holds all classes, validation images in order."""
    plan = {}
    for part, shards in (("train", train_shards), ("val", val_shards)):
        split = datasets.read_split(source_dir, synsets, part)
        if split.prepared:
            raise DataError(f"{source_dir} holds prepared shards already: --prepare reads the ILSVRC2012 folders")
        images = split.num_images
        order = np.random.default_rng(SEED).permutation(images) if part == "train" else range(images)
        entries = [(os.path.relpath(split.paths[i], source_dir), split.labels[i]) for i in order]
        count = min(shards, images)
        bounds = np.linspace(0, len(entries), count + 1).round().astype(int)
        plan[part] = [
            (SHARD_NAME.format(part=SHARD_PARTS[part], index=index, count=count), entries[start:end])
            for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]
    return json.loads(json.dumps(plan))


def completed_shards(out_dir, plan):
    """The shards an earlier call completed, with their unreadable files; refuses another preparation's folder."""
    plan_path = os.path.join(out_dir, PLAN)
    if not os.path.isfile(plan_path):
        write_json(plan_path, plan)
        return {}
    with open(plan_path) as f:
        if json.load(f) != plan:
            raise DataError(
                f"{out_dir} holds an unfinished preparation of other images or shard counts: remove it, "
                "or choose another OUT_DIR"
            )
    done, log_path = {}, os.path.join(out_dir, LOG)
    if not os.path.isfile(log_path):
        return done
    planned = {name: {path for path, _ in entries} for part in SHARD_PARTS for name, entries in plan[part]}
    with open(log_path) as log:
        for line in log:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # be specific: the line being written when the run was killed
                continue
            if entry["shard"] not in planned or not set(entry["unreadable"]) <= planned[entry["shard"]]:
                raise DataError(
                    f"{log_path} names a shard or image that {plan_path} does not plan "
                    f"({entry['shard']!r}): remove {out_dir} and prepare again"
                )
            if os.path.isfile(os.path.join(out_dir, entry["shard"])):
                done[entry["shard"]] = entry["unreadable"]
    return done


def write_shard(source_dir, entries, synsets, path, bar):
    """One shard: every image decoded, resized to shorter side 256, encoded as JPEG; returns the unreadable ones."""

    def encode(index, file_path):
        image = preprocessing.resized(
            preprocessing.decode_rgb(tf.io.read_file(file_path)), preprocessing.Preprocessing()
        )
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return index, tf.io.encode_jpeg(pixels, quality=JPEG_QUALITY), tf.shape(pixels)[:2]

    written = set()
    images = startup.read_once(
        tf.data.Dataset.from_tensor_slices([os.path.join(source_dir, rel) for rel, _ in entries])
        .enumerate()
        .map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .prefetch(tf.data.AUTOTUNE)
    )
    with tf.io.TFRecordWriter(path + ".tmp") as writer, startup.decoder_noise_held_back():
        for index, encoded, (height, width) in images.as_numpy_iterator():
            relative_path, label = entries[index]
            writer.write(example(encoded, label, synsets[label].wnid, relative_path, height, width))
            written.add(int(index))
            bar.add(1)
    os.replace(path + ".tmp", path)
    unreadable = [rel for i, (rel, _) in enumerate(entries) if i not in written]
    for rel in unreadable:
        print(f"\nwarning: skipping unreadable image {os.path.join(source_dir, rel)}")
    if unreadable:  # adding nothing at the target would print the bar's closing line again
        bar.add(len(unreadable))
    return unreadable


def example(encoded, label, wnid, filename, height, width):
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": feature(encoded),
                "image/format": feature(b"JPEG"),
                "image/class/label": feature(label),
                "image/class/synset": feature(wnid.encode()),
                "image/filename": feature(filename.encode()),
                "image/height": feature(height),
                "image/width": feature(width),
            }
        )
    ).SerializeToString()


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)
