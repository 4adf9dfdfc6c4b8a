"""Your own images: folders of classes (not ImageNet-shaped), their validation split, and fine-tuning from a run."""

import json
import os

import numpy as np
import pytest
from conftest import flags, run_main, run_script, write_classes
from PIL import Image

import alexnet
import data_reader
import train
from alexnet_tf import datasets, errors, train_options

CLASSES = ("Zebra", "apple", "cat")  # sorted: "Zebra" < "apple" < "cat", as sorted() and ImageFolder order them


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


@pytest.mark.parametrize("rule", datasets.SPLIT_RULES)
def test_the_validation_split_is_deterministic_and_disjoint(folders, rule):
    split = {"val_fraction": 0.25, "seed": 3, "split_rule": rule}
    train, val = read(folders, "train", **split), read(folders, "val", **split)
    assert read(folders, "val", **split) == val and read(folders, "train", **split) == train
    assert not set(train.paths) & set(val.paths)
    files = {c: datasets.nested_image_files(str(folders / c)) for c in CLASSES}
    assert sorted(train.paths + val.paths) == sorted(path for paths in files.values() for path in paths)
    assert all(os.path.basename(path).startswith(CLASSES[label]) for path, label in zip(val.paths, val.labels))
    assert any(f"{os.sep}nested{os.sep}" in path for path in train.paths + val.paths)
    assert read(folders, "val", **{**split, "seed": 4}) != val
    counts = [val.labels.count(label) for label in range(3)]
    if rule == "permutation":  # runs before name-hash: exactly the fraction of each class
        assert counts == [round(0.25 * len(files[c])) for c in CLASSES]
    else:  # each image with the chance val_fraction: 41 images give about 10
        assert 4 <= sum(counts) <= 18


def test_adding_or_removing_images_never_moves_another_between_training_and_validation(tmp_path):
    photos = write_classes(tmp_path / "photos", {"bus": 30, "car": 30, "train": 30})
    split = {"val_fraction": 0.2, "seed": 0}
    before = set(read(photos, "val", **split).paths)
    write_classes(tmp_path / "more", {"bus": 5, "car": 5, "train": 5})  # one more photo a class, and a few
    for new in (tmp_path / "more").glob("*/*.jpg"):
        new.rename(photos / new.parent.name / f"added_{new.name}")
    os.remove(sorted(before)[0])
    after = set(read(photos, "val", **split).paths)
    assert {path for path in after if "added_" not in path} == before - {sorted(before)[0]}
    drawn = set(read(photos, "val", **split, split_rule="permutation").paths)  # the old rule: the class is redrawn
    assert drawn - {path for path in drawn if "added_" in path} != before - {sorted(before)[0]}


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
    train, val = read(root, "train", val_fraction=0.5, seed=1), read(root, "val", val_fraction=0.5, seed=1)
    assert train.num_images + val.num_images == 6 and set(train.labels + val.labels) == {0, 1}


def test_prepared_shards_of_class_folders_hold_the_same_split(folders, tmp_path):
    from alexnet_tf import input_pipeline
    from alexnet_tf import prepared_shards

    prepared_shards.prepare(str(folders), str(tmp_path / "prepared"), train_shards=2, val_shards=1)
    assert [s.wnid for s in data_reader.load_classes(str(tmp_path / "prepared"))] == list(CLASSES)
    for part in ("train", "val"):
        prepared = read(tmp_path / "prepared", part)
        labels = sorted(int(label) for _, label in input_pipeline.encoded_images(prepared))
        assert labels == sorted(read(folders, part).labels), part


def test_a_class_named_train_and_a_class_folder_linked_from_elsewhere_are_classes(tmp_path):
    photos = write_classes(tmp_path / "photos", {"bus": 3, "car": 3, "train": 3})
    write_classes(tmp_path / "other-disk", {"tram": 3})
    os.symlink(tmp_path / "other-disk" / "tram", photos / "tram")
    assert [s.wnid for s in data_reader.load_classes(str(photos))] == ["bus", "car", "train", "tram"]
    listed = read(photos, "train").paths + read(photos, "val").paths
    assert sum(f"{os.sep}tram{os.sep}" in path for path in listed) == 3


def test_a_folder_of_your_own_gets_the_learning_rate_scaled_with_the_batch(training_config):
    args = train.get_args_parser().parse_args(["-scratch", "--batch-size", "8"])
    options = train_options.resolve(args)
    assert options.settings.lr == 0.01  # the paper's, kept for ILSVRC2012's 1000 classes
    assert options.settings_for(1000).lr == 0.01 and options.settings_for(3).lr == 0.01 * 8 / 128
    assert train_options.resolve(train.get_args_parser().parse_args(["-scratch"])).settings_for(3).lr == 1e-3
    for given in (["--lr", "0.005"], ["--sample"]):  # asked for, or --sample's own
        options = train_options.resolve(train.get_args_parser().parse_args(["-scratch", "--batch-size", "8", *given]))
        assert options.settings_for(3) == options.settings


@pytest.mark.slow
def test_training_three_small_classes_from_scratch_with_the_defaults_does_not_diverge(tmp_path):
    """The case that diverged at the paper's 0.01: 3 classes of 30 images, batch 8 (a NaN loss stops train.py)."""
    photos = write_classes(tmp_path / "photos", {"bus": 30, "car": 30, "tram": 30})
    result = run_script(
        "train.py", "-scratch", *flags(data_dir=photos, ckpt_dir=tmp_path / "run", epochs=2, batch_size=8), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Learning rate 0.000625 for 3 classes of your own at batch 8" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["settings"]["lr"] == 0.000625
