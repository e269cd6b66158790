"""rxdata on every installed Keras 3 backend: the layers, and model.fit on make_dataset.

Keras fixes its backend when it is first imported, so each backend runs in a child
process with ``KERAS_BACKEND`` set. TensorFlow is always installed (a core dependency);
JAX and PyTorch come with the ``jax`` and ``torch`` extras (``make test-backends``): their
tests are skipped, with that reason, where the package is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _backend(name: str) -> object:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
    missing = importlib.util.find_spec(module) is None
    reason = (
        f"Keras backend {name!r} needs the {module} package: `make test-backends` installs "
        "the jax and torch extras and runs these tests"
    )
    return pytest.param(name, id=name, marks=pytest.mark.skipif(missing, reason=reason))


BACKENDS = [_backend(name) for name in ("tensorflow", "jax", "torch")]


def run_on_backend(backend: str, code: str, tmp_path: Path, timeout: float = 600) -> str:
    """Run ``code`` in a child Python with ``KERAS_BACKEND=backend``; return its stdout."""
    script = tmp_path / f"check_{backend}.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["JAX_PLATFORMS"] = "cpu"  # no accelerator probing in the tests
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{backend}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


LAYERS_CHECK = """
import numpy as np, keras
import rxdata
from rxdata.layers import RGB, Standardize, rgb
from rxdata.normalization import Normalizer

assert keras.backend.backend() == BACKEND, keras.backend.backend()
rng = np.random.default_rng(5)

# rgb and RGB: bit-identical to the numpy colouring, eagerly and inside a model
for channels in [(1, 2, 3, 4, 5, 6), (4, 2), (6,)]:
    batch = rng.integers(0, 256, (3, 9, 7, len(channels)), dtype=np.uint8)
    want = rxdata.convert_tensor_to_rgb(batch, channels)
    got = keras.ops.convert_to_numpy(rgb(batch, channels))
    assert got.dtype == np.uint8 and np.array_equal(got, want), channels
    inp = keras.Input((9, 7, len(channels)), dtype="uint8")
    model = keras.Model(inp, RGB(channels)(inp))
    assert np.array_equal(keras.ops.convert_to_numpy(model(batch)), want), channels
    assert np.array_equal(model.predict(batch, verbose=0), want), channels
custom = {1: {"rgb": (255, 255, 255), "range": (0, 20)}}
x = np.array([[[[0], [10], [30]]]], np.uint8)
want = rxdata.convert_tensor_to_rgb(x, (1,), rgb_map=custom)
assert np.array_equal(keras.ops.convert_to_numpy(RGB((1,), rgb_map=custom)(x)), want)
for bad, error in [(np.zeros((1, 2, 2, 6), np.float32), TypeError),
                   (np.zeros((1, 2, 2, 5), np.uint8), ValueError)]:
    try:
        rgb(bad)
    except error:
        pass
    else:
        raise AssertionError(f"rgb accepted {bad.dtype} {bad.shape}")

# Standardize: equal to the numpy normalization of each site by its plate's statistics
import pandas as pd
rows = [{"id_code": f"{e}_{p}_B02", "experiment": e, "plate": p, "well": "B02", "site": 1,
         "channel": c, "mean": 2.0 + 3 * c + p, "std": 1.5 + c / 7 + p / 3}
        for e in ("HEPG2-01", "RPE-03") for p in (1, 2) for c in range(1, 7)]
n = Normalizer.from_pixel_stats(pd.DataFrame(rows), mode="plate")
sites = [("HEPG2-01", 1), ("RPE-03", 2), ("RPE-03", 1)]
images = rng.integers(0, 256, (3, 8, 5, 6), dtype=np.uint8)
stats = [n.stats_for(e, p) for e, p in sites]
mean = np.stack([s.mean for s in stats]).astype(np.float32)
std = np.stack([s.std for s in stats]).astype(np.float32)
want = np.stack([n.normalize(img, e, p) for img, (e, p) in zip(images, sites)])
inputs = [keras.Input((8, 5, 6), dtype="uint8"), keras.Input((6,)), keras.Input((6,))]
model = keras.Model(inputs, Standardize()(inputs))


def check_standardized(got, want):
    # XLA (JAX, or TensorFlow under jit_compile) turns x / broadcast(std) into
    # x * broadcast(1 / std): within about one float32 ulp, not bit-identical
    assert got.dtype == np.float32, got.dtype
    if BACKEND == "jax":
        np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-6)
    else:
        assert np.array_equal(got, want), np.abs(got - want).max()


check_standardized(keras.ops.convert_to_numpy(model([images, mean, std])), want)
check_standardized(model.predict([images, mean, std], verbose=0), want)

# both layers survive a save and load on this backend
path = "layers.keras"
model = keras.Model(inputs, [Standardize()(inputs), RGB(name="rgb")(inputs[0])])
model.save(path)
again = keras.models.load_model(path)
out = [keras.ops.convert_to_numpy(t) for t in again([images, mean, std])]
check_standardized(out[0], want)
assert np.array_equal(out[1], rxdata.convert_tensor_to_rgb(images))
print("layers ok on", keras.backend.backend())
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("backend", BACKENDS)
def test_layers_equal_numpy_on_backend(backend, tmp_path):
    out = run_on_backend(backend, f"BACKEND = {backend!r}\n" + LAYERS_CHECK, tmp_path)
    assert f"layers ok on {backend}" in out


# --- tf.data feeding model.fit, and the example scripts, on JAX and PyTorch -------------------

OTHER_BACKENDS = [p for p in BACKENDS if p.values[0] != "tensorflow"]


@pytest.fixture(scope="module")
def converted(tiny_kaggle, tmp_path_factory) -> Path:
    """The README's `rxdata convert data records` of the tiny data set."""
    import rxdata

    out = tmp_path_factory.mktemp("backends") / "records"
    rxdata.convert(tiny_kaggle, out, workers=1)
    return out


FIT_CHECK = """
import numpy as np, keras
from rxdata.normalization import Normalizer
from rxdata.pipeline import PipelineOptions, make_dataset
from rxdata.layers import Standardize

files = FILES
for normalize_on in ("cpu", "accelerator"):
    options = PipelineOptions(normalize_on=normalize_on)
    ds = make_dataset(files, batch_size=16, training=True, normalizer=Normalizer.global_(),
                      options=options, include_controls=True)
    if normalize_on == "cpu":
        inputs = x = keras.Input((32, 32, 6), name="image")
    else:
        inputs = {"image": keras.Input((32, 32, 6), name="image", dtype="uint8"),
                  "mean": keras.Input((6,), name="mean"), "std": keras.Input((6,), name="std")}
        x = Standardize()([inputs["image"], inputs["mean"], inputs["std"]])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1139, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ds, epochs=2, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    print("fit ok", normalize_on, keras.backend.backend())
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_model_fit_takes_make_dataset(backend, converted, tmp_path):
    files = sorted(str(p) for p in converted.glob("*/train/*.tfrecord"))
    out = run_on_backend(backend, f"FILES = {files!r}\n" + FIT_CHECK, tmp_path)
    assert f"fit ok cpu {backend}" in out
    assert f"fit ok accelerator {backend}" in out


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_readme_commands_give_a_submission_on_backend(backend, converted, tmp_path):
    import pandas as pd

    train = f"{sys.executable} {REPO / 'examples' / 'train.py'}"
    predict = f"{sys.executable} {REPO / 'examples' / 'predict.py'}"
    train_glob = str(converted / "random-42" / "train" / "*.tfrecord")
    code = f"""
    import subprocess, sys
    train = subprocess.run({train!r}.split() + ["--data", {train_glob!r},
        "--out", "run", "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0"],
        capture_output=True, text=True)
    print(train.stdout)
    assert train.returncode == 0, train.stderr[-3000:]
    predict = subprocess.run({predict!r}.split() + ["--model", "run", "--data",
        {str(converted / "random-42/test/*.tfrecord")!r}, "--out", "submission.csv"],
        capture_output=True, text=True)
    print(predict.stdout)
    assert predict.returncode == 0, predict.stderr[-3000:]
    """
    out = run_on_backend(backend, code, tmp_path)
    assert f"target cpu: {backend}: one device (cpu:0), 1 replica(s)" in out
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert list(submission.columns) == ["id_code", "sirna"]
    assert len(submission) == 32 and submission["id_code"].is_unique  # the test treatment wells
    assert json.loads((tmp_path / "run" / "run.json").read_text())["backend"] == backend
