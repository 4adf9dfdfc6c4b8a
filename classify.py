"""Classifies images with a trained AlexNet: the top-k classes and their scores, the softmax averaged over crops.

python classify.py lussari.jpg
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import sys

import numpy as np

import alexnet
from alexnet_tf import errors, preprocessing, run_folder

TOP_K = 5  # the seed's
K_CROPS = 5  # the seed's
CROPS = "random"  # the seed's
SEED = 0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files: JPEG, PNG, GIF, BMP, or anything else Pillow reads; with several, each under its path",
    )
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder written by train.py")
    parser.add_argument("--top-k", type=int, default=TOP_K, help="classes to print")
    parser.add_argument("--k-crops", type=int, help=f"random crops averaged, with --crops random (default: {K_CROPS})")
    parser.add_argument(
        "--crops",
        choices=preprocessing.EVAL_CROPS,
        default=CROPS,
        help="random: K random crops; center: one centre crop; ten: corners, centre and mirrors",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the random crops")
    return parser


def main(args):
    errors.check_counts(args, "top_k", "k_crops")
    errors.check_seed(args.seed)
    preprocessing.check_k_crops(args.crops, args.k_crops)
    k_crops = args.k_crops or K_CROPS
    model, config = alexnet.load_trained(args.ckpt_dir)
    spec = config.preprocessing
    averaged = alexnet.crop_averaging(model, preprocessing.crops_per_image(args.crops, k_crops))
    several = len(args.images) > 1
    unreadable = []
    for number, path in enumerate(args.images):
        try:
            crops = preprocessing.load_image_crops(path, spec, args.crops, k_crops, args.seed)
        except errors.DataError as error:
            if not several:
                raise
            print(f"classify.py: skipped: {error}", file=sys.stderr)
            unreadable.append(path)
            continue
        probabilities = averaged.predict_on_batch(crops[None])[0]
        if several:
            print(("\n" if number else "") + path)
        print("AlexNet saw:")
        for index in np.argsort(probabilities)[::-1][: args.top_k]:
            print(f"{config.classes[index].words} - score: {probabilities[index]:.12g}")
    if unreadable:
        raise errors.DataError(f"{len(unreadable)} of {len(args.images)} images could not be read (named above)")


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
