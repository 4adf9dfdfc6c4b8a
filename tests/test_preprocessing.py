"""Preprocessing: decoding to RGB, the evaluation crops, the paper's augmentation."""

import io
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

import data_reader
from alexnet_tf import preprocessing
from alexnet_tf.errors import DataError
from conftest import exif_segment, tagged


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
    with pytest.raises(DataError, match="declares 16383x16383 pixels: this project decodes at most 100,000,000"):
        preprocessing.load_image_crops(str(tmp_path / "bomb.webp"), preprocessing.Preprocessing(), "center", 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares more than"):
        preprocessing.eval_crops(tf.constant(bytes(data)), preprocessing.Preprocessing(), "center", 1, [0, 0])


def test_headers_give_width_and_height_in_that_order(tmp_path):
    photo = Image.fromarray(np.zeros((37, 53, 3), np.uint8))  # 53 wide, 37 high
    for kind in ("JPEG", "PNG", "GIF", "BMP", "WEBP"):
        encoded = io.BytesIO()
        photo.save(encoded, kind)
        assert preprocessing.declared_size(tf.constant(encoded.getvalue())).numpy().tolist() == [53, 37], kind


def test_a_tiny_image_that_the_resize_would_make_huge_is_refused_in_every_path(tmp_path):
    """An 8000x2 PNG is 138 bytes; resized to the shorter side 256 it would be 256x1,024,000 pixels (3 GB as floats)."""
    Image.fromarray(np.zeros((2, 8000, 3), np.uint8)).save(tmp_path / "wide.png")
    encoded = tf.constant((tmp_path / "wide.png").read_bytes())
    spec = preprocessing.Preprocessing()
    with pytest.raises(DataError, match="declares 8000x2 pixels: .* neither side more than 100 times the other"):
        preprocessing.load_image_crops(str(tmp_path / "wide.png"), spec, "center", 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 100 times the other"):
        preprocessing.eval_crops(encoded, spec, "center", 1, [0, 0])  # test.py, the mean, the SavedModel
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 100 times the other"):
        preprocessing.train_crop(encoded, spec, "paper", tf.constant([0, 0], tf.int64))  # training, the scan's decode
    Image.fromarray(np.zeros((2, 200, 3), np.uint8)).save(tmp_path / "panorama.png")  # 100:1 still decodes
    assert preprocessing.load_image_crops(str(tmp_path / "panorama.png"), spec, "center", 1).shape == (1, 224, 224, 3)


def test_classify_s_loader_refuses_a_file_larger_than_any_image_before_reading_it(tmp_path):
    with open(tmp_path / "film.jpg", "wb") as film:  # sparse: no disk taken, and 1 GB in memory if it were read
        film.truncate(preprocessing.MAX_IMAGE_BYTES + 1)
    with pytest.raises(DataError, match="film.jpg has 1,073,741,825 bytes, more than the 1,073,741,824 any real one"):
        preprocessing.load_image_crops(str(tmp_path / "film.jpg"), preprocessing.Preprocessing(), "center", 1)


def jpeg_bytes(image, **save):
    out = io.BytesIO()
    image.save(out, "JPEG", **save)
    return out.getvalue()


def test_exif_orientation_reads_the_tag_as_pillow_does():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), np.uint8))
    plain = jpeg_bytes(photo)
    readable = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x010F], exif[0x0112] = "a phone", orientation  # Pillow writes it after JFIF's APP0
        readable[f"pillow {orientation}"] = jpeg_bytes(photo, exif=exif)
        big_endian = exif_segment(orientation, big_endian=True, tags_before=12)
        readable[f"big-endian {orientation}"] = tagged(plain, big_endian)
    for name, data in readable.items():
        expected = Image.open(io.BytesIO(data)).getexif()[0x0112]
        assert preprocessing.exif_orientation(tf.constant(data)).numpy() == expected == int(name.split()[-1]), name
    stored = preprocessing.decode_rgb(tf.constant(plain)).numpy()
    for name, segment in (("none", exif_segment(None)), ("0", exif_segment(0)), ("9", exif_segment(9))):
        decoded = preprocessing.decode_rgb(tf.constant(tagged(plain, segment))).numpy()
        np.testing.assert_array_equal(decoded, stored, err_msg=f"orientation {name}: as stored")
    png = io.BytesIO()
    photo.save(png, "PNG")
    cut_in_its_directory = tagged(plain, exif_segment(6))[:40]
    for data in (plain, png.getvalue(), cut_in_its_directory, b""):
        assert preprocessing.exif_orientation(tf.constant(data)).numpy() == 1, data[:40]


def test_tagged_jpegs_decode_upright_as_pillow_turns_them(tmp_path):
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 50, 3), np.uint8))
    plain = jpeg_bytes(photo, quality=95)
    stored = preprocessing.decode_rgb(tf.constant(plain)).numpy()
    for orientation in range(1, 9):
        as_pillow_shows = Image.fromarray(stored)
        as_pillow_shows.getexif()[0x0112] = orientation
        expected = np.asarray(ImageOps.exif_transpose(as_pillow_shows))
        decoded = preprocessing.decode_rgb(tf.constant(tagged(plain, exif_segment(orientation)))).numpy()
        np.testing.assert_array_equal(decoded, expected, err_msg=f"orientation {orientation}")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(tmp_path / "portrait.tiff", exif=exif)  # a format decoded by Pillow
    photo.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")
    crops = [
        preprocessing.load_image_crops(str(tmp_path / name), preprocessing.Preprocessing(), "center", 1).numpy()
        for name in ("portrait.tiff", "upright.png")
    ]
    np.testing.assert_array_equal(*crops)


def test_training_crops_of_tagged_photos_are_upright():
    """Four coloured quarters as a viewer shows the photo, stored turned as its EXIF orientation says: every training
    crop (no augmentation) has each colour in its corner, as the paper's crops of an upright photo would."""
    quarters = np.zeros((300, 400, 3), np.uint8)
    colours = {(0, 0): (230, 20, 20), (0, -1): (20, 230, 20), (-1, 0): (20, 20, 230), (-1, -1): (230, 230, 230)}
    quarters[:150, :200], quarters[:150, 200:], quarters[150:, :200], quarters[150:, 200:] = colours.values()
    stored_as = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90"}
    stored_as.update({7: "TRANSVERSE", 8: "ROTATE_270"})  # the inverse of each orientation's turn
    for orientation in range(1, 9):
        photo = Image.fromarray(quarters)
        if orientation > 1:
            photo = photo.transpose(Image.Transpose[stored_as[orientation]])
        encoded = tf.constant(tagged(jpeg_bytes(photo, quality=95), exif_segment(orientation)))
        for draw in range(3):
            crop = preprocessing.train_crop(encoded, preprocessing.Preprocessing(), "none", tf.constant([draw, 0]))
            for corner, colour in colours.items():
                np.testing.assert_allclose(crop.numpy()[corner], colour, atol=12, err_msg=f"{orientation} {corner}")


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
