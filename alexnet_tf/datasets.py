"""Reads a dataset folder: ILSVRC2012 as the devkit and the image archives lay it out, or your own folders of
classes; the classes, and the images of each split.

The layout (the seed's; `python prepare_data.py --make-sample DIR` writes the same, small):

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

Your own images (recognised by the absence of data/meta.mat), one folder a class, named as you like:

    DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg     both splits given (the same classes in both)
    DIR/<class>/*.jpg                                      split here: --val-fraction of each class's images
                                                           (at least one) for validation, drawn from --seed

Classes are the folder names in sorted order (as keras.utils.image_dataset_from_directory and torchvision's
ImageFolder have them), each with its name as WNID and words; images may sit in nested folders; hidden files and
folders, and files without an image extension, are ignored.

Caffe's class file `synset_words.txt` (from its `data/ilsvrc12/get_ilsvrc_aux.sh`) has one `WNID words` line per
class, in sorted-WNID order, the order of the BVLC models' outputs; `read_synset_words` reads it.

`--data-dir` may also name a folder of prepared shards (`prepared_shards.py` writes it; recognised by its
prepared.json): a Split then lists the shards and their record counts instead of image files.

    python prepare_data.py --prepare ILSVRC2012 ILSVRC2012-prepared
"""

import hashlib
import json
import os
import re

import numpy as np
import scipy.io

from alexnet_tf import tfds_folders
from alexnet_tf.errors import DataError, check_size, inside
from alexnet_tf.split import Split, Synset  # noqa: F401  (datasets.Split, datasets.Synset to their users)

DATA_DIR = "ILSVRC2012"  # the default dataset folder of train.py and test.py
TRAIN_DIR = "ILSVRC2012_img_train"
VAL_DIR = "ILSVRC2012_img_val"
META_MAT = os.path.join("data", "meta.mat")
GROUND_TRUTH = os.path.join("data", "ILSVRC2012_validation_ground_truth.txt")
VAL_NAME = "ILSVRC2012_val_{:08d}.JPEG"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".gif", ".bmp")
META_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "num_children")  # the fields we read
PREPARED_MANIFEST = "prepared.json"  # written last by prepared_shards.prepare: its presence marks a prepared folder
# Ours: files far larger than any real one are refused before they are read whole
META_MAT_MAX_BYTES = 64 * 2**20  # the devkit's meta.mat holds 1,860 synsets
GROUND_TRUTH_MAX_BYTES = 16 * 2**20  # 50,000 lines of at most 4 digits: about 250 KB
MANIFEST_MAX_BYTES = 256 * 2**20  # 1,152 shard names and counts, and the unreadable files' paths
SYNSET_WORDS_MAX_BYTES = 2**20  # Caffe's synset_words.txt is 31 KB
FOLDER_SPLITS = {"train": "train", "val": "val"}  # your own images, both splits given
VAL_FRACTION = 0.1  # ours: the validation share of each class when your folder has no val/
# How your own images without val/ are split. name-hash: an image is for validation when a hash of the seed and its
# path (relative to the dataset folder) falls below val_fraction, so that adding or removing images never moves
# another between training and validation. permutation: a draw over each class's image count (runs before it; one
# image added redrew the class's split), kept for the runs that recorded none.
SPLIT_RULES = ("name-hash", "permutation")
SPLIT_RULE = "name-hash"
MIN_CLASSES = 2
NUM_CLASSES = 1000  # ILSVRC2012's leaf synsets
WNID_PATTERN = re.compile(r"n\d{8}")


def load_synsets(meta_mat_path):
    """The leaf synsets of the devkit's meta.mat, in ILSVRC2012_ID order: index i is class i (ID i + 1)."""
    fix = "take data/meta.mat from ILSVRC2012_devkit_t12.tar.gz"
    if not os.path.isfile(meta_mat_path):
        raise DataError(
            f"meta.mat not found at {meta_mat_path}: it is in the ILSVRC2012 devkit "
            "(ILSVRC2012_devkit_t12.tar.gz), data/ folder"
        )
    check_size(meta_mat_path, META_MAT_MAX_BYTES, DataError, fix)
    try:
        synsets = scipy.io.loadmat(meta_mat_path, squeeze_me=True)["synsets"]
    except (ValueError, TypeError, KeyError) as error:  # be specific: what loadmat raises for other files
        raise DataError(f"{meta_mat_path} is not the devkit's meta.mat (no 'synsets' struct: {error}): {fix}") from None
    missing = [field for field in META_FIELDS if field not in (synsets.dtype.names or ())]
    if missing:
        raise DataError(f"{meta_mat_path}: the synsets struct lacks the fields {', '.join(missing)}: {fix}")
    leaves = sorted(
        Synset(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"]))
        for s in np.atleast_1d(synsets)
        if int(s["num_children"]) == 0
    )
    if [s.ilsvrc_id for s in leaves] != list(range(1, len(leaves) + 1)):
        raise DataError(f"{meta_mat_path}: the leaf synsets' ILSVRC2012_IDs are not 1..{len(leaves)}: {fix}")
    return leaves


def read_synset_words(path):
    """The classes of Caffe's synset_words.txt, in its order (ilsvrc_id 0: the file has none); a DataError unless
    it holds NUM_CLASSES lines `WNID words` with distinct WNIDs in sorted order."""
    fix = f"give Caffe's synset_words.txt ({NUM_CLASSES} lines `n01440764 tench, Tinca tinca`, sorted by WNID)"
    try:
        check_size(path, SYNSET_WORDS_MAX_BYTES, DataError, fix)
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:  # be specific: a missing, unreadable or binary file
        raise DataError(f"cannot read {path} as a class file ({error}): {fix}") from None
    synsets = []
    for number, line in enumerate(lines, 1):
        wnid, _, words = line.strip().partition(" ")
        if not WNID_PATTERN.fullmatch(wnid) or not words.strip():
            raise DataError(f"{path}, line {number}: {line[:60]!r} is not `WNID words`: {fix}")
        synsets.append(Synset(0, wnid, words.strip()))
    wnids = [s.wnid for s in synsets]
    if len(synsets) != NUM_CLASSES:
        raise DataError(f"{path} has {len(synsets)} classes, not {NUM_CLASSES}: {fix}")
    if wnids != sorted(set(wnids)):
        raise DataError(f"{path}: its WNIDs are not distinct and in sorted order: {fix}")
    return synsets


def list_train(data_dir, synsets):
    """(paths, labels) of the training images, class folders in ID order, files in name order."""
    train_dir = existing_dir(os.path.join(data_dir, TRAIN_DIR), "the training images (ILSVRC2012_img_train.tar)")
    paths, labels = [], []
    for index, synset in enumerate(synsets):
        files = image_files(inside(train_dir, synset.wnid, os.path.join(data_dir, META_MAT), DataError))
        if not files:
            raise DataError(
                f"no training images for {synset.wnid} ({synset.words}) in "
                f"{os.path.join(train_dir, synset.wnid)}: extract its tar there"
            )
        paths += files
        labels += [index] * len(files)
    return paths, labels


def list_val(data_dir, synsets):
    """(paths, labels) of the validation images, from the flat folder and the ground-truth file (line i belongs
    to the i-th file in name order), or from per-WNID subfolders when the folder was split so."""
    val_dir = existing_dir(os.path.join(data_dir, VAL_DIR), "the validation images (ILSVRC2012_img_val.tar)")
    if any(entry.is_dir() for entry in os.scandir(val_dir)):
        paths, labels, missing = [], [], []
        for index, synset in enumerate(synsets):
            files = image_files(inside(val_dir, synset.wnid, os.path.join(data_dir, META_MAT), DataError))
            paths += files
            labels += [index] * len(files)
            missing += [] if files else [synset.wnid]
        if not paths:
            raise DataError(
                f"{val_dir} has subfolders but none named by a WNID of meta.mat holds images: "
                "use the flat folder of ILSVRC2012_img_val.tar, or split it by WNID"
            )
        say_missing_classes(missing, val_dir, data_dir, synsets)
        return paths, labels
    paths = image_files(val_dir)
    ids = read_ground_truth(os.path.join(data_dir, GROUND_TRUTH), len(synsets))
    if len(ids) != len(paths):
        raise DataError(
            f"{os.path.join(data_dir, GROUND_TRUTH)} has {len(ids)} lines but {val_dir} holds "
            f"{len(paths)} images: both must be the full validation set"
        )
    return paths, [i - 1 for i in ids]


def say_missing_classes(missing, val_dir, data_dir, synsets):
    """Names the classes whose WNID folder in `val_dir` holds no image: an error when the devkit's ground truth,
    if present, gives them images (the folder was not extracted whole), else a line, so that a score over fewer
    classes does not pass for the whole set's."""
    if not missing:
        return
    named = f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
    ground_truth = os.path.join(data_dir, GROUND_TRUTH)
    if os.path.isfile(ground_truth):
        expected = set(read_ground_truth(ground_truth, len(synsets)))
        lost = [wnid for wnid in missing if [s.wnid for s in synsets].index(wnid) + 1 in expected]
        if lost:
            raise DataError(
                f"{len(lost)} classes of {ground_truth} have no images in {val_dir} ({named}): split the validation "
                "set again from ILSVRC2012_img_val.tar, whole"
            )
    print(f"{len(missing)} of {len(synsets)} classes have no validation images in {val_dir} ({named})")


def read_ground_truth(path, num_classes):
    if not os.path.isfile(path):
        raise DataError(f"ground-truth file not found at {path}: it is in the ILSVRC2012 devkit, data/ folder")
    check_size(path, GROUND_TRUTH_MAX_BYTES, DataError, "take the file from the ILSVRC2012 devkit, data/ folder")
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    for number, line in enumerate(lines, 1):
        if not line.isdigit() or not 1 <= int(line) <= num_classes:
            raise DataError(
                f"{path}, line {number}: {line!r} is not an ILSVRC2012_ID in 1..{num_classes}: "
                "take the file from the devkit that goes with your meta.mat"
            )
    return [int(line) for line in lines]


def existing_dir(path, what):
    if not os.path.isdir(path):
        raise DataError(f"{path} not found: it should hold {what}; pass --data-dir, or --sample for the sample")
    return path


def image_files(folder):
    """The image files of `folder`, sorted; only regular files (or links to them), as nested_image_files."""
    if not os.path.isdir(folder):
        return []
    return sorted(
        entry.path for entry in os.scandir(folder) if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def is_prepared(data_dir):
    return os.path.isfile(os.path.join(data_dir, PREPARED_MANIFEST))


def is_class_folders(data_dir):
    """Your own images: a folder that is not prepared and has neither the devkit's meta.mat nor the ILSVRC2012
    image folders (which without meta.mat are an incomplete ILSVRC2012, not classes)."""
    ilsvrc = (META_MAT, TRAIN_DIR, VAL_DIR)
    return (
        not is_prepared(data_dir)
        and not tfds_folders.is_tfds(data_dir)
        and not any(os.path.exists(os.path.join(data_dir, name)) for name in ilsvrc)
    )


def load_classes(data_dir):
    """The classes of any dataset folder, in label order: meta.mat's leaves for ILSVRC2012 (and shards prepared
    from it), the sorted folder names for your own images (and shards prepared from them)."""
    existing_data_dir(data_dir)
    if tfds_folders.is_tfds(data_dir):
        return tfds_folders.load_classes(data_dir)
    if is_class_folders(data_dir):
        return folder_classes(data_dir)
    if is_prepared(data_dir) and not os.path.isfile(os.path.join(data_dir, META_MAT)):
        return named_classes(read_manifest(data_dir)["classes"])
    return load_synsets(os.path.join(data_dir, META_MAT))


def folder_classes(data_dir):
    """The sorted class folders of your own images; a DataError for fewer than MIN_CLASSES, or for train/ and val/
    of other classes."""
    fix = "one folder a class: DIR/<class>/*.jpg, or DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg"
    splits = {part: os.path.join(data_dir, name) for part, name in FOLDER_SPLITS.items()}
    if splits_given(data_dir):
        names = {part: subfolders(path) if os.path.isdir(path) else [] for part, path in splits.items()}
        only = [
            (name, part)
            for part, other in (("train", "val"), ("val", "train"))
            for name in names[part]
            if name not in names[other]
        ]
        if only:
            name, part = only[0]
            raise DataError(
                f"class {name} is in {splits[part]} but not in {splits['val' if part == 'train' else 'train']}: "
                "give both splits the same class folders"
            )
        names = names["train"]
    else:
        names = subfolders(data_dir)
    if len(names) < MIN_CLASSES:
        raise DataError(
            f"{data_dir} has {len(names)} class folder(s) and no data/meta.mat: give at least {MIN_CLASSES} classes, "
            f"{fix}; or an ILSVRC2012 folder"
        )
    return named_classes(names)


def named_classes(names):
    """Classes named by folders: each name is its WNID and its words."""
    return [Synset(i + 1, name, name) for i, name in enumerate(names)]


def is_numbered(synsets):
    """Whether the class folders are ImageNetV2's: 1000 of them, named 0 .. 999 (folder k: class k of ILSVRC2012's
    WNIDs sorted). Fewer folders so named are your own classes."""
    return {s.wnid for s in synsets} == {str(k) for k in range(NUM_CLASSES)}


def every_image(data_dir, synsets):
    """The Split of every image of the class folders (a test set: nothing held out)."""
    paths, labels = [], []
    for index, synset in enumerate(synsets):
        files = nested_image_files(os.path.join(data_dir, synset.wnid))
        paths += files
        labels += [index] * len(files)
    return Split(paths, labels, None)


def splits_given(data_dir):
    """Whether your own images come as DIR/train and DIR/val, not to be split here: those two folders and no other
    (a flat folder of classes may well have a class named train, beside bus and car)."""
    return sorted(subfolders(data_dir)) == sorted(FOLDER_SPLITS.values())


def subfolders(folder):
    """The sorted names of the folder's subfolders that are not hidden. A subfolder may be a symlink to the user's
    images elsewhere: these names are the user's own folder's, not read from a file (those stay confined: inside)."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def nested_image_files(folder):
    """The image files under `folder`, in nested folders too, hidden files and folders left out; sorted. Only
    regular files (or links to them) count: opening a FIFO named like an image would wait for a writer forever."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found += [
            os.path.join(root, name)
            for name in files
            if not name.startswith(".")
            and name.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(root, name))
        ]
    return sorted(found)


def list_folders(data_dir, synsets, part, val_fraction, seed, split_rule):
    """(paths, labels) of your own images of `part`: from DIR/train and DIR/val, or split by `split_rule` with
    `val_fraction` and `seed` (SPLIT_RULES); the classes left without a validation image are named."""
    given = splits_given(data_dir)
    paths, labels, without_val = [], [], []
    for index, synset in enumerate(synsets):
        folder = (
            os.path.join(data_dir, FOLDER_SPLITS[part], synset.wnid) if given else os.path.join(data_dir, synset.wnid)
        )
        files = nested_image_files(folder)
        if not given:
            if len(files) < 2:
                raise DataError(
                    f"class {synset.wnid} has {len(files)} image(s) in {folder}: a validation split needs at "
                    "least 2, or give DIR/train and DIR/val"
                )
            validation = in_validation(
                files, data_dir, val_fraction=val_fraction, seed=seed, rule=split_rule, label=index
            )
            if all(validation):
                raise DataError(
                    f"class {synset.wnid} has all its {len(files)} images in {folder} drawn for validation: add "
                    "images, or lower --val-fraction"
                )
            without_val += [] if any(validation) else [synset.wnid]
            files = [path for path, held_out in zip(files, validation) if held_out == (part == "val")]
        if not files and part == "val":
            continue
        if not files:
            raise DataError(f"class {synset.wnid} has no images in {folder}: add some, or remove the folder")
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise DataError(
            f"no image of {data_dir} is drawn for validation (--val-fraction {val_fraction}): raise it, add images, "
            "or give DIR/train and DIR/val"
        )
    if without_val and part == "val":
        print(
            f"{len(without_val)} of {len(synsets)} classes have no validation image in {data_dir} "
            f"({', '.join(without_val[:5])}{', ...' if len(without_val) > 5 else ''}): each image is drawn for "
            "validation with the chance --val-fraction; add images, or give DIR/train and DIR/val"
        )
    return paths, labels


def in_validation(files, data_dir, *, val_fraction, seed, rule, label):
    """For each image of the class `label`'s `files`, whether it is held out for validation under `rule`."""
    if rule == "permutation":
        order = np.random.default_rng([seed, label]).permutation(len(files))
        num_val = min(max(1, round(val_fraction * len(files))), len(files) - 1)
        held_out = set(order[:num_val].tolist())
        return [i in held_out for i in range(len(files))]
    names = (os.path.relpath(path, data_dir).replace(os.sep, "/") for path in files)
    digests = (hashlib.sha256(f"{seed}/{name}".encode()).digest() for name in names)
    return [int.from_bytes(digest[:8], "big") < val_fraction * 2**64 for digest in digests]


def read_manifest(data_dir):
    manifest_path = os.path.join(data_dir, PREPARED_MANIFEST)
    check_size(manifest_path, MANIFEST_MAX_BYTES, DataError, "prepare the shards again from the dataset")
    with open(manifest_path) as f:
        return json.load(f)


def read_split(data_dir, synsets, part, val_fraction=VAL_FRACTION, seed=0, split_rule=SPLIT_RULE):
    """The "train" or "val" Split of a dataset folder: ILSVRC2012, your own images (`val_fraction`, `seed` and
    `split_rule` draw the validation images when the folder has no val/), or prepared shards of either."""
    if tfds_folders.is_tfds(data_dir):
        return tfds_folders.read_split(data_dir, part)
    if is_class_folders(data_dir):
        return Split(*list_folders(data_dir, synsets, part, val_fraction, seed, split_rule), None)
    if not is_prepared(data_dir):
        return Split(*(list_train if part == "train" else list_val)(data_dir, synsets), None)
    manifest_path = os.path.join(data_dir, PREPARED_MANIFEST)
    manifest = read_manifest(data_dir)
    if manifest["classes"] != [s.wnid for s in synsets]:
        raise DataError(
            f"{manifest_path} lists other classes than {os.path.join(data_dir, META_MAT)}: "
            "prepare the shards again from the dataset"
        )
    paths = [inside(data_dir, name, manifest_path, DataError) for name in manifest[part]["shards"]]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise DataError(
            f"{len(missing)} prepared shards are missing, e.g. {missing[0]}: run "
            f"`python prepare_data.py --prepare SOURCE {data_dir}` again"
        )
    return Split(paths, None, manifest[part]["sizes"])


def existing_data_dir(data_dir):
    if not os.path.isdir(data_dir):
        raise DataError(
            f"dataset folder {data_dir} not found: give an ILSVRC2012 folder or a folder of your own classes "
            "(layouts in docs/data.md), or --sample for the generated sample"
        )
    return data_dir
