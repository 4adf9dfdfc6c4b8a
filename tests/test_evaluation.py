"""Evaluation as the field reports it: calibration, per-class figures, ReaL labels and their traps, ImageNetV2's
folders, the report folder, the results table and --checkpoint."""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import flags, run_main

import test as test_script
from alexnet_tf import datasets, errors, evaluation, run_config


def predictions_of(names, labels, classes, scores=None):
    classes = np.array(classes)
    if scores is None:
        scores = np.tile(np.linspace(0.9, 0.1, classes.shape[1]), (len(names), 1))
    return evaluation.Predictions(tuple(names), np.array(labels), classes, np.array(scores, float))


def test_expected_calibration_error_weighs_each_bin_s_gap_by_its_images():
    # bins of 1/15: scores 0.95 (bin 14) right, right, wrong -> accuracy 2/3, gap |0.667 - 0.95|; 0.5 (bin 7) right
    predictions = predictions_of(
        ["a", "b", "c", "d"], [0, 0, 0, 1], [[0, 1], [0, 1], [1, 0], [1, 0]], [[0.95, 0.05]] * 3 + [[0.5, 0.5]]
    )
    assert evaluation.expected_calibration_error(predictions) == pytest.approx(0.75 * (0.95 - 2 / 3) + 0.25 * 0.5)
    centres, accuracy, confidence, images = evaluation.reliability(predictions)
    assert images.tolist() == [1, 3] and accuracy.tolist() == [1.0, pytest.approx(2 / 3)]
    assert centres.tolist() == pytest.approx([7.5 / 15, 14.5 / 15])


def test_per_class_figures_and_confusions_most_frequent_first():
    predictions = predictions_of(["a", "b", "c", "d", "e"], [0, 0, 1, 1, 1], [[0, 1], [1, 0], [0, 1], [0, 2], [2, 1]])
    images, top1, top2 = evaluation.per_class(predictions, 3, 2)
    assert images.tolist() == [2, 3, 0] and top1[:2].tolist() == [0.5, 0.0] and np.isnan(top1[2])
    assert top2[:2].tolist() == [1.0, 2 / 3]
    assert evaluation.confusions(predictions) == [(1, 0, 2), (0, 1, 1), (1, 2, 1)]


SORTED = [f"n{n:08d}" for n in range(1000)]  # 1000 WNIDs in sorted order
DEVKIT_ORDER = list(np.random.default_rng(0).permutation(SORTED))  # the devkit's ILSVRC2012_IDs: not sorted


def test_real_labels_map_through_wnids_from_a_devkit_ordered_run():
    labels = [[], [5], [7, 9], [3]]  # entry i: ILSVRC2012_val_{i+1:08d}, classes as indices of the sorted WNIDs
    row = {wnid: i for i, wnid in enumerate(DEVKIT_ORDER)}
    names = [f"val/ILSVRC2012_val_{n:08d}.JPEG" for n in (2, 3, 4, 1)]
    predicted = [row[SORTED[5]], row[SORTED[9]], row[SORTED[4]], row[SORTED[0]]]  # right, right, wrong, (empty)
    predictions = predictions_of(names, [0] * 4, [[p, 0] for p in predicted])
    assert evaluation.real_top1(predictions, DEVKIT_ORDER, labels) == (pytest.approx(2 / 3), 3)
    # the traps: reading the indices as fc8 rows, or entry i as file i, would score otherwise
    as_rows = predictions_of(names, [0] * 4, [[5, 0], [9, 0], [3, 0], [0, 0]])
    assert evaluation.real_top1(as_rows, DEVKIT_ORDER, labels)[0] < 2 / 3
    shifted = predictions_of(
        [f"ILSVRC2012_val_{n - 1:08d}.JPEG" for n in (2, 3, 4)], [0] * 3, [[p, 0] for p in predicted[:3]]
    )
    assert evaluation.real_top1(shifted, DEVKIT_ORDER, labels) != (pytest.approx(2 / 3), 3)


def test_real_labels_of_a_run_in_sorted_order_and_where_they_do_not_apply():
    labels = [[1], [2]]
    names = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "my_photo.jpg"]
    predictions = predictions_of(names, [0] * 3, [[1, 0], [3, 0], [2, 0]])
    assert evaluation.real_top1(predictions, SORTED, labels) == (0.5, 2)  # an imported Caffe run: fc8 = sorted WNIDs
    assert evaluation.real_top1(predictions, SORTED[:10], labels) is None  # not ILSVRC2012's 1000 classes
    assert evaluation.real_top1(predictions_of(["x.jpg"], [0], [[1, 0]]), SORTED, labels) is None


def test_the_shipped_real_labels_are_checked_before_use(tmp_path, monkeypatch):
    labels = evaluation.real_labels()
    assert len(labels) == 50_000 and sum(not entry for entry in labels) == 3163 and labels[1] == [970, 795]
    tampered = tmp_path / "real.json"
    tampered.write_text(json.dumps([[1]] + labels[1:]))
    monkeypatch.setattr(evaluation, "REAL_LABELS", str(tampered))
    with pytest.raises(errors.DataError, match="not the published ReaL labels"):
        evaluation.real_labels()


def test_imagenet_v2_folders_map_folder_k_to_the_k_th_wnid_sorted(tmp_path, training_config, one_line_error):
    data = tmp_path / "imagenetv2-matched-frequency"
    for k in range(1000):
        (data / str(k)).mkdir(parents=True)
    for k in (2, 10, 999):  # sorted as strings, "10" comes before "2": the trap
        shutil.copy(os.path.join(os.path.dirname(__file__), "..", "lussari.jpg"), data / str(k) / f"{k}.jpeg")
    classes = tuple(run_config.ClassName(wnid=wnid, words=wnid) for wnid in DEVKIT_ORDER)
    config = training_config(num_classes=1000).replace(classes=classes)
    split = evaluation.split_of(config, str(data), "val", ckpt_dir="run")
    by_folder = {os.path.basename(os.path.dirname(p)): label for p, label in zip(split.paths, split.labels)}
    assert by_folder == {str(k): DEVKIT_ORDER.index(SORTED[k]) for k in (2, 10, 999)}
    assert not datasets.is_numbered(datasets.named_classes([str(k) for k in range(10)]))  # your own 10 classes
    small = training_config(num_classes=10)
    with pytest.raises(errors.DataError, match="ImageNetV2's layout .* has 10 classes, not ILSVRC2012's 1000"):
        evaluation.split_of(small, str(data), "val", ckpt_dir="run")


@pytest.fixture(scope="module")
def report(one_step_template, tiny_data, tmp_path_factory):
    """test.py --report on one_step_run (10 classes), with --json and --results-csv, run twice."""
    work = tmp_path_factory.mktemp("report")
    options = flags(ckpt_dir=one_step_template, data_dir=tiny_data, crops="center", precision="float32")
    for _ in range(2):
        result = run_main(
            "test.py", *options, *flags(report=work / "report", json=work / "r.json", results_csv=work / "all.csv")
        )
        assert result.returncode == 0, result.stderr
    return work, result


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_report_s_figures_are_those_of_its_predictions(report, tiny_data):
    work, result = report
    folder = work / "report"
    rows = read_csv(folder / "predictions.csv")
    results = json.loads((folder / "results.json").read_text())
    assert results == json.loads((work / "r.json").read_text())
    assert len(rows) == results["images"] == 20 and all(
        os.path.isfile(os.path.join(tiny_data, r["path"])) for r in rows
    )
    top1 = np.mean([r["pred_1"] == r["label"] for r in rows])
    top5 = np.mean([r["label"] in [r[f"pred_{n}"] for n in range(1, 6)] for r in rows])
    assert results["top1"] == pytest.approx(top1) and results["top5"] == pytest.approx(top5)
    confidence = np.array([float(r["score_1"]) for r in rows])
    correct = np.array([r["pred_1"] == r["label"] for r in rows])
    bins = np.minimum((confidence * 15 - 1e-9).astype(int).clip(0), 14)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.mean(bins == b) for b in set(bins))
    assert results["ece"] == pytest.approx(ece, abs=1e-5)
    per_class = {r["class"]: r for r in read_csv(folder / "per_class.csv")}
    for wnid, row in per_class.items():
        mine = [r for r in rows if r["label"] == wnid]
        assert int(row["images"]) == len(mine)
        if mine:
            assert float(row["top1"]) == pytest.approx(np.mean([r["pred_1"] == wnid for r in mine]))
    pairs = [(r["true"], r["predicted"], int(r["count"])) for r in read_csv(folder / "confusions.csv")]
    wrong = [(r["label"], r["pred_1"]) for r in rows if r["pred_1"] != r["label"]]
    assert sorted(pairs) == sorted((t, p, wrong.count((t, p))) for t, p in set(wrong))
    assert [count for *_, count in pairs] == sorted((count for *_, count in pairs), reverse=True)
    assert f"{100 * results['top1']:.2f}%" in (folder / "index.html").read_text()
    assert f"Top-1 accuracy: {100 * results['top1']:.2f}%" in result.stdout


def test_the_report_opens_without_a_network_and_moves_whole(report):
    page = (report[0] / "report" / "index.html").read_text()
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert linked and all(not re.match(r"[a-z]+:|/", link) for link in linked)  # relative, no remote script or font
    assert all((report[0] / "report" / link).is_file() for link in linked)
    assert "reliability.png" in linked and any(link.startswith("thumbs/") for link in linked)


def test_the_results_table_gains_a_row_an_evaluation(report):
    rows = read_csv(report[0] / "all.csv")
    assert len(rows) == 2 and list(rows[0]) == list(test_script.RESULTS_COLUMNS)
    assert rows[0]["step"] == "1" and rows[0]["images"] == "20" and rows[0]["real_top1"] == ""
    assert float(rows[1]["top1"]) == json.loads((report[0] / "r.json").read_text())["top1"]


def test_checkpoint_picks_one_the_run_keeps(one_step_run, tiny_data, tmp_path, one_line_error):
    options = flags(ckpt_dir=one_step_run, data_dir=tiny_data, crops="center", json=tmp_path / "r.json", limit=4)
    assert run_main("test.py", *options, "--checkpoint", "ckpt-1").returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["checkpoint"].endswith("ckpt-1")
    error = one_line_error(run_main("test.py", *options, "--checkpoint", "ckpt-9"))
    assert f"{one_step_run} has no checkpoint ckpt-9: it keeps ckpt-1" in error
