"""The scripts as a user runs them: the trio end to end on the tiny sample (train -scratch, -resume, test.py,
classify.py), their one-line errors, --help's defaults and TensorFlow's quiet start-up. The training recipe under
train.py is test_training.py's."""

import dataclasses
import json
import os
import re
import shutil

import pytest
import tensorflow as tf
from PIL import Image

import alexnet
from alexnet_tf import preprocessing, run_config, run_folder, train_options, training
from conftest import ROOT, SCRIPT_ENV, flags, run_main, run_script, run_script_in_a_terminal

TINY_TRAIN = ("--epochs", 1, "--batch-size", 8, "--save-every", 2)  # 40 images: 5 steps an epoch


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A run of one epoch at a terminal, its TensorBoard logs outside the run, then resumed for a second into a log
    file (a pipe), without --data-dir or --log-dir (the run's own): (run folder, both processes)."""
    work = tmp_path_factory.mktemp("run")
    logs = ("--log-dir", work / "logs")
    scratch = run_script_in_a_terminal(
        "train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", "ckpt", *logs, *TINY_TRAIN, cwd=work
    )
    resumed = run_script("train.py", "-resume", "--ckpt-dir", "ckpt", "--epochs", 2, cwd=work)
    return work, scratch, resumed


@pytest.mark.slow
def test_scratch_trains_saves_and_logs(trained):
    work, scratch, _ = trained
    assert scratch.returncode == 0, scratch.stderr
    config = json.loads((work / "ckpt" / "config.json").read_text())
    assert config["architecture"] == dataclasses.asdict(run_config.Architecture(num_classes=10))
    assert config["classes"][0] == {"wnid": "n09193705", "words": "alp"}
    mean = config["preprocessing"]["mean"]
    assert config["preprocessing"] == preprocessing.Preprocessing(mean=mean).to_config()
    assert len(mean) == 3 and all(0 < m < 255 for m in mean)
    assert config["settings"]["steps_per_epoch"] == 5 and config["settings"]["batch_size"] == 8
    progress = re.sub(r"\x1b\[[0-9;]*m", "", scratch.stdout).replace("\r", "\n")  # Keras colours and redraws its bar
    assert re.search(r"^5/5 .* - lr: 6\.2500e-04 - img/s: [\d.]+ - val_loss: .* - val_top1: ", progress, re.M), progress
    assert os.listdir(work / "logs" / "train") and os.listdir(work / "logs" / "validation")


@pytest.mark.slow
def test_resume_continues_at_the_saved_step(trained):
    work, _, resumed = trained
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""  # TensorFlow quiet, oneDNN's complaint about uint8 (the EXIF turn) included
    assert re.search(r"^Resuming from \S+ckpt-5 at step 5 \(epoch 2\)$", resumed.stdout, re.M), resumed.stdout
    assert "Training on 40 images, validating on 20" in resumed.stdout  # the run's dataset, not ILSVRC2012
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/" not in resumed.stdout
    training = resumed.stdout[resumed.stdout.index("Training on") :]
    assert not {"\x1b", "\r", "\b"} & set(training)  # into a log file: plain lines, no bar redrawn in place
    line = (
        r"^5/5 - \d+s - .* - loss: [\d.]+ - .* - val_loss: [\d.]+ - .* - lr: 6\.2500e-04 - images_per_second: [\d.]+ - "
    )
    assert re.search(line, training, re.M), training
    assert "when the run started" not in resumed.stdout  # the sets did not change
    assert tf.train.latest_checkpoint(str(work / "ckpt")).endswith("ckpt-10")
    assert len(os.listdir(work / "logs" / "train")) == 2  # -scratch's events and -resume's, in the run's --log-dir
    assert not (work / "ckpt" / run_folder.LOGS_NAME).exists()


@pytest.mark.slow
def test_test_py_reports_top1_and_topk(trained, tiny_data):
    work, _, _ = trained
    result = run_script(
        "test.py",
        *flags(ckpt_dir=work / "ckpt", limit=12, k_crops=2, top_k=3, json=work / "new" / "results.json"),
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    top1, topk = result.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"Top-1 accuracy: \d+\.\d\d% error: \d+\.\d\d%", top1)
    assert re.fullmatch(r"Top-3 accuracy: \d+\.\d\d% error: \d+\.\d\d%", topk)
    results = json.loads((work / "new" / "results.json").read_text())  # its folder made
    assert results["images"] == 12 and results["k_crops"] == 2
    assert f"{100 * results['top1']:.2f}%" in top1 and results["topk"] >= results["top1"]


@pytest.mark.slow
def test_classify_prints_what_alexnet_saw(trained):
    work, _, _ = trained
    result = run_script("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", work / "ckpt", cwd=work)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-6] == "AlexNet saw:"
    config = json.loads((work / "ckpt" / "config.json").read_text())
    names = {c["words"] for c in config["classes"]}
    scores = []
    for line in lines[-5:]:
        words, score = re.fullmatch(r"(.+) - score: (\S+)", line).groups()
        assert words in names
        scores.append(float(score))
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6


@pytest.mark.slow
def test_classify_takes_several_images_and_names_the_unreadable_ones(trained, tmp_path):
    work, _, _ = trained
    colour, gray, broken = tmp_path / "colour.jpg", tmp_path / "gray.png", tmp_path / "broken.jpg"
    shutil.copy(os.path.join(ROOT, "lussari.jpg"), colour)
    Image.open(colour).convert("L").save(gray)
    broken.write_text("not an image")
    ckpt = ("--ckpt-dir", work / "ckpt", "--crops", "center")
    result = run_main("classify.py", colour, broken, gray, *ckpt, cwd=work)
    assert result.returncode == 2, result.stderr
    skipped, error = result.stderr.strip().splitlines()
    assert skipped.startswith(f"classify.py: skipped: cannot read {broken} as an image")
    assert error == "classify.py: error: 1 of 3 images could not be read (named above)"
    blocks = [block.splitlines() for block in result.stdout.strip().split("\n\n")]
    assert [block[0] for block in blocks] == [str(colour), str(gray)]
    for image, block in zip((colour, gray), blocks):
        alone = run_main("classify.py", image, *ckpt, cwd=work)
        assert alone.returncode == 0 and alone.stdout.strip().splitlines() == block[1:]


@pytest.mark.slow
def test_user_mistakes_are_one_line_errors(tiny_data, tmp_path, one_line_error):
    assert "-scratch" in one_line_error(run_script("train.py", cwd=tmp_path))
    assert str(tmp_path / "nowhere") in one_line_error(
        run_main("train.py", "-scratch", "--data-dir", tmp_path / "nowhere", cwd=tmp_path)
    )
    assert "-scratch" in one_line_error(
        run_main("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "none", cwd=tmp_path)
    )
    assert not (tmp_path / "none").exists()  # a mistyped --ckpt-dir creates nothing
    assert str(tmp_path / "none") in one_line_error(
        run_main("test.py", "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "none", cwd=tmp_path)
    )
    assert str(tmp_path / "none") in one_line_error(
        run_main("classify.py", "lussari.jpg", "--ckpt-dir", tmp_path / "none", cwd=tmp_path)
    )


COUNT_FLAGS = [
    (("test.py",), "--k-crops", 0),
    (("test.py",), "--top-k", 0),
    (("test.py",), "--batch-size", 0),
    (("test.py",), "--limit", -5),
    (("classify.py", "lussari.jpg"), "--top-k", 0),
    (("classify.py", "lussari.jpg"), "--k-crops", -3),
    (("export.py", "out"), "--top-k", 0),
    (("prepare_data.py", "--prepare", "ILSVRC2012", "out"), "--train-shards", 0),
    (("prepare_data.py", "--prepare", "ILSVRC2012", "out"), "--val-shards", -1),
    (("prepare_data.py", "--make-sample", "out"), "--train-per-class", 0),
    (("prepare_data.py", "--make-sample", "out"), "--val-per-class", -1),
]


@pytest.mark.parametrize(("command", "flag", "value"), COUNT_FLAGS)
def test_counts_below_one_are_one_line_errors_before_anything_is_read(command, flag, value, tmp_path, one_line_error):
    shutil.copy(os.path.join(ROOT, "lussari.jpg"), tmp_path)
    (tmp_path / "ILSVRC2012").mkdir()
    error = one_line_error(run_main(*command, flag, value, cwd=tmp_path))
    assert error.endswith(f"{flag} {value} cannot work: it must be at least 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [("test.py",), ("classify.py", "lussari.jpg")])
def test_k_crops_with_fixed_crops_is_a_one_line_error(command, tmp_path, one_line_error):
    shutil.copy(os.path.join(ROOT, "lussari.jpg"), tmp_path)
    for crops, taken in (("ten", 10), ("center", 1)):
        error = one_line_error(run_main(*command, "--crops", crops, "--k-crops", 3, cwd=tmp_path))
        assert error.endswith(
            f"--k-crops 3 cannot work: it must be left out with --crops {crops}, which takes {taken} crop(s) an image"
        )


BLOCKED_OUTPUTS = [
    ("train.py", "-scratch", "--ckpt-dir", "a-file"),
    ("train.py", "-scratch", "--ckpt-dir", "a-file/run"),
    ("train.py", "-scratch", "--log-dir", "a-file"),
    ("test.py", "--json", "a-file/results.json"),
    ("test.py", "--json", "a-folder"),
    ("export.py", "a-file", "--overwrite"),
    ("prepare_data.py", "--prepare", "ILSVRC2012", "a-file"),
    ("prepare_data.py", "--make-sample", "a-file/sample"),
    ("import_weights.py", "bvlc_alexnet.npy", "--ckpt-dir", "a-file"),
]


@pytest.mark.parametrize("command", BLOCKED_OUTPUTS, ids=" ".join)
def test_an_output_path_blocked_by_a_file_or_folder_is_a_one_line_error_before_the_work(
    command, tmp_path, one_line_error
):
    (tmp_path / "a-file").write_text("kept")
    (tmp_path / "a-folder").mkdir()
    error = one_line_error(run_main(*command, cwd=tmp_path))
    blocked = next(arg for arg in command if arg.startswith("a-"))
    assert blocked in error and ("is a file" in error or "is a folder" in error), error
    assert (tmp_path / "a-file").read_text() == "kept" and not any((tmp_path / "a-folder").iterdir())


@pytest.mark.slow
def test_data_errors_name_the_missing_file(trained, tiny_data, tmp_path, one_line_error):
    work, _, _ = trained
    ckpt = ("--ckpt-dir", work / "ckpt")
    assert "missing.jpg not found" in one_line_error(run_main("classify.py", tmp_path / "missing.jpg", *ckpt))
    (tmp_path / "text.jpg").write_text("not an image")
    assert "text.jpg" in one_line_error(run_main("classify.py", tmp_path / "text.jpg", *ckpt))
    folder = one_line_error(run_main("classify.py", tmp_path, *ckpt))
    assert f"{tmp_path} is a folder: give its image files, such as {tmp_path}/*.jpg" in folder
    os.makedirs(tmp_path / "no-meta" / "data")
    no_meta = one_line_error(run_main("test.py", "--data-dir", tmp_path / "no-meta", *ckpt))
    assert "has 1 class folder(s) and no data/meta.mat" in no_meta
    assert "already holds a run" in one_line_error(run_main("train.py", "-scratch", "--data-dir", tiny_data, *ckpt))


HELP_DEFAULTS = {
    "train.py": {
        "--epochs": training.EPOCHS,
        "--batch-size": training.BATCH_SIZE,
        "--lr": training.LEARNING_RATE,
        "--momentum": training.MOMENTUM,
        "--weight-decay": training.WEIGHT_DECAY,
        "--dropout": alexnet.DROPOUT,
        "--ckpt-dir": run_folder.CKPT_DIR,
        "--data-dir": "-resume's the run's own, -scratch's ILSVRC2012",
        "--save-every": train_options.SAVE_EVERY,
        "--cpu-replicas": 2,
    },
    "test.py": {
        "--k-crops": 5,
        "--crops": "random",
        "--top-k": 5,
        "--batch-size": 32,
        "--ckpt-dir": "ckpt-alexnet",
        "--data-dir": "the run's own, else ILSVRC2012",
    },
    "classify.py": {"--k-crops": 5, "--crops": "random", "--top-k": 5, "--seed": 0},
    "prepare_data.py": {"--train-shards": 1024, "--val-shards": 128, "--train-per-class": 40, "--val-per-class": 10},
    "import_weights.py": {"--ckpt-dir": run_folder.IMPORTED_CKPT_DIR},
    "export.py": {"--ckpt-dir": run_folder.CKPT_DIR},
    os.path.join("benchmarks", "bench.py"): {"--data-dir": "generated ImageNet-like JPEGs"},
}


@pytest.mark.parametrize("script", sorted(HELP_DEFAULTS))
def test_help_shows_the_defaults(script):
    result = run_main(script, "--help")
    assert result.returncode == 0, result.stderr
    options = re.split(r"\n(?=  -)", result.stdout)  # an option's help: its line and the more indented ones
    for flag, default in HELP_DEFAULTS[script].items():
        text = " ".join(next(option for option in options if re.match(rf"\s*(-\w+, )?{flag}\b", option)).split())
        assert f"default: {default}" in text, (flag, text)
    for option in options[1:]:
        text = " ".join(option.split())
        assert text.count("(default") <= 1 and "(default: None)" not in text and "(default: False)" not in text, text


def test_tensorflow_start_up_is_quiet_unless_the_user_sets_its_log_level(tmp_path):
    missing = ("classify.py", "lussari.jpg", "--ckpt-dir", tmp_path / "none")
    quiet = run_script(*missing)
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]  # our error alone
    verbose = run_script(*missing, env={**SCRIPT_ENV, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert len(verbose.stderr.strip().splitlines()) > 1, verbose.stderr  # TensorFlow's own lines, as asked
