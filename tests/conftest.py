"""Shared fixtures and helpers: a tiny dataset in the ILSVRC2012 layout and its prepared shards, a runner for the
scripts that checks their one-line errors, the config of a training run, devkits, weight files and folders of your
own classes as tests write them, and the order in which the two pytest-xdist workers take the test files."""

from alexnet_tf import startup  # noqa: F401  (first, as in every script: quiets TensorFlow's start-up here too)

import contextlib
import json
import functools
import importlib.util
import io
import os
import pickle
import pty
import select
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import data_reader
from alexnet_tf import errors, preprocessing, run_config, sample_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scripts run as a user runs them: TensorFlow's start-up logs left to
# startup.py, and with the clone importable as `pip install .` makes it (benchmarks/bench.py, tests/killing_train.py)
SCRIPT_ENV = {
    **{name: value for name, value in os.environ.items() if name not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")},
    "PYTHONPATH": ROOT,
}
# A small run's settings, float32, for training_config
TRAINING_SETTINGS = {
    "epochs": 2,
    "batch_size": 2,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "dropout": 0.5,
    "augment": "paper",
    "groups": 1,
    "steps_per_epoch": 4,
    "seed": 0,
    "deterministic": False,
    "precision": "float32",
    "save_every": 4,
}
DECODABLE = ("gray", "cmyk", "png", "gif", "bmp")
UNREADABLE = ("truncated", "empty", "text", "bomb")
# The test files in the order the two pytest-xdist workers take them (whole files, pytest.ini): the longest first, by
# their seconds in the full suite (docs/performance.md), so that the workers finish together; the rest follow.
LONGEST_FIRST = (
    "test_run_folder.py",
    "test_learning.py",
    "test_distribute.py",
    "test_speed.py",
    "test_own_images.py",
    "test_scripts.py",
    "test_reliability.py",
    "test_prepared.py",
    "test_export.py",
    "test_curves.py",
    "test_security.py",
    "test_tfds.py",
    "test_import_weights.py",
    "test_run_config.py",
    "test_nothing_lost.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        return LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the tests of a file keep their order


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The sample dataset, 4 training and 2 validation images a class (40 and 20 images)."""
    out = tmp_path_factory.mktemp("data") / "ILSVRC2012"
    sample_dataset.make_sample(str(out), train_per_class=4, val_per_class=2)
    return str(out)


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """The folder `pip install .` would fill (the clone's pyproject.toml, alexnet.py, data_reader.py, alexnet_tf/),
    for programs run from elsewhere with it alone on PYTHONPATH. Built from a copy, so the clone gets no build/."""
    work = tmp_path_factory.mktemp("install")
    for name in ("pyproject.toml", "README.md", "alexnet.py", "data_reader.py"):
        shutil.copy(os.path.join(ROOT, name), work)
    shutil.copytree(os.path.join(ROOT, "alexnet_tf"), work / "alexnet_tf", ignore=shutil.ignore_patterns("__pycache__"))
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run([*command, "--target", site, work], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return str(site)


@pytest.fixture(scope="session")
def prepared_data(tiny_data, tmp_path_factory):
    """tiny_data as prepared shards: 3 training shards, 2 validation shards."""
    from alexnet_tf import prepared_shards

    out = str(tmp_path_factory.mktemp("prepared") / "ILSVRC2012-prepared")
    prepared_shards.prepare(tiny_data, out, train_shards=3, val_shards=2)
    return out


def script_command(script, *args):
    """The command line of one of the project's scripts (a path under the project root), as a user types it."""
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def flags(**options):
    """Command-line options from keywords, as a user types them: flags(data_dir=d, epochs=1, projector=True) is
    ("--data-dir", d, "--epochs", 1, "--projector"); an option of None or False is left out."""
    given = {
        f"--{name.replace('_', '-')}": value
        for name, value in options.items()
        if value is not None and value is not False
    }
    return tuple(item for flag, value in given.items() for item in ((flag,) if value is True else (flag, value)))


def two_step_run(data_dir, work, **options):
    """The options of a -scratch run of two steps of 8 images on `data_dir`, its folders in `work`."""
    return flags(
        data_dir=data_dir,
        ckpt_dir=work / "ckpt",
        log_dir=work / "logs",
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        **options,
    )


def run_script(script, *args, cwd=ROOT, env=None):
    """Runs one of the project's scripts as a user would; returns the CompletedProcess (text, not checked)."""
    return subprocess.run(
        script_command(script, *args), cwd=cwd, env=env or SCRIPT_ENV, capture_output=True, text=True, timeout=900
    )


def run_script_in_a_terminal(script, *args, cwd=ROOT):
    """run_script with the output (stdout and stderr, merged) to a pseudo-terminal, as a user at a shell has it."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        script_command(script, *args),
        cwd=cwd,
        env=SCRIPT_ENV,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = bytearray()
    while True:
        if not select.select([controller], [], [], 900)[0]:
            process.kill()  # silent for 15 minutes: hung
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # be specific: Linux's EIO once the script has ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    text = output.decode(errors="replace")
    return subprocess.CompletedProcess(process.args, process.wait(timeout=900), stdout=text, stderr=text)


def run_main(script, *args, cwd=ROOT):
    """What `python script args` runs below its `__main__` guard (get_args_parser, main and errors.reported), here in
    the test's process, without the seconds of a new process's TensorFlow start-up: for the evaluating, classifying,
    importing and exporting scripts, and for the mistakes a script refuses before it trains. Training keeps its
    process (train.py sets op determinism and logical devices for the whole process), and so does each script in
    the tests of what a user types (README commands, start-up quietness). Returns a CompletedProcess, as run_script
    does."""
    module = script_module(script)
    parser = module.get_args_parser()
    parser.prog = script
    stdout, stderr = io.StringIO(), io.StringIO()
    previous_cwd = os.getcwd()
    returncode = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), errors.reported(parser):
            module.main(parser.parse_args([str(arg) for arg in args]))
    except SystemExit as exit:
        returncode = exit.code
    finally:
        os.chdir(previous_cwd)
    return subprocess.CompletedProcess([script, *args], returncode, stdout.getvalue(), stderr.getvalue())


@functools.cache
def script_module(script):
    """One of the project's scripts (a path under the project root) as a module, named script_*: `test` is also the
    standard library's package."""
    name = f"script_{os.path.basename(script).removesuffix('.py')}"
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expect_one_line_error(result):
    """The script's error line: exit code 2, and one line on the standard error, nothing else there."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    return lines[0]


@pytest.fixture
def one_line_error():
    return expect_one_line_error


@pytest.fixture
def training_config():
    """A factory of RunConfigs as train.py makes them, for build_training: small, float32 unless asked."""

    def config(num_classes=3, image_size=224, **settings):
        return run_config.RunConfig(
            architecture=run_config.Architecture(num_classes=num_classes, image_size=image_size),
            classes=tuple(run_config.ClassName(wnid=f"class{i}", words=f"class {i}") for i in range(num_classes)),
            preprocessing=preprocessing.Preprocessing(crop_size=image_size),
            settings=run_config.RunSettings(**{**TRAINING_SETTINGS, **settings}),
        )

    return config


def write_image_kinds(folder, prefix):
    """One file of every kind the ILSVRC2012 training set is known to hold, all named .JPEG."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    photo.convert("L").save(folder / f"{prefix}_gray.JPEG")
    photo.convert("CMYK").save(folder / f"{prefix}_cmyk.JPEG")
    for kind in ("png", "gif", "bmp"):
        photo.save(folder / f"{prefix}_{kind}.JPEG", format=kind.upper())
    photo.save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    os.remove(folder / "whole.jpg")
    (folder / f"{prefix}_truncated.JPEG").write_bytes(data[: len(data) // 2])
    (folder / f"{prefix}_empty.JPEG").write_bytes(b"")
    (folder / f"{prefix}_text.JPEG").write_text("<html>not an image</html>")
    write_gif_bomb(folder / f"{prefix}_bomb.JPEG")


def write_gif_bomb(path):
    """A GIF whose header declares 65535 x 65535 pixels (4.3 gigapixels, 12.9 GB as RGB): a decompression bomb."""
    Image.new("RGB", (1, 1)).save(path, format="GIF")
    data = bytearray(path.read_bytes())
    data[6:10] = b"\xff\xff\xff\xff"  # the logical screen's width and height
    path.write_bytes(bytes(data))


def exif_segment(orientation, big_endian=False, tags_before=3):
    """A JPEG APP1 Exif segment, written from the standard: a TIFF header and one directory of `tags_before` SHORT
    tags (0x0100 on), then Orientation, unless None."""
    order = ">" if big_endian else "<"
    tags = [(0x0100 + i, 7) for i in range(tags_before)] + ([] if orientation is None else [(0x0112, orientation)])
    entries = b"".join(struct.pack(order + "HHIHH", tag, 3, 1, value, 0) for tag, value in tags)
    tiff = (b"MM" if big_endian else b"II") + struct.pack(order + "HIH", 42, 8, len(tags)) + entries + bytes(4)
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def tagged(jpeg, segment):
    """The same JPEG with `segment` right after its start of image, as cameras write it."""
    return jpeg[:2] + segment + jpeg[2:]


@pytest.fixture
def bad_data(tiny_data, tmp_path):
    """The tiny sample with every image kind added to the first class, a truncated validation image (3) and a
    decompression bomb (5)."""
    data = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, data)
    write_image_kinds(data / data_reader.TRAIN_DIR / sample_dataset.LEAVES[0][0], "n09193705_bad")
    val = data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(3)
    val.write_bytes(val.read_bytes()[:300])
    write_gif_bomb(data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(5))
    return data


@pytest.fixture(scope="session")
def one_step_template(tiny_data, tmp_path_factory):
    """A run of one step on tiny_data, trained once a session; tests take copies (one_step_run)."""
    work = tmp_path_factory.mktemp("one-step")
    options = ("--epochs", 1, "--batch-size", 8, "--steps-per-epoch", 1)
    result = run_script(
        "train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", work / "ckpt", *options, cwd=work
    )
    assert result.returncode == 0, result.stderr
    return work / "ckpt"


@pytest.fixture
def one_step_run(one_step_template, tmp_path):
    """A copy of one_step_template of this test's own, to change at will."""
    return shutil.copytree(one_step_template, tmp_path / "ckpt", ignore=shutil.ignore_patterns("train.lock"))


def devkit_copy(tiny_data, tmp_path):
    data = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, data)
    return data


# Leaf IDs deliberately not in sorted-WNID order, internal synsets interleaved, rows not in ID order.
SMALL_DEVKIT_ROWS = [
    (4, "n00000001", "internal a", (2, 3)),
    (3, "n01000000", "zebra", ()),
    (1, "n03000000", "kit fox", ()),
    (5, "n00000002", "internal b", (1,)),
    (2, "n02000000", "alp", ()),
]


@pytest.fixture
def small_devkit(tmp_path):
    """A devkit's meta.mat of SMALL_DEVKIT_ROWS (three leaves, two internal synsets) and the training images of its
    leaves (2, 1 and 3 by ID), no validation set: in this test's own folder, to add to at will."""
    sample_dataset.write_meta_mat(str(tmp_path / "data" / "meta.mat"), SMALL_DEVKIT_ROWS)
    for wnid, count in (("n03000000", 2), ("n02000000", 1), ("n01000000", 3)):
        os.makedirs(tmp_path / data_reader.TRAIN_DIR / wnid)
        for n in range(count):
            Image.new("RGB", (40, 30)).save(tmp_path / data_reader.TRAIN_DIR / wnid / f"{wnid}_{n}.JPEG")
    return tmp_path


IMAGENET_DEVKIT_VAL_IMAGES = 12


def wnids_and_words(count=1000):
    """`count` distinct made-up (WNID, words) pairs, not in sorted order: ILSVRC2012's 1000 classes by default."""
    numbers = np.random.default_rng(1).choice(10**8, count, replace=False)
    return [(f"n{number:08d}", f"class {i}") for i, number in enumerate(numbers)]


@pytest.fixture(scope="module")
def imagenet_devkit(tmp_path_factory):
    """ILSVRC2012's shape: the 1000 leaf classes of wnids_and_words() whose ILSVRC2012_IDs are a shuffle of their
    sorted order (as the devkit's are), an internal node, and IMAGENET_DEVKIT_VAL_IMAGES validation images of
    distinct classes; no training images."""
    root = tmp_path_factory.mktemp("devkit") / "ILSVRC2012"
    classes = wnids_and_words()
    rng = np.random.default_rng(2)
    rows = [(i + 1, wnid, words, ()) for i, (wnid, words) in enumerate(classes)]
    sample_dataset.write_meta_mat(str(root / data_reader.META_MAT), [*rows, (1001, "n00001740", "entity", (1, 2))])
    labels = rng.choice(1000, IMAGENET_DEVKIT_VAL_IMAGES, replace=False)
    (root / data_reader.VAL_DIR).mkdir()
    for n in range(IMAGENET_DEVKIT_VAL_IMAGES):
        pixels = rng.integers(0, 256, (rng.integers(200, 400), rng.integers(200, 400), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / data_reader.VAL_DIR / data_reader.VAL_NAME.format(n + 1), quality=90)
    (root / data_reader.GROUND_TRUTH).write_text("".join(f"{label + 1}\n" for label in labels))
    return root


def write_npy(path, item, protocol=3):
    """`item` as np.save writes it to the .npy file `path`: a plain array as it is, anything else (a dict of layers,
    a list) as a 0-d object array holding it, pickled at `protocol` (np.save's is 3; 2 is how Python 2's NumPy wrote
    bvlc_alexnet.npy). Returns `path`."""
    if isinstance(item, np.ndarray) and item.dtype != object:
        np.save(path, item)
        return path
    array = np.empty((), object)
    array[()] = item
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(array, f, protocol=protocol)
    return path


def write_classes(root, counts, rng=None):
    """Folders of classes under `root`, `counts[name]` images each (every third in a nested folder), plus what must
    be ignored: hidden files and folders, a text file, a file at the top."""
    rng = rng or np.random.default_rng(0)
    for label, (name, count) in enumerate(counts.items()):
        (root / name / "nested").mkdir(parents=True, exist_ok=True)
        (root / name / ".thumbnails").mkdir(exist_ok=True)
        for n in range(count):
            sub = "nested/" if n % 3 == 0 else ""
            sample_dataset.stripes(label, len(counts), rng).save(root / name / f"{sub}{name}_{n}.jpg", quality=90)
        (root / name / "notes.txt").write_text("not an image")
        (root / name / ".hidden.jpg").write_bytes(b"not even a JPEG")
        (root / name / ".thumbnails" / "t.jpg").write_bytes(b"not even a JPEG")
    (root / "README.txt").write_text("my classes")
    (root / ".cache").mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tfds_data(tiny_data, tmp_path_factory):
    """tiny_data as TensorFlow Datasets prepares imagenet2012 (written by hand from its documented format): the
    label file in sorted-WNID order, 2 training shards and 1 validation shard of records (image, label, file_name)."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("tfds") / "imagenet2012" / "5.1.0"
    out.mkdir(parents=True)
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    wnids = sorted(s.wnid for s in synsets)
    (out / "label.labels.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))

    def record(path, label):
        feature = {
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[open(path, "rb").read()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[wnids.index(synsets[label].wnid)])),
            "file_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[os.path.basename(path).encode()])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    splits = []
    for name, (paths, labels), count in (
        ("train", data_reader.list_train(tiny_data, synsets), 2),
        ("validation", data_reader.list_val(tiny_data, synsets), 1),
    ):
        order = np.random.default_rng(0).permutation(len(paths)) if name == "train" else np.arange(len(paths))
        parts = np.array_split(order, count)
        for index, part in enumerate(parts):
            with tf.io.TFRecordWriter(str(out / f"imagenet2012-{name}.tfrecord-{index:05d}-of-{count:05d}")) as writer:
                for i in part:
                    writer.write(record(paths[i], labels[i]))
        splits.append({"name": name, "shardLengths": [str(len(part)) for part in parts], "numBytes": "0"})
    (out / "dataset_info.json").write_text(json.dumps({"name": "imagenet2012", "version": "5.1.0", "splits": splits}))
    return str(out)
