"""The sample dataset: a small ILSVRC2012 in the exact layout (see datasets.py), generated, so that every script
runs without ImageNet; and the devkit's meta.mat writer, which the sample and the tests share.

Ten classes with real WNIDs and words (alp, church, valley, ...), leaf IDs deliberately not in sorted-WNID order,
internal (non-leaf) synsets present, as in the devkit; JPEGs of varied sizes and aspect ratios, some grayscale, each
class with its own hue and stripe pattern; a flat validation folder with its ground-truth file.

    python prepare_data.py --make-sample ILSVRC2012-sample
"""

import os
import shutil

import numpy as np
import scipy.io
from PIL import Image

from alexnet_tf import datasets
from alexnet_tf.errors import DataError

SAMPLE_DIR = "ILSVRC2012-sample"  # where --sample puts it when --data-dir is left at its default
LEAVES = (
    ("n09193705", "alp"),
    ("n03028079", "church, church building"),
    ("n09468604", "valley, vale"),
    ("n02980441", "castle"),
    ("n03781244", "monastery"),
    ("n02119789", "kit fox, Vulpes macrotis"),
    ("n09472597", "volcano"),
    ("n09428293", "seashore, coast, seacoast, sea-coast"),
    ("n09332890", "lakeside, lakeshore"),
    ("n03888257", "parachute, chute"),
)
INTERNAL = (
    ("n09287968", "geological formation, formation", (1, 3, 7, 8, 9)),
    ("n04341686", "structure, construction", (2, 4, 5)),
    ("n00021939", "artifact, artefact", (12, 10)),
)
TRAIN_PER_CLASS = 40
VAL_PER_CLASS = 10
SEED = 0
META_FIELDS = (
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
)  # the devkit's, all of them


def data_dir_for(data_dir, sample, run=None):
    """The dataset folder a script reads: `data_dir` as given; not given (None), the one the `run` (its config) was
    trained on, which config.json keeps (imported runs and runs from before it did not: ILSVRC2012); with `sample`,
    the sample (in SAMPLE_DIR unless `data_dir` names another folder than the default), generated on first use, into
    a missing or empty folder only."""
    if data_dir is None and not sample and run is not None:
        data_dir = run.data_dir
        if data_dir and not os.path.isdir(data_dir):
            raise DataError(
                f"the run's dataset folder {data_dir} (from its config.json) is not found: pass --data-dir with where "
                "it is now"
            )
    data_dir = data_dir or datasets.DATA_DIR
    if not sample:
        return datasets.existing_data_dir(data_dir)
    if data_dir == datasets.DATA_DIR:
        data_dir = SAMPLE_DIR
    if os.path.isfile(os.path.join(data_dir, datasets.META_MAT)):
        return data_dir
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        raise DataError(
            f"{data_dir} holds files but no {datasets.META_MAT}: --sample writes the sample only into "
            "a missing or empty folder; pass another --data-dir"
        )
    print(f"Generating the sample dataset in {data_dir} ...")
    make_sample_whole(data_dir)
    return data_dir


def make_sample_whole(data_dir):
    """make_sample into a hidden folder beside `data_dir` (missing or empty), renamed into place once complete: a
    generation stopped half-way (Ctrl-C, a kill) leaves no half-written sample, which --sample would then refuse."""
    absolute = os.path.abspath(data_dir)
    partial = os.path.join(os.path.dirname(absolute), f".{os.path.basename(absolute)}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # what a killed generation left
    try:
        make_sample(partial)
        os.replace(partial, absolute)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def make_sample(out_dir, train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, seed=SEED, draw=None):
    """Writes the sample into `out_dir`; images are drawn by `draw(label, num_classes, rng) -> PIL.Image`, by default
    `stripes`."""
    draw = draw or stripes
    rng = np.random.default_rng(seed)
    num_classes = len(LEAVES)
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    for index, (wnid, _) in enumerate(LEAVES):
        os.makedirs(os.path.join(out_dir, datasets.TRAIN_DIR, wnid), exist_ok=True)
        for n in range(train_per_class):
            draw(index, num_classes, rng).save(
                os.path.join(out_dir, datasets.TRAIN_DIR, wnid, f"{wnid}_{n + 1}.JPEG"), quality=90
            )
    val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    os.makedirs(os.path.join(out_dir, datasets.VAL_DIR), exist_ok=True)
    for n, label in enumerate(val_labels):
        path = os.path.join(out_dir, datasets.VAL_DIR, datasets.VAL_NAME.format(n + 1))
        draw(label, num_classes, rng).save(path, quality=90)
    with open(os.path.join(out_dir, datasets.GROUND_TRUTH), "w") as f:
        f.writelines(f"{label + 1}\n" for label in val_labels)
    leaves = [(i + 1, wnid, words, ()) for i, (wnid, words) in enumerate(LEAVES)]
    internal = [(len(leaves) + i + 1, wnid, words, children) for i, (wnid, words, children) in enumerate(INTERNAL)]
    write_meta_mat(os.path.join(out_dir, datasets.META_MAT), leaves + internal, train_per_class)


def write_meta_mat(path, rows, train_per_class=1):
    """A devkit-shaped meta.mat (every field of the devkit's `synsets` struct) from (ILSVRC2012_ID, WNID, words,
    children IDs) rows, in the given order."""
    synsets = np.zeros((len(rows), 1), dtype=[(name, object) for name in META_FIELDS])
    for row, (ilsvrc_id, wnid, words, children) in enumerate(rows):
        synsets[row, 0] = (
            float(ilsvrc_id),
            wnid,
            words,
            f"sample class {words}",
            float(len(children)),
            np.array(children, dtype=float).reshape(1, -1),
            float(bool(children)),
            float(train_per_class),
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {"synsets": synsets})


def stripes(label, num_classes, rng):
    """Class `label` as photographs are, roughly: its own hue (amplitude 60) and stripe angle and frequency
    (amplitude 40) on the 0..255 scale, plus noise; random size and aspect ratio; grayscale one time in seven."""
    width = int(rng.integers(200, 500))
    height = int(np.clip(width / rng.uniform(0.6, 1.7), 150, 600))
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = np.pi * label / num_classes + rng.normal(0, 0.08)
    frequency = 4 + 3 * (label % 3) + rng.normal(0, 0.3)
    waves = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    hue = label / num_classes + rng.normal(0, 0.02)
    colour = 128 + 60 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3])))
    pixels = colour + 40 * waves[..., None] + rng.normal(0, 10, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if rng.random() < 1 / 7 else image
