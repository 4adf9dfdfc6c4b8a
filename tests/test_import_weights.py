"""The BVLC import: generated files in the exact bvlc_alexnet.npy format (the real one cannot be downloaded here),
checked against a reference forward of Caffe's network written here with plain tf.nn ops, and through test.py on a
devkit whose class IDs are not in WNID order."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import IMAGENET_DEVKIT_VAL_IMAGES, flags, run_main, run_script, wnids_and_words, write_npy

import alexnet
import data_reader
from alexnet_tf import errors
import import_weights
from alexnet_tf import input_pipeline, preprocessing

# Caffe's bvlc_alexnet in TensorFlow's layout: conv weights HWIO, one group's input channels
SHAPES = {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
    "fc8": (4096, 1000),
}


def caffe_layers(seed=0):
    """Random weights of the real file's scale (He-initialised: activations of the 0..255 input's order, where
    Caffe's LRN with k = 1 normalises for real) and small biases."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, shape in SHAPES.items():
        fan_in = np.prod(shape[:-1])
        weights = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))
        layers[name] = [weights, rng.normal(0.1, 0.1, shape[-1]).astype(np.float32)]
    return layers


def reference_logits(layers, images):
    """Caffe's deploy network: conv1 11x11/4 without padding; LRN local_size 5, alpha 1e-4 (over 5), beta 0.75,
    k 1; two groups in conv2, conv4, conv5 as split inputs and kernels, concatenated outputs; fc6 on the
    height-width-channel flattening."""

    def conv(x, name, stride=1, padding="SAME", groups=1):
        weights, biases = layers[name]
        parts = [
            tf.nn.conv2d(x_part, w_part, stride, padding)
            for x_part, w_part in zip(tf.split(x, groups, axis=3), tf.split(weights, groups, axis=3))
        ]
        return tf.nn.relu(tf.concat(parts, axis=3) + biases)

    def lrn(x):
        return tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75)

    def pool(x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    x = pool(lrn(conv(tf.constant(images), "conv1", stride=4, padding="VALID")))
    x = pool(lrn(conv(x, "conv2", groups=2)))
    x = conv(conv(conv(x, "conv3"), "conv4", groups=2), "conv5", groups=2)
    x = tf.reshape(pool(x), [len(images), -1])
    x = tf.nn.relu(x @ layers["fc6"][0] + layers["fc6"][1])
    x = tf.nn.relu(x @ layers["fc7"][0] + layers["fc7"][1])
    return (x @ layers["fc8"][0] + layers["fc8"][1]).numpy()


@pytest.fixture(scope="module")
def imported(imagenet_devkit, tmp_path_factory):
    """A generated weight file and the run import_weights.py made of it."""
    work = tmp_path_factory.mktemp("imported")
    layers = caffe_layers()
    np.save(work / "bvlc_alexnet.npy", layers)
    result = run_main(
        "import_weights.py", work / "bvlc_alexnet.npy", *flags(ckpt_dir=work / "run", data_dir=imagenet_devkit)
    )
    assert result.returncode == 0, result.stderr
    return work, layers, result


def load_float32(run):
    with alexnet.precision("float32"):
        return alexnet.load_trained(str(run))


@pytest.mark.slow
def test_imported_logits_equal_the_reference_forward_class_by_class(imported):
    work, layers, result = imported
    assert "Imported 60,965,224 parameters" in result.stdout
    model, config = load_float32(work / "run")
    assert config.preprocessing == preprocessing.CAFFE
    images = np.random.default_rng(3).uniform(-128, 128, (2, 227, 227, 3)).astype(np.float32)
    ours, reference = model(images, training=False).numpy(), reference_logits(layers, images)
    caffe_order = sorted(wnid for wnid, _ in wnids_and_words())  # fc8's order in Caffe's file
    for row, entry in enumerate(config.classes):
        theirs = reference[:, caffe_order.index(entry.wnid)]
        np.testing.assert_allclose(ours[:, row], theirs, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
    assert np.abs(reference).max() > 1  # the activations survived eight layers: the comparison means something
    words = dict(wnids_and_words())
    assert all(entry.words == words[entry.wnid] for entry in config.classes)


def fc8_predicting(layers, features, wnids):
    """`layers` with fc8 the nearest neighbour among `features` (one a WNID): the logit of wnids[i] is
    -|f - features[i]|^2 up to a constant, so that the image of features[i] scores wnids[i] highest."""
    caffe_order = sorted(wnid for wnid, _ in wnids_and_words())
    weights, biases = np.zeros((4096, 1000), np.float32), np.full(1000, -1e3 * (features**2).sum(1).max(), np.float32)
    for feature, wnid in zip(features, wnids):
        weights[:, caffe_order.index(wnid)] = 2 * feature
        biases[caffe_order.index(wnid)] = -(feature**2).sum()
    return {**layers, "fc8": [weights, biases]}


@pytest.mark.slow
def test_test_py_matches_classes_by_wnid(imported, imagenet_devkit, tmp_path):
    work, layers, _ = imported
    model, config = load_float32(work / "run")
    synsets = data_reader.load_synsets(str(imagenet_devkit / data_reader.META_MAT))
    split = data_reader.read_split(str(imagenet_devkit), synsets, "val")
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)
    crops = input_pipeline.eval_dataset(split, spec=config.preprocessing, batch_size=IMAGENET_DEVKIT_VAL_IMAGES)
    features = fc7.predict(next(iter(crops))[0][:, 0], verbose=0)
    true_wnids = [synsets[label].wnid for label in split.labels]
    shuffled = list(np.random.default_rng(4).permutation(true_wnids))
    for name, wnids, expected in (("true", true_wnids, 1.0), ("shuffled", shuffled, 0.0)):
        np.save(tmp_path / f"{name}.npy", fc8_predicting(layers, features, wnids))
        run = tmp_path / name
        result = run_main("import_weights.py", tmp_path / f"{name}.npy", *flags(ckpt_dir=run, data_dir=imagenet_devkit))
        assert result.returncode == 0, result.stderr
        options = flags(
            ckpt_dir=run, data_dir=imagenet_devkit, crops="center", precision="float32", json=tmp_path / "r.json"
        )
        result = run_main("test.py", *options)
        assert result.returncode == 0, result.stderr
        scores = json.loads((tmp_path / "r.json").read_text())
        assert scores["images"] == IMAGENET_DEVKIT_VAL_IMAGES, name
        assert scores["top1"] == pytest.approx(expected, abs=0.1), name


@pytest.mark.slow
def test_classify_names_the_devkit_classes(imported):
    work, _, _ = imported
    result = run_main("classify.py", *flags(ckpt_dir=work / "run", top_k=3), "lussari.jpg")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "AlexNet saw:" and len(lines) == 4
    assert all(line.startswith("class ") and " - score: " in line for line in lines[1:])


def import_args(weights, ckpt_dir, **options):
    return import_weights.get_args_parser().parse_args(list(map(str, [weights, *flags(ckpt_dir=ckpt_dir, **options)])))


def small_layers(**changes):
    """Every layer but fc6..fc8 at its real shape (the checks stop at the first layer that does not fit)."""
    layers = {name: [np.zeros(shape, np.float32), np.zeros(shape[-1], np.float32)] for name, shape in SHAPES.items()}
    layers.update(fc6=[np.zeros((1, 1), np.float32)] * 2, **changes)
    return layers


def synset_words(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_import_refuses_files_that_are_not_caffe_alexnet(tmp_path):
    words = synset_words(tmp_path / "synset_words.txt", sorted(f"{w} {n}" for w, n in wnids_and_words()))
    single_tower = small_layers(conv2=[np.zeros((5, 5, 96, 256), np.float32), np.zeros(256, np.float32)])
    torchvision = {"features.0.weight": np.zeros((64, 3, 11, 11), np.float32)}
    cases = {
        "single_tower": (single_tower, "conv2 weights have shape (5, 5, 96, 256), not (5, 5, 48, 256)"),
        "torchvision": (torchvision, "has no layer conv1 (it has features.0.weight"),
        "not_pairs": (small_layers(conv1=np.zeros(3)), "conv1 is not [weights, biases]"),
        "array": (np.zeros((3, 3)), "holds a plain float64 array"),
        "fc6": (small_layers(), "fc6 weights have shape (1, 1), not (9216, 4096)"),
    }
    for name, (content, message) in cases.items():
        path = write_npy(tmp_path / f"{name}.npy", content)
        with pytest.raises(errors.DataError, match=re.escape(message)):
            import_weights.main(import_args(path, tmp_path / "run", classes=words))
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".staging-*"))


def test_import_refuses_class_files_that_are_not_caffe_s(tmp_path, imagenet_devkit):
    classes = sorted(f"{wnid} {words}" for wnid, words in wnids_and_words())
    other = sorted(f"{wnid} {words}" for wnid, words in wnids_and_words(1001)[1:])
    cases = {
        "short": (classes[:999], "has 999 classes, not 1000"),
        "unsorted": (classes[1:] + classes[:1], "not distinct and in sorted order"),
        "no_words": (classes[:5] + ["n01440764"] + classes[6:], "line 6: 'n01440764' is not `WNID words`"),
        "other": (other, "names other classes than"),
    }
    for name, (lines, message) in cases.items():
        path = synset_words(tmp_path / f"{name}.txt", lines)
        with pytest.raises(errors.DataError, match=re.escape(message)):
            args = import_args(tmp_path / "never_read.npy", tmp_path / "run", classes=path, data_dir=imagenet_devkit)
            import_weights.main(args)
    huge = synset_words(tmp_path / "huge.txt", classes * 80)
    with pytest.raises(errors.DataError, match="bytes, more than the 1,048,576 any real one has"):
        import_weights.main(import_args(tmp_path / "never_read.npy", tmp_path / "run", classes=huge))
    with pytest.raises(errors.UsageError, match="name the classes: --data-dir"):
        import_weights.main(import_args(tmp_path / "never_read.npy", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_crafted_pickle_is_refused_in_one_line_and_never_runs(tmp_path, one_line_error):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    np.save(tmp_path / "evil.npy", {"conv1": Payload()}, allow_pickle=True)
    words = synset_words(tmp_path / "synset_words.txt", sorted(f"{w} {n}" for w, n in wnids_and_words()))
    result = run_script("import_weights.py", tmp_path / "evil.npy", *flags(ckpt_dir=tmp_path / "run", classes=words))
    assert "refused, nothing of it was run: it names posix.system" in one_line_error(result)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_import_keeps_an_existing_run_unless_overwrite(tmp_path, one_step_run):
    words = synset_words(tmp_path / "synset_words.txt", sorted(f"{w} {n}" for w, n in wnids_and_words()))
    before = {path.name: path.read_bytes() for path in one_step_run.iterdir() if path.is_file()}
    with pytest.raises(errors.CheckpointError, match="already holds a run: pass --overwrite"):
        import_weights.main(import_args(tmp_path / "never_read.npy", one_step_run, classes=words))
    assert {path.name: path.read_bytes() for path in one_step_run.iterdir() if path.is_file()} == before
