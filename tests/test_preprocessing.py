"""Preprocessing: decoding to RGB, the evaluation crops, the paper's augmentation."""

import io
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data_reader
import preprocessing
from errors import DataError


def test_decode_gives_rgb_for_grayscale_png_and_cmyk(tmp_path):
    Image.new("L", (30, 20), 77).save(tmp_path / "gray.JPEG")
    Image.new("RGB", (30, 20), (10, 200, 30)).save(tmp_path / "png.JPEG", format="PNG")
    Image.new("CMYK", (30, 20), (0, 255, 0, 0)).save(tmp_path / "cmyk.JPEG")
    for name, colour in (("gray", (77, 77, 77)), ("png", (10, 200, 30)), ("cmyk", (255, 0, 255))):
        image = preprocessing.decode_rgb(tf.io.read_file(str(tmp_path / f"{name}.JPEG"))).numpy()
        assert image.shape == (20, 30, 3)
        np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), colour, atol=3, err_msg=name)


def test_webp_headers_bound_the_pixels_as_other_formats_do(tmp_path):
    """TensorFlow decodes WebP too, which a 38-byte file can make a 16383 x 16383 image (1 GB as it decodes)."""
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8))
    for kind, options in (("VP8 ", {}), ("VP8L", {"lossless": True}), ("VP8X", {"exif": Image.Exif().tobytes()})):
        webp = io.BytesIO()
        photo.save(webp, "WEBP", **options)
        assert webp.getvalue()[12:16] == kind.encode()
        assert preprocessing.declared_pixels(tf.constant(webp.getvalue())).numpy() == 37 * 53, kind
    lossless = io.BytesIO()
    photo.save(lossless, "WEBP", lossless=True)
    data = bytearray(lossless.getvalue())
    bits = struct.unpack("<I", data[21:25])[0] & ~(2**28 - 1) | 16382 | 16382 << 14  # width - 1, height - 1
    data[21:25] = struct.pack("<I", bits)
    (tmp_path / "bomb.webp").write_bytes(bytes(data))
    with pytest.raises(DataError, match="declares 268,402,689 pixels, more than the 100,000,000"):
        preprocessing.load_image_crops(str(tmp_path / "bomb.webp"), preprocessing.Preprocessing(), "center", 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares more than"):
        preprocessing.eval_crops(tf.constant(bytes(data)), preprocessing.Preprocessing(), "center", 1, [0, 0])


def test_eval_crop_modes(tiny_data):
    path = os.path.join(tiny_data, data_reader.VAL_DIR, data_reader.VAL_NAME.format(1))
    crops = {
        mode: preprocessing.load_image_crops(path, preprocessing.Preprocessing(), mode, 3, seed=1).numpy()
        for mode in preprocessing.EVAL_CROPS
    }
    assert crops["random"].shape == (3, 224, 224, 3)
    assert crops["center"].shape == (1, 224, 224, 3)
    assert crops["ten"].shape == (10, 224, 224, 3)
    np.testing.assert_array_equal(crops["ten"][5:], crops["ten"][:5, :, ::-1])
    assert not np.array_equal(crops["random"][0], crops["random"][1])
    again = preprocessing.load_image_crops(path, preprocessing.Preprocessing(), "random", 3, seed=1)
    np.testing.assert_array_equal(crops["random"], again.numpy())


def test_pca_lighting_moves_along_the_eigenvectors():
    offsets = np.array(
        [preprocessing.pca_lighting_offset(tf.constant([draw, 2], tf.int64)).numpy() for draw in range(400)]
    )
    alphas = (
        np.linalg.solve(np.array(preprocessing.PCA_EIGENVECTORS) * 255, offsets.T).T / preprocessing.PCA_EIGENVALUES
    )
    assert abs(alphas.mean()) < 0.02 and 0.09 < alphas.std() < 0.11  # alpha ~ N(0, 0.1), paper §4.1
    assert 1 < np.abs(offsets).max() < 30  # a few levels of 255 along the first eigenvector


def test_paper_augmentation_mirrors_and_shifts_the_plain_crop(tiny_data):
    encoded = tf.io.read_file(os.path.join(tiny_data, data_reader.VAL_DIR, data_reader.VAL_NAME.format(1)))
    spec = preprocessing.Preprocessing(mean=(10.0, 20.0, 30.0))
    for draw in range(4):
        seed = tf.constant([draw, 7], tf.int64)
        plain = preprocessing.train_crop(encoded, spec, "none", seed)
        _, flip_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        mirror = tf.random.stateless_uniform([], flip_seed) < 0.5
        expected = tf.where(mirror, plain[:, ::-1], plain) + preprocessing.pca_lighting_offset(lighting_seed)
        np.testing.assert_allclose(preprocessing.train_crop(encoded, spec, "paper", seed), expected, atol=1e-3)


def test_caffe_preprocessing_warps_to_a_square_and_gives_bgr_minus_caffe_s_mean(tmp_path):
    """A 600x150 image of three colour bands: Caffe's 256x256 warp keeps all three in the centre 227 crop, our
    shorter-side resize keeps the middle band alone; Caffe's pixels are BGR minus its mean."""
    bands = np.zeros((150, 600, 3), np.uint8)
    bands[:, :200], bands[:, 200:400], bands[:, 400:] = (200, 0, 0), (0, 200, 0), (0, 0, 200)
    Image.fromarray(bands).save(tmp_path / "bands.png")
    caffe, ours = (
        preprocessing.load_image_crops(str(tmp_path / "bands.png"), spec, "center", 1)[0].numpy()
        for spec in (preprocessing.CAFFE, preprocessing.Preprocessing())
    )
    assert caffe.shape == (227, 227, 3) and ours.shape == (224, 224, 3)
    mean_bgr = np.array(preprocessing.CAFFE_MEAN_BGR)
    np.testing.assert_allclose(caffe[100, 10], [0, 0, 200] - mean_bgr, atol=1e-3)  # red band, as B, G, R
    np.testing.assert_allclose(caffe[100, 113], [0, 200, 0] - mean_bgr, atol=1e-3)
    np.testing.assert_allclose(caffe[100, 216], [200, 0, 0] - mean_bgr, atol=1e-3)  # blue band
    np.testing.assert_allclose(ours[:, [0, 112, 223]], np.broadcast_to([0, 200, 0], (224, 3, 3)), atol=1e-3)
