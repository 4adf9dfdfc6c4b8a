"""Exports a trained run as a SavedModel that classifies encoded images, its preprocessing and crop averaging inside,
for TF Serving or any TensorFlow program, without this project's code.

    python export.py --ckpt-dir ckpt-alexnet alexnet-export

The SavedModel's `serving_default` signature takes `images`, a batch of encoded images (JPEG, grayscale and CMYK
too, PNG, GIF, BMP, WebP bytes; tf.string, shape [N]), and returns, best first, `classes` (fc8 rows, int32 [N, k]),
`wnids` and `names` (tf.string [N, k]) and `scores` (the softmax averaged over the crops, float32 [N, k]), and
`errors` (tf.string [N]): empty for an image answered, else what is wrong with it, its row's classes -1, names
empty and scores 0; the other images are answered as they would be alone. OUT_DIR also holds the run's config.json.
TF Serving wants it as a numbered version folder: models/alexnet/1.
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import os
import shutil

import tensorflow as tf

import alexnet
from alexnet_tf import errors, preprocessing, run_folder

CROPS = "center"  # the cheapest; "ten" is the paper's test
EXPORT_CROPS = ("center", "ten")  # the deterministic ones: a served answer does not change between calls
TOP_K = 5  # the paper's top-5
SIGNATURE = "serving_default"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder to write the SavedModel into (a new one, or an earlier export)"
    )
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder to export")
    parser.add_argument(
        "--crops", choices=EXPORT_CROPS, default=CROPS, help="center: one centre crop; ten: corners, centre, mirrors"
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help="classes returned per image")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it holds an earlier export")
    return parser


class Classifier(tf.Module):
    """The served function: encoded images to the top-k classes of the crop-averaged softmax."""

    def __init__(self, model, config, crops, top_k):
        super().__init__()
        self.model = model
        self.spec = config.preprocessing
        self.crops, self.k_crops = crops, preprocessing.crops_per_image(crops, 1)
        self.top_k = min(top_k, len(config.classes))
        self.wnids = tf.constant([c.wnid for c in config.classes])
        self.names = tf.constant([c.words for c in config.classes])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def classify(self, images):
        count = tf.shape(images)[0]
        answered, crops = self.decoded(images)
        size, num_classes = self.spec.crop_size, self.wnids.shape[0]
        logits = tf.cond(  # an empty batch, or one of bad images only, runs no convolution
            tf.size(answered) > 0,
            lambda: self.model(tf.reshape(crops, [-1, size, size, 3]), training=False),
            lambda: tf.zeros([0, num_classes]),
        )
        per_crop = tf.reshape(tf.nn.softmax(logits), [tf.size(answered), self.k_crops, num_classes])
        scores, classes = tf.math.top_k(tf.reduce_mean(per_crop, axis=1), self.top_k)
        rows = answered[:, None]
        classes = tf.scatter_nd(rows, classes + 1, [count, self.top_k]) - 1  # -1: the rows of bad images
        named = classes >= 0
        return {
            "classes": classes,
            "wnids": tf.where(named, tf.gather(self.wnids, tf.maximum(classes, 0)), ""),
            "names": tf.where(named, tf.gather(self.names, tf.maximum(classes, 0)), ""),
            "scores": tf.scatter_nd(rows, scores, [count, self.top_k]),
            "errors": tf.where(named[:, 0], "", tf.map_fn(what_is_wrong, images, fn_output_signature=tf.string)),
        }

    def decoded(self, images):
        """The rows of `images` that decode, and their crops: a bad image is left out of the batch, not the cause
        of its failing (tf.data's ignore_errors, the one way a graph goes on past an op's error)."""
        size = self.spec.crop_size
        rows = tf.data.Dataset.from_tensor_slices((tf.range(tf.shape(images)[0]), images))
        crops = rows.map(
            lambda row, encoded: (
                row,
                preprocessing.eval_crops(
                    encoded, self.spec, self.crops, self.k_crops, tf.constant([0, 0], tf.int64), xla=False
                ),
            )
        ).ignore_errors()
        none = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), tf.zeros([0, self.k_crops, size, size, 3])))
        return crops.batch(2**31 - 1).concatenate(none).take(1).get_single_element()


def what_is_wrong(encoded):
    """Why an image of the batch was not answered, from its header: not an image, too large, or damaged data."""
    width, height = tf.unstack(preprocessing.declared_size(encoded))
    too_large = (width * height > preprocessing.MAX_IMAGE_PIXELS) | (
        tf.maximum(width, height) > preprocessing.MAX_ASPECT_RATIO * tf.minimum(width, height)
    )
    return tf.case(
        [
            (tf.equal(width * height, 0), lambda: tf.constant("not an image: give JPEG, PNG, GIF, BMP or WebP bytes")),
            (
                too_large,
                lambda: tf.strings.format(
                    "declares {}x{} pixels: at most {} are decoded, neither side more than {} times the other",
                    (width, height, preprocessing.MAX_IMAGE_PIXELS, preprocessing.MAX_ASPECT_RATIO),
                ),
            ),
        ],
        default=lambda: tf.constant("the image's data is damaged and does not decode"),
    )


def main(args):
    errors.check_counts(args, "top_k")
    errors.check_writable(args.out_dir, "OUT_DIR")
    if os.path.exists(args.out_dir) and not args.overwrite:
        raise errors.UsageError(f"{args.out_dir} exists: pass --overwrite to replace it, or choose another OUT_DIR")
    check_replaceable(args.out_dir)
    with alexnet.precision("float32"):
        model, config = alexnet.load_trained(args.ckpt_dir)
    classifier = Classifier(model, config, args.crops, args.top_k)
    print(f"Exporting {args.ckpt_dir} ({args.crops} crops, top {classifier.top_k}) to {args.out_dir} ...")
    write_saved_model(args.out_dir, classifier, config)
    print(
        f"Wrote {args.out_dir}: signature {SIGNATURE}, images (encoded, [N]) -> classes, wnids, names, scores, errors"
    )


def check_replaceable(out_dir):
    """A UsageError unless `out_dir` is missing, empty or an earlier export: --overwrite removes the folder whole,
    and a run folder, the clone or a home folder given as OUT_DIR by mistake must not go with it. A symlink is
    refused: the export would replace the link, not write where it leads."""
    if os.path.islink(out_dir):
        raise errors.UsageError(
            f"{out_dir} is a symlink to {os.path.realpath(out_dir)}: give that folder itself as OUT_DIR"
        )
    names = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if names and run_folder.SAVED_MODEL_FILE not in names:
        raise errors.UsageError(
            f"{out_dir} holds {', '.join(names[:3])}{', ...' if len(names) > 3 else ''} and no SavedModel: "
            "--overwrite replaces only an earlier export (or an empty folder); choose another OUT_DIR"
        )


def write_saved_model(out_dir, classifier, config):
    """The SavedModel and config.json, written into a temporary folder beside `out_dir` and renamed into place when
    complete; an existing `out_dir` is replaced only then."""
    with run_folder.staging_beside(out_dir, "the SavedModel") as staging:
        tf.saved_model.save(classifier, staging, signatures={SIGNATURE: classifier.classify})
        # the run's folders are paths of this machine: a model to share goes without them
        run_folder.save_config(staging, config.portable())
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
