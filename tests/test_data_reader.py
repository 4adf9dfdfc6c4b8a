import itertools
import os
import shutil

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

import data_reader


def write_meta_mat(path, rows):
    """A devkit-shaped meta.mat from (ILSVRC2012_ID, WNID, words, children) rows, in the given order."""
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.zeros((len(rows), 1), dtype=[(name, object) for name in fields])
    for i, (ilsvrc_id, wnid, words, children) in enumerate(rows):
        synsets[i, 0] = (float(ilsvrc_id), wnid, words, "gloss", float(len(children)),
                         np.array(children, dtype=float).reshape(1, -1), 0.0, 1.0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {"synsets": synsets})


# Leaf IDs deliberately not in sorted-WNID order, internal synsets interleaved, rows not in ID order.
DEVKIT_ROWS = [(4, "n00000001", "internal a", (2, 3)), (3, "n01000000", "zebra", ()),
               (1, "n03000000", "kit fox", ()), (5, "n00000002", "internal b", (1,)), (2, "n02000000", "alp", ())]


@pytest.fixture
def devkit(tmp_path):
    write_meta_mat(str(tmp_path / "data" / "meta.mat"), DEVKIT_ROWS)
    for wnid, count in (("n03000000", 2), ("n02000000", 1), ("n01000000", 3)):
        os.makedirs(tmp_path / data_reader.TRAIN_DIR / wnid)
        for n in range(count):
            Image.new("RGB", (40, 30)).save(tmp_path / data_reader.TRAIN_DIR / wnid / f"{wnid}_{n}.JPEG")
    return tmp_path


def test_load_synsets_gives_leaves_in_id_order(devkit):
    synsets = data_reader.load_synsets(str(devkit / "data" / "meta.mat"))
    assert [(s.ilsvrc_id, s.wnid, s.words) for s in synsets] == [
        (1, "n03000000", "kit fox"), (2, "n02000000", "alp"), (3, "n01000000", "zebra")]


def test_list_train_labels_are_ids_minus_one(devkit):
    synsets = data_reader.load_synsets(str(devkit / "data" / "meta.mat"))
    paths, labels = data_reader.list_train(str(devkit), synsets)
    assert [(os.path.basename(os.path.dirname(p)), label) for p, label in zip(paths, labels)] == [
        ("n03000000", 0), ("n03000000", 0), ("n02000000", 1), ("n01000000", 2), ("n01000000", 2), ("n01000000", 2)]


def test_list_val_reads_the_ground_truth_in_file_name_order(devkit):
    synsets = data_reader.load_synsets(str(devkit / "data" / "meta.mat"))
    os.makedirs(devkit / data_reader.VAL_DIR)
    for n in (3, 1, 2):
        Image.new("RGB", (40, 30)).save(devkit / data_reader.VAL_DIR / data_reader.VAL_NAME.format(n))
    (devkit / data_reader.GROUND_TRUTH).write_text("3\n1\n2\n")
    paths, labels = data_reader.list_val(str(devkit), synsets)
    assert [os.path.basename(p) for p in paths] == [data_reader.VAL_NAME.format(n) for n in (1, 2, 3)]
    assert labels == [2, 0, 1]


def test_split_val_folder_gives_the_same_labels_as_the_flat_one(tiny_data, tmp_path):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    flat = data_reader.list_val(tiny_data, synsets)
    split_dir = tmp_path / "split"
    shutil.copytree(os.path.join(tiny_data, "data"), split_dir / "data")
    for path, label in zip(*flat):
        os.makedirs(split_dir / data_reader.VAL_DIR / synsets[label].wnid, exist_ok=True)
        shutil.copy(path, split_dir / data_reader.VAL_DIR / synsets[label].wnid)
    os.remove(split_dir / data_reader.GROUND_TRUTH)  # valprep.sh's layout needs no ground-truth file
    split = data_reader.list_val(str(split_dir), synsets)
    assert sorted(zip(map(os.path.basename, flat[0]), flat[1])) == sorted(zip(map(os.path.basename, split[0]),
                                                                              split[1]))


def test_ground_truth_of_another_length_is_refused(tiny_data, tmp_path):
    shutil.copytree(tiny_data, tmp_path / "d")
    gt = tmp_path / "d" / data_reader.GROUND_TRUTH
    gt.write_text(gt.read_text() + "1\n")
    synsets = data_reader.load_synsets(str(tmp_path / "d" / data_reader.META_MAT))
    with pytest.raises(data_reader.DataError, match="lines but"):
        data_reader.list_val(str(tmp_path / "d"), synsets)


def test_missing_files_are_named_with_their_fix(tmp_path):
    with pytest.raises(data_reader.DataError, match="meta.mat not found at .*devkit"):
        data_reader.load_synsets(str(tmp_path / "data" / "meta.mat"))
    with pytest.raises(data_reader.DataError, match=f"{tmp_path}.*--data-dir"):
        data_reader.list_train(str(tmp_path), [])
    with pytest.raises(data_reader.DataError, match="not found"):
        data_reader.resolve_data_dir(str(tmp_path / "nowhere"), sample=False)


def test_sample_is_in_the_ilsvrc_layout(tiny_data):
    meta = scipy.io.loadmat(os.path.join(tiny_data, data_reader.META_MAT), squeeze_me=True)["synsets"]
    assert set(meta.dtype.names) == {"ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
                                     "wordnet_height", "num_train_images"}
    assert sum(int(n) > 0 for n in meta["num_children"]) == len(data_reader.SAMPLE_INTERNAL)
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    assert [s.wnid for s in synsets] != sorted(s.wnid for s in synsets)
    train_paths, train_labels = data_reader.list_train(tiny_data, synsets)
    val_paths, val_labels = data_reader.list_val(tiny_data, synsets)
    assert len(train_paths) == 40 and len(val_paths) == 20 and sorted(set(val_labels)) == list(range(10))
    images = [Image.open(p) for p in train_paths + val_paths]
    assert {image.format for image in images} == {"JPEG"}
    assert {image.mode for image in images} == {"RGB", "L"}
    assert len({image.size for image in images}) > 30


def test_decode_gives_rgb_for_grayscale_png_and_cmyk(tmp_path):
    Image.new("L", (30, 20), 77).save(tmp_path / "gray.JPEG")
    Image.new("RGB", (30, 20), (10, 200, 30)).save(tmp_path / "png.JPEG", format="PNG")
    Image.new("CMYK", (30, 20), (0, 255, 0, 0)).save(tmp_path / "cmyk.JPEG")
    for name, colour in (("gray", (77, 77, 77)), ("png", (10, 200, 30)), ("cmyk", (255, 0, 255))):
        image = data_reader.decode_rgb(tf.io.read_file(str(tmp_path / f"{name}.JPEG"))).numpy()
        assert image.shape == (20, 30, 3)
        np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), colour, atol=3, err_msg=name)


def test_training_batches_shapes_dtypes_and_mean(tiny_data):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    split = data_reader.read_split(tiny_data, synsets, "train")
    batches = [data_reader.train_dataset(split, mean, 8, 2, 0, 1, augment="none")
               for mean in ([0.0, 0.0, 0.0], [10.0, 20.0, 30.0])]
    for (plain, plain_labels), (centred, labels_) in zip(*batches):
        assert plain.shape == (8, 224, 224, 3) and plain.dtype == tf.float32
        assert plain_labels.dtype == tf.int32 and set(plain_labels.numpy()) <= set(range(10))
        np.testing.assert_array_equal(plain_labels, labels_)
        np.testing.assert_allclose(plain - centred, np.broadcast_to([10.0, 20.0, 30.0], plain.shape), atol=1e-4)


@pytest.fixture(params=["folder", "prepared"])
def train_split(request):
    """The tiny training set, as image files and as prepared shards."""
    data_dir = request.getfixturevalue({"folder": "tiny_data", "prepared": "prepared_data"}[request.param])
    synsets = data_reader.load_synsets(os.path.join(data_dir, data_reader.META_MAT))
    return data_reader.read_split(data_dir, synsets, "train")


def test_a_resumed_stream_continues_the_uninterrupted_one(train_split):
    whole = list(data_reader.train_dataset(train_split, [0.0] * 3, 4, 5, 0, 2, seed=3))
    resumed = list(data_reader.train_dataset(train_split, [0.0] * 3, 4, 5, 0, 2, seed=3, skip_batches=3))
    assert len(whole) == 10 and len(resumed) == 7
    for (x, y), (x_resumed, y_resumed) in zip(whole[3:], resumed):
        np.testing.assert_array_equal(y, y_resumed)
        np.testing.assert_array_equal(x, x_resumed)
    first_epoch = np.concatenate([y for _, y in whole[:5]])
    second_epoch = np.concatenate([y for _, y in whole[5:]])
    assert not np.array_equal(first_epoch, second_epoch)  # reshuffled every epoch


def test_input_pipelines_of_workers_read_every_image_once_an_epoch(train_split):
    read = [element for pipeline in range(2)
            for element in data_reader.train_elements(train_split, 8, 5, 0, 2, seed=1, pipeline=pipeline, pipelines=2)
            .as_numpy_iterator()]
    for epoch in (0, 1):
        images = [item for item, _, element_epoch, _ in read if element_epoch == epoch]
        positions = sorted(position for _, _, element_epoch, position in read if element_epoch == epoch)
        assert len(images) == len(set(images)) == train_split.num_images == 40
        assert positions == list(range(40))
    uninterrupted = list(data_reader.train_elements(train_split, 8, 5, 0, 2, seed=1, pipeline=1, pipelines=2)
                         .as_numpy_iterator())
    resumed = list(data_reader.train_elements(train_split, 8, 5, 0, 2, seed=1, skip_batches=3, pipeline=1,
                                              pipelines=2).as_numpy_iterator())
    assert [(epoch, position) for *_, epoch, position in resumed] == \
        [(epoch, position) for *_, epoch, position in uninterrupted[3 * 4:]]


def test_workers_read_their_own_prepared_shards():
    sizes = [101, 99, 100, 100, 98, 102, 100, 100]
    for epoch in (0, 1):
        plans = [data_reader._shard_plan(sizes, 800, epoch, epoch + 1, seed=1, skip=0, part=part, parts=4)
                 for part in range(4)]
        shards = [set(shard) for shard, *_ in plans]
        assert all(sum(end - start) == 200 for _, _, start, end, *_ in plans)
        assert all(2 <= len(read) <= 3 for read in shards)  # two shards' worth each, and its share of a boundary
        assert sum(len(a & b) for n, a in enumerate(shards) for b in shards[n + 1:]) <= 3  # boundaries only
        whole_epoch = data_reader._shard_plan(sizes, 800, epoch, epoch + 1, seed=1, skip=0)
        assert list(whole_epoch[0]) == [shard for shard, _ in itertools.groupby(np.concatenate([p[0] for p in plans]))]


def test_eval_crop_modes(tiny_data):
    path = os.path.join(tiny_data, data_reader.VAL_DIR, data_reader.VAL_NAME.format(1))
    crops = {mode: data_reader.load_image_crops(path, [0.0] * 3, mode, 3, seed=1).numpy()
             for mode in data_reader.EVAL_CROPS}
    assert crops["random"].shape == (3, 224, 224, 3)
    assert crops["center"].shape == (1, 224, 224, 3)
    assert crops["ten"].shape == (10, 224, 224, 3)
    np.testing.assert_array_equal(crops["ten"][5:], crops["ten"][:5, :, ::-1])
    assert not np.array_equal(crops["random"][0], crops["random"][1])
    np.testing.assert_array_equal(crops["random"],
                                  data_reader.load_image_crops(path, [0.0] * 3, "random", 3, seed=1).numpy())


def test_compute_mean_of_solid_images(tmp_path):
    paths = []
    for n, colour in enumerate(((10, 20, 30), (30, 40, 50))):
        Image.new("RGB", (300, 260), colour).save(tmp_path / f"{n}.png")
        paths.append(str(tmp_path / f"{n}.png"))
    split = data_reader.Split(paths, [0] * len(paths), None)
    np.testing.assert_allclose(data_reader.compute_mean(split), [20, 30, 40], atol=0.5)


def test_pca_lighting_moves_along_the_eigenvectors():
    offset = data_reader.pca_lighting_offset(tf.constant([1, 2], tf.int64)).numpy()
    assert offset.shape == (3,) and 0 < np.abs(offset).max() < 30
    alphas = np.linalg.solve(np.array(data_reader.PCA_EIGENVECTORS) * 255, offset) / data_reader.PCA_EIGENVALUES
    assert np.all(np.abs(alphas) < 0.5)  # a draw of N(0, 0.1)


def test_paper_augmentation_mirrors_and_shifts_the_plain_crop(tiny_data):
    encoded = tf.io.read_file(os.path.join(tiny_data, data_reader.VAL_DIR, data_reader.VAL_NAME.format(1)))
    mean = tf.constant([10.0, 20.0, 30.0])
    for draw in range(4):
        seed = tf.constant([draw, 7], tf.int64)
        plain = data_reader.train_crop(encoded, mean, "none", seed)
        _, flip_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        mirror = tf.random.stateless_uniform([], flip_seed) < 0.5
        expected = (tf.where(mirror, plain[:, ::-1], plain) + data_reader.pca_lighting_offset(lighting_seed))
        np.testing.assert_allclose(data_reader.train_crop(encoded, mean, "paper", seed), expected, atol=1e-3)
