"""test.py --report DIR: an evaluation's results as a folder that opens in a browser without a network, and as plain
files a spreadsheet or pandas reads. Every figure is computed from the predictions written beside it.

    DIR/
        index.html          the summary, the classes with the lowest top-1, the most confused pairs, the mistakes
                            made with the highest confidence, the reliability diagram; relative links only
        results.json        top1, top5 (fractions), images, ece, real_top1 where it applies, what was evaluated
        per_class.csv       class, name, images, top1, top5
        confusions.csv      true, predicted, count: the most frequent top-1 mistakes first
        predictions.csv     path, label, pred_1..pred_k, score_1..score_k: one row an image
        reliability.png     accuracy against the top-1 score, in CALIBRATION_BINS bins (matplotlib)
        thumbs/             the images the page shows, 128 pixels (Pillow)

Class ids in the files are the run's WNIDs (or folder names, for your own classes).
"""

import csv
import html
import json
import os

import matplotlib
import numpy as np

from alexnet_tf import evaluation, preprocessing
from alexnet_tf.errors import DataError

matplotlib.use("Agg")  # files only: no display
from matplotlib import pyplot  # noqa: E402  (after the backend is chosen)

SHOWN = 10  # ours: rows of each table on the page
THUMBNAIL = 128  # pixels, the longer side of a thumbnail
EXAMPLES = 3  # thumbnails of a confused pair
WORST_CLASSES_MIN_IMAGES = 1  # a class needs this many images to be ranked among the lowest top-1


def write(out_dir, predictions, *, classes, results, data_dir):
    """Writes the report of `predictions` (evaluation.Predictions; `classes`, the run's ClassNames in fc8 order) and
    `results` (the summary, as results.json holds it) into `out_dir`."""
    os.makedirs(os.path.join(out_dir, "thumbs"), exist_ok=True)
    ids = [c.wnid for c in classes]
    k = predictions.classes.shape[1]
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_csv(
        os.path.join(out_dir, "predictions.csv"),
        ["path", "label", *(f"pred_{n}" for n in range(1, k + 1)), *(f"score_{n}" for n in range(1, k + 1))],
        (
            [name, ids[label], *(ids[c] for c in row), *(f"{s:.6f}" for s in scores)]
            for name, label, row, scores in zip(
                predictions.names, predictions.labels, predictions.classes, predictions.scores
            )
        ),
    )
    images, top1, topk = evaluation.per_class(predictions, len(classes), min(5, k))
    write_csv(
        os.path.join(out_dir, "per_class.csv"),
        ["class", "name", "images", "top1", "top5"],
        (
            [ids[row], classes[row].words, images[row], *(f"{value:.6f}" if images[row] else "" for value in (a, b))]
            for row, (a, b) in enumerate(zip(top1, topk))
        ),
    )
    pairs = evaluation.confusions(predictions)
    write_csv(
        os.path.join(out_dir, "confusions.csv"),
        ["true", "predicted", "count"],
        ([ids[true], ids[guess], count] for true, guess, count in pairs),
    )
    reliability_diagram(predictions, os.path.join(out_dir, "reliability.png"), ece=results["ece"])
    thumbs = Thumbnails(out_dir, data_dir, predictions.names)
    page = [
        summary(results),
        worst_classes(classes, images, top1, topk),
        confused_pairs(pairs, predictions, classes, thumbs),
        confident_mistakes(predictions, classes, thumbs),
        '<h2>Calibration</h2><img src="reliability.png" alt="reliability diagram" width="480">',
    ]
    with open(os.path.join(out_dir, "index.html"), "w") as f:
        f.write(PAGE.format(title=html.escape(f"AlexNet on {results['dataset']}"), body="\n".join(page)))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def reliability_diagram(predictions, path, *, ece):
    centres, accuracy, confidence, _ = evaluation.reliability(predictions)
    figure, axes = pyplot.subplots(figsize=(4.8, 4.8), dpi=100)
    width = 1 / evaluation.CALIBRATION_BINS
    axes.bar(centres, accuracy, width=width, edgecolor="black", color="#4878d0", label="accuracy")
    axes.bar(centres, confidence - accuracy, bottom=accuracy, width=width, color="#ee854a", alpha=0.5, label="gap")
    axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-1 score", ylabel="top-1 accuracy")
    axes.set_title(f"Reliability, ECE {100 * ece:.2f}% ({evaluation.CALIBRATION_BINS} bins)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


class Thumbnails:
    """Thumbnails of the evaluated images, made once each into thumbs/; none for an image that is not a file of the
    dataset folder (prepared shards keep no files) or does not open."""

    def __init__(self, out_dir, data_dir, names):
        self.out_dir, self.data_dir, self.names, self.made = out_dir, data_dir, names, {}

    def tag(self, row):
        if row not in self.made:
            self.made[row] = self.make(row)
        name = self.made[row]
        alt = html.escape(self.names[row])
        return f'<img src="thumbs/{name}" alt="{alt}" title="{alt}">' if name else f"<code>{alt}</code>"

    def make(self, row):
        path = os.path.join(self.data_dir, self.names[row])
        name = f"{row:06d}.jpg"
        try:
            image = preprocessing.pillow_rgb(path)
        except DataError:  # be specific: a missing or unreadable file: shown by name
            return None
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        image.save(os.path.join(self.out_dir, "thumbs", name), quality=85)
        return name


def summary(results):
    rows = [
        ("images", f"{results['images']:,}"),
        ("top-1 accuracy", percent(results["top1"])),
        ("top-5 accuracy", percent(results["top5"])),
        ("expected calibration error", percent(results["ece"])),
    ]
    if results.get("real_top1") is not None:
        rows.append(("ReaL top-1 accuracy", f"{percent(results['real_top1'])} ({results['real_images']:,} images)"))
    rows += [(name, results[name]) for name in ("run", "checkpoint", "dataset", "crops", "k_crops")]
    return "<h2>Summary</h2>" + table(None, rows)


def worst_classes(classes, images, top1, topk):
    ranked = sorted(
        (row for row in range(len(classes)) if images[row] >= WORST_CLASSES_MIN_IMAGES), key=top1.__getitem__
    )
    rows = [
        (classes[row].wnid, classes[row].words, images[row], percent(top1[row]), percent(topk[row]))
        for row in ranked[:SHOWN]
    ]
    return "<h2>The classes with the lowest top-1</h2>" + table(["class", "name", "images", "top-1", "top-5"], rows)


def confused_pairs(pairs, predictions, classes, thumbs):
    rows = []
    for true, guess, count in pairs[:SHOWN]:
        examples = np.flatnonzero((predictions.labels == true) & (predictions.classes[:, 0] == guess))[:EXAMPLES]
        rows.append((name_of(classes[true]), name_of(classes[guess]), count, "".join(thumbs.tag(r) for r in examples)))
    return "<h2>The most confused pairs</h2>" + table(["true", "predicted as", "images", "examples"], rows, raw=3)


def confident_mistakes(predictions, classes, thumbs):
    wrong = np.flatnonzero(predictions.classes[:, 0] != predictions.labels)
    worst = wrong[np.argsort(-predictions.scores[wrong, 0], kind="stable")][:SHOWN]
    rows = [
        (
            thumbs.tag(row),
            html.escape(name_of(classes[predictions.labels[row]])),
            "<br>".join(
                html.escape(f"{name_of(classes[c])}: {s:.3f}")
                for c, s in zip(predictions.classes[row, :5], predictions.scores[row, :5])
            ),
        )
        for row in worst
    ]
    return "<h2>The mistakes made with the highest confidence</h2>" + table(
        ["image", "true class", "top-5 with scores"], rows, raw=(0, 1, 2)
    )


def name_of(class_name):
    return f"{class_name.words} ({class_name.wnid})" if class_name.words != class_name.wnid else class_name.wnid


def percent(value):
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.2f}%"


def table(header, rows, raw=()):
    """An HTML table (without a header row when `header` is None); cells are escaped but those of the `raw` columns
    (HTML made here)."""
    raw = {raw} if isinstance(raw, int) else set(raw)

    def cell(column, value):
        return str(value) if column in raw else html.escape(str(value))

    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell(c, v)}</td>" for c, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; }}
img {{ margin: 2px; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
