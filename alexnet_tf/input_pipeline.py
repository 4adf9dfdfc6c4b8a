"""The tf.data pipelines of training and evaluation, and the passes over a training set that a new run makes once
(the unreadable-image scan and the mean); they read a `datasets.Split` of image files or prepared shards.

The training stream is a function of the step alone: each epoch's order is drawn from (seed, epoch), each image's
crop and augmentation from (seed, epoch, position), so that a resumed run sees exactly what an uninterrupted one
would have seen, and each worker of a cluster reads its own share.
"""

import contextlib
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from alexnet_tf import errors, prepared_shards, preprocessing, progress, startup

MEAN_MAX_IMAGES = 10_000  # ours: the mean is estimated on a random subset of this many training images
SHARDS_IN_FLIGHT = 4  # ours: prepared shards read at once by a training pipeline (about 200 MB of ImageNet's)
SCAN_BATCH = 1024  # images a progress update of the unreadable-image scan


def train_elements(
    split, *, batch_size, steps_per_epoch, first_epoch, epochs, seed=0, skip_batches=0, pipeline=0, pipelines=1
):
    """What a training pipeline reads, before decoding: (image file path or prepared JPEG, label, epoch, position
    in the epoch). Each epoch is a fresh order drawn from (seed, epoch): a resumed run skips `skip_batches` of its
    first epoch. Of P input pipelines (one a worker), each reads its own share, and each image is read once an
    epoch: from image folders, pipeline p opens the files of its 1/P of every batch, so that the batches are the same
    for any number of workers; from prepared shards, pipeline p takes the p-th of P consecutive parts of the epoch's
    order, so that it reads only the shards of its part (and shares at most two with its neighbours)."""
    per_epoch, share = steps_per_epoch * batch_size, batch_size // pipelines
    if split.prepared:
        plan = shard_plan(
            split.shard_sizes,
            per_epoch=per_epoch,
            first_epoch=first_epoch,
            epochs=epochs,
            seed=seed,
            skip=skip_batches * share,
            part=pipeline,
            parts=pipelines,
        )
        return _shard_stream(split, plan)
    stream = _file_stream(
        split, per_epoch=per_epoch, first_epoch=first_epoch, epochs=epochs, seed=seed, skip=skip_batches * batch_size
    )
    if pipelines == 1:
        return stream
    return (
        stream.batch(batch_size)
        .map(lambda *batch: tuple(part[pipeline * share : (pipeline + 1) * share] for part in batch))
        .unbatch()
    )


def _file_stream(split, *, per_epoch, first_epoch, epochs, seed, skip):
    num_images = split.num_images
    passes = -(-per_epoch // num_images)
    paths, labels = tf.constant(split.paths), tf.constant(split.labels, tf.int32)

    def epoch_elements(epoch):
        order = tf.concat(
            [
                tf.random.experimental.stateless_shuffle(tf.range(num_images), [seed, epoch * passes + p])
                for p in range(passes)
            ],
            axis=0,
        )[:per_epoch]
        return tf.data.Dataset.from_tensor_slices(
            (
                tf.gather(paths, order),
                tf.gather(labels, order),
                tf.fill([per_epoch], epoch),
                tf.range(per_epoch, dtype=tf.int64),
            )
        )

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_elements).skip(skip)


def _shard_stream(split, plan):
    """The prepared shards' records in the order of the plan; whole shards are read, SHARDS_IN_FLIGHT at once, so
    that reading overlaps decoding and the order stays the plan's."""
    paths, sizes = tf.constant(split.paths), tf.constant(split.shard_sizes, tf.int64)

    def shard_slice(shard, order_seed, start, end, epoch, position):
        size = tf.gather(sizes, shard)
        records = (
            tf.data.TFRecordDataset(tf.gather(paths, shard))
            .apply(tf.data.experimental.assert_cardinality(size))
            .batch(size)
            .get_single_element()
        )
        order = tf.random.experimental.stateless_shuffle(tf.range(size), order_seed)[start:end]
        return (
            *_parsed(split, tf.gather(records, order)),
            tf.fill([end - start], epoch),
            position + tf.range(end - start),
        )

    return tf.data.Dataset.from_tensor_slices(plan).map(shard_slice, num_parallel_calls=SHARDS_IN_FLIGHT).unbatch()


@contextlib.contextmanager
def as_prepared(split):
    """A pass over `split` whose prepared shards hold fewer records than when they were prepared (a shard changed or
    cut short since) ends in one DataError naming their folder, not in the length checks' error of encoded_images
    and _shard_stream."""
    try:
        yield
    except tf.errors.FailedPreconditionError as error:
        counts = re.search(r"expected to contain (\d+) elements but contained only (\d+)", error.message)
        if not split.prepared or not counts:
            raise
        raise errors.DataError(
            f"the prepared shards in {os.path.dirname(split.paths[0])} hold fewer images than when they were prepared "
            f"({counts[2]} where {counts[1]} were expected; a shard changed since): run prepare_data.py --prepare on "
            "the image folders again"
        ) from None


def _parsed(split, records):
    """(encoded images, labels) of prepared records, the labels mapped by the split's label_map."""
    images, labels = prepared_shards.parse_records(records, split.record_format)
    if split.label_map is None:
        return images, labels
    return images, tf.gather(tf.constant(split.label_map, labels.dtype), labels)


def shard_plan(shard_sizes, *, per_epoch, first_epoch, epochs, seed, skip, part=0, parts=1):
    """Slices of shards in reading order, as arrays (shard, record order seed (2), start, end, epoch, position):
    an epoch reads `per_epoch` records, the shards in an order drawn from (seed, epoch, pass), each shard's records
    in an order drawn from (seed, epoch, pass, shard); of that, this keeps the records of positions
    [part, part + 1) * per_epoch / parts of every epoch, less the first `skip` records."""
    low, high = part * per_epoch // parts, (part + 1) * per_epoch // parts
    rows = []
    for epoch in range(first_epoch, epochs):
        taken, passes = 0, 0
        while taken < per_epoch:
            for shard in np.random.default_rng([seed, epoch, passes]).permutation(len(shard_sizes)):
                count = min(shard_sizes[shard], per_epoch - taken)
                start, end = max(0, low - taken), min(count, high - taken)
                if end > start:
                    order_seed = np.random.default_rng([seed, epoch, passes, shard]).integers(2**62)
                    rows.append([shard, seed, order_seed, start, end, epoch, taken + start])
                taken += count
            passes += 1
    for row in rows:
        cut = min(skip, row[4] - row[3])
        row[3] += cut
        row[6] += cut
        skip -= cut
    rows = np.array([row for row in rows if row[4] > row[3]], np.int64).reshape(-1, 7)
    return rows[:, 0], rows[:, 1:3], rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]


def train_dataset(
    split,
    *,
    spec,
    batch_size,
    steps_per_epoch,
    first_epoch,
    epochs,
    augment="paper",
    seed=0,
    skip_batches=0,
    pipeline=0,
    pipelines=1,
    replica_batch_size=None,
    deterministic=True,
):
    """Batches of `replica_batch_size` (default: the pipeline's share of `batch_size`, the global batch) of
    `train_elements`, decoded, cropped and augmented as the Preprocessing `spec` says, with seeds from (seed, epoch,
    position). Not `deterministic`:
    an image that decodes slowly lets the next ones pass it, so that neighbouring images may change batches; each
    image keeps its own crop and augmentation, and a resumed run still neither repeats nor skips one."""
    fetch = tf.identity if split.prepared else tf.io.read_file

    def load(item, label, epoch, position):
        element_seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), epoch]), position)
        # prepared shards hold their images upright (--prepare turned them), with no EXIF to read
        return preprocessing.train_crop(fetch(item), spec, augment, element_seed, turn=not split.resized), label

    elements = train_elements(
        split,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        first_epoch=first_epoch,
        epochs=epochs,
        seed=seed,
        skip_batches=skip_batches,
        pipeline=pipeline,
        pipelines=pipelines,
    )
    return (
        elements.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        .batch(replica_batch_size or batch_size // pipelines, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def encoded_images(split):
    """(encoded image, label) of every image of `split`, in stored order. Of known length: Keras ends a pass over a
    dataset of unknown length by warning that its "input ran out of data; interrupting training"."""
    if split.prepared:
        return (
            tf.data.TFRecordDataset(split.paths)
            .take(split.num_images)
            .batch(256)
            .map(lambda records: _parsed(split, records))
            .unbatch()
            .apply(tf.data.experimental.assert_cardinality(split.num_images))
        )
    return tf.data.Dataset.from_tensor_slices((split.paths, split.labels)).map(
        lambda path, label: (tf.io.read_file(path), label), num_parallel_calls=tf.data.AUTOTUNE
    )


def eval_dataset(split, *, spec, batch_size, crops="center", k_crops=1, seed=0):
    """Batches of (images (B, K, crop, crop, 3) as the Preprocessing `spec` makes them, labels), in stored order."""
    k = preprocessing.crops_per_image(crops, k_crops)

    def load(index, item):
        encoded, label = item
        return preprocessing.eval_crops(encoded, spec, crops, k, tf.stack([tf.cast(seed, tf.int64), index])), label

    return (
        encoded_images(split)
        .enumerate()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def compute_mean(split, max_images=MEAN_MAX_IMAGES, seed=0, spec=None):
    """Per-channel mean, in `spec`'s channel order, of the centre crops of up to `max_images` randomly chosen
    training images (prepared training shards hold the images in random order: their first ones are a random
    choice)."""
    spec = dataclasses.replace(spec or preprocessing.Preprocessing(), mean=(0.0, 0.0, 0.0))
    if split.prepared:
        images = encoded_images(split).take(max_images).map(lambda encoded, label: encoded)
        count = min(max_images, split.num_images)
    else:
        chosen = np.random.default_rng(seed).permutation(split.num_images)[:max_images]
        images = tf.data.Dataset.from_tensor_slices([split.paths[i] for i in chosen]).map(tf.io.read_file)
        count = len(chosen)

    def centre_crop_mean(encoded):
        return tf.reduce_mean(preprocessing.eval_crops(encoded, spec, "center", 1, [0, 0]), axis=(0, 1, 2))

    dataset = startup.read_once(images.map(centre_crop_mean, num_parallel_calls=tf.data.AUTOTUNE).batch(256))
    bar = progress.bar(count, unit_name="image")
    total = np.zeros(3)
    with as_prepared(split):
        for channel_means in dataset:
            total += channel_means.numpy().sum(axis=0)
            bar.add(len(channel_means))
    return (total / count).tolist()


def find_unreadable(split, what):
    """The files of `split` that do not decode as images (truncated, empty, not an image at all, or declaring more
    than preprocessing.MAX_IMAGE_PIXELS), in one parallel decoding pass. Prepared shards hold only images that
    decoded when they were prepared."""
    if split.prepared or not split.paths:
        return []
    paths = split.paths
    print(f"Checking that the {len(paths)} {what} decode ...")
    bar = progress.bar(len(paths), unit_name="image")
    readable = np.zeros(len(paths), bool)
    checked = startup.read_once(
        tf.data.Dataset.from_tensor_slices(paths)
        .enumerate()
        .map(
            lambda index, path: (index, preprocessing.decodes(tf.io.read_file(path))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .ignore_errors()
        .batch(SCAN_BATCH)
    )
    with startup.decoder_noise_held_back():
        for indices, _ in checked:
            readable[indices.numpy()] = True
            bar.add(len(indices))
    if not readable.all():  # the bar stopped short by the files skipped; when all decoded, it has closed itself
        bar.update(len(paths), finalize=True)
    return [path for path, ok in zip(paths, readable) if not ok]
