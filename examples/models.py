"""Models for the RxRx1 reference training scripts (Keras 3, on any of its backends).

* ``seed_cnn``: the seed project's CNN, layer for layer (at 512 px: 25.2 M parameters).
* ``resnet50``: ``keras.applications.ResNet50`` with random initialisation and a stem that
  takes the 6 fluorescence channels directly (ImageNet weights cannot be downloaded and
  expect 3 channels anyway).

Both end in a float32 softmax, so that they stay numerically safe under the
``mixed_float16`` / ``mixed_bfloat16`` policies set by ``strategy.make_strategy``. Both
are compiled with the seed's optimiser and loss (Adam 1e-3, sparse categorical
cross-entropy) and report ``accuracy`` (the Kaggle metric is multiclass accuracy).

The models use Keras layers and ``rxdata.layers`` only, so they build and train on the
TensorFlow, JAX and PyTorch backends alike (``KERAS_BACKEND``, read at the first
``import keras``). Hyper-parameters live here, in the examples, not in the library.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras  # any Keras 3 backend: KERAS_BACKEND=tensorflow (default), jax or torch

MODELS = ("seed-cnn", "resnet50")
# The smallest input side each model takes: the seed CNN's three conv/pool blocks shrink
# a side n to ((((n - 5) // 2 + 1) // 4 - 1) // 2 - 1) // 2, which must stay >= 1;
# keras.applications.ResNet50 refuses inputs under 32 px.
MIN_IMAGE_SIZE = {"seed-cnn": 59, "resnet50": 32}
NUM_TREATMENT_CLASSES = 1108  # siRNA classes 0..1107, the Kaggle task
NUM_ALL_CLASSES = 1139  # plus 30 positive controls and the negative control


def model_inputs(image_size: int, channels: int, *, normalize_on: str = "cpu") -> tuple[Any, Any]:
    """The model's inputs and the standardized image tensor they give.

    ``normalize_on="cpu"``: one float input ``image`` (already normalized by the input
    pipeline). ``normalize_on="accelerator"``: the dict the pipeline ships in that mode,
    ``image`` (uint8), ``mean`` and ``std`` (per example and channel), standardized on
    the accelerator by :class:`rxdata.layers.Standardize`.
    """
    if normalize_on == "cpu":
        image = keras.Input((image_size, image_size, channels), name="image")
        return image, image
    if normalize_on != "accelerator":
        raise ValueError(f"normalize_on must be 'cpu' or 'accelerator'; got {normalize_on!r}")
    from rxdata.layers import Standardize

    inputs = {
        "image": keras.Input((image_size, image_size, channels), name="image", dtype="uint8"),
        "mean": keras.Input((channels,), name="mean"),
        "std": keras.Input((channels,), name="std"),
    }
    x = Standardize(name="standardize")([inputs["image"], inputs["mean"], inputs["std"]])
    return inputs, x


def seed_cnn(
    num_classes: int = NUM_TREATMENT_CLASSES,
    *,
    image_size: int = 512,
    channels: int = 6,
    hidden_units: int = 1108,
    normalize_on: str = "cpu",
) -> keras.Model:
    """The seed CNN: 3 conv/pool blocks, a 1108-unit dense layer, dropout 0.25, softmax.

    Args:
        num_classes: Output classes (1108 treatments, or 1139 with controls).
        image_size: Side of the square input (512 for full-size RxRx1 sites).
        channels: Input channels (6 for RxRx1).
        hidden_units: Width of the dense layer; the seed used 1108.
        normalize_on: ``"cpu"`` or ``"accelerator"`` (see :func:`model_inputs`).

    Example:
        >>> m = seed_cnn(10, image_size=64)
        >>> m.output_shape, m.count_params()
        ((None, 10), 169350)
    """
    inputs, x = model_inputs(image_size, channels, normalize_on=normalize_on)
    x = keras.layers.Conv2D(64, 5, strides=2, activation="relu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(64, 2, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(96, 2, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    x = keras.layers.Dropout(0.25)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(
        x
    )
    return keras.Model(inputs, outputs, name="seed_cnn")


def resnet50(
    num_classes: int = NUM_TREATMENT_CLASSES,
    *,
    image_size: int = 512,
    channels: int = 6,
    normalize_on: str = "cpu",
) -> keras.Model:
    """ResNet50 (random init) on 6-channel input, global average pooling, softmax head.

    Example:
        >>> resnet50(10, image_size=32).output_shape
        (None, 10)
    """
    inputs, x = model_inputs(image_size, channels, normalize_on=normalize_on)
    with warnings.catch_warnings():  # 6 channels are the point here, not a mistake
        warnings.filterwarnings("ignore", message="This model usually expects 1 or 3")
        backbone = keras.applications.ResNet50(
            weights=None,
            include_top=False,
            input_shape=(image_size, image_size, channels),
            pooling="avg",
        )
    x = backbone(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(
        x
    )
    return keras.Model(inputs, outputs, name="resnet50_6ch")


def build_model(
    name: str,
    num_classes: int,
    *,
    image_size: int = 512,
    channels: int = 6,
    learning_rate: float = 1e-3,
    normalize_on: str = "cpu",
    steps_per_execution: int = 1,
) -> keras.Model:
    """Build and compile a model by name (Adam, sparse categorical cross-entropy).

    Call inside ``strategy.scope()`` so that variables are placed on the replicas.
    """
    if name == "seed-cnn":
        model = seed_cnn(
            num_classes, image_size=image_size, channels=channels, normalize_on=normalize_on
        )
    elif name == "resnet50":
        model = resnet50(
            num_classes, image_size=image_size, channels=channels, normalize_on=normalize_on
        )
    else:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model
