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

Preprocessing (every constant is here; test.py and classify.py use `eval_crops`, never a copy): decode to RGB,
resize the shorter side to 256, crop 224 (random for training; random, centre or ten crops for evaluation),
subtract the training set's per-channel mean (pixels stay on the 0..255 scale, as the seed and the paper).

    python data_reader.py --make-sample ILSVRC2012-sample
"""
import argparse
import collections
import os

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

Synset = collections.namedtuple("Synset", "ilsvrc_id wnid words")


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
    return tf.image.resize(window, [CROP_SIZE, CROP_SIZE], antialias=True)


def pca_lighting(image, seed, stddev=PCA_STDDEV):
    """Adds eigenvectors * (alpha * eigenvalues), alpha ~ N(0, stddev), to every pixel (0..255 scale)."""
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    offset = tf.linalg.matvec(tf.constant(PCA_EIGENVECTORS), alpha * tf.constant(PCA_EIGENVALUES)) * 255.0
    return image + offset


def train_crop(encoded, mean, augment, seed):
    """One training example: random 224 crop of the 256-resized image, augmented, mean subtracted."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.cond(tf.io.is_jpeg(encoded), lambda: random_crop_jpeg(encoded, seeds[0]),
                    lambda: random_crop_reference(encoded, seeds[0]))
    if augment in ("flip", "paper"):
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if augment == "paper":
        image = pca_lighting(image, seeds[2])
    return image - mean


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
    return tf.stack(patches) - mean


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


def train_dataset(paths, labels, mean, batch_size, steps_per_epoch, first_epoch, epochs, augment="paper",
                  seed=0, skip_batches=0):
    """Batches for epochs first_epoch..epochs-1, each epoch a fresh permutation drawn from (seed, epoch), every
    random choice seeded by (seed, epoch, position): the stream is a function of the step alone, so a resumed run
    skips `skip_batches` of its first epoch and sees exactly what an uninterrupted run would have seen."""
    num_images = len(paths)
    per_epoch = steps_per_epoch * batch_size
    passes = -(-per_epoch // num_images)
    paths, labels = tf.constant(paths), tf.constant(labels, tf.int32)
    mean = tf.constant(mean, tf.float32)

    def epoch_elements(epoch):
        order = tf.concat([tf.random.experimental.stateless_shuffle(tf.range(num_images), [seed, epoch * passes + p])
                           for p in range(passes)], axis=0)[:per_epoch]
        positions = tf.range(per_epoch, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((order, tf.fill([per_epoch], epoch), positions))

    def load(index, epoch, position):
        path, label = tf.gather(paths, index), tf.gather(labels, index)
        element_seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), epoch]), position)
        return train_crop(tf.io.read_file(path), mean, augment, element_seed), label

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_elements)
    return (dataset.skip(skip_batches * batch_size)
            .map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def eval_dataset(paths, labels, mean, batch_size, crops="center", k_crops=1, seed=0):
    """Batches of (images (B, K, 224, 224, 3), labels), in file order."""
    mean = tf.constant(mean, tf.float32)
    k = crops_per_image(crops, k_crops)

    def load(index, path, label):
        images = eval_crops(tf.io.read_file(path), mean, crops, k, tf.stack([tf.cast(seed, tf.int64), index]))
        return images, label

    return (tf.data.Dataset.from_tensor_slices((paths, labels)).enumerate()
            .map(lambda index, item: load(index, *item), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def compute_mean(paths, max_images=MEAN_MAX_IMAGES, seed=0):
    """Per-channel mean of the centre 224 crops of up to `max_images` randomly chosen training images."""
    chosen = np.random.default_rng(seed).permutation(len(paths))[:max_images]
    dataset = (tf.data.Dataset.from_tensor_slices([paths[i] for i in chosen])
               .map(lambda path: tf.reduce_mean(eval_crops(tf.io.read_file(path), 0.0, "center", 1, [0, 0]),
                                                axis=(0, 1, 2)), num_parallel_calls=tf.data.AUTOTUNE)
               .batch(256))
    progress = keras.utils.Progbar(len(chosen), unit_name="image")
    total = np.zeros(3)
    for channel_means in dataset:
        total += channel_means.numpy().sum(axis=0)
        progress.add(len(channel_means))
    return (total / len(chosen)).tolist()


def find_unreadable(paths, what):
    """The files among `paths` that do not decode as images (truncated, empty, not an image at all), in one
    parallel decoding pass: JPEGs at 1/8 scale, which still reads all of their data, the rest fully."""
    def decodes(index, path):
        encoded = tf.io.read_file(path)
        shape = tf.cond(tf.io.is_jpeg(encoded), lambda: tf.shape(tf.io.decode_jpeg(encoded, channels=3, ratio=8)),
                        lambda: tf.shape(decode_rgb(encoded)))
        return index, shape

    if not paths:
        return []
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


def without_unreadable(paths, labels, unreadable):
    """(paths, labels) less the unreadable files, each named once in a warning."""
    for path in unreadable:
        print(f"warning: skipping unreadable image {path}")
    skip = set(unreadable)
    kept = [(path, label) for path, label in zip(paths, labels) if path not in skip]
    return [path for path, _ in kept], [label for _, label in kept]


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


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--make-sample", metavar="OUT_DIR", required=True,
                        help="write the sample dataset in the ILSVRC2012 layout into OUT_DIR")
    parser.add_argument("--train-per-class", type=int, default=SAMPLE_TRAIN_PER_CLASS, help="training images a class")
    parser.add_argument("--val-per-class", type=int, default=SAMPLE_VAL_PER_CLASS, help="validation images a class")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the drawings")
    return parser


def main(args):
    make_sample(args.make_sample, args.train_per_class, args.val_per_class, args.seed)
    print(f"Sample dataset written to {args.make_sample}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
