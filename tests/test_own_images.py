"""Your own images: folders of classes (not ImageNet-shaped), their validation split, and fine-tuning from a run."""

import json
import os

import numpy as np
import pytest
from conftest import flags, run_main, run_script
from PIL import Image

import alexnet
import data_reader
from alexnet_tf import errors, sample_dataset

CLASSES = ("Zebra", "apple", "cat")  # sorted: "Zebra" < "apple" < "cat", as sorted() and ImageFolder order them


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


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_classes(tmp_path_factory.mktemp("mine") / "photos", dict(zip(CLASSES, (12, 9, 20))))


def read(root, part, **split):
    return data_reader.read_split(str(root), data_reader.load_classes(str(root)), part, **split)


def test_class_folders_are_recognised_and_named_in_sorted_order(folders, tiny_data, prepared_data, tmp_path):
    assert data_reader.is_class_folders(str(folders))
    assert not data_reader.is_class_folders(tiny_data) and not data_reader.is_class_folders(prepared_data)
    assert [(s.wnid, s.words) for s in data_reader.load_classes(str(folders))] == [(c, c) for c in CLASSES]
    incomplete = tmp_path / "ILSVRC2012"
    (incomplete / data_reader.TRAIN_DIR / "n01440764").mkdir(parents=True)
    (incomplete / data_reader.VAL_DIR).mkdir()
    with pytest.raises(errors.DataError, match="meta.mat not found"):
        data_reader.load_classes(str(incomplete))


def test_the_validation_split_is_deterministic_disjoint_and_stratified(folders):
    split = {"val_fraction": 0.25, "seed": 3}
    train, val = read(folders, "train", **split), read(folders, "val", **split)
    assert read(folders, "val", **split) == val and read(folders, "train", **split) == train
    assert not set(train.paths) & set(val.paths)
    files = {c: data_reader.nested_image_files(str(folders / c)) for c in CLASSES}
    assert sorted(train.paths + val.paths) == sorted(path for paths in files.values() for path in paths)
    assert all(os.path.basename(path).startswith(CLASSES[label]) for path, label in zip(val.paths, val.labels))
    assert [val.labels.count(label) for label in range(3)] == [round(0.25 * len(files[c])) for c in CLASSES]
    assert any(f"{os.sep}nested{os.sep}" in path for path in train.paths + val.paths)
    assert read(folders, "val", val_fraction=0.25, seed=4) != val


def test_train_and_val_folders_are_read_as_given(tmp_path):
    root = tmp_path / "photos"
    write_classes(root / "train", {"a": 4, "b": 4})
    write_classes(root / "val", {"a": 2, "b": 3})
    val = read(root, "val")
    assert val.labels == [0, 0, 1, 1, 1] and all(f"{os.sep}val{os.sep}" in path for path in val.paths)
    write_classes(root / "train", {"c": 2})
    with pytest.raises(errors.DataError, match=r"class c is in .*train but not in .*val: give both splits"):
        data_reader.load_classes(str(root))


def test_folders_that_cannot_train_are_refused(tmp_path):
    one = write_classes(tmp_path / "one", {"only": 3})
    with pytest.raises(errors.DataError, match="has 1 class folder"):
        data_reader.load_classes(str(one))
    empty = write_classes(tmp_path / "empty", {"a": 3, "b": 0})
    with pytest.raises(errors.DataError, match="class b has 0 image"):
        read(empty, "train")


def test_fine_tuning_mistakes_are_one_line_errors(folders, tmp_path, one_step_run, one_line_error):
    common = ("train.py", "-scratch", *flags(data_dir=folders, ckpt_dir=tmp_path / "ft", log_dir=tmp_path / "logs"))
    assert "--init-from: no trained run at" in one_line_error(run_main(*common, "--init-from", tmp_path))
    mistakes = one_line_error(run_main(*common, *flags(init_from=one_step_run, train_layers="fc8,fc9")))
    assert "--train-layers fc8,fc9: name layers of conv1," in mistakes
    assert not (tmp_path / "ft").exists()


@pytest.mark.slow
def test_fine_tuning_fc8_alone_keeps_the_rest_bit_identical_and_resumes(folders, tmp_path, one_step_run):
    options = flags(data_dir=folders, ckpt_dir=tmp_path / "ft", log_dir=tmp_path / "logs", batch_size=8)
    result = run_script(
        "train.py", "-scratch", *options, *flags(init_from=one_step_run, train_layers="fc8", epochs=1, save_every=2)
    )
    assert result.returncode == 0, result.stderr
    assert "fc8 keeps the rows of 0 of the 3 classes" in result.stdout
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    source_config = json.loads((one_step_run / "config.json").read_text())
    assert config["preprocessing"] == source_config["preprocessing"] and config["architecture"]["num_classes"] == 3
    assert config["settings"]["lr"] == 1e-3 and config["settings"]["train_layers"] == "fc8"
    resumed = run_script("train.py", "-resume", *options, "--epochs", 2)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout
    source, _ = alexnet.load_trained(str(one_step_run))
    tuned, _ = alexnet.load_trained(str(tmp_path / "ft"))
    for name in alexnet.LAYER_NAMES[:-1]:
        for ours, theirs in zip(tuned.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            assert np.array_equal(ours, theirs), name
    assert np.abs(tuned.get_layer("fc8").get_weights()[1]).max() > 0  # fc8 learnt: its biases start at 0
    classify = run_main("classify.py", *flags(ckpt_dir=tmp_path / "ft", top_k=2), "lussari.jpg")
    assert classify.returncode == 0, classify.stderr
    names = [line.split(" - score: ")[0] for line in classify.stdout.strip().splitlines()[1:]]
    assert len(names) == 2 and set(names) <= set(CLASSES)


def test_a_grayscale_png_class_folder_reads(tmp_path):
    root = tmp_path / "kinds"
    for name, mode in (("gray", "L"), ("colour", "RGB")):
        (root / name).mkdir(parents=True)
        for n in range(3):
            Image.new(mode, (40, 30), 100 + n).save(root / name / f"{n}.png")
    assert read(root, "train").num_images == 4 and read(root, "val").num_images == 2


def test_prepared_shards_of_class_folders_hold_the_same_split(folders, tmp_path):
    from alexnet_tf import input_pipeline
    from alexnet_tf import prepared_shards

    prepared_shards.prepare(str(folders), str(tmp_path / "prepared"), train_shards=2, val_shards=1)
    assert [s.wnid for s in data_reader.load_classes(str(tmp_path / "prepared"))] == list(CLASSES)
    for part in ("train", "val"):
        prepared = read(tmp_path / "prepared", part)
        labels = sorted(int(label) for _, label in input_pipeline.encoded_images(prepared))
        assert labels == sorted(read(folders, part).labels), part
