"""Using a run from other programs: the Keras-applications API, and the SavedModel of export.py, which a process
that does not import this project loads and which answers as classify.py does."""

import ast
import functools
import io
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, SCRIPT_ENV, flags, run_main
from PIL import Image

import alexnet
import classify
import data_reader
import export
from alexnet_tf import errors, network, preprocessing, run_folder

# Run in a fresh interpreter whose path holds no module of this project
LOAD_AND_SERVE = """
import json, sys
import tensorflow as tf
folders, paths = json.loads(sys.argv[1]), sys.argv[2:]
images = tf.constant([open(path, "rb").read() for path in paths])
def plain(value):
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value
out = {}
for folder in folders:
    serve = tf.saved_model.load(folder).signatures["serving_default"]
    out[folder] = {name: plain(value.numpy().tolist()) for name, value in serve(images=images).items()}
assert not any(name in sys.modules for name in ("alexnet", "preprocessing", "run_folder"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def images(tiny_data, tmp_path_factory):
    """A validation image of the sample, a grayscale JPEG, a PNG, and lussari.jpg."""
    folder = tmp_path_factory.mktemp("images")
    photo = Image.open(os.path.join(ROOT, "lussari.jpg")).convert("RGB").resize((320, 240))
    photo.convert("L").save(folder / "gray.jpg")
    photo.rotate(90, expand=True).save(folder / "rotated.png")
    sample = os.path.join(tiny_data, data_reader.VAL_DIR, data_reader.VAL_NAME.format(1))
    return [sample, str(folder / "gray.jpg"), str(folder / "rotated.png"), os.path.join(ROOT, "lussari.jpg")]


def classify_py(run, image, crops, capsys):
    """classify.py's top-5 as (names, scores)."""
    classify.main(classify.get_args_parser().parse_args([image, *flags(ckpt_dir=run, crops=crops)]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "AlexNet saw:"
    matches = [re.fullmatch(r"(.*) - score: (\S+)", line) for line in lines[1:]]
    return [m.group(1) for m in matches], [float(m.group(2)) for m in matches]


@pytest.mark.slow
def test_the_saved_model_answers_as_classify_py_without_this_project(one_step_run, images, tmp_path, capsys):
    exported = {crops: tmp_path / crops for crops in export.EXPORT_CROPS}
    for crops, folder in exported.items():
        result = run_main("export.py", folder, *flags(ckpt_dir=one_step_run, crops=crops))
        assert result.returncode == 0, result.stderr
    served = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SERVE, json.dumps([str(folder) for folder in exported.values()]), *images],
        cwd=tmp_path,
        env={name: value for name, value in SCRIPT_ENV.items() if name != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stderr
    answers = json.loads(served.stdout)
    config = run_folder.load_config(str(one_step_run))
    for crops, folder in exported.items():
        answer = answers[str(folder)]
        for row, image in enumerate(images):
            names, scores = classify_py(str(one_step_run), image, crops, capsys)
            assert answer["names"][row] == names, (crops, image)
            np.testing.assert_allclose(answer["scores"][row], scores, atol=1e-4, err_msg=f"{crops} {image}")
            assert answer["wnids"][row] == [config.classes[c].wnid for c in answer["classes"][row]]
        written = json.loads((folder / "config.json").read_text())
        assert written["classes"] == config.to_json()["classes"] and config.data_dir
        assert not {"data_dir", "log_dir"} & set(written)


@pytest.mark.slow
def test_saved_model_cli_shows_the_documented_signature_and_is_no_run_folder(one_step_run, tmp_path, one_line_error):
    umask = os.umask(0o022)
    try:
        result = run_main("export.py", tmp_path / "out", *flags(ckpt_dir=one_step_run, top_k=3))
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr
    # readable by another user (a TF Serving container), as the umask lets any new folder be
    for folder, _, files in os.walk(tmp_path / "out"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder
        assert all(os.stat(os.path.join(folder, name)).st_mode & stat.S_IROTH for name in files), files
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", tmp_path / "out", "--all"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    signature = shown.stdout.split("signature_def['serving_default']:")[1]
    inputs, outputs = signature.split("The given SavedModel SignatureDef contains the following output(s):")
    assert re.search(r"inputs\['images'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", inputs)
    dtypes = {"classes": "DT_INT32", "names": "DT_STRING", "scores": "DT_FLOAT", "wnids": "DT_STRING"}
    for name, dtype in dtypes.items():
        assert re.search(rf"outputs\['{name}'\] tensor_info:\s+dtype: {dtype}\s+shape: \(-1, 3\)", outputs), name
    assert re.search(r"outputs\['errors'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", outputs)
    mistaken = run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", tmp_path / "out")
    assert "is a SavedModel written by export.py, not a run folder" in one_line_error(mistaken)
    serve = tf.saved_model.load(str(tmp_path / "out")).signatures["serving_default"]
    good = open(os.path.join(ROOT, "lussari.jpg"), "rb").read()
    wide = io.BytesIO()
    Image.fromarray(np.zeros((2, 8000, 3), np.uint8)).save(wide, "PNG")
    batch = serve(images=tf.constant([good, b"not an image", wide.getvalue(), good[:2000], good]))
    assert [error.decode() for error in batch["errors"].numpy()] == [
        "",
        "not an image: give JPEG, PNG, GIF, BMP or WebP bytes",
        "declares 8000x2 pixels: at most 100000000 are decoded, neither side more than 100 times the other",
        "the image's data is damaged and does not decode",
        "",
    ]
    alone = serve(images=tf.constant([good]))
    for row in (0, 4):  # the good images are answered as alone
        assert batch["classes"].numpy()[row].tolist() == alone["classes"].numpy()[0].tolist()
        np.testing.assert_allclose(batch["scores"].numpy()[row], alone["scores"].numpy()[0], atol=1e-5)
    assert (batch["classes"].numpy()[1:4] == -1).all() and (batch["scores"].numpy()[1:4] == 0).all()
    assert set(batch["names"].numpy()[1:4].ravel().tolist()) == {b""}
    empty = serve(images=tf.constant([], tf.string))
    assert empty["classes"].shape == (0, 3) and empty["errors"].shape == (0,)


def test_export_refuses_a_missing_run_and_an_existing_out_dir(one_step_run, tmp_path, one_line_error):
    result = run_main("export.py", tmp_path / "out", *flags(ckpt_dir=tmp_path / "no-run"))
    assert "no trained run at" in one_line_error(result) and not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(errors.UsageError, match="exists: pass --overwrite"):
        export.main(export.get_args_parser().parse_args([str(tmp_path / "out"), "--ckpt-dir", str(one_step_run)]))
    assert (tmp_path / "out" / "keep").read_text() == "mine"
    run_before = sorted(os.listdir(one_step_run))
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("README.md", "train.py", run_folder.CKPT_DIR, "lussari.jpg"):
        (clone / name).write_text("mine")
    for out_dir in (tmp_path / "out", one_step_run, clone):  # a folder of the user's, the run itself, a clone
        overwrite = (str(out_dir), "--ckpt-dir", str(one_step_run), "--overwrite")
        with pytest.raises(errors.UsageError, match="and no SavedModel: --overwrite replaces only an earlier export"):
            export.main(export.get_args_parser().parse_args(overwrite))
    assert (tmp_path / "out" / "keep").read_text() == "mine" and sorted(os.listdir(one_step_run)) == run_before
    assert len(os.listdir(clone)) == 4
    (tmp_path / "empty").mkdir()
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / run_folder.SAVED_MODEL_FILE).write_bytes(b"")
    for replaceable in ("empty", "earlier", "missing"):
        export.check_replaceable(str(tmp_path / replaceable))


def test_the_readme_s_python_example_runs_from_a_program_outside_the_clone(one_step_run, installed, tmp_path):
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = re.search(r"## Use it from Python.*?```python\n(.*?)```", readme, re.S).group(1)
    os.symlink(one_step_run, tmp_path / run_folder.CKPT_DIR)
    os.symlink(os.path.join(ROOT, "lussari.jpg"), tmp_path / "lussari.jpg")
    (tmp_path / "my_program.py").write_text(example)
    env = {**SCRIPT_ENV, "PYTHONPATH": installed}  # after `pip install .`, as the README says
    result = subprocess.run(
        [sys.executable, "my_program.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    classes = [(c.wnid, c.words) for c in run_folder.load_config(str(one_step_run)).classes]
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert len(printed) == 1 and len(printed[0]) == 5 and all(entry[:2] in classes for entry in printed[0])
    assert [score for *_, score in printed[0]] == sorted((score for *_, score in printed[0]), reverse=True)


def test_alexnet_with_weights_is_the_run_s_model(one_step_run):
    trained, config = alexnet.load_trained(str(one_step_run))
    batch = np.random.default_rng(0).uniform(-100, 100, (2, 224, 224, 3)).astype(np.float32)
    logits = trained(batch).numpy()
    np.testing.assert_array_equal(alexnet.AlexNet(weights=str(one_step_run), classifier_activation=None)(batch), logits)
    probabilities = alexnet.AlexNet(weights=str(one_step_run))(batch).numpy()
    np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="has 10 classes, not 7"):
        alexnet.AlexNet(weights=str(one_step_run), classes=7)


def test_alexnet_without_top_gives_features_of_each_pooling(one_step_run):
    trained, _ = alexnet.load_trained(str(one_step_run))
    batch = np.random.default_rng(1).uniform(-100, 100, (2, 224, 224, 3)).astype(np.float32)
    maps = alexnet.AlexNet(include_top=False, weights=str(one_step_run))
    assert maps.output_shape == (None, 6, 6, 256)
    pool5 = tf.keras.Model(trained.input, trained.get_layer("pool5").output)(batch).numpy()
    np.testing.assert_array_equal(maps(batch), pool5)
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        vectors = alexnet.AlexNet(include_top=False, weights=str(one_step_run), pooling=pooling)
        assert vectors.output_shape == (None, 256)
        np.testing.assert_allclose(vectors(batch), reduce(pool5, axis=(1, 2)), rtol=1e-5, atol=1e-5)
    assert alexnet.AlexNet(include_top=False, input_shape=(300, 300, 3)).output_shape == (None, 8, 8, 256)
    with pytest.raises(ValueError, match="with include_top, the input must be the run's"):
        alexnet.AlexNet(input_shape=(300, 300, 3))


@pytest.mark.parametrize(("architecture", "smallest"), [({}, 63), (alexnet.CAFFE_BVLC, 67)])
def test_alexnet_without_top_names_its_smallest_input(architecture, smallest, monkeypatch):
    monkeypatch.setattr(network, "alexnet", functools.partial(network.alexnet, **architecture))  # as a run would
    features = alexnet.AlexNet(include_top=False, input_shape=(smallest, smallest + 32, 3))
    assert features.output_shape == (None, 1, 2, 256)
    assert alexnet.AlexNet(include_top=False, input_shape=(None, None, 3), pooling="max").output_shape == (None, 256)
    with pytest.raises(ValueError, match=f"give at least {smallest}x{smallest} pixels"):
        alexnet.AlexNet(include_top=False, input_shape=(smallest + 32, smallest - 1, 3))


def test_the_python_api_names_what_a_caller_got_wrong(one_step_run):
    with pytest.raises(ValueError, match="import_weights.py bvlc_alexnet.npy"):
        alexnet.AlexNet(weights="imagenet")
    for shape in ((1, 60, 80), (1, 60, 80, 4), (60, 80, 3)):
        with pytest.raises(ValueError, match=r"give a batch \(N, height, width, 3\) of RGB images"):
            alexnet.preprocess_input(np.zeros(shape, np.uint8), str(one_step_run))


def test_preprocess_input_is_the_run_s_centre_crop_and_decode_predictions_names_the_best(one_step_run, tmp_path):
    config = run_folder.load_config(str(one_step_run))
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    for spec in (config.preprocessing, preprocessing.CAFFE):
        run = config.replace(preprocessing=spec)
        for n, image in enumerate(pixels):
            Image.fromarray(image).save(tmp_path / f"{n}.png")
        expected = [preprocessing.load_image_crops(str(tmp_path / f"{n}.png"), spec, "center", 1)[0] for n in range(2)]
        np.testing.assert_allclose(alexnet.preprocess_input(pixels, run), np.stack(expected), atol=1e-4)
    from_folder = alexnet.preprocess_input(pixels, str(one_step_run))
    np.testing.assert_array_equal(from_folder, alexnet.preprocess_input(pixels, config))
    predictions = np.full((2, 10), 0.01)
    predictions[0, [4, 7]], predictions[1, 2] = (0.5, 0.3), 0.9
    decoded = alexnet.decode_predictions(predictions, str(one_step_run), top=3)
    names = [(c.wnid, c.words) for c in config.classes]
    assert [entry[:2] for entry in decoded[0][:2]] == [names[4], names[7]] and decoded[0][0][2] == 0.5
    assert decoded[1][0] == (*names[2], 0.9) and len(decoded[1]) == 3
