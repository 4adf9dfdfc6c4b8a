"""A dataset's classes and the images of one of its parts, as every layout (ILSVRC2012, your own class folders,
prepared shards) gives them to the pipelines: `Synset` and `Split`, the datasets module's results."""

import collections

import numpy as np


Synset = collections.namedtuple("Synset", "ilsvrc_id wnid words")


RECORD_FORMATS = ("prepared", "tfds")  # prepare_data.py's records of 256-pixel JPEGs; TFDS's of the original files


class Split(
    collections.namedtuple("Split", "paths labels shard_sizes label_map record_format", defaults=(None, "prepared"))
):
    """The images of the training or the validation set: image files and their labels (shard_sizes None), or
    TFRecord shards (paths of the shards, labels None, shard_sizes their record counts; label_map, when not None, the
    label to give each label the shards hold; record_format, whose records: RECORD_FORMATS)."""

    @property
    def prepared(self):
        return self.shard_sizes is not None

    @property
    def resized(self):
        """Whether the images are prepare_data.py's: resized to 256 and turned upright already."""
        return self.prepared and self.record_format == "prepared"

    @property
    def num_images(self):
        return sum(self.shard_sizes) if self.prepared else len(self.paths)

    @property
    def layout(self):
        if not self.prepared:
            return "image folders"
        return "prepared shards" if self.record_format == "prepared" else "TFDS shards"

    def head(self, count):
        """The first `count` images (all if None)."""
        if count is None or count >= self.num_images:
            return self
        if not self.prepared:
            return Split(self.paths[:count], self.labels[:count], None)
        sizes = np.minimum(self.shard_sizes, np.maximum(count - np.cumsum([0, *self.shard_sizes[:-1]]), 0))
        kept = [i for i, size in enumerate(sizes) if size]
        return Split(
            [self.paths[i] for i in kept], None, [int(sizes[i]) for i in kept], self.label_map, self.record_format
        )

    def relabeled(self, order):
        """This split with each label l replaced by order[l] (None: unchanged): the dataset's labels as a run's
        fc8 rows (run_folder.class_order)."""
        if order is None:
            return self
        if self.prepared:
            return self._replace(label_map=order if self.label_map is None else order[self.label_map])
        return self._replace(labels=[int(order[label]) for label in self.labels])

    def without(self, unreadable, quiet=False):
        """This split less the unreadable files, each named in a warning unless `quiet`; prepared shards hold
        none."""
        if self.prepared:
            return self
        for path in [] if quiet else unreadable:
            print(f"warning: skipping unreadable image {path}")
        skip = set(unreadable)
        kept = [(path, label) for path, label in zip(self.paths, self.labels) if path not in skip]
        return Split([path for path, _ in kept], [label for _, label in kept], None)
