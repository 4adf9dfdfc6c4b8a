"""Draws what a run learned, as the paper shows it: Figure 3, conv1's kernels, and Figure 4, validation images beside
the training images nearest to them in fc7's space; optionally those vectors for TensorBoard's projector.

    python figures.py --ckpt-dir ckpt-alexnet --out figures
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import os

import keras
import numpy as np

import alexnet
from alexnet_tf import errors, evaluation, figures, input_pipeline, run_folder

QUERIES = 5  # the paper's Figure 4 shows 5 test images
NEIGHBOURS = 6  # and the 6 training images nearest to each
BATCH_SIZE = 32  # images a call of the network
SEED = 0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder (trained, imported or fine-tuned)")
    parser.add_argument("--out", required=True, help="folder to write the figures into (made if missing)")
    parser.add_argument("--data-dir", help="dataset of Figure 4 (default: the run's own; none: Figure 3 alone)")
    parser.add_argument("--queries", type=int, default=QUERIES, help="validation images of Figure 4, drawn with --seed")
    parser.add_argument("--neighbours", type=int, default=NEIGHBOURS, help="nearest training images shown for each")
    parser.add_argument(
        "--train-limit", type=int, help="training images searched, drawn with --seed (default: all of them)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the drawings")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images a call of the network")
    parser.add_argument(
        "--projector", action="store_true", help="also write the vectors for TensorBoard's projector into OUT/projector"
    )
    return parser


def main(args):
    errors.check_counts(args, "queries", "neighbours", "train_limit", "batch_size")
    errors.check_seed(args.seed)
    errors.check_writable(args.out, "--out")
    model, config = alexnet.load_trained(args.ckpt_dir)
    os.makedirs(args.out, exist_ok=True)
    kernels = model.get_layer("conv1").get_weights()[0]
    figures.kernel_figure(kernels, config.architecture.groups).save(os.path.join(args.out, "conv1_kernels.png"))
    print(f"Figure 3: {os.path.join(args.out, 'conv1_kernels.png')}, conv1's {kernels.shape[-1]} kernels")
    data_dir = args.data_dir or config.data_dir
    if data_dir is None:
        print(f"{args.ckpt_dir} names no dataset (imported weights): Figure 3 alone; give --data-dir for Figure 4")
        return
    queries = drawn(evaluation.split_of(config, data_dir, "val", ckpt_dir=args.ckpt_dir), args.queries, args.seed)
    searched = drawn(
        evaluation.split_of(config, data_dir, "train", ckpt_dir=args.ckpt_dir), args.train_limit, args.seed
    )
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)
    options = {"spec": config.preprocessing, "batch_size": args.batch_size}
    query_vectors = np.concatenate(list(figures.vectors(fc7, queries, **options, what="validation images")))
    kept = [] if args.projector else None  # the searched images' vectors, for the projector only, in float16
    batches = keeping(figures.vectors(fc7, searched, **options, what="training images searched"), kept)
    index, distance = figures.nearest(query_vectors, batches, args.neighbours)
    names = {which: evaluation.image_names(split, data_dir) for which, split in (("q", queries), ("s", searched))}
    figures.write_neighbours(
        args.out, queries=names["q"], searched=names["s"], index=index, distance=distance, data_dir=data_dir
    )
    print(f"Figure 4: {os.path.join(args.out, 'neighbours.png')} and neighbours.json, {len(names['q'])} queries")
    if args.projector:
        labels = np.concatenate([labels_of(queries), labels_of(searched)])
        figures.write_projector(
            os.path.join(args.out, "projector"),
            vectors_of=np.concatenate([query_vectors.astype(np.float16), *kept]),
            names=names["q"] + names["s"],
            classes=[config.classes[label].words for label in labels],
            data_dir=data_dir,
        )
        print(f"Projector: tensorboard --logdir {os.path.join(args.out, 'projector')}")


def drawn(split, count, seed):
    """`count` images of `split` drawn with `seed` (prepared shards: the first `count`, in the shards' own order),
    the unreadable ones left out."""
    if count is not None and count < split.num_images and not split.prepared:
        chosen = sorted(np.random.default_rng(seed).choice(split.num_images, count, replace=False).tolist())
        split = split._replace(paths=[split.paths[i] for i in chosen], labels=[split.labels[i] for i in chosen])
    split = split.head(count)
    return split.without(input_pipeline.find_unreadable(split, "images"))


def keeping(batches, kept):
    """The `batches`, each also appended to `kept` in float16 unless `kept` is None."""
    for batch in batches:
        if kept is not None:
            kept.append(batch.astype(np.float16))
        yield batch


def labels_of(split):
    """The images' fc8 rows: the split's own, or read from prepared shards' records."""
    if not split.prepared:
        return np.asarray(split.labels)
    return np.concatenate([labels.numpy() for _, labels in input_pipeline.encoded_images(split).batch(1024)])


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
