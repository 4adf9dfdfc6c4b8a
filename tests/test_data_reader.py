import os
import shutil

import pytest
import scipy.io
from PIL import Image

import data_reader
from alexnet_tf import errors, sample_dataset


def test_load_synsets_gives_leaves_in_id_order(small_devkit):
    synsets = data_reader.load_synsets(str(small_devkit / "data" / "meta.mat"))
    assert [(s.ilsvrc_id, s.wnid, s.words) for s in synsets] == [
        (1, "n03000000", "kit fox"),
        (2, "n02000000", "alp"),
        (3, "n01000000", "zebra"),
    ]


def test_list_train_labels_are_ids_minus_one(small_devkit):
    synsets = data_reader.load_synsets(str(small_devkit / "data" / "meta.mat"))
    paths, labels = data_reader.list_train(str(small_devkit), synsets)
    assert [(os.path.basename(os.path.dirname(p)), label) for p, label in zip(paths, labels)] == [
        ("n03000000", 0),
        ("n03000000", 0),
        ("n02000000", 1),
        ("n01000000", 2),
        ("n01000000", 2),
        ("n01000000", 2),
    ]


def test_list_val_reads_the_ground_truth_in_file_name_order(small_devkit):
    synsets = data_reader.load_synsets(str(small_devkit / "data" / "meta.mat"))
    os.makedirs(small_devkit / data_reader.VAL_DIR)
    for n in (3, 1, 2):
        Image.new("RGB", (40, 30)).save(small_devkit / data_reader.VAL_DIR / data_reader.VAL_NAME.format(n))
    (small_devkit / data_reader.GROUND_TRUTH).write_text("3\n1\n2\n")
    paths, labels = data_reader.list_val(str(small_devkit), synsets)
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
    assert sorted(zip(map(os.path.basename, flat[0]), flat[1])) == sorted(
        zip(map(os.path.basename, split[0]), split[1])
    )


def test_ground_truth_of_another_length_is_refused(tiny_data, tmp_path):
    shutil.copytree(tiny_data, tmp_path / "d")
    gt = tmp_path / "d" / data_reader.GROUND_TRUTH
    gt.write_text(gt.read_text() + "1\n")
    synsets = data_reader.load_synsets(str(tmp_path / "d" / data_reader.META_MAT))
    with pytest.raises(errors.DataError, match="lines but"):
        data_reader.list_val(str(tmp_path / "d"), synsets)


def test_missing_files_are_named_with_their_fix(training_config, tmp_path):
    with pytest.raises(errors.DataError, match="meta.mat not found at .*devkit"):
        data_reader.load_synsets(str(tmp_path / "data" / "meta.mat"))
    with pytest.raises(errors.DataError, match=f"{tmp_path}.*--data-dir"):
        data_reader.list_train(str(tmp_path), [])
    with pytest.raises(errors.DataError, match="not found"):
        sample_dataset.data_dir_for(str(tmp_path / "nowhere"), sample=False)
    moved = training_config().replace(data_dir=str(tmp_path / "moved"))  # a run whose dataset folder has moved since
    with pytest.raises(errors.DataError, match=f"run's dataset folder {moved.data_dir} .*config.json.*--data-dir"):
        sample_dataset.data_dir_for(None, sample=False, run=moved)
    assert sample_dataset.data_dir_for(str(tmp_path), sample=False, run=moved) == str(tmp_path)


def test_sample_is_in_the_ilsvrc_layout(tiny_data):
    meta = scipy.io.loadmat(os.path.join(tiny_data, data_reader.META_MAT), squeeze_me=True)["synsets"]
    devkit_fields = "ILSVRC2012_ID WNID words gloss num_children children wordnet_height num_train_images"
    assert set(meta.dtype.names) == set(devkit_fields.split())
    assert sum(int(n) > 0 for n in meta["num_children"]) == len(sample_dataset.INTERNAL)
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    assert [s.wnid for s in synsets] != sorted(s.wnid for s in synsets)
    train_paths, train_labels = data_reader.list_train(tiny_data, synsets)
    val_paths, val_labels = data_reader.list_val(tiny_data, synsets)
    assert len(train_paths) == 40 and len(val_paths) == 20 and sorted(set(val_labels)) == list(range(10))
    images = [Image.open(p) for p in train_paths + val_paths]
    assert {image.format for image in images} == {"JPEG"}
    assert {image.mode for image in images} == {"RGB", "L"}
    assert len({image.size for image in images}) > 30


def test_the_sample_goes_only_into_a_missing_or_empty_folder(tmp_path):
    half_extracted = tmp_path / "ILSVRC2012"
    (half_extracted / data_reader.TRAIN_DIR).mkdir(parents=True)
    with pytest.raises(errors.DataError, match=f"{half_extracted} holds files but no .*meta.mat"):
        sample_dataset.data_dir_for(str(half_extracted), sample=True)
    assert [path.name for path in half_extracted.iterdir()] == [data_reader.TRAIN_DIR]
    (tmp_path / "empty").mkdir()
    assert sample_dataset.data_dir_for(str(tmp_path / "empty"), sample=True) == str(tmp_path / "empty")
    assert os.path.isfile(tmp_path / "empty" / data_reader.META_MAT)


def test_a_sample_stopped_half_way_leaves_nothing_and_is_generated_again(tmp_path, monkeypatch):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(sample_dataset, "write_meta_mat", ctrl_c)  # the last file the sample writes
        with pytest.raises(KeyboardInterrupt):
            sample_dataset.data_dir_for(str(tmp_path / "sample"), sample=True)
    assert list(tmp_path.iterdir()) == []
    assert sample_dataset.data_dir_for(str(tmp_path / "sample"), sample=True) == str(tmp_path / "sample")
    assert os.path.isfile(tmp_path / "sample" / data_reader.META_MAT) and len(list(tmp_path.iterdir())) == 1
