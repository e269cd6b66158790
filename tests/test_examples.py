"""Tests of the reference training scripts in examples/ (strategy, models, train, predict)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import strategy  # noqa: E402
from strategy import GpuInfo, HardwareError, plan_strategy  # noqa: E402

from rxdata.errors import OptionsError  # noqa: E402

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
