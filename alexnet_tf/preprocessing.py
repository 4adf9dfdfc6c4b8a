"""Every step from an encoded image to the network's input, for training, evaluation, classify.py and export alike.

Decode to RGB (JPEG, grayscale and CMYK too, PNG, GIF, BMP, WebP), turn upright as a JPEG's EXIF orientation says,
resize (ours: the shorter side to 256; Caffe's: a 256x256 warp), crop (ours 224, Caffe's 227; random for training;
random, centre or ten crops for evaluation), augment (training only), order the channels (ours RGB, Caffe's BGR) and
subtract the per-channel mean; pixels stay on the 0..255 scale, as in the seed, the paper and Caffe. A run's
`Preprocessing` is the "preprocessing" block of its config.json, which every script reads. No other module holds a
preprocessing constant.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from alexnet_tf import startup
from alexnet_tf.errors import DataError, check_flag, check_size

# Paper §2 and §4.1; the ten-crop test takes corners and centre of the central RESIZE_SHORTER square
RESIZE_SHORTER = 256  # shorter side rescaled to 256
CROP_SIZE = 224  # random 224x224 patches
RESIZES = ("shorter", "square")  # shorter side to the size, keeping the aspect (paper §2); both sides (Caffe's warp)
CHANNEL_ORDERS = ("RGB", "BGR")

# Caffe's BVLC reference AlexNet (models/bvlc_alexnet/deploy.prototxt, examples/00-classification.ipynb): images
# warped to 256x256 (OpenCV's bilinear resize, no antialiasing), 227x227 crops, BGR, minus ilsvrc_2012_mean.npy
# averaged over its pixels
CAFFE_CROP_SIZE = 227
CAFFE_RESIZE_SIZE = 256
CAFFE_MEAN_BGR = (104.0069879317889, 116.66876761696767, 122.6789143406786)

JPEG_RATIOS = (1, 2, 4, 8)  # the DCT downscalings libjpeg offers

# PCA colour augmentation, paper §4.1: alpha ~ N(0, 0.1) along the RGB covariance's eigenvectors.
# Eigen-decomposition of ImageNet pixels in [0, 1] as published with fb.resnet.torch; we scale it to 0..255.
PCA_STDDEV = 0.1
PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
AUGMENTATIONS = ("none", "flip", "paper")  # none: the seed (random crop only); flip: + mirror; paper: + PCA
EVAL_CROPS = ("random", "center", "ten")

# EXIF 2.3 §4.6.4 A, tag Orientation (274): how a viewer turns the stored pixels upright, for each of its values
# (1..8) as (transpose, then reverse the rows, reverse the columns). Phone cameras store portraits sideways and tag
# them 6 or 8.
EXIF_ORIENTATIONS = (
    (False, False, False),  # 1: as stored
    (False, False, True),  # 2: mirrored
    (False, True, True),  # 3: rotated 180°
    (False, True, False),  # 4: upside down mirrored
    (True, False, False),  # 5: transposed
    (True, False, True),  # 6: rotated 90° clockwise
    (True, True, True),  # 7: transversed
    (True, True, False),  # 8: rotated 90° counter-clockwise
)
# Where the tag is looked for: the file's first 8 KB, which hold the APP1 "Exif" segment's start (the Exif standard
# puts it first; JFIF files: after APP0) and the first directory of its TIFF structure, with the Orientation entry:
# tag 274, type SHORT (3), count 1, then the value, in the byte order the header names ("II": little-endian)
EXIF_SEARCHED_BYTES = 8192
EXIF_ORIENTATION_ENTRY = (
    r"^\C*?Exif\x00\x00(?:II\*\x00\C*?\x12\x01\x03\x00\x01\x00\x00\x00(\C)\x00"
    r"|MM\x00\*\C*?\x01\x12\x00\x03\x00\x00\x00\x01\x00(\C))\C*$"
)

# Ours: a header declaring more pixels than this is refused before anything is decoded (a decompression bomb would
# otherwise allocate gigabytes); 100 megapixels is 300 MB as RGB, far above a camera photograph's 12 to 50.
MAX_IMAGE_PIXELS = 100_000_000
# Ours: and a side more than this many times the other is refused too: the shorter side is resized to 256, so that a
# 138-byte 8000x2 PNG would become 256x1,024,000 pixels (3 GB as floats); the widest panoramas are about 10:1
MAX_ASPECT_RATIO = 100
# Ours: classify.py refuses a larger file before reading it whole (a video given by mistake would fill the memory);
# 100 megapixels stored uncompressed, 16 bits a channel with alpha, is 800 MB
MAX_IMAGE_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a run turns a decoded image into the network's input: config.json's "preprocessing" block.

    crop_size: side of the square crops (the network's input); resize: "shorter" (the shorter side to resize_size,
    aspect kept) or "square" (both sides to resize_size); antialias: whether downscaling filters first;
    channel_order: "RGB" or "BGR"; mean: subtracted per channel, in channel_order."""

    crop_size: int = CROP_SIZE
    resize: str = "shorter"
    resize_size: int = RESIZE_SHORTER
    antialias: bool = True
    channel_order: str = "RGB"
    mean: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        if self.resize not in RESIZES or self.channel_order not in CHANNEL_ORDERS or len(self.mean) != 3:
            raise ValueError(f"not a preprocessing: {self}")
        if not 0 < self.crop_size <= self.resize_size:
            raise ValueError(f"crop_size {self.crop_size} does not fit in resize_size {self.resize_size}")

    def to_config(self):
        return {**dataclasses.asdict(self), "mean": list(self.mean)}

    def rgb_offset(self):
        """What is added to an RGB crop before its channels are ordered: minus the mean, in RGB order."""
        mean = self.mean if self.channel_order == "RGB" else self.mean[::-1]
        return -tf.constant(mean, tf.float32)


CAFFE = Preprocessing(
    crop_size=CAFFE_CROP_SIZE,
    resize="square",
    resize_size=CAFFE_RESIZE_SIZE,
    antialias=False,
    channel_order="BGR",
    mean=CAFFE_MEAN_BGR,
)

# The functions that tf.data maps call are kept from AutoGraph: they branch with tf.cond and tf.switch_case
# themselves, and rewriting them (with all they call) costs every script seconds of start-up.
not_autographed = tf.autograph.experimental.do_not_convert


def declared_size(encoded):
    """[width, height] as the file's header declares them (JPEG frame, PNG IHDR, GIF logical screen, BMP info header,
    WebP's first chunk), read without decoding; [0, 0] for other formats, which do not decode anyway."""

    def header(offset, count):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, count), tf.uint8), tf.int64)

    def big_endian(numbers):
        return numbers[0] * 2**24 + numbers[1] * 2**16 + numbers[2] * 2**8 + numbers[3]

    def png():
        sizes = header(16, 8)
        return tf.stack([big_endian(sizes[:4]), big_endian(sizes[4:])])

    def gif():
        sizes = header(6, 4)
        return tf.stack([sizes[0] + 256 * sizes[1], sizes[2] + 256 * sizes[3]])

    def bmp():
        sizes = header(18, 8)
        width, height = (sizes[i] + 2**8 * sizes[i + 1] + 2**16 * sizes[i + 2] + 2**24 * sizes[i + 3] for i in (0, 4))
        return tf.stack([width, tf.where(height >= 2**31, 2**32 - height, height)])  # negative: top-down rows

    def webp():  # its first chunk: lossy (VP8), lossless (VP8L), or extended (VP8X: the canvas)
        sizes = header(20, 10)
        lossy = tf.stack([(sizes[6] + 256 * sizes[7]) % 2**14, (sizes[8] + 256 * sizes[9]) % 2**14])
        bits = sizes[1] + 2**8 * sizes[2] + 2**16 * sizes[3] + 2**24 * sizes[4]
        lossless = tf.stack([bits % 2**14 + 1, bits // 2**14 % 2**14 + 1])
        extended = tf.stack(
            [sizes[4] + 2**8 * sizes[5] + 2**16 * sizes[6] + 1, sizes[7] + 2**8 * sizes[8] + 2**16 * sizes[9] + 1]
        )
        chunk = tf.strings.substr(encoded, 12, 4)
        size = tf.where(tf.equal(chunk, b"VP8L"), lossless, tf.where(tf.equal(chunk, b"VP8X"), extended, lossy))
        return tf.where(tf.equal(tf.strings.substr(encoded, 8, 4), b"WEBP"), size, 0)  # RIFF holds sound too

    def jpeg():
        height_width = tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)
        return tf.reverse(height_width, [0])

    magic = tf.strings.substr(encoded, 0, 4)
    long_enough = tf.strings.length(encoded) >= 26
    return tf.case(
        [
            (tf.io.is_jpeg(encoded), jpeg),
            (long_enough & tf.equal(magic, b"\x89PNG"), png),
            (long_enough & tf.equal(magic, b"GIF8"), gif),
            (long_enough & tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp),
            (tf.equal(magic, b"RIFF") & (tf.strings.length(encoded) >= 30), webp),
        ],
        default=lambda: tf.zeros([2], tf.int64),
    )


def declared_pixels(encoded):
    """Width x height as the file's header declares them; 0 for formats that do not decode anyway."""
    return tf.reduce_prod(declared_size(encoded))


def decodable_size(width, height):
    """Whether an image of these sides is one this project decodes: at most MAX_IMAGE_PIXELS, neither side more
    than MAX_ASPECT_RATIO times the other (what the resize to the shorter side 256 would make of it)."""
    return width * height <= MAX_IMAGE_PIXELS and max(width, height) <= MAX_ASPECT_RATIO * min(width, height)


def exif_orientation(encoded):
    """The EXIF orientation (1..8) with which a viewer shows a JPEG; 1 (as stored) for a JPEG without one or with a
    malformed one, and for other formats."""
    # One RE2 op (\C: any byte) that leaves the value's byte alone: parsing the segments and the directory with
    # tensor ops takes hundreds of ops, a cost near decoding's
    found = tf.strings.regex_replace(
        tf.strings.substr(encoded, 0, EXIF_SEARCHED_BYTES), EXIF_ORIENTATION_ENTRY, r"\1\2"
    )
    value = tf.cast(tf.io.decode_raw(tf.strings.substr(found + b"\0", 0, 1), tf.uint8)[0], tf.int32)
    return tf.where((tf.strings.length(found) == 1) & (value >= 1) & (value <= len(EXIF_ORIENTATIONS)), value, 1)


def upright(image, orientation):
    """`image` (height, width, channels) turned as EXIF `orientation` says, as viewers show it."""

    def turned(transpose, reverse_rows, reverse_columns):
        def turn():
            turned = tf.transpose(image, [1, 0, 2]) if transpose else image
            axes = [axis for axis, reverse in ((0, reverse_rows), (1, reverse_columns)) if reverse]
            return tf.reverse(turned, axes) if axes else turned

        return turn

    startup.onednn_uint8_notice_held_back()
    return tf.switch_case(orientation - 1, [turned(*turn) for turn in EXIF_ORIENTATIONS])


def bounded(encoded):
    """`encoded`, once its header is known to declare at most MAX_IMAGE_PIXELS and sides within MAX_ASPECT_RATIO of
    each other (an InvalidArgumentError if not): what decoding and resizing it will allocate is bounded."""
    size = declared_size(encoded)
    checks = [
        tf.debugging.assert_less_equal(
            tf.reduce_prod(size),
            tf.constant(MAX_IMAGE_PIXELS, tf.int64),
            message=f"the image declares more than {MAX_IMAGE_PIXELS:,} pixels",
        ),
        tf.debugging.assert_less_equal(
            tf.reduce_max(size),
            MAX_ASPECT_RATIO * tf.reduce_min(size),
            message=f"one side of the image is more than {MAX_ASPECT_RATIO} times the other",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(encoded)


@not_autographed
def decode_rgb(encoded):
    """Any JPEG (grayscale and CMYK too), PNG, GIF, BMP or WebP bytes as a uint8 RGB image, upright as a JPEG's EXIF
    orientation says."""
    return upright(decode_as_stored(encoded), exif_orientation(encoded))


@not_autographed
def decode_as_stored(encoded):
    """decode_rgb, without the EXIF orientation's turn."""
    return tf.io.decode_image(bounded(encoded), channels=3, expand_animations=False)


@not_autographed
def decodes(encoded):
    """The shape of the decoded image as stored, found as cheaply as decoding allows (JPEGs at 1/8 scale, which still
    reads all of their data): an InvalidArgumentError for a file that does not decode."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.shape(tf.io.decode_jpeg(bounded(encoded), channels=3, ratio=8)),
        lambda: tf.shape(decode_as_stored(encoded)),
    )


def resized_shape(shape, spec):
    """The (height, width) an image of `shape` takes when resized as `spec` (a Preprocessing) says, and the scale
    of each."""
    shape = tf.cast(shape, tf.float32)
    size = spec.resize_size
    if spec.resize == "square":
        return tf.constant([size, size], tf.int32), size / shape
    scale = size / tf.reduce_min(shape)
    return tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size), tf.stack([scale, scale])


@not_autographed
def resized(image, spec):
    new_shape, _ = resized_shape(tf.shape(image)[:2], spec)
    return tf.image.resize(image, new_shape, antialias=spec.antialias)


def random_crop_offset(image_shape, seed, crop_size):
    """The top-left corner of a uniformly random `crop_size` window in an image of `image_shape` (height, width)."""
    room = tf.cast(image_shape - crop_size + 1, tf.float32)
    return tf.cast(tf.random.stateless_uniform([2], seed) * room, tf.int32)


def random_crop_as_stored(encoded, spec, seed):
    """Decode, resize, crop at a random place: the definition of the training crop, before its EXIF turn. Cropping
    before the turn draws the same crops, and lets the turn take the crop alone."""
    image = resized(decode_as_stored(encoded), spec)
    size = spec.crop_size
    top, left = tf.unstack(random_crop_offset(tf.shape(image)[:2], seed, size))
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def random_crop_jpeg(encoded, spec, seed):
    """random_crop_as_stored of a JPEG, fast: the window is mapped back to the original's coordinates and only it is
    decoded, at the largest DCT downscaling (1/2, 1/4, 1/8) that keeps it at least the crop's size, then resized."""
    encoded = bounded(encoded)
    crop_size = spec.crop_size
    shape = tf.io.extract_jpeg_shape(encoded)[:2]
    new_shape, scale = resized_shape(shape, spec)
    offset = tf.cast(random_crop_offset(new_shape, seed, crop_size), tf.float32)
    origin = tf.minimum(tf.cast(tf.round(offset / scale), tf.int32), shape - 1)
    size = tf.maximum(tf.minimum(tf.cast(tf.round(crop_size / scale), tf.int32), shape - origin), 1)
    ratio_index = tf.reduce_sum(tf.cast(tf.reduce_min(size) >= crop_size * tf.constant([2, 4, 8]), tf.int32))

    def decode_at(ratio):
        return lambda: tf.io.decode_and_crop_jpeg(
            encoded, tf.concat([origin // ratio, size // ratio], 0), channels=3, ratio=ratio
        )

    window = tf.switch_case(ratio_index, [decode_at(ratio) for ratio in JPEG_RATIOS])
    # The DCT scaling leaves a factor below 2, where bilinear needs no antialiasing (which costs 3x the decode);
    # prepared images need no resize at all.
    return tf.cond(
        tf.reduce_all(tf.shape(window)[:2] == crop_size),
        lambda: tf.cast(window, tf.float32),
        lambda: tf.image.resize(window, [crop_size, crop_size]),
    )


def pca_lighting_offset(seed, stddev=PCA_STDDEV):
    """The RGB offset of the paper's lighting noise: eigenvectors * (alpha * eigenvalues), alpha ~ N(0, stddev),
    on the 0..255 scale; it is added to every pixel."""
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    return tf.linalg.matvec(tf.constant(PCA_EIGENVECTORS), alpha * tf.constant(PCA_EIGENVALUES)) * 255.0


@not_autographed
def train_crop(encoded, spec, augment, seed, turn=True):
    """One training example: a random crop of the resized image, turned upright (EXIF) unless `turn` is False (the
    images of prepared shards are), augmented, its channels ordered, mean subtracted."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: random_crop_jpeg(encoded, spec, seeds[0]),
        lambda: random_crop_as_stored(encoded, spec, seeds[0]),
    )
    if turn:  # here, on the square crop: a turn inside the JPEG branch cost 10-15% of the crop's time, here 5%
        image = upright(image, exif_orientation(encoded))
    mirror = augment in ("flip", "paper") and tf.random.stateless_uniform([], seeds[1]) < 0.5
    offset = spec.rgb_offset()
    if augment == "paper":
        offset += pca_lighting_offset(seeds[2])
    return _network_input_xla(image, mirror, offset, spec.channel_order == "BGR")


def _network_input(images, mirror, offset, bgr):
    shifted = tf.where(mirror, tf.reverse(images, [-2]), images) + offset
    return tf.reverse(shifted, [-1]) if bgr else shifted


# XLA makes the mirror, the offset and the channel order one pass over the pixels: TF's own broadcasting add of a
# per-channel offset costs as much as decoding the crop (docs/performance.md). Exported models go without: TF Serving
# runs no XLA on CPU unless asked.
_network_input_xla = tf.function(_network_input, jit_compile=True, autograph=False)


@not_autographed
def eval_crops(encoded, spec, crops, k_crops, seed, xla=True):
    """The crops test.py and classify.py average over, shape (K, crop_size, crop_size, 3), as the network takes
    them: `random`: k_crops random crops; `center`: the centre crop (K = 1); `ten`: corners and centre of the central
    resize_size square and their mirrors (K = 10, the paper's test and Caffe's oversampling)."""
    return image_crops(decode_rgb(encoded), spec, crops, k_crops, seed, xla)


@not_autographed
def image_crops(image, spec, crops, k_crops, seed, xla=True):
    """eval_crops of a decoded RGB image (height, width, 3), any dtype on the 0..255 scale."""
    image = resized(image, spec)
    size = spec.crop_size
    if crops == "random":
        patches = [
            tf.image.stateless_random_crop(image, [size, size, 3], s)
            for s in tf.unstack(tf.random.experimental.stateless_split(seed, k_crops))
        ]
    elif crops == "center":
        patches = [_crop_at(image, 0.5, 0.5, size, image_extent=None)]
    elif crops == "ten":
        square = spec.resize_size
        corners = [_crop_at(image, fy, fx, size, square) for fy, fx in ((0, 0), (0, 1), (1, 0), (1, 1), (0.5, 0.5))]
        patches = corners + [tf.image.flip_left_right(patch) for patch in corners]
    else:
        raise ValueError(f"crops must be one of {EVAL_CROPS}, not {crops!r}")
    network_input = _network_input_xla if xla else _network_input
    return network_input(tf.stack(patches), False, spec.rgb_offset(), spec.channel_order == "BGR")


def crops_per_image(crops, k_crops):
    return {"random": k_crops, "center": 1, "ten": 10}[crops]


def check_k_crops(crops, k_crops):
    """--k-crops counts random crops: given with --crops center or ten, whose crops are fixed, it is a mistake."""
    check_flag(
        "k-crops",
        k_crops,
        k_crops is None or crops == "random",
        f"left out with --crops {crops}, which takes {crops_per_image(crops, None)} crop(s) an image",
    )


def _crop_at(image, fy, fx, size, image_extent):
    """The `size` crop at relative position (fy, fx) of the central `image_extent` square (None: whole image)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    extent_h = height if image_extent is None else tf.minimum(height, image_extent)
    extent_w = width if image_extent is None else tf.minimum(width, image_extent)
    top = (height - extent_h) // 2 + tf.cast(fy * tf.cast(extent_h - size, tf.float32), tf.int32)
    left = (width - extent_w) // 2 + tf.cast(fx * tf.cast(extent_w - size, tf.float32), tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def load_image_crops(path, spec, crops, k_crops, seed=0):
    """The eval crops of one image file, for classify.py; formats TF cannot decode go through Pillow. A file that
    is not an image, or declares more than MAX_IMAGE_PIXELS, is a DataError."""
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder: give its image files, such as {os.path.join(path, '*.jpg')}")
    if not os.path.isfile(path):
        raise DataError(f"image {path} not found: give the path of a JPEG, PNG, GIF or BMP file")
    check_size(path, MAX_IMAGE_BYTES, DataError, "give a JPEG, PNG, GIF or BMP file")
    encoded = tf.io.read_file(path)
    try:
        with startup.decoder_noise_held_back():
            width, height = (int(side) for side in declared_size(encoded))
            if decodable_size(width, height):
                decode_as_stored(encoded)
    except tf.errors.InvalidArgumentError:  # be specific: TF's word for TIFF, damaged headers and data
        encoded = tf.io.encode_png(np.asarray(pillow_rgb(path)))
    else:
        if not decodable_size(width, height):
            raise too_large(path, width, height)
    return eval_crops(encoded, spec, crops, crops_per_image(crops, k_crops), tf.constant([seed, 0], tf.int64))


def too_large(path, width, height):
    return DataError(
        f"{path} declares {width}x{height} pixels: this project decodes at most {MAX_IMAGE_PIXELS:,}, neither side "
        f"more than {MAX_ASPECT_RATIO} times the other; give a smaller image, or crop it"
    )


def pillow_rgb(path):
    """The image file at `path` decoded by Pillow, upright as its EXIF says, in RGB: for the formats TensorFlow does not
    decode, and for pictures of the images (thumbnails); a DataError for a file that is not an image or too large."""
    try:
        with Image.open(path) as image:
            if not decodable_size(image.width, image.height):
                raise too_large(path, image.width, image.height)
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, Image.UnidentifiedImageError, Image.DecompressionBombError) as error:  # be specific: what
        # Pillow raises for files that are not images, truncated ones, and its own pixel bound
        raise DataError(f"cannot read {path} as an image ({error}): give a JPEG, PNG, GIF or BMP file") from None
