"""Evaluates a trained AlexNet on the validation set (ILSVRC2012's, or your own images'): top-1 and top-k accuracy,
the softmax averaged over K crops of every image.

    python test.py --k-crops 5 --crops random
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import json
import os

import keras

import alexnet
import data_reader
from alexnet_tf import errors, input_pipeline, preprocessing, progress, run_folder, sample_dataset

K_CROPS = 5  # the seed's K_CROPS: its 57.31% / 80.31% averaged 5 random crops
CROPS = "random"  # the seed's; "ten" is the paper's test (§4.1), "center" the cheapest
TOP_K = 5  # the seed's and the paper's top-5
BATCH_SIZE = 32  # images a batch, each with its K crops
SEED = 0


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
        "--json", metavar="PATH", help="also write the results to this JSON file (its folder made if missing)"
    )
    return parser


def main(args):
    errors.check_counts(args, "k_crops", "top_k", "batch_size", "limit")
    errors.check_seed(args.seed)
    preprocessing.check_k_crops(args.crops, args.k_crops)
    if args.json:
        errors.check_writable(args.json, "--json", kind="file")
    checkpoint = run_folder.latest_checkpoint(args.ckpt_dir)
    with alexnet.precision(args.precision):
        model, config = alexnet.load_trained(args.ckpt_dir, checkpoint=checkpoint)
    data_dir = sample_dataset.data_dir_for(args.data_dir, args.sample, run=config)
    split = validation_set(args, config, data_dir)
    unreadable = input_pipeline.find_unreadable(split, "validation images")
    if split.num_images == len(unreadable):
        raise errors.DataError(f"no readable validation image in {data_dir}")
    results = {
        **evaluate(model, config, split.without(unreadable), args),
        "checkpoint": checkpoint,
        "images_total": split.num_images,
    }
    print(
        f"Evaluated {results['images']} of {split.num_images} validation images ({len(unreadable)} unreadable, skipped)"
    )
    print(f"Top-1 accuracy: {100 * results['top1']:.2f}% error: {100 - 100 * results['top1']:.2f}%")
    print(f"Top-{results['k']} accuracy: {100 * results['topk']:.2f}% error: {100 - 100 * results['topk']:.2f}%")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def validation_set(args, config, data_dir):
    """The validation images of `data_dir`, labelled with the run's fc8 rows (the dataset's classes matched to the
    run's by WNID)."""
    synsets = data_reader.load_classes(data_dir)
    order = run_folder.class_order(config, [s.wnid for s in synsets], args.ckpt_dir, data_dir)
    trained = config.settings  # an imported run has none: read_split's defaults
    split = (
        {"val_fraction": trained.val_fraction, "seed": trained.seed, "split_rule": trained.split_rule}
        if trained
        else {}
    )
    return data_reader.read_split(data_dir, synsets, "val", **split).relabeled(order).head(args.limit)


def evaluate(model, config, split, args):
    """Keras's evaluate on the crop-averaged model: its progress bar shows the running top-1 and top-k."""
    k = preprocessing.crops_per_image(args.crops, args.k_crops or K_CROPS)
    top_k = min(args.top_k, len(config.classes))  # of 3 classes, the top-5 would always hold the truth
    print(f"Evaluating {split.num_images} images, {k} {args.crops} crop(s) each, from {args.ckpt_dir}")
    averaged = alexnet.crop_averaging(model, k)
    averaged.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=top_k, name="topk"),
        ],
        jit_compile=False,
    )
    dataset = input_pipeline.eval_dataset(
        split,
        spec=config.preprocessing,
        batch_size=args.batch_size,
        crops=args.crops,
        k_crops=k,
        seed=args.seed,
    )
    with input_pipeline.as_prepared(split):
        metrics = averaged.evaluate(
            dataset,
            return_dict=True,
            verbose=progress.keras_verbose(),
            callbacks=progress.callbacks(),
        )
    return {
        "top1": float(metrics["top1"]),
        "topk": float(metrics["topk"]),
        "k": top_k,
        "loss": float(metrics["loss"]),
        "images": split.num_images,
        "crops": args.crops,
        "k_crops": k,
    }


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
