"""bench.py's input-pipeline measurements: the generated ImageNet-like JPEGs, --prepare's shard writer on a sample,
and our training and evaluation pipelines on image files and on prepared shards against decoding alone and a
plain PIL+numpy loader, each as a run for measuring.timed_rounds."""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import os
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import data_reader
from alexnet_tf import input_pipeline, prepared_shards, preprocessing, sample_dataset, startup
from benchmarks import measuring

# The generated ImageNet-like JPEGs: photographic content, 300-1600 px wide, about 500x375 on average
WIDTH_MEDIAN = 480  # log-normal widths around this, clipped to WIDTH_RANGE
WIDTH_RANGE = (300, 1600)
JPEG_QUALITY = 90
GRAYSCALE_FRACTION = 0.05

PREPARED_TRAIN_SHARDS = 8


# ------------------------------------------------------------------------------------------------- data


def make_photo_dataset(data_dir, images):
    """The sample's ILSVRC2012 layout, with photograph-like JPEGs: smooth shapes at several scales plus grain."""
    per_class = max(1, images // len(sample_dataset.LEAVES))
    sample_dataset.make_sample(data_dir, train_per_class=per_class, val_per_class=1, draw=photo_like)


def photo_like(label, num_classes, rng):
    """Smooth random shapes at three scales on a class tint, plus grain: JPEG-compresses like a photograph."""
    width = int(np.clip(rng.lognormal(np.log(WIDTH_MEDIAN), 0.3), *WIDTH_RANGE))
    height = int(width * rng.choice([0.75, 0.667, 1.0, 1.333], p=[0.6, 0.2, 0.1, 0.1]))
    pixels = 128 + 40 * np.cos(2 * np.pi * (label / num_classes + np.array([0, 1 / 3, 2 / 3])))
    for cells, amplitude in ((3, 50), (12, 25), (48, 15), (160, 16)):
        grid = rng.normal(0, amplitude, (cells, cells, 3)).astype(np.float32)
        pixels = pixels + np.stack(
            [np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.BICUBIC)) for c in range(3)],
            axis=-1,
        )
    pixels = pixels + rng.normal(0, 8, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if rng.random() < GRAYSCALE_FRACTION else image


# ---------------------------------------------------------------------------------------------- pipelines


def pipeline_rates(data_dir, scratch, sizes):
    """The input pipelines on a sample of `data_dir`'s training images, timed in the same rounds: ({name: [rate of
    each round]}, {"prepare_img_s_per_core": images/s} when image files were also prepared (the sample, into shards
    in `scratch`, timed apart), else {})."""
    synsets = data_reader.load_classes(data_dir)
    split = data_reader.read_split(data_dir, synsets, "train")
    spec = preprocessing.Preprocessing(mean=(120.0, 115.0, 105.0))
    prepared, runs = {}, {}
    if split.prepared:
        shards = whole_shards(split, sizes["IMAGES"])
    else:
        files = random_sample(split, sizes["IMAGES"])
        shards, prepared["prepare_img_s_per_core"] = prepare_sample(files, data_dir, synsets, scratch, sizes)
        runs.update(folder_pipelines(files, spec, sizes))
    runs.update(prepared_pipelines(shards, spec, sizes))
    return measuring.timed_rounds(runs, sizes["PIPELINE_ROUNDS"], warmup=1), prepared


def random_sample(split, count):
    order = np.random.default_rng(0).permutation(split.num_images)[:count]
    return data_reader.Split([split.paths[i] for i in order], [split.labels[i] for i in order], None)


def whole_shards(split, count):
    """The first shards holding at least `count` records: a pipeline reads shards whole."""
    shards = int(np.searchsorted(np.cumsum(split.shard_sizes), count)) + 1
    return split._replace(paths=split.paths[:shards], shard_sizes=split.shard_sizes[:shards])


def folder_pipelines(files, spec, sizes):
    """The timed runs on image files, for timed_rounds: each one pass over `files`."""
    batch = sizes["PIPELINE_BATCH"]
    train = training_pipeline(files, spec, sizes)
    evaluation = input_pipeline.eval_dataset(files, spec=spec, batch_size=batch, crops="random", k_crops=5)
    encoded = tf.data.Dataset.from_tensor_slices(files.paths).map(tf.io.read_file)
    rng = np.random.default_rng(0)
    return {
        "pipeline_img_s_per_core": one_pass(train),
        "decode_only_img_s_per_core": one_pass(decoded(encoded)),
        "pipeline_eval_img_s_per_core": one_pass(evaluation),
        "pil_img_s_per_core": lambda: pil_reference(files.paths, spec.mean, batch, rng),
    }


def prepare_sample(files, data_dir, synsets, scratch, sizes):
    """The sample written as PREPARED_TRAIN_SHARDS shards by --prepare's own shard writer: (the shards as a split,
    images/s)."""
    entries = [(os.path.relpath(path, data_dir), label) for path, label in zip(files.paths, files.labels)]
    bounds = np.linspace(0, len(entries), PREPARED_TRAIN_SHARDS + 1).astype(int)
    paths = [os.path.join(scratch, f"train-{index:05d}") for index in range(PREPARED_TRAIN_SHARDS)]
    written = []  # the records of each shard: its images less the unreadable ones

    def prepare():
        quiet = keras.utils.Progbar(len(entries), verbose=0)
        written[:] = [
            int(end - start) - len(prepared_shards.write_shard(data_dir, entries[start:end], synsets, path, quiet))
            for path, start, end in zip(paths, bounds[:-1], bounds[1:])
        ]
        return len(entries)

    rate = max(measuring.timed_rounds({"prepare": prepare}, sizes["PREPARE_REPEATS"])["prepare"])
    return data_reader.Split(paths, None, written), rate


def prepared_pipelines(shards, spec, sizes):
    """The timed runs on prepared shards, for timed_rounds: each one pass over `shards`."""
    train = training_pipeline(shards, spec, sizes)
    encoded = (
        tf.data.TFRecordDataset(shards.paths)
        .batch(256)
        .map(lambda records: prepared_shards.parse_records(records)[0])
        .unbatch()
    )
    return {
        "pipeline_prepared_img_s_per_core": one_pass(train),
        "decode_only_prepared_img_s_per_core": one_pass(decoded(encoded)),
    }


def training_pipeline(split, spec, sizes):
    batch = sizes["PIPELINE_BATCH"]
    return input_pipeline.train_dataset(
        split,
        spec=spec,
        batch_size=batch,
        steps_per_epoch=split.num_images // batch,
        first_epoch=0,
        epochs=1,
        augment="paper",
        deterministic=False,
    )


def decoded(encoded_images):
    """The shapes of a dataset of encoded images, each image decoded whole (libjpeg for JPEGs), no resize, no crop:
    the limit of any pipeline reading these files. Images that do not decode are left out."""
    return encoded_images.map(
        lambda encoded: tf.shape(preprocessing.decode_rgb(encoded)), num_parallel_calls=tf.data.AUTOTUNE
    ).ignore_errors()


def one_pass(dataset):
    """A run for timed_rounds that reads `dataset` to its end and times itself from the first request to the last
    element: (images, seconds), a batch counting its images. Creating the iterator (about 0.3 s for the prepared
    shards' pipeline here) and dropping it (which waits for its autotuning thread) stay out of the time: train.py
    pays them once a run, not once a pass, and counted in every pass of 320 images they had halved the prepared
    shards' rate. An iterator kept across the rounds would not do: its threads keep working between its passes."""

    def read():
        images = iter(dataset)
        count = 0
        with startup.decoder_noise_held_back():
            start = time.perf_counter()
            for element in images:
                count += int(element[0].shape[0]) if isinstance(element, tuple) else 1
            return count, time.perf_counter() - start

    return read


def pil_reference(paths, mean, batch, rng):
    """The same work as the training pipeline with augment=flip, the way a plain PIL+numpy loader does it."""
    for first in range(0, len(paths) - batch + 1, batch):
        crops = []
        for path in paths[first : first + batch]:
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = preprocessing.RESIZE_SHORTER / min(image.size)
                image = image.resize(
                    (max(256, round(image.width * scale)), max(256, round(image.height * scale))), Image.BILINEAR
                )
            left = rng.integers(0, image.width - preprocessing.CROP_SIZE + 1)
            top = rng.integers(0, image.height - preprocessing.CROP_SIZE + 1)
            crop = np.asarray(
                image.crop((left, top, left + preprocessing.CROP_SIZE, top + preprocessing.CROP_SIZE)), np.float32
            )
            crops.append((crop[:, ::-1] if rng.random() < 0.5 else crop) - mean)
        np.stack(crops)
    return len(paths) // batch * batch
