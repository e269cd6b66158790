"""Tests of the reference training scripts in examples/ (strategy, models, train, predict).

The scripts import their sibling modules by name (``import strategy``), as Python allows when
a script runs (its folder is ``sys.path[0]``); pytest puts ``examples/`` on the path the same
way (``pythonpath`` in pyproject.toml), and subprocesses run them with it on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import strategy
from hypothesis import given
from hypothesis import strategies as st
from strategy import GpuInfo, HardwareError, plan_strategy

from rxdata.errors import OptionsError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

T4 = GpuInfo("/gpu:0", (7, 5))
K80 = GpuInfo("/gpu:0", (3, 7))
P100 = GpuInfo("/gpu:0", (6, 0))


def _tf_config(n: int, index: int) -> str:
    workers = [f"127.0.0.1:{20000 + i}" for i in range(n)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


# ---------------------------------------------------------------- strategy chooser


def test_cpu_default_strategy() -> None:
    plan = plan_strategy("cpu", gpus=[], env={})
    assert (plan.kind, plan.devices, plan.precision, plan.is_chief) == (
        "default",
        ("/cpu:0",),
        "float32",
        True,
    )


def test_cpu_replicas_mirror_over_logical_cpus() -> None:
    plan = plan_strategy("cpu", gpus=[], env={}, cpu_replicas=2)
    assert plan.kind == "mirrored"
    assert plan.devices == ("/cpu:0", "/cpu:1")


@pytest.mark.parametrize("target", ["gpu", "multi-gpu"])
def test_gpu_targets_without_gpu_fail_clearly(target: str) -> None:
    with pytest.raises(HardwareError, match=r"sees no GPU.*--target cpu"):
        plan_strategy(target, gpus=[], env={})


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [(T4, "mixed_float16"), (K80, "float32"), (P100, "float32"), (GpuInfo("/gpu:0"), "float32")],
    ids=["t4-tensor-cores", "k80", "p100", "unknown-capability"],
)
def test_gpu_precision_auto_only_where_it_pays(gpu: GpuInfo, expected: str) -> None:
    plan = plan_strategy("gpu", gpus=[gpu], env={})
    assert (plan.kind, plan.devices, plan.precision) == ("one_device", ("/gpu:0",), expected)


def test_gpu_precision_can_be_forced() -> None:
    assert plan_strategy("gpu", gpus=[K80], precision="mixed_float16", env={}).precision == (
        "mixed_float16"
    )
    assert plan_strategy("gpu", gpus=[T4], precision="float32", env={}).precision == "float32"


def test_gpu_with_several_gpus_notes_multi_gpu() -> None:
    plan = plan_strategy("gpu", gpus=[T4, GpuInfo("/gpu:1", (7, 5))], env={})
    assert plan.devices == ("/gpu:0",)
    assert "multi-gpu" in plan.notes[0]


def test_multi_gpu_mirrors_over_all_gpus() -> None:
    gpus = [GpuInfo(f"/gpu:{i}", (8, 0)) for i in range(4)]
    plan = plan_strategy("multi-gpu", gpus=gpus, env={})
    assert plan.kind == "mirrored"
    assert plan.devices == ("/gpu:0", "/gpu:1", "/gpu:2", "/gpu:3")
    assert plan.precision == "mixed_float16"


def test_multi_gpu_with_one_gpu_fails_clearly() -> None:
    with pytest.raises(HardwareError, match=r"at least 2 GPUs.*sees 1"):
        plan_strategy("multi-gpu", gpus=[T4], env={})


def test_mixed_precision_mix_of_gpus_falls_back_to_float32() -> None:
    plan = plan_strategy("multi-gpu", gpus=[T4, GpuInfo("/gpu:1", (6, 0))], env={})
    assert plan.precision == "float32"


def test_tpu_absent_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match=r"no TPU was found.*--tpu local"):
        plan_strategy("tpu", env={}, dev_dir=tmp_path)


@pytest.mark.parametrize(
    ("tpu", "env", "device_file", "expected"),
    [
        ("my-tpu", {}, None, "my-tpu"),
        (None, {"TPU_NAME": "node-1"}, None, "node-1"),
        (None, {"COLAB_TPU_ADDR": "10.0.0.2:8470"}, None, "grpc://10.0.0.2:8470"),
        (None, {}, "accel0", "local"),
    ],
    ids=["flag", "tpu-name-env", "colab-node", "tpu-vm"],
)
def test_tpu_address_discovery(
    tmp_path: Path, tpu: str | None, env: dict[str, str], device_file: str | None, expected: str
) -> None:
    if device_file:
        (tmp_path / device_file).touch()
    plan = plan_strategy("tpu", tpu=tpu, env=env, dev_dir=tmp_path)
    assert (plan.kind, plan.tpu, plan.precision) == ("tpu", expected, "mixed_bfloat16")


def test_tpu_rejects_float16(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="float16"):
        plan_strategy("tpu", tpu="local", precision="mixed_float16", dev_dir=tmp_path)


def test_tpu_unreachable_is_a_hardware_error() -> None:
    plan = plan_strategy("tpu", tpu="local", env={})
    with pytest.raises(HardwareError, match="cannot connect to TPU 'local'"):
        strategy.make_strategy(plan)


def test_multi_worker_needs_tf_config() -> None:
    with pytest.raises(HardwareError, match="TF_CONFIG"):
        plan_strategy("multi-worker", gpus=[], env={})


def test_multi_worker_reads_tf_config() -> None:
    plan = plan_strategy("multi-worker", gpus=[], env={"TF_CONFIG": _tf_config(3, 2)})
    assert plan.kind == "multi_worker"
    assert plan.cluster is not None
    assert len(plan.cluster.workers) == 3
    assert not plan.is_chief
    assert plan_strategy("multi-worker", gpus=[T4], env={"TF_CONFIG": _tf_config(2, 0)}).is_chief


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {}}', "'cluster' and 'task'"),
        ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "host:"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "name a job"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}', "range"),
    ],
    ids=["bad-json", "missing-task", "bad-address", "unknown-job", "index-range"],
)
def test_bad_tf_config_is_named(text: str, match: str) -> None:
    with pytest.raises(OptionsError, match=match):
        plan_strategy("multi-worker", gpus=[], env={"TF_CONFIG": text})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "quantum"}, "target must be one of"),
        ({"target": "cpu", "precision": "half"}, "precision must be one of"),
        ({"target": "cpu", "precision": "mixed_bfloat16"}, "float32"),
        ({"target": "cpu", "cpu_replicas": 0}, "cpu_replicas"),
        ({"target": "gpu", "cpu_replicas": 2}, "--target cpu only"),
    ],
    ids=["target", "precision", "cpu-precision", "replicas", "replicas-target"],
)
def test_bad_options_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(OptionsError, match=match):
        plan_strategy(gpus=[T4], env={}, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------- training scripts
#
# One small converted data set (64 px: the smallest size the seed CNN's three conv/pool
# blocks accept is 59) shared by the training tests: 2 cell types x 2 training
# experiments (one per cell type is held out) + 1 test experiment, 2 plates, 4 siRNAs.

TRAIN_FLAGS = ["--batch-size", "8", "--steps-per-epoch", "3", "--verbose", "0"]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from rxdata.conversion import convert
    from rxdata.stats import compute_pixel_stats
    from rxdata.synthetic import SyntheticOptions, generate

    root = tmp_path_factory.mktemp("examples")
    data, out = root / "data", root / "records"
    generate(
        data,
        SyntheticOptions(
            experiments=(("HEPG2", 2, 1), ("U2OS", 2, 0)),
            plates=2,
            sirnas_per_plate=4,
            positive_controls=1,
            image_size=64,
            workers=1,
            progress=False,
        ),
    )
    convert(data, out, strategy="by_experiment", workers=1, progress=False)
    compute_pixel_stats(data, out_csv=root / "pixel_stats.csv", workers=1, progress=False)
    base = out / "by_experiment-42"
    return {
        "data": data,
        "pixel_stats": root / "pixel_stats.csv",
        "train": base / "train" / "*.tfrecord",
        "test": base / "test" / "*.tfrecord",
    }


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _train_cmd(records: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(EXAMPLES / "train.py"),
        "--data",
        str(records["train"]),
        "--out",
        str(out),
        *TRAIN_FLAGS,
        *extra,
    ]


def test_records_index_counts_and_parts(records: dict[str, Path]) -> None:
    from records import load_records

    index = load_records(str(records["train"]))
    assert index.experiments == ["HEPG2-01", "HEPG2-02", "U2OS-01", "U2OS-02"]
    assert index.count() == 4 * 2 * 6 * 2  # experiments x plates x wells x sites
    assert index.count_of(["HEPG2-02"]) == 24
    (only,) = index.files_of(["U2OS-02"])
    assert only.endswith("U2OS-02.tfrecord")
    assert index.image_shape == (64, 64)


def test_records_without_manifest_are_read_from_the_records(
    records: dict[str, Path], tmp_path: Path
) -> None:
    """Shards without a manifest (rxrx1-utils, or copied alone) give the same table."""
    import shutil

    from records import load_records

    for shard in sorted(records["train"].parent.glob("*.tfrecord")):
        shutil.copy(shard, tmp_path / shard.name)
    notes: list[str] = []
    learned = load_records(str(tmp_path / "*.tfrecord"), log=notes.append)
    assert "no manifest.json" in notes[0] and "reading the 4 file(s)" in notes[0]
    listed = load_records(str(records["train"]), log=notes.append)
    columns = ["site_id", "experiment", "cell_type", "plate", "dataset"]
    key = ["site_id"]
    assert (
        learned.sites[columns].sort_values(key).reset_index(drop=True).astype(str)
        .equals(listed.sites[columns].sort_values(key).reset_index(drop=True).astype(str))
    )  # fmt: skip
    assert learned.image_shape == listed.image_shape == (64, 64)
    assert len(notes) == 1  # the manifest-based read says nothing


def test_rxrx1_utils_records_without_dataset_are_split_by_label(tmp_path: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from records import load_records

    def example(well: str, sirna: int | None) -> bytes:
        def b(v: str) -> tf.train.Feature:
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))

        def i(v: int) -> tf.train.Feature:
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

        image = np.zeros((4, 4, 6), np.uint8).tobytes()
        feats = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                 "well": b(well), "experiment": b("HUVEC-07"), "plate": i(1), "site": i(2),
                 "cell_type": b("HUVEC"), "well_type": b("treatment")}  # fmt: skip
        if sirna is not None:
            feats["sirna"] = i(sirna)
        return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()

    with tf.io.TFRecordWriter(str(tmp_path / "001.tfrecord")) as writer:
        writer.write(example("C03", 12))
        writer.write(example("C04", None))
    found = load_records(str(tmp_path / "*.tfrecord"), log=lambda _: None)
    assert found.sites["site_id"].tolist() == ["HUVEC-07_1_C03_2", "HUVEC-07_1_C04_2"]
    assert found.sites["dataset"].tolist() == ["train", "test"]
    assert found.image_shape == (4, 4)


def test_records_that_hold_nothing_fail_clearly(tmp_path: Path) -> None:
    from records import load_records

    (tmp_path / "a.tfrecord").write_bytes(b"")
    with pytest.raises(OptionsError, match="hold no records"):
        load_records(str(tmp_path / "*.tfrecord"), log=lambda _: None)
    with pytest.raises(OptionsError, match="no TFRecord files match"):
        load_records(str(tmp_path / "missing" / "*.tfrecord"))


def test_train_and_predict_end_to_end(records: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd
    import predict
    import train

    from rxdata.metadata import read_metadata

    config = train.TrainConfig(
        data=str(records["train"]),
        out=str(tmp_path / "run"),
        batch_size=8,
        epochs=2,
        steps_per_epoch=3,
        labels="all",
        pixel_stats=str(records["pixel_stats"]),
        metadata=str(records["data"]),
        normalization="controls",
        verbose=0,
    )
    logged: list[str] = []
    result = train.train(config, log=logged.append)
    run = tmp_path / "run"
    for name in ("best.keras", "final.keras", "normalizer.json", "training_curves.png"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # BackupAndRestore cleans up after a full run
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)
    info = json.loads((run / "run.json").read_text())
    assert set(info["val_experiments"]).isdisjoint(info["train_experiments"])
    assert len(info["val_experiments"]) == 2  # one per cell type
    assert info["train_sites"] == 2 * 2 * 6 * 2  # 'all' labels keep the control wells
    assert result.initial_epoch == 0
    assert json.loads((run / "normalizer.json").read_text())["mode"] == "controls"
    assert info["normalization"]["mode"] == "controls"
    assert "--pixel-stats" in info["normalization"]["source"]
    assert len(result.history["val_accuracy"]) == 2

    metadata = read_metadata(records["data"])
    written = predict.predict(
        result.best_model,
        str(records["test"]),
        str(tmp_path / "submission.csv"),
        metadata=metadata,
        plate_assignment=True,
        log=logged.append,
    )
    test_wells = metadata[(metadata["dataset"] == "test") & (metadata["well_type"] == "treatment")]
    assert written["id_code"].tolist() == test_wells["id_code"].drop_duplicates().tolist()
    assert written["sirna"].astype(int).between(0, 1107).all()
    # plate assignment: each siRNA at most once per plate
    plates = written["id_code"].str.rsplit("_", n=1).str[0]
    assert not written.assign(plate=plates).duplicated(["plate", "sirna"]).any()


def test_train_treatment_labels_drop_controls(records: dict[str, Path]) -> None:
    import train
    from records import load_records

    config = train.TrainConfig(data=str(records["train"]), out="unused", labels="treatments")
    split = train.resolve_split(config, load_records(str(records["train"])))
    assert split.train_sites == 2 * 2 * 4 * 2  # the 4 treatment wells only
    assert split.val_sites == 2 * 2 * 4 * 2
    assert len(split.train_files) == 2


def test_train_cli_gpu_without_gpu_exits_with_message(
    records: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import train

    code = train.main(["--target", "gpu", "--data", str(records["train"]), "--out", "x"])
    assert code == 1
    assert "sees no GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "normalize_on", "where"),
    [
        ("cpu", "auto", "cpu"),
        ("gpu", "auto", "accelerator"),
        ("multi-gpu", "auto", "accelerator"),
        ("tpu", "auto", "accelerator"),
        ("multi-worker", "auto", "accelerator"),
        ("gpu", "cpu", "cpu"),
        ("cpu", "accelerator", "accelerator"),
    ],
)
def test_normalize_on_auto_follows_the_target(target: str, normalize_on: str, where: str) -> None:
    import train

    config = train.TrainConfig(data="x", out="y", target=target, normalize_on=normalize_on)
    assert config.normalize_where == where


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("target", "gpu0", "target="),
        ("labels", "controls", "labels="),
        ("batch_size", 0, "batch_size="),
        ("normalize_on", "host", "normalize_on="),
        ("steps_per_epoch", -1, "steps_per_epoch="),
        ("normalization", "batch", "normalization="),
        ("pixel_stats", "ps.csv", "needs --metadata"),
        ("val_per_cell_type", 0, "train.py picks a valid hold-out"),
    ],
)
def test_train_config_validates(field: str, value: object, match: str) -> None:
    import train

    with pytest.raises(OptionsError, match=match):
        train.TrainConfig(data="x", out="y", **{field: value})  # type: ignore[arg-type]


@pytest.mark.subprocess
@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(records: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "mirrored"
    cmd = _train_cmd(records, out, "--cpu-replicas", "2", "--epochs", "1")
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert (info["strategy"], info["replicas"], info["global_batch"]) == (
        "MirroredStrategy",
        2,
        16,
    )
    assert (out / "best.keras").is_file()


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.subprocess
@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(records: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    ports = _free_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    out = tmp_path / "multi"
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**_env(), "TF_CONFIG": json.dumps(config)}
        cmd = _train_cmd(records, out, "--target", "multi-worker", "--epochs", "2")
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    try:
        outputs = [p.communicate(timeout=400)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert (info["strategy"], info["replicas"]) == ("CollectiveAllReduceStrategy", 2)
    # the chief writes the shared outputs; the other worker keeps its own copies apart
    assert (out / "best.keras").is_file()
    assert (out / "history.csv").is_file()
    assert (out / "workers" / "worker-1" / "final.keras").is_file()
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3


@pytest.mark.subprocess
@pytest.mark.slow
def test_killed_run_resumes_from_backup(records: dict[str, Path], tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    import pandas as pd

    out = tmp_path / "resume"
    epochs = 12
    cmd = _train_cmd(records, out, "--epochs", str(epochs), "--backup-every", "2")
    metadata = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_at = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if metadata.exists():
                try:
                    state = json.loads(metadata.read_text())
                except ValueError:  # caught mid-write
                    state = {}
                if state.get("epoch", 0) >= 1:
                    os.kill(proc.pid, signal.SIGKILL)  # like a preempted VM: no clean-up
                    killed_at = state["epoch"]
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        text = proc.communicate()[0].decode()
    assert killed_at is not None, f"the run ended before it could be killed:\n{text[-2000:]}"
    assert not (out / "final.keras").exists()

    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    started = int(resumed.stdout.split("resumed from backup: starting at epoch ")[1].split()[0])
    assert started - 1 >= killed_at  # 1-based in the log; never restarted from scratch
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].iloc[-1] == epochs - 1
    assert history["epoch"].is_unique  # the resumed run appended only the epochs it ran
    assert len(history) <= epochs
    assert not (out / "backup").exists()
    assert (out / "final.keras").is_file()
    assert (out / "best.keras").is_file()


def test_rerun_of_a_finished_run_starts_a_fresh_history(
    records: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd
    import train

    config = train.TrainConfig(
        data=str(records["train"]), out=str(tmp_path), batch_size=8, epochs=1,
        steps_per_epoch=1, verbose=0,
    )  # fmt: skip
    for _ in range(2):
        result = train.train(config, log=lambda _: None)
    assert result.initial_epoch == 0
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0]


def _label_reading_model(num_classes: int = 1108):  # type: ignore[no-untyped-def]
    """A fixed-weight model whose prediction is the mean pixel of channel 1, rounded.

    logit_k = 2 k x - k^2 = -(x - k)^2 + x^2, so the softmax peaks at the class nearest x.
    """
    import keras
    import numpy as np

    inputs = keras.Input((8, 8, 6), name="image")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(num_classes, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(x))
    k = np.arange(num_classes, dtype=np.float32)
    kernel = np.zeros((6, num_classes), np.float32)
    kernel[0] = 2 * k
    dense.set_weights([kernel, -(k**2)])
    return model


def test_prediction_to_submission_alignment_with_shuffled_records(tmp_path: Path) -> None:
    """Records in scrambled order over several shards still give each well its own label."""
    import numpy as np
    import pandas as pd
    import predict

    from rxdata import tfrecord
    from rxdata.normalization import ChannelStats, Normalizer

    rng = np.random.default_rng(3)
    wells = [f"{r}{c:02d}" for r in "CDEFG" for c in range(3, 13)]  # 50 treatment wells
    truth = {}
    rows = []
    for plate in (1, 2):
        for well, label in zip(wells, rng.choice(200, len(wells), replace=False), strict=True):
            id_code = f"HEPG2-09_{plate}_{well}"
            truth[id_code] = int(label)
            for site in (1, 2):
                rows.append(
                    {
                        "id_code": id_code,
                        "experiment": "HEPG2-09",
                        "plate": plate,
                        "well": well,
                        "site": site,
                        "dataset": "test",
                        "well_type": "treatment",
                        "cell_type": "HEPG2",
                    }
                )
    metadata = pd.DataFrame(rows)
    order = rng.permutation(len(rows))
    shards = np.array_split(order, 3)
    for i, part in enumerate(shards):
        examples = []
        for j in part:
            row = rows[j]
            image = np.full((8, 8, 6), truth[row["id_code"]], np.uint8)
            examples.append(tfrecord.encode_example(row, image=image))
        tfrecord.write_shard(str(tmp_path / f"test-{i}.tfrecord"), examples)
    model_path = tmp_path / "model.keras"
    _label_reading_model().save(model_path)
    Normalizer.global_(ChannelStats([0.0] * 6, [1.0] * 6, channels=(1, 2, 3, 4, 5, 6))).save(
        tmp_path / "normalizer.json"
    )

    written = predict.predict(
        str(model_path),
        str(tmp_path / "test-*.tfrecord"),
        str(tmp_path / "submission.csv"),
        metadata=metadata,
        batch_size=7,  # batches straddle wells and shards
        log=lambda _: None,
    )
    on_disk = pd.read_csv(tmp_path / "submission.csv")
    assert on_disk["id_code"].tolist() == list(truth)  # the test wells' order
    assert dict(zip(on_disk["id_code"], on_disk["sirna"], strict=True)) == truth
    assert written["sirna"].astype(int).tolist() == list(truth.values())


def test_predict_refuses_missing_test_wells(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    import predict

    from rxdata.errors import SubmissionError

    wells = pd.DataFrame(np.eye(3), index=pd.Index(["E-01_1_B03", "E-01_1_B04", "E-01_1_B05"]))
    metadata = pd.DataFrame(
        {
            "id_code": ["E-01_1_B03", "E-01_1_B06"],
            "site": [1, 1],
            "dataset": ["test"] * 2,
            "well_type": ["treatment"] * 2,
            "experiment": ["E-01"] * 2,
        }
    )
    with pytest.raises(SubmissionError, match="E-01_1_B06"):
        predict.wells_to_labels(wells, metadata, plate_assignment=False, log=print)


# ------------------------------------------------------------------------------ models


def test_seed_cnn_is_the_seed_architecture() -> None:
    import models

    model = models.seed_cnn(1108)
    assert model.input_shape == (None, 512, 512, 6)
    layers = [
        (type(layer).__name__, layer.get_config())
        for layer in model.layers
        if type(layer).__name__ != "InputLayer"
    ]
    kinds = [kind for kind, _ in layers]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
        "Flatten", "Dense", "Dropout", "Dense",
    ]  # fmt: skip
    convs = [cfg for kind, cfg in layers if kind == "Conv2D"]
    assert [(c["filters"], c["kernel_size"], c["strides"], c["activation"]) for c in convs] == [
        (64, (5, 5), (2, 2), "relu"),
        (64, (2, 2), (1, 1), "relu"),
        (96, (2, 2), (1, 1), "relu"),
    ]
    pools = [cfg["pool_size"] for kind, cfg in layers if kind == "MaxPooling2D"]
    assert pools == [(4, 4), (2, 2), (2, 2)]
    dense = [cfg for kind, cfg in layers if kind == "Dense"]
    assert [(d["units"], d["activation"]) for d in dense] == [(1108, "relu"), (1108, "softmax")]
    assert layers[8][1]["rate"] == 0.25
    assert model.count_params() == 25_213_464


def test_models_compile_with_seed_optimizer_and_class_count() -> None:
    import keras
    import models

    model = models.build_model("seed-cnn", 1139, image_size=64)
    assert model.output_shape == (None, 1139)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    with pytest.raises(ValueError, match="model must be one of"):
        models.build_model("vgg", 10)


def test_resnet50_takes_six_channels() -> None:
    import models

    model = models.resnet50(1108, image_size=64)
    assert model.input_shape == (None, 64, 64, 6)
    assert model.output_shape == (None, 1108)
    stem = next(layer for layer in model.get_layer("resnet50").layers if "conv1_conv" in layer.name)
    assert stem.kernel.shape[2] == 6


def test_accelerator_normalization_trains_and_predicts(
    records: dict[str, Path], tmp_path: Path
) -> None:
    import predict
    import train

    from rxdata.metadata import read_metadata

    config = train.TrainConfig(
        data=str(records["train"]),
        out=str(tmp_path / "acc"),
        batch_size=8,
        epochs=1,
        steps_per_epoch=2,
        normalize_on="accelerator",
        augment=True,
        pixel_stats=str(records["pixel_stats"]),
        metadata=str(records["data"]),
        verbose=0,
    )
    result = train.train(config, log=lambda _: None)
    import keras

    model = keras.models.load_model(result.final_model)
    assert sorted(model.input) == ["image", "mean", "std"]
    assert predict.model_input_spec(model) == (64, "accelerator")
    written = predict.predict(
        result.final_model,
        str(records["test"]),
        str(tmp_path / "submission.csv"),
        metadata=read_metadata(records["data"]),
        log=lambda _: None,
    )
    assert len(written) == 2 * 4  # 2 plates x 4 treatment wells of the test experiment


def test_demo_refuses_to_wipe_a_folder_it_did_not_write(tmp_path: Path) -> None:
    import demo

    (tmp_path / "thesis.tex").write_text("precious")
    assert demo.main(["--out", str(tmp_path)]) == 2
    assert (tmp_path / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_demo_runs_end_to_end_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's plumbing (generate, rxdata convert CLI, 2 trainings, evaluation, submission,
    picture) at a size that only checks the wiring; `make demo` checks the margin."""
    import demo

    out = tmp_path / "demo"
    code = demo.main(
        ["--out", str(out), "--sirnas-per-plate", "2", "--epochs", "1", "--min-margin", "-1"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "per-plate controls" in printed and "global statistics" in printed
    for name in ("submission.csv", "site.png", "run-global/history.csv", "run-controls/best.keras"):
        assert (out / name).is_file(), name
    assert (out / ".rxdata-demo").exists()  # a re-run may replace this folder


# ------------------------------------------------------------------- parser properties

_host = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
_port = st.integers(1, 65535)


@given(
    hosts=st.lists(st.tuples(_host, _port), min_size=1, max_size=8, unique=True),
    data=st.data(),
)
def test_tf_config_round_trip(hosts: list[tuple[str, int]], data: st.DataObject) -> None:
    workers = [f"{h}:{p}" for h, p in hosts]
    index = data.draw(st.integers(0, len(workers) - 1))
    text = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    cluster = strategy.parse_tf_config(text)
    assert cluster.workers == tuple(workers)
    assert (cluster.task_type, cluster.task_index) == ("worker", index)
    assert cluster.is_chief == (index == 0)


_segment = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True)


@given(
    fixed=st.lists(_segment, min_size=0, max_size=4),
    rest=st.lists(st.sampled_from(["*", "*.tfrecord", "[01]*", "a?c"]), min_size=1, max_size=3),
    scheme=st.sampled_from(["/", "gs://bucket/"]),
)
def test_glob_static_prefix_is_the_wildcard_free_head(
    fixed: list[str], rest: list[str], scheme: str
) -> None:
    from records import _static_prefix

    pattern = scheme + "/".join([*fixed, *rest])
    prefix = _static_prefix(pattern)
    assert pattern.startswith(prefix)
    assert not set("*?[") & set(prefix)
    assert prefix.rstrip("/") == (scheme + "/".join(fixed)).rstrip("/")


@pytest.mark.parametrize("module_name", ["strategy", "models", "records"])
def test_examples_docstring_examples_run(module_name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_val_data_sharing_an_experiment_is_refused(records: dict[str, Path]) -> None:
    import train
    from records import load_records

    config = train.TrainConfig(
        data=str(records["train"]), out="unused", val_data=str(records["train"])
    )
    with pytest.raises(OptionsError, match="shares experiments"):
        train.resolve_split(config, load_records(str(records["train"])))


def test_val_experiments_unknown_is_named(records: dict[str, Path]) -> None:
    import train
    from records import load_records

    from rxdata.errors import SplitError

    config = train.TrainConfig(data=str(records["train"]), out="unused", val_experiments=("X-01",))
    with pytest.raises(SplitError, match="X-01"):
        train.resolve_split(config, load_records(str(records["train"])))


def test_predict_cli_without_normalizer_fails_clearly(
    records: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import predict

    (tmp_path / "m.keras").write_bytes(b"")  # a model, but no normalizer.json beside it
    code = predict.main(
        ["--model", str(tmp_path / "m.keras"), "--data", str(records["test"]),
         "--metadata", str(records["data"])]
    )  # fmt: skip
    assert code == 1
    assert "normalizer.json not found" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing.keras", "missing-run"])
def test_predict_cli_names_a_missing_model_not_the_normalizer(
    records: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    import predict

    code = predict.main(["--model", str(tmp_path / where), "--data", str(records["test"])])
    err = capsys.readouterr().err
    assert code == 1
    assert "no such model" in err and "normalizer" not in err


def test_predict_model_may_be_the_run_folder(tmp_path: Path) -> None:
    import predict

    with pytest.raises(OptionsError, match=r"folder without best\.keras or final\.keras"):
        predict.resolve_model_path(str(tmp_path))
    (tmp_path / "final.keras").write_bytes(b"")
    assert predict.resolve_model_path(str(tmp_path)) == f"{tmp_path}/final.keras"
    (tmp_path / "best.keras").write_bytes(b"")
    assert predict.resolve_model_path(str(tmp_path)) == f"{tmp_path}/best.keras"
    assert predict.resolve_model_path(str(tmp_path / "final.keras")).endswith("final.keras")


def _wells(*id_codes: str) -> object:
    import numpy as np
    import pandas as pd

    probs = np.full((len(id_codes), 1108), 1e-3)
    probs[:, 7] = 1.0
    return pd.DataFrame(probs, index=pd.Index(id_codes, name="id_code"))


def test_predict_without_metadata_leaves_controls_out_and_says_so() -> None:
    import predict

    wells = _wells("RPE-05_1_B02", "RPE-05_1_C05", "RPE-05_1_C04")  # B02: negative control
    logged: list[str] = []
    labels, table = predict.wells_to_labels(wells, None, plate_assignment=False, log=logged.append)
    assert labels.index.tolist() == ["RPE-05_1_C05", "RPE-05_1_C04"]
    assert table["id_code"].tolist() == ["RPE-05_1_C05", "RPE-05_1_C04"]
    assert any("left out 1 control well" in m for m in logged)
    assert any("no --metadata" in m for m in logged)
    with pytest.raises(OptionsError, match="--plate-assignment needs --metadata"):
        predict.wells_to_labels(wells, None, plate_assignment=True, log=logged.append)


def test_predict_refuses_wells_that_are_not_test_wells() -> None:
    import pandas as pd
    import predict

    from rxdata.errors import SubmissionError

    metadata = pd.DataFrame(
        {
            "id_code": ["E-01_1_B03", "E-01_1_B02"],
            "site": [1, 1],
            "dataset": ["test"] * 2,
            "well_type": ["treatment", "negative_control"],
            "experiment": ["E-01"] * 2,
        }
    )
    logged: list[str] = []
    labels, _ = predict.wells_to_labels(
        _wells("E-01_1_B03", "E-01_1_B02"), metadata, plate_assignment=False, log=logged.append
    )
    assert labels.index.tolist() == ["E-01_1_B03"]
    assert logged == ["left out 1 control well(s): their labels are public, not predicted"]
    with pytest.raises(SubmissionError, match=r"not test wells of the metadata, e\.g\. T-01_1_B03"):
        predict.wells_to_labels(
            _wells("E-01_1_B03", "T-01_1_B03"), metadata, plate_assignment=False, log=print
        )


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("float32", "float32"), ("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")],
)
def test_pipeline_options_follow_precision_and_phase(precision: str, dtype: str) -> None:
    import train

    config = train.TrainConfig(data="x", out="y", augment=True, image_size=256)
    fit = train.pipeline_options(
        config, training=True, precision=precision, stored_size=512, fixed=True
    )
    assert (fit.dtype, fit.dihedral, fit.repeat, fit.drop_remainder) == (dtype, True, True, True)
    assert fit.resize_to == 256
    evaluation = train.pipeline_options(
        config, training=False, precision=precision, stored_size=512, fixed=False
    )
    assert (evaluation.dihedral, evaluation.repeat, evaluation.drop_remainder) == (
        False,
        False,
        None,  # every held-out site, the last partial batch included
    )
    same_size = train.pipeline_options(
        train.TrainConfig(data="x", out="y"),
        training=True,
        precision=precision,
        stored_size=512,
        fixed=True,
    )
    assert same_size.resize_to is None


def test_backup_cut_off_mid_write_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    import train

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3, "ba')  # killed mid-write
    (backup / "latest.weights.h5").write_bytes(b"new")
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2, "batch": 0}')
    (backup / "latest.weights.h5.bkp").write_bytes(b"old")
    logged: list[str] = []
    train._repair_backup(str(backup), logged.append)
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert (backup / "latest.weights.h5").read_bytes() == b"old"
    assert "the one before" in logged[0]

    (backup / "training_metadata.json").write_text("{")
    for name in ("training_metadata.json.bkp", "latest.weights.h5.bkp"):
        (backup / name).unlink()
    train._repair_backup(str(backup), logged.append)
    assert not (backup / "training_metadata.json").exists()
    assert "from scratch" in logged[1]


# ------------------------------------------------------------ the newcomer's path (issue 14)


@pytest.mark.subprocess
@pytest.mark.parametrize("script", ["train.py", "predict.py"])
def test_help_shows_every_default_without_importing_tensorflow(script: str) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(EXAMPLES / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {"tensorflow", "keras"} & imported
    module = __import__(script.removesuffix(".py"))
    help_text = " ".join(proc.stdout.split())
    for action in module.build_parser()._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        if action.default is not None:
            assert f"(default: {action.default})" in help_text, action.dest


def test_train_model_names_are_the_models_module_names() -> None:
    import models
    import train

    assert train.MODELS == models.MODELS
    assert set(models.MIN_IMAGE_SIZE) == set(models.MODELS)


@pytest.mark.parametrize("name", ["seed-cnn", "resnet50"])
def test_min_image_size_is_the_smallest_the_model_builds_at(name: str) -> None:
    import models

    smallest = models.MIN_IMAGE_SIZE[name]
    models.build_model(name, 4, image_size=smallest)
    with pytest.raises(ValueError):
        models.build_model(name, 4, image_size=smallest - 1)


def test_image_size_is_checked_against_the_model() -> None:
    import train

    notes: list[str] = []
    config = train.TrainConfig(data="x", out="y")
    assert train.model_image_size(config, 32, notes.append) == 64  # tiny data: raised
    assert "resizing to 64 (--image-size)" in notes[0]
    assert train.model_image_size(config, 512, notes.append) == 512
    resnet = train.TrainConfig(data="x", out="y", model="resnet50")
    assert train.model_image_size(resnet, 32, notes.append) == 32
    assert len(notes) == 1
    small = train.TrainConfig(data="x", out="y", image_size=40)
    with pytest.raises(OptionsError, match="--image-size 40 is too small for --model seed-cnn"):
        train.model_image_size(small, 512, notes.append)


@pytest.mark.parametrize(
    ("experiments", "held", "note"),
    [
        (["HEPG2-01", "HEPG2-02", "U2OS-01", "U2OS-02"], 2, None),
        (["HEPG2-01", "HEPG2-02", "U2OS-01"], 1, "U2OS have one training experiment"),
        (["HEPG2-01", "HUVEC-01", "RPE-01", "U2OS-01"], 1, "every cell type has one"),
    ],
    ids=["two-each", "mixed", "tiny"],
)
def test_default_hold_out_fits_the_data(experiments: list[str], held: int, note: str) -> None:
    import pandas as pd
    import train

    table = pd.DataFrame({"experiment": experiments, "cell_type": [e[:-3] for e in experiments]})
    notes: list[str] = []
    config = train.TrainConfig(data="x", out="y")
    chosen = train.held_out_experiments(table, config, notes.append)
    assert len(chosen) == held and set(chosen) <= set(experiments)
    remaining = table[~table["experiment"].isin(chosen)]
    assert len(remaining) >= 1
    if note is None:
        assert notes == [] and set(remaining["cell_type"]) == set(table["cell_type"])
    else:
        assert note in notes[0]
    assert train.held_out_experiments(table, config, notes.append) == chosen  # seeded


def test_impossible_val_per_cell_type_points_to_the_default() -> None:
    import pandas as pd
    import train

    from rxdata.errors import SplitError

    table = pd.DataFrame({"experiment": ["RPE-01", "U2OS-01"], "cell_type": ["RPE", "U2OS"]})
    config = train.TrainConfig(data="x", out="y", val_per_cell_type=1)
    with pytest.raises(SplitError, match=r"leave the option out and train\.py picks"):
        train.held_out_experiments(table, config, print)


def test_one_labelled_experiment_asks_for_val_data() -> None:
    import pandas as pd
    import train

    table = pd.DataFrame({"experiment": ["RPE-01"], "cell_type": ["RPE"]})
    with pytest.raises(OptionsError, match="give --val-data"):
        train.held_out_experiments(table, train.TrainConfig(data="x", out="y"), print)


def test_normalization_used_is_said_and_recorded() -> None:
    import train

    normalizer, source = train.load_normalizer(train.TrainConfig(data="x", out="y"))
    assert normalizer.mode == "global"
    assert source.startswith("global: the published RxRx1 statistics")
    with pytest.raises(OptionsError, match="--normalization plate builds statistics from"):
        train.TrainConfig(data="x", out="y", normalization="plate")


@pytest.mark.subprocess
@pytest.mark.slow
def test_from_nothing_to_a_submission(tmp_path: Path) -> None:
    """The README's four commands, as a user types them, in a fresh folder."""
    import os
    import subprocess

    import pandas as pd

    from rxdata.metadata import read_metadata

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the scripts quiet TensorFlow themselves
    commands = [
        [str(bin_dir / "rxdata"), "synth", "--tiny", "data"],
        [str(bin_dir / "rxdata"), "convert", "data", "records"],
        [sys.executable, str(EXAMPLES / "train.py"), "--data",
         "records/random-42/train/*.tfrecord", "--out", "run", "--epochs", "2"],
        [sys.executable, str(EXAMPLES / "predict.py"), "--model", "run", "--data",
         "records/random-42/test/*.tfrecord", "--out", "submission.csv"],
    ]  # fmt: skip
    outputs = []
    for command in commands:
        proc = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{command}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        outputs.append(proc.stdout)
    trained, predicted = outputs[2], outputs[3]
    assert "holding out" in trained and "resizing to 64 (--image-size)" in trained
    assert "normalization: global: the published RxRx1 statistics" in trained
    assert "left out" in predicted and "control well(s)" in predicted
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["normalization"]["mode"] == "global" and info["image_size"] == 64
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [0, 1]

    metadata = read_metadata(tmp_path / "data")
    test_wells = metadata[(metadata["dataset"] == "test") & (metadata["well_type"] == "treatment")]
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert len(submission) == test_wells["id_code"].nunique()
    assert set(submission["id_code"]) == set(test_wells["id_code"])
    assert submission["sirna"].between(0, 1107).all()


# A Keras 3.15 bug under MultiWorkerMirroredStrategy: two workers fit a tiny model with
# no fix, with the first fix, and with both (keras_workarounds.py).
_KERAS_BUG_SCRIPT = """
import os, sys
import keras, numpy as np, tensorflow as tf
import keras_workarounds as kw

strategy = tf.distribute.MultiWorkerMirroredStrategy()

def dataset_fn(context):
    x, y = np.zeros((16, 4), "float32"), np.zeros((16,), "int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(4)

for fixes in ((), ("build",), ("build", "logs")):
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if "build" in fixes:
        kw.fix_symbolic_build(model, strategy)
    if "logs" in fixes:
        kw.fix_log_reduction(strategy)
    data = strategy.distribute_datasets_from_function(dataset_fn)
    try:
        model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
        print(f"fixes={'+'.join(fixes)}: ok", flush=True)
    except Exception as err:
        print(f"fixes={'+'.join(fixes)}: {type(err).__name__}: {err}", flush=True)
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_keras_multi_worker_bug_still_exists(tmp_path: Path) -> None:
    """Fails the day Keras fixes the bugs keras_workarounds.py works around: then delete
    that module and its call in train.py (upstream: keras_workarounds.KERAS_ISSUE)."""
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(_KERAS_BUG_SCRIPT)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**_env(), "TF_CONFIG": json.dumps(config), "PYTHONPATH": str(EXAMPLES)}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for text in outputs:
        lines = [line for line in text.splitlines() if line.startswith("fixes=")]
        assert len(lines) == 3, text[-3000:]
        assert "Attempt to convert a value (PerReplica" in lines[0], lines[0]
        assert "Invalid reduction dimension 0 for input with 0 dimensions" in lines[1], lines[1]
        assert lines[2] == "fixes=build+logs: ok", lines[2]


@pytest.mark.subprocess
@pytest.mark.parametrize("script", ["train", "predict"])
@pytest.mark.parametrize(("given", "expected"), [(None, "2"), ("0", "0")], ids=["unset", "user"])
def test_scripts_quiet_tensorflow_unless_the_user_chose(
    script: str, given: str | None, expected: str
) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if given is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = given
    code = (
        f"import sys, os, {script}; "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run(  # `python -c` in examples/ imports the scripts as siblings
        [sys.executable, "-c", code],
        cwd=EXAMPLES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == [expected, "False"], proc.stderr[-2000:]


def test_training_curves_count_whole_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt
    import train

    (tmp_path / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.1,2.0,0.1,2.1\n1,0.2,1.5,0.1,2.0\n"
    )
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    train.plot_history(str(tmp_path / "history.csv"), str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 0
    for ax in figures[0].axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.slow
def test_train_with_a_data_service_reads_the_training_input_through_its_workers(
    records: dict[str, Path], tmp_path: Path
) -> None:
    """`--data-service`: an in-process dispatcher and two workers feed the training input."""
    import numpy as np
    import pandas as pd
    import train

    from rxdata.service import dispatcher_address, start_dispatcher, start_worker

    dispatcher = start_dispatcher()
    address = dispatcher_address(dispatcher)
    workers = [start_worker(address) for _ in range(2)]
    try:
        config = train.TrainConfig(
            data=str(records["train"]),
            out=str(tmp_path / "run"),
            batch_size=8,
            epochs=1,
            steps_per_epoch=3,
            verbose=0,
            data_service=f"grpc://{address}",
        )
        result = train.train(config, log=lambda _: None)
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()
    assert (tmp_path / "run" / "final.keras").is_file()
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [0] and np.isfinite(history["loss"]).all()
    assert result.initial_epoch == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["data_service"] == f"grpc://{address}"


def test_data_service_is_for_one_host() -> None:
    import train

    with pytest.raises(OptionsError, match="--data-service"):
        train.TrainConfig(data="x", out="y", target="multi-worker", data_service="grpc://h:1")
    options = train.pipeline_options(
        train.TrainConfig(data="x", out="y", data_service="grpc://h:5050"),
        training=False,
        precision="float32",
        stored_size=64,
        fixed=False,
    )
    assert options.data_service is None  # evaluation stays exact on this host
