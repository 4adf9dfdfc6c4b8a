"""Reads ILSVRC2012 as the devkit and the image archives lay it out, and turns it into tf.data pipelines.

The layout (the seed's; `make_sample` writes the same, small):

    ILSVRC2012/
        ILSVRC2012_img_train/
            n01440764/n01440764_10026.JPEG ...     one folder per class, named by WordNet ID (WNID)
        ILSVRC2012_img_val/
            ILSVRC2012_val_00000001.JPEG ...       flat, 50,000 images; or one folder per WNID (valprep.sh),
                                                    detected automatically
        data/
            meta.mat                                 from the devkit (ILSVRC2012_devkit_t12.tar.gz, data/)
            ILSVRC2012_validation_ground_truth.txt   from the devkit: line i = ILSVRC2012_ID of val image i

meta.mat holds the struct array `synsets` (1860 entries) with fields ILSVRC2012_ID, WNID, words, gloss,
num_children, children, wordnet_height, num_train_images. We read ILSVRC2012_ID, WNID, words and num_children:
the 1000 classes are the leaves (num_children == 0), IDs 1..1000, which are *not* in sorted-WNID order.
Class index = ILSVRC2012_ID - 1, for the training folders and the ground-truth file alike.

Prepared shards (`--prepare`, optional, once): the same images as TFRecords, re-encoded as JPEGs with the
shorter side resized to 256, as tensorflow/models' build_imagenet_data.py writes them. `--data-dir` takes either
folder; a prepared one is recognised by its prepared.json, written last:

    PREPARED/
        train-00000-of-01024 ... validation-00000-of-00128   tf.train.Example records: image/encoded (JPEG),
                                                              image/class/label (our index, ID - 1),
                                                              image/class/synset (WNID), image/filename
        data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt   copied from the source
        prepared.json                                        shards, their record counts, classes, skipped files

Preprocessing (every constant is here; test.py and classify.py use `eval_crops`, never a copy): decode to RGB,
resize the shorter side to 256, crop 224 (random for training; random, centre or ten crops for evaluation),
subtract the training set's per-channel mean (pixels stay on the 0..255 scale, as the seed and the paper).

    python data_reader.py --prepare ILSVRC2012 ILSVRC2012-prepared
"""
import argparse
import collections
import json
import os
import shutil

import keras
import numpy as np
import scipy.io
import tensorflow as tf
from PIL import Image

DATA_DIR = "ILSVRC2012"  # the default dataset folder of train.py and test.py
TRAIN_DIR = "ILSVRC2012_img_train"
VAL_DIR = "ILSVRC2012_img_val"
META_MAT = os.path.join("data", "meta.mat")
GROUND_TRUTH = os.path.join("data", "ILSVRC2012_validation_ground_truth.txt")
VAL_NAME = "ILSVRC2012_val_{:08d}.JPEG"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".gif", ".bmp")

# Preprocessing, paper §2 and §4.1
RESIZE_SHORTER = 256  # shorter side rescaled to 256
CROP_SIZE = 224  # random 224x224 patches
JPEG_RATIOS = (1, 2, 4, 8)  # the DCT downscalings libjpeg offers
TEN_CROP_SQUARE = 256  # ten-crop test takes corners and centre of the central 256x256 square, paper §4.1
MEAN_MAX_IMAGES = 10_000  # the mean is estimated on a random subset of this many training images (ours)

# PCA colour augmentation, paper §4.1: alpha ~ N(0, 0.1) along the RGB covariance's eigenvectors.
# Eigen-decomposition of ImageNet pixels in [0, 1] as published with fb.resnet.torch; we scale it to 0..255.
PCA_STDDEV = 0.1
PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                    (-0.5808, -0.0045, -0.8140),
                    (-0.5836, -0.6948, 0.4203))
AUGMENTATIONS = ("none", "flip", "paper")  # none: the seed (random crop only); flip: + mirror; paper: + PCA
EVAL_CROPS = ("random", "center", "ten")

# The sample dataset: real WNIDs and words, so that names read as ImageNet's; leaf IDs deliberately not in
# sorted-WNID order, and internal (non-leaf) synsets present, as in the devkit.
SAMPLE_DIR = "ILSVRC2012-sample"
SAMPLE_LEAVES = (
    ("n09193705", "alp"), ("n03028079", "church, church building"), ("n09468604", "valley, vale"),
    ("n02980441", "castle"), ("n03781244", "monastery"), ("n02119789", "kit fox, Vulpes macrotis"),
    ("n09472597", "volcano"), ("n09428293", "seashore, coast, seacoast, sea-coast"),
    ("n09332890", "lakeside, lakeshore"), ("n03888257", "parachute, chute"))
SAMPLE_INTERNAL = (("n09287968", "geological formation, formation", (1, 3, 7, 8, 9)),
                   ("n04341686", "structure, construction", (2, 4, 5)),
                   ("n00021939", "artifact, artefact", (12, 10)))
SAMPLE_TRAIN_PER_CLASS = 40
SAMPLE_VAL_PER_CLASS = 10

META_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "num_children")  # the fields we read

# Prepared shards
TRAIN_SHARDS = 1024  # tensorflow/models build_imagenet_data.py
VAL_SHARDS = 128  # tensorflow/models build_imagenet_data.py
SHARD_NAME = "{part}-{index:05d}-of-{count:05d}"  # tensorflow/models' names: train-00000-of-01024
SHARD_PARTS = {"train": "train", "val": "validation"}
PREPARED_JPEG_QUALITY = 95  # ours: keeps the re-encoding error near 1/255 a pixel (see tests)
PREPARED_MANIFEST = "prepared.json"
PREPARE_PLAN = "prepare-plan.json"  # what an interrupted --prepare continues
PREPARE_LOG = "prepare-log.jsonl"  # the shards it completed
PREPARE_SEED = 0  # spreads the classes over the training shards
SHARDS_IN_FLIGHT = 4  # shards read at once by a training pipeline (ours: about 200 MB of ImageNet's)
RECORD_FEATURES = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                   "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

Synset = collections.namedtuple("Synset", "ilsvrc_id wnid words")


class Split(collections.namedtuple("Split", "paths labels shard_sizes")):
    """The images of the training or the validation set: image files and their labels (shard_sizes None), or
    prepared TFRecord shards (paths of the shards, labels None, shard_sizes their record counts)."""

    @property
    def prepared(self):
        return self.shard_sizes is not None

    @property
    def num_images(self):
        return sum(self.shard_sizes) if self.prepared else len(self.paths)

    @property
    def layout(self):
        return "prepared shards" if self.prepared else "image folders"

    def head(self, count):
        """The first `count` images (all if None)."""
        if count is None or count >= self.num_images:
            return self
        if not self.prepared:
            return Split(self.paths[:count], self.labels[:count], None)
        sizes = np.minimum(self.shard_sizes, np.maximum(count - np.cumsum([0, *self.shard_sizes[:-1]]), 0))
        kept = [i for i, size in enumerate(sizes) if size]
        return Split([self.paths[i] for i in kept], None, [int(sizes[i]) for i in kept])


class DataError(Exception):
    """A dataset that is missing or not in the ILSVRC2012 layout; scripts print it as one line."""


# ----------------------------------------------------------------------------------------------- the layout


def load_synsets(meta_mat_path):
    """The leaf synsets of the devkit's meta.mat, in ILSVRC2012_ID order: index i is class i (ID i + 1)."""
    if not os.path.isfile(meta_mat_path):
        raise DataError(f"meta.mat not found at {meta_mat_path}: it is in the ILSVRC2012 devkit "
                        "(ILSVRC2012_devkit_t12.tar.gz), data/ folder")
    try:
        synsets = scipy.io.loadmat(meta_mat_path, squeeze_me=True)["synsets"]
    except (ValueError, TypeError, KeyError) as error:  # be specific: what loadmat raises for other files
        raise DataError(f"{meta_mat_path} is not the devkit's meta.mat (no 'synsets' struct: {error}): "
                        "take data/meta.mat from ILSVRC2012_devkit_t12.tar.gz") from None
    missing = [field for field in META_FIELDS if field not in (synsets.dtype.names or ())]
    if missing:
        raise DataError(f"{meta_mat_path}: the synsets struct lacks the fields {', '.join(missing)}: "
                        "take data/meta.mat from ILSVRC2012_devkit_t12.tar.gz")
    leaves = sorted(Synset(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"]))
                    for s in np.atleast_1d(synsets) if int(s["num_children"]) == 0)
    if [s.ilsvrc_id for s in leaves] != list(range(1, len(leaves) + 1)):
        raise DataError(f"{meta_mat_path}: the leaf synsets' ILSVRC2012_IDs are not 1..{len(leaves)}: "
                        "take data/meta.mat from ILSVRC2012_devkit_t12.tar.gz")
    return leaves


def list_train(data_dir, synsets):
    """(paths, labels) of the training images, class folders in ID order, files in name order."""
    train_dir = _existing_dir(os.path.join(data_dir, TRAIN_DIR), "the training images (ILSVRC2012_img_train.tar)")
    paths, labels = [], []
    for index, synset in enumerate(synsets):
        files = _image_files(os.path.join(train_dir, synset.wnid))
        if not files:
            raise DataError(f"no training images for {synset.wnid} ({synset.words}) in "
                            f"{os.path.join(train_dir, synset.wnid)}: extract its tar there")
        paths += files
        labels += [index] * len(files)
    return paths, labels


def list_val(data_dir, synsets):
    """(paths, labels) of the validation images, from the flat folder and the ground-truth file (line i belongs
    to the i-th file in name order), or from per-WNID subfolders when the folder was split so."""
    val_dir = _existing_dir(os.path.join(data_dir, VAL_DIR), "the validation images (ILSVRC2012_img_val.tar)")
    if any(entry.is_dir() for entry in os.scandir(val_dir)):
        paths, labels = [], []
        for index, synset in enumerate(synsets):
            files = _image_files(os.path.join(val_dir, synset.wnid))
            paths += files
            labels += [index] * len(files)
        if not paths:
            raise DataError(f"{val_dir} has subfolders but none named by a WNID of meta.mat holds images: "
                            "use the flat folder of ILSVRC2012_img_val.tar, or split it by WNID")
        return paths, labels
    paths = _image_files(val_dir)
    ids = _read_ground_truth(os.path.join(data_dir, GROUND_TRUTH), len(synsets))
    if len(ids) != len(paths):
        raise DataError(f"{os.path.join(data_dir, GROUND_TRUTH)} has {len(ids)} lines but {val_dir} holds "
                        f"{len(paths)} images: both must be the full validation set")
    return paths, [i - 1 for i in ids]


def _read_ground_truth(path, num_classes):
    if not os.path.isfile(path):
        raise DataError(f"ground-truth file not found at {path}: it is in the ILSVRC2012 devkit, data/ folder")
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    for number, line in enumerate(lines, 1):
        if not line.isdigit() or not 1 <= int(line) <= num_classes:
            raise DataError(f"{path}, line {number}: {line!r} is not an ILSVRC2012_ID in 1..{num_classes}: "
                            "take the file from the devkit that goes with your meta.mat")
    return [int(line) for line in lines]


def _existing_dir(path, what):
    if not os.path.isdir(path):
        raise DataError(f"{path} not found: it should hold {what}; pass --data-dir, or --sample for the sample")
    return path


def _image_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(entry.path for entry in os.scandir(folder)
                  if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))


def read_split(data_dir, synsets, part):
    """The "train" or "val" Split of a dataset folder in the ILSVRC2012 layout or of prepared shards."""
    manifest_path = os.path.join(data_dir, PREPARED_MANIFEST)
    if not os.path.isfile(manifest_path):
        return Split(*(list_train if part == "train" else list_val)(data_dir, synsets), None)
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest["classes"] != [s.wnid for s in synsets]:
        raise DataError(f"{manifest_path} lists other classes than {os.path.join(data_dir, META_MAT)}: "
                        "prepare the shards again from the dataset")
    paths = [os.path.join(data_dir, name) for name in manifest[part]["shards"]]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise DataError(f"{len(missing)} prepared shards are missing, e.g. {missing[0]}: run "
                        f"`python data_reader.py --prepare SOURCE {data_dir}` again")
    return Split(paths, None, manifest[part]["sizes"])


def resolve_data_dir(data_dir, sample):
    """The dataset folder to read: with `sample`, the sample dataset (in SAMPLE_DIR unless `data_dir` names another
    folder than the default), generated on first use."""
    if sample and data_dir == DATA_DIR:
        data_dir = SAMPLE_DIR
    if sample and not os.path.isfile(os.path.join(data_dir, META_MAT)):
        print(f"Generating the sample dataset in {data_dir} ...")
        make_sample(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"dataset folder {data_dir} not found: pass --data-dir ILSVRC2012_FOLDER "
                        "(layout in README), or --sample for the generated sample")
    return data_dir


# ------------------------------------------------------------------------------------------- the sample


def make_sample(out_dir, train_per_class=SAMPLE_TRAIN_PER_CLASS, val_per_class=SAMPLE_VAL_PER_CLASS, seed=0,
                draw=None):
    """Writes a small dataset in the exact ILSVRC2012 layout: meta.mat (devkit struct and fields, with internal
    synsets), class folders, a flat val folder and its ground-truth file. Images are JPEGs of varied sizes and
    aspect ratios, some grayscale, drawn so that each class has its own colours and stripe pattern, or by
    `draw(label, num_classes, rng) -> PIL.Image`."""
    draw = draw or _sample_image
    rng = np.random.default_rng(seed)
    num_classes = len(SAMPLE_LEAVES)
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    for index, (wnid, _) in enumerate(SAMPLE_LEAVES):
        os.makedirs(os.path.join(out_dir, TRAIN_DIR, wnid), exist_ok=True)
        for n in range(train_per_class):
            draw(index, num_classes, rng).save(
                os.path.join(out_dir, TRAIN_DIR, wnid, f"{wnid}_{n + 1}.JPEG"), quality=90)
    val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    os.makedirs(os.path.join(out_dir, VAL_DIR), exist_ok=True)
    for n, label in enumerate(val_labels):
        draw(label, num_classes, rng).save(os.path.join(out_dir, VAL_DIR, VAL_NAME.format(n + 1)), quality=90)
    with open(os.path.join(out_dir, GROUND_TRUTH), "w") as f:
        f.writelines(f"{label + 1}\n" for label in val_labels)
    _write_meta_mat(os.path.join(out_dir, META_MAT))


def _write_meta_mat(path):
    leaves = [(i + 1, wnid, words, ()) for i, (wnid, words) in enumerate(SAMPLE_LEAVES)]
    internal = [(len(leaves) + i + 1, wnid, words, children)
                for i, (wnid, words, children) in enumerate(SAMPLE_INTERNAL)]
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.zeros((len(leaves) + len(internal), 1), dtype=[(name, object) for name in fields])
    for row, (ilsvrc_id, wnid, words, children) in enumerate(leaves + internal):
        synsets[row, 0] = (float(ilsvrc_id), wnid, words, f"sample class {words}", float(len(children)),
                           np.array(children, dtype=float).reshape(1, -1), float(bool(children)),
                           float(SAMPLE_TRAIN_PER_CLASS))
    scipy.io.savemat(path, {"synsets": synsets})


def _sample_image(label, num_classes, rng):
    """Class `label` as photographs are, roughly: its own hue (amplitude 60) and stripe angle and frequency
    (amplitude 40) on the 0..255 scale, plus noise; random size and aspect ratio; grayscale one time in seven."""
    width = int(rng.integers(200, 500))
    height = int(np.clip(width / rng.uniform(0.6, 1.7), 150, 600))
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = np.pi * label / num_classes + rng.normal(0, 0.08)
    frequency = 4 + 3 * (label % 3) + rng.normal(0, 0.3)
    stripes = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    hue = label / num_classes + rng.normal(0, 0.02)
    colour = 128 + 60 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3])))
    pixels = colour + 40 * stripes[..., None] + rng.normal(0, 10, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if rng.random() < 1 / 7 else image


# -------------------------------------------------------------------------------------- preprocessing


def decode_rgb(encoded):
    """Any JPEG (grayscale and CMYK too), PNG, GIF or BMP bytes as a uint8 RGB image."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def resized_shape(shape, size=RESIZE_SHORTER):
    """The (height, width) an image of `shape` takes with its shorter side resized to `size`, and the scale."""
    shape = tf.cast(shape, tf.float32)
    scale = size / tf.reduce_min(shape)
    return tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size), scale


def resize_shorter_side(image, size=RESIZE_SHORTER):
    new_shape, _ = resized_shape(tf.shape(image)[:2], size)
    return tf.image.resize(image, new_shape, antialias=True)


def random_crop_offset(image_shape, seed):
    """The top-left corner of a uniformly random CROP_SIZE window in an image of `image_shape` (height, width)."""
    room = tf.cast(image_shape - CROP_SIZE + 1, tf.float32)
    return tf.cast(tf.random.stateless_uniform([2], seed) * room, tf.int32)


def random_crop_reference(encoded, seed):
    """Decode, resize the shorter side to 256, crop 224 at a random place: the definition of the training crop."""
    image = resize_shorter_side(decode_rgb(encoded))
    top, left = tf.unstack(random_crop_offset(tf.shape(image)[:2], seed))
    return tf.image.crop_to_bounding_box(image, top, left, CROP_SIZE, CROP_SIZE)


def random_crop_jpeg(encoded, seed):
    """The same crop of a JPEG, fast: the window is mapped back to the original's coordinates and only it is
    decoded, at the largest DCT downscaling (1/2, 1/4, 1/8) that keeps it at least 224 pixels, then resized."""
    shape = tf.io.extract_jpeg_shape(encoded)[:2]
    new_shape, scale = resized_shape(shape)
    offset = tf.cast(random_crop_offset(new_shape, seed), tf.float32)
    origin = tf.minimum(tf.cast(tf.round(offset / scale), tf.int32), shape - 1)
    size = tf.minimum(tf.cast(tf.round(CROP_SIZE / scale), tf.int32), shape - origin)
    ratio_index = tf.reduce_sum(tf.cast(tf.reduce_min(size) >= CROP_SIZE * tf.constant([2, 4, 8]), tf.int32))

    def decode_at(ratio):
        return lambda: tf.io.decode_and_crop_jpeg(encoded, tf.concat([origin // ratio, size // ratio], 0), channels=3,
                                                  ratio=ratio)

    window = tf.switch_case(ratio_index, [decode_at(ratio) for ratio in JPEG_RATIOS])
    # The DCT scaling leaves a factor below 2, where bilinear needs no antialiasing (which costs 3x the decode);
    # prepared images need no resize at all.
    return tf.cond(tf.reduce_all(tf.shape(window)[:2] == CROP_SIZE), lambda: tf.cast(window, tf.float32),
                   lambda: tf.image.resize(window, [CROP_SIZE, CROP_SIZE]))


def pca_lighting_offset(seed, stddev=PCA_STDDEV):
    """The RGB offset of the paper's lighting noise: eigenvectors * (alpha * eigenvalues), alpha ~ N(0, stddev),
    on the 0..255 scale; it is added to every pixel."""
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    return tf.linalg.matvec(tf.constant(PCA_EIGENVECTORS), alpha * tf.constant(PCA_EIGENVALUES)) * 255.0


def train_crop(encoded, mean, augment, seed):
    """One training example: random 224 crop of the 256-resized image, augmented, mean subtracted."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.cond(tf.io.is_jpeg(encoded), lambda: random_crop_jpeg(encoded, seeds[0]),
                    lambda: random_crop_reference(encoded, seeds[0]))
    mirror = augment in ("flip", "paper") and tf.random.stateless_uniform([], seeds[1]) < 0.5
    offset = pca_lighting_offset(seeds[2]) - mean if augment == "paper" else -mean
    return _mirrored_and_offset(image, mirror, offset)


# XLA makes the mirror and the offset one pass over the pixels: TF's own broadcasting add of a per-channel offset
# costs as much as decoding the crop (measured: the training crop of a prepared image runs 1.6x faster).
@tf.function(jit_compile=True)
def _mirrored_and_offset(images, mirror, offset):
    return tf.where(mirror, tf.reverse(images, [-2]), images) + offset


def eval_crops(encoded, mean, crops, k_crops, seed):
    """The crops test.py and classify.py average over, shape (K, 224, 224, 3), mean subtracted:
    `random`: k_crops random crops; `center`: the centre crop (K = 1); `ten`: corners and centre of the central
    256x256 square and their mirrors (K = 10, the paper's test)."""
    image = resize_shorter_side(decode_rgb(encoded))
    if crops == "random":
        patches = [tf.image.stateless_random_crop(image, [CROP_SIZE, CROP_SIZE, 3], s)
                   for s in tf.unstack(tf.random.experimental.stateless_split(seed, k_crops))]
    elif crops == "center":
        patches = [_crop_at(image, 0.5, 0.5, image_extent=None)]
    elif crops == "ten":
        corners = [_crop_at(image, fy, fx, TEN_CROP_SQUARE) for fy, fx in ((0, 0), (0, 1), (1, 0), (1, 1), (.5, .5))]
        patches = corners + [tf.image.flip_left_right(patch) for patch in corners]
    else:
        raise ValueError(f"crops must be one of {EVAL_CROPS}, not {crops!r}")
    return _mirrored_and_offset(tf.stack(patches), False, -mean)


def crops_per_image(crops, k_crops):
    return {"random": k_crops, "center": 1, "ten": 10}[crops]


def _crop_at(image, fy, fx, image_extent):
    """The 224 crop at relative position (fy, fx) of the central `image_extent` square (None: whole image)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    extent_h = height if image_extent is None else tf.minimum(height, image_extent)
    extent_w = width if image_extent is None else tf.minimum(width, image_extent)
    top = (height - extent_h) // 2 + tf.cast(fy * tf.cast(extent_h - CROP_SIZE, tf.float32), tf.int32)
    left = (width - extent_w) // 2 + tf.cast(fx * tf.cast(extent_w - CROP_SIZE, tf.float32), tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, CROP_SIZE, CROP_SIZE)


# ------------------------------------------------------------------------------------------ pipelines


def train_elements(split, batch_size, steps_per_epoch, first_epoch, epochs, seed=0, skip_batches=0, pipeline=0,
                   pipelines=1):
    """What a training pipeline reads, before decoding: (image file path or prepared JPEG, label, epoch, position
    in the epoch). Each epoch is a fresh order drawn from (seed, epoch): the stream is a function of the step alone,
    so a resumed run skips `skip_batches` of its first epoch and sees exactly what an uninterrupted run would have
    seen. Of P input pipelines (one a worker), each reads its own share, and each image is read once an epoch:
    from image folders, pipeline p opens the files of its 1/P of every batch, so that the batches are the same for
    any number of workers; from prepared shards, pipeline p takes the p-th of P consecutive parts of the epoch's
    order, so that it reads only the shards of its part (and shares at most two with its neighbours)."""
    per_epoch, share = steps_per_epoch * batch_size, batch_size // pipelines
    if split.prepared:
        return _shard_stream(split, per_epoch, first_epoch, epochs, seed, skip_batches * share, pipeline, pipelines)
    stream = _file_stream(split, per_epoch, first_epoch, epochs, seed, skip_batches * batch_size)
    if pipelines == 1:
        return stream
    return (stream.batch(batch_size)
            .map(lambda *batch: tuple(part[pipeline * share:(pipeline + 1) * share] for part in batch))
            .unbatch())


def _file_stream(split, per_epoch, first_epoch, epochs, seed, skip):
    num_images = split.num_images
    passes = -(-per_epoch // num_images)
    paths, labels = tf.constant(split.paths), tf.constant(split.labels, tf.int32)

    def epoch_elements(epoch):
        order = tf.concat([tf.random.experimental.stateless_shuffle(tf.range(num_images), [seed, epoch * passes + p])
                           for p in range(passes)], axis=0)[:per_epoch]
        return tf.data.Dataset.from_tensor_slices((tf.gather(paths, order), tf.gather(labels, order),
                                                   tf.fill([per_epoch], epoch), tf.range(per_epoch, dtype=tf.int64)))

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_elements).skip(skip)


def _shard_stream(split, per_epoch, first_epoch, epochs, seed, skip, part, parts):
    """The prepared shards' records in the order of `_shard_plan`; whole shards are read, SHARDS_IN_FLIGHT at once,
    so that reading overlaps decoding and the order stays the plan's."""
    paths, sizes = tf.constant(split.paths), tf.constant(split.shard_sizes, tf.int64)

    def shard_slice(shard, order_seed, start, end, epoch, position):
        size = tf.gather(sizes, shard)
        records = tf.data.TFRecordDataset(tf.gather(paths, shard)).batch(size).get_single_element()
        order = tf.random.experimental.stateless_shuffle(tf.range(size), order_seed)[start:end]
        return (*_parse_records(tf.gather(records, order)), tf.fill([end - start], epoch),
                position + tf.range(end - start))

    plan = _shard_plan(split.shard_sizes, per_epoch, first_epoch, epochs, seed, skip, part, parts)
    return tf.data.Dataset.from_tensor_slices(plan).map(shard_slice, num_parallel_calls=SHARDS_IN_FLIGHT).unbatch()


def _shard_plan(shard_sizes, per_epoch, first_epoch, epochs, seed, skip, part=0, parts=1):
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
                    order_seed = np.random.default_rng([seed, epoch, passes, shard]).integers(2 ** 62)
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


def _parse_records(records):
    """(encoded JPEGs, labels) of a vector of prepared records."""
    parsed = tf.io.parse_example(records, RECORD_FEATURES)
    return parsed["image/encoded"], tf.cast(parsed["image/class/label"], tf.int32)


def train_dataset(split, mean, batch_size, steps_per_epoch, first_epoch, epochs, augment="paper", seed=0,
                  skip_batches=0, pipeline=0, pipelines=1, replica_batch_size=None, deterministic=True):
    """Batches of `replica_batch_size` (default: the pipeline's share of `batch_size`, the global batch) of
    `train_elements`, decoded, cropped and augmented with seeds from (seed, epoch, position). Not `deterministic`:
    an image that decodes slowly lets the next ones pass it, so that neighbouring images may change batches; each
    image keeps its own crop and augmentation, and a resumed run still neither repeats nor skips one."""
    mean = tf.constant(mean, tf.float32)
    fetch = tf.identity if split.prepared else tf.io.read_file

    def load(item, label, epoch, position):
        element_seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), epoch]), position)
        return train_crop(fetch(item), mean, augment, element_seed), label

    elements = train_elements(split, batch_size, steps_per_epoch, first_epoch, epochs, seed, skip_batches, pipeline,
                              pipelines)
    return (elements.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            .batch(replica_batch_size or batch_size // pipelines, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def _encoded_images(split):
    """(encoded image, label) of every image of `split`, in stored order."""
    if split.prepared:
        return tf.data.TFRecordDataset(split.paths).take(split.num_images).batch(256).map(_parse_records).unbatch()
    return tf.data.Dataset.from_tensor_slices((split.paths, split.labels)).map(
        lambda path, label: (tf.io.read_file(path), label), num_parallel_calls=tf.data.AUTOTUNE)


def eval_dataset(split, mean, batch_size, crops="center", k_crops=1, seed=0):
    """Batches of (images (B, K, 224, 224, 3), labels), in stored order."""
    mean = tf.constant(mean, tf.float32)
    k = crops_per_image(crops, k_crops)

    def load(index, item):
        encoded, label = item
        return eval_crops(encoded, mean, crops, k, tf.stack([tf.cast(seed, tf.int64), index])), label

    return (_encoded_images(split).enumerate()
            .map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def compute_mean(split, max_images=MEAN_MAX_IMAGES, seed=0):
    """Per-channel mean of the centre 224 crops of up to `max_images` randomly chosen training images (prepared
    training shards hold the images in random order: their first ones are a random choice)."""
    if split.prepared:
        images = _encoded_images(split).take(max_images).map(lambda encoded, label: encoded)
        count = min(max_images, split.num_images)
    else:
        chosen = np.random.default_rng(seed).permutation(split.num_images)[:max_images]
        images = tf.data.Dataset.from_tensor_slices([split.paths[i] for i in chosen]).map(tf.io.read_file)
        count = len(chosen)
    dataset = images.map(lambda encoded: tf.reduce_mean(eval_crops(encoded, 0.0, "center", 1, [0, 0]), axis=(0, 1, 2)),
                         num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    progress = keras.utils.Progbar(count, unit_name="image")
    total = np.zeros(3)
    for channel_means in dataset:
        total += channel_means.numpy().sum(axis=0)
        progress.add(len(channel_means))
    return (total / count).tolist()


def find_unreadable(split, what):
    """The files of `split` that do not decode as images (truncated, empty, not an image at all), in one parallel
    decoding pass: JPEGs at 1/8 scale, which still reads all of their data, the rest fully. Prepared shards hold
    only images that decoded when they were prepared."""
    def decodes(index, path):
        encoded = tf.io.read_file(path)
        shape = tf.cond(tf.io.is_jpeg(encoded), lambda: tf.shape(tf.io.decode_jpeg(encoded, channels=3, ratio=8)),
                        lambda: tf.shape(decode_rgb(encoded)))
        return index, shape

    if split.prepared or not split.paths:
        return []
    paths = split.paths
    print(f"Checking that the {len(paths)} {what} decode ...")
    progress = keras.utils.Progbar(len(paths), unit_name="image")
    readable = np.zeros(len(paths), bool)
    checked = (tf.data.Dataset.from_tensor_slices(paths).enumerate()
               .map(decodes, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().batch(1024))
    for indices, _ in checked:
        readable[indices.numpy()] = True
        progress.add(len(indices))
    progress.update(len(paths), finalize=True)
    return [path for path, ok in zip(paths, readable) if not ok]


def without_unreadable(split, unreadable):
    """`split` less the unreadable files, each named once in a warning; prepared shards hold none."""
    if split.prepared:
        return split
    for path in unreadable:
        print(f"warning: skipping unreadable image {path}")
    skip = set(unreadable)
    kept = [(path, label) for path, label in zip(split.paths, split.labels) if path not in skip]
    return Split([path for path, _ in kept], [label for _, label in kept], None)


def load_image_crops(path, mean, crops, k_crops, seed=0):
    """The eval crops of one image file, for classify.py; formats TF cannot decode go through Pillow."""
    if not os.path.isfile(path):
        raise DataError(f"image {path} not found: give the path of a JPEG, PNG, GIF or BMP file")
    encoded = tf.io.read_file(path)
    try:
        tf.io.decode_image(encoded, expand_animations=False)
    except tf.errors.InvalidArgumentError:  # be specific: TF says "unknown image format" for TIFF, WebP, ...
        encoded = tf.io.encode_png(np.asarray(_pillow_rgb(path)))
    return eval_crops(encoded, tf.constant(mean, tf.float32), crops, crops_per_image(crops, k_crops),
                      tf.constant([seed, 0], tf.int64))


def _pillow_rgb(path):
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.UnidentifiedImageError) as error:  # be specific: what Pillow raises for non-images
        raise DataError(f"cannot read {path} as an image ({error}): give a JPEG, PNG, GIF or BMP file") from None


# ------------------------------------------------------------------------------------------ prepared shards


def prepare(source_dir, out_dir, train_shards=TRAIN_SHARDS, val_shards=VAL_SHARDS):
    """Writes the images of `source_dir` (ILSVRC2012 layout) into `out_dir` as prepared shards (layout above),
    unreadable images skipped and named. Resumable: the plan is kept in `out_dir`, every shard is written under a
    temporary name and renamed when complete, and a call after an interruption writes only the shards missing."""
    if os.path.isfile(os.path.join(out_dir, PREPARED_MANIFEST)):
        print(f"{out_dir} already holds the prepared shards")
        return
    synsets = load_synsets(os.path.join(source_dir, META_MAT))
    plan = _prepare_plan(source_dir, synsets, train_shards, val_shards)
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    done = _resume_preparation(out_dir, plan)
    for name in (META_MAT, GROUND_TRUTH):
        if os.path.isfile(os.path.join(source_dir, name)):
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(out_dir, name))
    shards = [(name, entries) for part in SHARD_PARTS for name, entries in plan[part]]
    print(f"Preparing {sum(len(entries) for _, entries in shards)} images into {len(shards)} shards in {out_dir} "
          f"({len(done)} shards were already written) ...")
    progress = keras.utils.Progbar(sum(len(entries) for _, entries in shards), unit_name="image")
    progress.add(sum(len(entries) for name, entries in shards if name in done))
    with open(os.path.join(out_dir, PREPARE_LOG), "a") as log:
        for name, entries in shards:
            if name not in done:
                done[name] = _write_shard(source_dir, entries, synsets, os.path.join(out_dir, name), progress)
                log.write(json.dumps({"shard": name, "unreadable": done[name]}) + "\n")
                log.flush()
    manifest = {"source": os.path.abspath(source_dir), "classes": [s.wnid for s in synsets],
                "resize_shorter": RESIZE_SHORTER, "jpeg_quality": PREPARED_JPEG_QUALITY,
                **{part: {"shards": [name for name, _ in plan[part]],
                          "sizes": [len(entries) - len(done[name]) for name, entries in plan[part]],
                          "unreadable": [path for name, _ in plan[part] for path in done[name]]}
                   for part in SHARD_PARTS}}
    _write_json(os.path.join(out_dir, PREPARED_MANIFEST), manifest)
    for name in (PREPARE_PLAN, PREPARE_LOG):
        os.remove(os.path.join(out_dir, name))
    print(f"Prepared {sum(manifest['train']['sizes'])} training and {sum(manifest['val']['sizes'])} validation "
          f"images in {out_dir}; train with --data-dir {out_dir}")


def _prepare_plan(source_dir, synsets, train_shards, val_shards):
    """Which images go into which shard, as (shard name, [(path relative to source_dir, label), ...]) for "train"
    and "val": training images shuffled so that every shard holds all classes, validation images in order."""
    plan = {}
    for part, shards in (("train", train_shards), ("val", val_shards)):
        split = read_split(source_dir, synsets, part)
        if split.prepared:
            raise DataError(f"{source_dir} holds prepared shards already: --prepare reads the ILSVRC2012 folders")
        images = split.num_images
        order = np.random.default_rng(PREPARE_SEED).permutation(images) if part == "train" else range(images)
        entries = [(os.path.relpath(split.paths[i], source_dir), split.labels[i]) for i in order]
        count = min(shards, images)
        plan[part] = [(SHARD_NAME.format(part=SHARD_PARTS[part], index=index, count=count), chunk)
                      for index, chunk in enumerate(_chunks(entries, count))]
    return json.loads(json.dumps(plan))


def _chunks(items, count):
    bounds = np.linspace(0, len(items), count + 1).round().astype(int)
    return [items[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def _resume_preparation(out_dir, plan):
    """The shards an earlier call completed, with their unreadable files; refuses another preparation's folder."""
    plan_path = os.path.join(out_dir, PREPARE_PLAN)
    if not os.path.isfile(plan_path):
        _write_json(plan_path, plan)
        return {}
    with open(plan_path) as f:
        if json.load(f) != plan:
            raise DataError(f"{out_dir} holds an unfinished preparation of other images or shard counts: remove it, "
                            "or choose another OUT_DIR")
    done, log_path = {}, os.path.join(out_dir, PREPARE_LOG)
    if not os.path.isfile(log_path):
        return done
    with open(log_path) as log:
        for line in log:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # be specific: the line being written when the run was killed
                continue
            if os.path.isfile(os.path.join(out_dir, entry["shard"])):
                done[entry["shard"]] = entry["unreadable"]
    return done


def _write_shard(source_dir, entries, synsets, path, progress):
    """One shard: every image decoded, resized to shorter side 256, encoded as JPEG; returns the unreadable ones."""
    def encode(index, file_path):
        image = resize_shorter_side(decode_rgb(tf.io.read_file(file_path)))
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return index, tf.io.encode_jpeg(pixels, quality=PREPARED_JPEG_QUALITY), tf.shape(pixels)[:2]

    written = set()
    images = (tf.data.Dataset.from_tensor_slices([os.path.join(source_dir, rel) for rel, _ in entries]).enumerate()
              .map(encode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().prefetch(tf.data.AUTOTUNE))
    with tf.io.TFRecordWriter(path + ".tmp") as writer:
        for index, encoded, (height, width) in images.as_numpy_iterator():
            relative_path, label = entries[index]
            writer.write(_example(encoded, label, synsets[label].wnid, relative_path, height, width))
            written.add(int(index))
            progress.add(1)
    os.replace(path + ".tmp", path)
    unreadable = [rel for i, (rel, _) in enumerate(entries) if i not in written]
    for rel in unreadable:
        print(f"\nwarning: skipping unreadable image {os.path.join(source_dir, rel)}")
    progress.add(len(unreadable))
    return unreadable


def _example(encoded, label, wnid, filename, height, width):
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": feature(encoded), "image/format": feature(b"JPEG"), "image/class/label": feature(label),
        "image/class/synset": feature(wnid.encode()), "image/filename": feature(filename.encode()),
        "image/height": feature(height), "image/width": feature(width)})).SerializeToString()


def _write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--make-sample", metavar="OUT_DIR",
                      help="write the sample dataset in the ILSVRC2012 layout into OUT_DIR")
    task.add_argument("--prepare", nargs=2, metavar=("ILSVRC2012", "OUT_DIR"),
                      help="write the dataset's images as TFRecord shards of 256-pixel JPEGs into OUT_DIR, for "
                           "train.py and test.py --data-dir OUT_DIR; continues an interrupted run")
    parser.add_argument("--train-shards", type=int, default=TRAIN_SHARDS, help="training shards of --prepare")
    parser.add_argument("--val-shards", type=int, default=VAL_SHARDS, help="validation shards of --prepare")
    parser.add_argument("--train-per-class", type=int, default=SAMPLE_TRAIN_PER_CLASS,
                        help="training images a class of --make-sample")
    parser.add_argument("--val-per-class", type=int, default=SAMPLE_VAL_PER_CLASS,
                        help="validation images a class of --make-sample")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sample's drawings")
    return parser


def main(args):
    if args.prepare:
        prepare(*args.prepare, args.train_shards, args.val_shards)
    else:
        make_sample(args.make_sample, args.train_per_class, args.val_per_class, args.seed)
        print(f"Sample dataset written to {args.make_sample}")


if __name__ == "__main__":
    parser = get_args_parser()
    try:
        main(parser.parse_args())
    except DataError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
