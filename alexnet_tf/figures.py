"""What a run learned, as the paper shows it: Figure 3, conv1's 96 kernels as colour tiles (with two groups, the first
group's 48 above the second's, one GPU's each in the paper), and Figure 4, validation images beside the training
images whose fc7 vectors are nearest in Euclidean distance; and those vectors for TensorBoard's projector.

    DIR/
        conv1_kernels.png       Figure 3
        neighbours.png          Figure 4: a row a query, the query first, then its nearest training images
        neighbours.json         [{"query": path, "neighbours": [{"path": path, "distance": d}, ...]}, ...]
        projector/              with --projector: the vectors (a TF checkpoint), metadata.tsv, sprite.png, and
                                projector_config.pbtxt, for `tensorboard --logdir DIR/projector`

The search keeps, for each query, only its nearest images so far: the training images' vectors are never all held.
"""

import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from alexnet_tf import input_pipeline, preprocessing, progress
from alexnet_tf.errors import DataError

KERNELS_PER_ROW = 16  # 96 kernels: 6 rows, 3 a group of the paper's two
MAGNIFY = 4  # an 11x11 kernel shown as 44x44 pixels
GAP = 2  # pixels between tiles; a group's rows are set apart by four times as much
THUMBNAIL = 96  # pixels, the side of an image in Figure 4
SPRITE_TILE = 32  # pixels, the side of an image in the projector's sprite


def kernel_tiles(kernel):
    """conv1's kernel (height, width, 3, filters) as one RGB uint8 tile a filter, each scaled to the full range on its
    own: (filters, height, width, 3)."""
    tiles = np.moveaxis(np.asarray(kernel, np.float32), -1, 0)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(tiles.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    return np.round(255 * (tiles - low) / span).astype(np.uint8)


def tile_layout(filters, groups, size):
    """Where kernel_figure puts each filter's tile of `size` pixels: its top-left corners in filter order, and the
    figure's (height, width). Rows of KERNELS_PER_ROW, each group's filters (in order) below the previous group's."""
    corners, top = [], GAP
    for members in np.array_split(np.arange(filters), groups):
        for n in range(len(members)):
            row, column = divmod(n, KERNELS_PER_ROW)
            corners.append((top + row * (size + GAP), GAP + column * (size + GAP)))
        top += int(np.ceil(len(members) / KERNELS_PER_ROW)) * (size + GAP) + 4 * GAP
    return corners, (top - 4 * GAP, KERNELS_PER_ROW * (size + GAP) + GAP)


def kernel_figure(kernel, groups):
    """Figure 3 as an image: the tiles laid out by tile_layout, magnified MAGNIFY times."""
    tiles = kernel_tiles(kernel)
    size = tiles.shape[1] * MAGNIFY
    corners, shape = tile_layout(len(tiles), groups, size)
    canvas = np.full((*shape, 3), 255, np.uint8)
    for tile, (y, x) in zip(tiles, corners):
        canvas[y : y + size, x : x + size] = tile.repeat(MAGNIFY, 0).repeat(MAGNIFY, 1)
    return Image.fromarray(canvas)


def tile_at(figure, filter_index, groups, filters, kernel_size):
    """The tile of `filter_index` cut out of a kernel_figure, un-magnified: what the figure shows of that filter."""
    size = kernel_size * MAGNIFY
    y, x = tile_layout(filters, groups, size)[0][filter_index]
    return np.asarray(figure)[y : y + size : MAGNIFY, x : x + size : MAGNIFY]


def vectors(extractor, split, *, spec, batch_size, what):
    """`extractor`'s vectors of `split`'s images (centre crops), a batch at a time, with a progress bar."""
    dataset = input_pipeline.eval_dataset(split, spec=spec, batch_size=batch_size)
    bar = progress.bar(split.num_images, "image")
    print(f"fc7 vectors of {split.num_images} {what} ...")
    with input_pipeline.as_prepared(split):
        for images, _ in dataset:
            batch = extractor(images[:, 0], training=False).numpy()
            bar.add(len(batch))
            yield batch


def nearest(query_vectors, batches, count):
    """For each query, the indices and distances of its `count` nearest vectors among `batches` (yielded in order),
    nearest first, keeping no more than that of each batch."""
    queries = np.asarray(query_vectors, np.float64)
    best_index = np.zeros((len(queries), 0), np.int64)
    best_distance = np.zeros((len(queries), 0))
    seen = 0
    for batch in batches:
        batch = np.asarray(batch, np.float64)
        squared = (queries**2).sum(1)[:, None] - 2 * queries @ batch.T + (batch**2).sum(1)[None]
        distance = np.sqrt(np.maximum(squared, 0))
        index = np.concatenate([best_index, np.broadcast_to(np.arange(seen, seen + len(batch)), distance.shape)], 1)
        distance = np.concatenate([best_distance, distance], 1)
        keep = np.argsort(distance, axis=1, kind="stable")[:, :count]
        best_index, best_distance = np.take_along_axis(index, keep, 1), np.take_along_axis(distance, keep, 1)
        seen += len(batch)
    return best_index, best_distance


def thumbnail(path, side=THUMBNAIL):
    """The image at `path` as a square thumbnail (centre-cropped); grey when it is not a file one can open (prepared
    shards keep no files)."""
    try:
        return ImageOps.fit(preprocessing.pillow_rgb(path), (side, side))
    except DataError:  # be specific: no such file, or not an image
        return Image.new("RGB", (side, side), (160, 160, 160))


def neighbours_figure(rows, data_dir):
    """Figure 4: a row of thumbnails a query, the query, a gap, then its neighbours nearest first."""
    columns = max(len(row["neighbours"]) for row in rows) + 1
    step = THUMBNAIL + GAP
    canvas = Image.new("RGB", (columns * step + 4 * GAP + GAP, len(rows) * step + GAP), "white")
    for y, row in enumerate(rows):
        paths = [row["query"], *(n["path"] for n in row["neighbours"])]
        for x, path in enumerate(paths):
            canvas.paste(
                thumbnail(os.path.join(data_dir, path)), (GAP + x * step + (4 * GAP if x else 0), GAP + y * step)
            )
    return canvas


def write_neighbours(out_dir, *, queries, searched, index, distance, data_dir):
    """neighbours.json and neighbours.png of the nearest `index` (into `searched`) of each of the `queries` paths."""
    rows = [
        {
            "query": query,
            "neighbours": [{"path": searched[i], "distance": float(d)} for i, d in zip(index[q], distance[q])],
        }
        for q, query in enumerate(queries)
    ]
    with open(os.path.join(out_dir, "neighbours.json"), "w") as f:
        json.dump(rows, f, indent=1)
    neighbours_figure(rows, data_dir).save(os.path.join(out_dir, "neighbours.png"))
    return rows


def write_projector(out_dir, *, vectors_of, names, classes, data_dir):
    """The vectors (float16 rows), their names and classes, and a sprite of thumbnails, for TensorBoard's projector
    in `out_dir`."""
    from tensorboard.plugins import projector  # imported here: only --projector needs TensorBoard's plugin

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metadata.tsv"), "w") as f:
        f.write("path\tclass\n")
        f.writelines(f"{name}\t{klass}\n" for name, klass in zip(names, classes))
    per_row = int(np.ceil(np.sqrt(len(names))))
    sprite = Image.new("RGB", (per_row * SPRITE_TILE, per_row * SPRITE_TILE), "white")
    for n, name in enumerate(names):
        row, column = divmod(n, per_row)
        sprite.paste(thumbnail(os.path.join(data_dir, name), SPRITE_TILE), (column * SPRITE_TILE, row * SPRITE_TILE))
    sprite.save(os.path.join(out_dir, "sprite.png"))
    embedding = tf.Variable(np.asarray(vectors_of, np.float32), name="fc7")
    tf.train.Checkpoint(embedding=embedding).save(os.path.join(out_dir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    entry.sprite.image_path = "sprite.png"
    entry.sprite.single_image_dim.extend([SPRITE_TILE, SPRITE_TILE])
    projector.visualize_embeddings(out_dir, config)
