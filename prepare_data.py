"""Writes a dataset folder once as prepared TFRecord shards of 256-pixel JPEGs (faster to train from), or writes the
generated sample dataset in the ILSVRC2012 layout.

    python prepare_data.py --prepare ILSVRC2012 ILSVRC2012-prepared
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse

from alexnet_tf import errors, prepared_shards, sample_dataset


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument(
        "--make-sample", metavar="OUT_DIR", help="write the sample dataset in the ILSVRC2012 layout into OUT_DIR"
    )
    task.add_argument(
        "--prepare",
        nargs=2,
        metavar=("DATA_DIR", "OUT_DIR"),
        help="write the dataset's images as TFRecord shards of 256-pixel JPEGs into OUT_DIR, for "
        "train.py and test.py --data-dir OUT_DIR; continues an interrupted run",
    )
    parser.add_argument(
        "--train-shards", type=int, default=prepared_shards.TRAIN_SHARDS, help="training shards of --prepare"
    )
    parser.add_argument(
        "--val-shards", type=int, default=prepared_shards.VAL_SHARDS, help="validation shards of --prepare"
    )
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=sample_dataset.TRAIN_PER_CLASS,
        help="training images a class of --make-sample",
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=sample_dataset.VAL_PER_CLASS,
        help="validation images a class of --make-sample",
    )
    parser.add_argument("--seed", type=int, default=sample_dataset.SEED, help="random seed of the sample's drawings")
    return parser


def main(args):
    errors.check_seed(args.seed)
    if args.prepare:
        errors.check_counts(args, "train_shards", "val_shards")
        source_dir, out_dir = args.prepare
        errors.check_writable(out_dir, "OUT_DIR")
        prepared_shards.prepare(source_dir, out_dir, train_shards=args.train_shards, val_shards=args.val_shards)
    else:
        errors.check_counts(args, "train_per_class", "val_per_class")
        errors.check_writable(args.make_sample, "--make-sample")
        sample_dataset.make_sample(
            args.make_sample, train_per_class=args.train_per_class, val_per_class=args.val_per_class, seed=args.seed
        )
        print(f"Sample dataset written to {args.make_sample}")


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
