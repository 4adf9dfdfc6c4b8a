"""keras.applications' own test cases (keras/src/applications/applications_test.py), adapted to alexnet.AlexNet:
what every Keras application does, ours does too, without downloaded weights."""

import numpy as np
import pytest

import keras

import alexnet

LAST_DIM = 256  # pool5's channels: what pooling gives without the top


def test_application_notop_variable_input_channels():
    for channels in (1, 4):
        model = alexnet.AlexNet(weights=None, include_top=False, input_shape=(None, None, channels))
        assert model.output_shape[-1] == LAST_DIM and model.input_shape == (None, None, None, channels)
        assert model.predict(np.zeros((1, 100, 120, channels)), verbose=0).shape[-1] == LAST_DIM


def test_application_notop_custom_input_shape():
    model = alexnet.AlexNet(weights=None, include_top=False, input_shape=(123, 123, 3))
    assert model.output_shape[-1] == LAST_DIM


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_application_pooling(pooling):
    model = alexnet.AlexNet(weights=None, include_top=False, pooling=pooling)
    assert model.output_shape == (None, LAST_DIM)
    with pytest.raises(ValueError, match="pass include_top=False with it"):
        alexnet.AlexNet(weights=None, pooling=pooling)  # with the top it would be ignored


def test_application_input_tensor():
    image = keras.Input((150, 150, 3))
    model = alexnet.AlexNet(weights=None, include_top=False, input_tensor=image, pooling="avg")
    assert model.inputs[0] is image and model.output_shape == (None, LAST_DIM)
    features = keras.layers.Dense(3)(model.output)  # what input_tensor is for: the model inside a larger one
    assert keras.Model(image, features).output_shape == (None, 3)


def test_application_classifier_activation():
    model = alexnet.AlexNet(weights=None, include_top=True, classes=7, classifier_activation="softmax")
    assert model.layers[-1].activation.__name__ == "softmax"
    probabilities = model.predict(np.random.default_rng(0).normal(0, 50, (2, 224, 224, 3)), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    logits = alexnet.AlexNet(weights=None, classes=7, classifier_activation=None)
    assert logits.layers[-1].name == "fc8"


def test_application_serialization_and_keras_file(tmp_path):
    model = alexnet.AlexNet(weights=None, include_top=False, input_shape=(67, 67, 3), pooling="max")
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    model.save(tmp_path / "alexnet.keras")
    loaded = keras.saving.load_model(tmp_path / "alexnet.keras")
    images = np.random.default_rng(1).normal(0, 50, (2, 67, 67, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5)


def test_decode_predictions_takes_one_score_a_class(one_step_run):
    with pytest.raises(ValueError, match=r"give a batch \(N, 10\)"):
        alexnet.decode_predictions(np.ones((2, 3)), str(one_step_run))
    with pytest.raises(ValueError, match=r"give a batch \(N, 10\)"):
        alexnet.decode_predictions(np.ones(10), str(one_step_run))
    with pytest.raises(ValueError, match="takes RGB images"):
        alexnet.AlexNet(weights=str(one_step_run), include_top=False, input_shape=(None, None, 1))
