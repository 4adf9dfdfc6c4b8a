"""Evaluates a trained AlexNet on a validation set (ILSVRC2012's, ImageNetV2's or your own images'): top-1 and top-k
accuracy, the softmax averaged over K crops of every image, ReaL top-1 on ILSVRC2012's validation images, and on
request a report folder, a JSON file or a row of a results table.

    python test.py --crops ten --report report
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import csv
import datetime
import json
import os

import alexnet
import data_reader
from alexnet_tf import errors, evaluation, input_pipeline, preprocessing, report, run_folder, sample_dataset

K_CROPS = 5  # the seed's K_CROPS: its 57.31% / 80.31% averaged 5 random crops
CROPS = "random"  # the seed's; "ten" is the paper's test (§4.1), "center" the cheapest
TOP_K = 5  # the seed's and the paper's top-5
BATCH_SIZE = 32  # images a batch, each with its K crops
SEED = 0
RESULTS_COLUMNS = (  # --results-csv, as timm's results files: a row an evaluation
    "date",
    "run",
    "step",
    "dataset",
    "split",
    "crops",
    "images",
    "top1",
    "top5",
    "real_top1",
    "ece",
)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder written by train.py")
    parser.add_argument(
        "--data-dir",
        help="ILSVRC2012 folder, a folder of your own classes, or prepared shards (default: the run's own, else "
        f"{data_reader.DATA_DIR}; {sample_dataset.SAMPLE_DIR} with --sample)",
    )
    parser.add_argument("--sample", action="store_true", help="evaluate on the generated sample dataset")
    parser.add_argument(
        "--k-crops", type=int, help=f"random crops averaged per image, with --crops random (default: {K_CROPS})"
    )
    parser.add_argument(
        "--crops",
        choices=preprocessing.EVAL_CROPS,
        default=CROPS,
        help="random: K random crops; center: one centre crop; ten: corners, centre and mirrors",
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help="k of the top-k accuracy")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images a batch")
    parser.add_argument("--limit", type=int, help="evaluate only the first N validation images (default: all)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the random crops")
    parser.add_argument(
        "--precision",
        choices=tuple(alexnet.PRECISIONS),
        default=alexnet.default_precision(),
        help="float32, or mixed precision with bf16 or fp16",
    )
    parser.add_argument(
        "--checkpoint", metavar="ckpt-N", help="evaluate this checkpoint of the run (default: its latest)"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results to this JSON file (its folder made if missing)"
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write a report folder: index.html, results.json, per-class, confusions, every prediction as CSV",
    )
    parser.add_argument(
        "--results-csv",
        metavar="PATH",
        help="also append a row to this results table (made, with a header, if missing)",
    )
    return parser


def main(args):
    check_args(args)
    checkpoint = run_folder.named_checkpoint(args.ckpt_dir, args.checkpoint)
    with alexnet.precision(args.precision):
        model, config = alexnet.load_trained(args.ckpt_dir, checkpoint=checkpoint)
    data_dir = sample_dataset.data_dir_for(args.data_dir, args.sample, run=config)
    split = evaluation.split_of(config, data_dir, "val", ckpt_dir=args.ckpt_dir).head(args.limit)
    unreadable = input_pipeline.find_unreadable(split, "validation images")
    if split.num_images == len(unreadable):
        raise errors.DataError(f"no readable validation image in {data_dir}")
    k_crops = preprocessing.crops_per_image(args.crops, args.k_crops or K_CROPS)
    predictions = evaluate(model, config, split.without(unreadable), args, data_dir=data_dir, k_crops=k_crops)
    results = summarize(predictions, config, args, checkpoint=checkpoint, data_dir=data_dir, k_crops=k_crops)
    say(results, total=split.num_images, unreadable=len(unreadable))
    write_outputs(args, predictions, config=config, results=results, data_dir=data_dir)


def check_args(args):
    """The flags' mistakes, in one line before anything is read."""
    errors.check_counts(args, "k_crops", "top_k", "batch_size", "limit")
    errors.check_seed(args.seed)
    preprocessing.check_k_crops(args.crops, args.k_crops)
    outputs = (
        ("--json", args.json, "file"),
        ("--report", args.report, "folder"),
        ("--results-csv", args.results_csv, "file"),
    )
    for flag, path, kind in outputs:
        if path:
            errors.check_writable(path, flag, kind=kind)


def evaluate(model, config, split, args, *, data_dir, k_crops):
    """Each image's top-k classes and scores, its `k_crops` crops' softmax averaged (evaluation.predict)."""
    print(f"Evaluating {split.num_images} images, {k_crops} {args.crops} crop(s) each, from {args.ckpt_dir}")
    return evaluation.predict(
        model,
        split,
        data_dir=data_dir,
        spec=config.preprocessing,
        crops=args.crops,
        k_crops=k_crops,
        seed=args.seed,
        batch_size=args.batch_size,
        top_k=min(max(args.top_k, TOP_K), len(config.classes)),  # of 3 classes, a top-5 would always hold the truth
    )


def summarize(predictions, config, args, *, checkpoint, data_dir, k_crops):
    """The evaluation's figures and what was evaluated: --json's, --report's results.json and --results-csv's."""
    k = min(args.top_k, len(config.classes))
    real = evaluation.real_top1(predictions, [c.wnid for c in config.classes])
    return {
        "top1": predictions.accuracy(1),
        "top5": predictions.accuracy(min(TOP_K, len(config.classes))),
        "topk": predictions.accuracy(k),
        "k": k,
        "images": len(predictions.labels),
        "ece": evaluation.expected_calibration_error(predictions),
        "real_top1": real[0] if real else None,
        "real_images": real[1] if real else 0,
        "run": os.path.abspath(args.ckpt_dir),
        "checkpoint": checkpoint,
        "step": run_folder.checkpoint_step(checkpoint),
        "dataset": os.path.abspath(data_dir),
        "crops": args.crops,
        "k_crops": k_crops,
    }


def say(results, *, total, unreadable):
    print(f"Evaluated {results['images']} of {total} validation images ({unreadable} unreadable, skipped)")
    print(f"Top-1 accuracy: {100 * results['top1']:.2f}% error: {100 - 100 * results['top1']:.2f}%")
    print(f"Top-{results['k']} accuracy: {100 * results['topk']:.2f}% error: {100 - 100 * results['topk']:.2f}%")
    if results["real_top1"] is not None:
        print(
            f"ReaL top-1 accuracy: {100 * results['real_top1']:.2f}% ({results['real_images']} images with ReaL labels)"
        )


def write_outputs(args, predictions, *, config, results, data_dir):
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.report:
        report.write(args.report, predictions, classes=config.classes, results=results, data_dir=data_dir)
        print(f"Report written to {os.path.join(args.report, 'index.html')}")
    if args.results_csv:
        append_results_row(args.results_csv, results)


def append_results_row(path, results):
    """A row of RESULTS_COLUMNS appended to the table at `path`, made with its header if missing."""
    row = {
        **{name: results.get(name) for name in RESULTS_COLUMNS},
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "split": "validation",
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULTS_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({name: "" if value is None else value for name, value in row.items()})


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
