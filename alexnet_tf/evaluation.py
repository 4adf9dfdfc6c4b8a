"""What test.py measures, as the field reports it: each image's top-k classes and scores (the softmax averaged over
its crops), and from them top-1 and top-k, the expected calibration error (Guo et al. 2017), per-class accuracy, the
most confused pairs, and ReaL accuracy (Beyer et al. 2020) for ILSVRC2012's validation images.

The ReaL labels ship in alexnet_tf/data/ (its README says whence): entry i lists the right classes of
ILSVRC2012_val_{i+1:08d}.JPEG as indices into the 1000 WNIDs *sorted*, which is neither the devkit's ILSVRC2012_ID
order nor, in general, a run's fc8 order: they are mapped through the WNIDs.
"""

import collections
import dataclasses
import hashlib
import json
import os
import re

import numpy as np
import tensorflow as tf

from alexnet_tf import datasets, input_pipeline, network, prepared_shards, progress, run_folder
from alexnet_tf.errors import DataError

CALIBRATION_BINS = 15  # Guo et al. 2017, "On calibration of modern neural networks"
REAL_LABELS = os.path.join(os.path.dirname(__file__), "data", "imagenet_real_labels.json")
REAL_LABELS_SHA256 = "d83e9bff374c631aae8439eb064c7019acc56e1b3bc3f56b8380c2a710b0220b"
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})\.")  # the number in an ILSVRC2012 validation file's name


def split_of(config, data_dir, part, *, ckpt_dir):
    """The "train" or "val" images of `data_dir` as the run of `config` (in `ckpt_dir`) splits them, labelled with its
    fc8 rows (the dataset's classes matched to the run's by WNID). ImageNetV2's folders 0..999 are a test set whole,
    folder k the k-th of the run's WNIDs sorted."""
    synsets = datasets.load_classes(data_dir)
    if datasets.is_numbered(synsets) and not datasets.is_prepared(data_dir):
        wnids = sorted(c.wnid for c in config.classes)
        if len(wnids) != network.NUM_CLASSES:
            raise DataError(
                f"{data_dir} has ImageNetV2's layout (class folders 0..{len(synsets) - 1}), whose folder k is the k-th "
                f"ILSVRC2012 WNID sorted: the run in {ckpt_dir} has {len(wnids)} classes, not ILSVRC2012's 1000"
            )
        print(f"{data_dir}: ImageNetV2's layout, folder k read as the k-th of the run's 1000 WNIDs sorted")
        order = run_folder.class_order(config, [wnids[int(s.wnid)] for s in synsets], ckpt_dir, data_dir)
        return datasets.every_image(data_dir, synsets).relabeled(order)
    order = run_folder.class_order(config, [s.wnid for s in synsets], ckpt_dir, data_dir)
    split = config.settings.split_args() if config.settings else {}  # an imported run: read_split's defaults
    return datasets.read_split(data_dir, synsets, part, **split).relabeled(order)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """An evaluation's per-image results, in the validation set's order."""

    names: tuple  # each image's path relative to the dataset folder
    labels: np.ndarray  # (N,) the true fc8 row
    classes: np.ndarray  # (N, k) the top-k fc8 rows, best first
    scores: np.ndarray  # (N, k) their crop-averaged softmax scores

    def correct(self, k):
        """(N,) whether the true class is among the first `k` predicted."""
        return (self.classes[:, :k] == self.labels[:, None]).any(axis=1)

    def accuracy(self, k):
        return float(self.correct(k).mean())


def predict(model, split, *, data_dir, spec, crops, k_crops, seed, batch_size, top_k):
    """The Predictions of `model` (logits) on `split` of `data_dir`, each image's `k_crops` crops averaged, with a
    progress bar."""
    dataset = input_pipeline.eval_dataset(
        split, spec=spec, batch_size=batch_size, crops=crops, k_crops=k_crops, seed=seed
    )

    @tf.function(reduce_retracing=True)
    def top(images):
        size = tf.shape(images)
        logits = model(tf.reshape(images, [-1, size[2], size[3], size[4]]), training=False)
        probabilities = tf.reduce_mean(
            tf.reshape(tf.nn.softmax(tf.cast(logits, tf.float32)), [size[0], size[1], -1]), 1
        )
        return tf.math.top_k(probabilities, top_k)

    bar = progress.bar(split.num_images, "image")
    labels, classes, scores = [], [], []
    with input_pipeline.as_prepared(split):
        for images, batch_labels in dataset:
            batch_scores, batch_classes = top(images)
            labels.append(batch_labels.numpy())
            classes.append(batch_classes.numpy())
            scores.append(batch_scores.numpy())
            bar.add(len(batch_labels))
    return Predictions(
        names=tuple(image_names(split, data_dir)),
        labels=np.concatenate(labels),
        classes=np.concatenate(classes),
        scores=np.concatenate(scores),
    )


def image_names(split, data_dir=None):
    """Each image's path as the dataset folder names it, in the split's order: relative to `data_dir` for image
    files, the source's relative path that --prepare recorded for prepared shards."""
    if not split.prepared:
        return [os.path.relpath(path, data_dir) if data_dir else path for path in split.paths]
    records = tf.data.TFRecordDataset(split.paths).take(split.num_images).batch(1024)
    names = records.map(lambda batch: prepared_shards.parse_names(batch, split.record_format))
    return [name.decode() for batch in names.as_numpy_iterator() for name in batch]


def expected_calibration_error(predictions, bins=CALIBRATION_BINS):
    """The top-1 score's expected calibration error: over `bins` equal-width bins of the score, the gap between
    accuracy and mean score, weighted by the bin's share of the images."""
    _, accuracy, confidence, images = reliability(predictions, bins)
    return float(np.sum(np.abs(accuracy - confidence) * images) / np.sum(images))


def reliability(predictions, bins=CALIBRATION_BINS):
    """(bin centres, accuracy, mean score, images) of the bins that hold images: the reliability diagram's bars."""
    confidence, correct = predictions.scores[:, 0], predictions.correct(1)
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True), 0, bins - 1)
    held = [b for b in range(bins) if np.any(which == b)]
    return (
        np.array([(b + 0.5) / bins for b in held]),
        np.array([correct[which == b].mean() for b in held]),
        np.array([confidence[which == b].mean() for b in held]),
        np.array([np.sum(which == b) for b in held]),
    )


def per_class(predictions, num_classes, k):
    """(images, top-1, top-k) of each fc8 row, in fc8 order (NaN for a class without images)."""
    images = np.bincount(predictions.labels, minlength=num_classes)
    hits = [np.bincount(predictions.labels, predictions.correct(n), minlength=num_classes) for n in (1, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return images, hits[0] / images, hits[1] / images


def confusions(predictions):
    """(true row, predicted row, count) of the top-1 mistakes, the most frequent pairs first."""
    wrong = predictions.classes[:, 0] != predictions.labels
    pairs = collections.Counter(zip(predictions.labels[wrong].tolist(), predictions.classes[wrong, 0].tolist()))
    return sorted(((true, guess, count) for (true, guess), count in pairs.items()), key=lambda p: (-p[2], p[0], p[1]))


def real_labels():
    """The 50,000 ReaL label lists, read once its sha256 is known to be the published file's."""
    with open(REAL_LABELS, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != REAL_LABELS_SHA256:
        raise DataError(f"{REAL_LABELS} is not the published ReaL labels (its sha256 differs): reinstall the project")
    return json.loads(data)


def real_top1(predictions, run_wnids, labels=None):
    """ReaL top-1 accuracy and the images it counts, or None when it does not apply: the run must have ILSVRC2012's
    1000 classes, and only images named ILSVRC2012_val_NNNNNNNN with a non-empty ReaL list count."""
    if len(run_wnids) != network.NUM_CLASSES or not all(datasets.WNID_PATTERN.fullmatch(w) for w in run_wnids):
        return None
    numbered = [(row, VAL_NUMBER.search(os.path.basename(name))) for row, name in enumerate(predictions.names)]
    numbered = [(row, int(match.group(1))) for row, match in numbered if match]
    if not numbered:
        return None
    labels = real_labels() if labels is None else labels
    fc8_row = {wnid: row for row, wnid in enumerate(run_wnids)}
    to_fc8 = np.array([fc8_row[wnid] for wnid in sorted(run_wnids)])  # sorted-WNID index -> the run's fc8 row
    right = [
        predictions.classes[row, 0] in to_fc8[labels[number - 1]]
        for row, number in numbered
        if 1 <= number <= len(labels) and labels[number - 1]
    ]
    return (float(np.mean(right)) if right else None), len(right)
