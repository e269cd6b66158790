"""Pick a distribution strategy and a precision policy for one hardware target and backend.

The choice is split in two so that every branch can be tested on a laptop:

* :func:`plan_strategy` is pure: from the target name, the visible hardware (passed in,
  or discovered) and the environment (``TF_CONFIG``, ``TPU_NAME``, ``COLAB_TPU_ADDR``) it
  returns a :class:`StrategyPlan`, or raises :class:`HardwareError` naming what is
  missing and how to get it.
* :func:`make_strategy` turns a plan into a live strategy (connecting to the TPU, creating
  logical CPU devices, reading ``TF_CONFIG``) and sets the Keras dtype policy.

Targets:

| target | strategy | replicas | precision (auto) |
|---|---|---|---|
| cpu | default, or ``MirroredStrategy`` on N logical CPUs | 1 or N | float32 |
| gpu | ``OneDeviceStrategy("/gpu:0")`` | 1 | mixed_float16 if capability >= 7.0 |
| multi-gpu | ``MirroredStrategy`` over all local GPUs (2+) | #GPUs | as gpu |
| tpu | ``TPUStrategy`` via ``TPUClusterResolver`` | #TPU cores | mixed_bfloat16 |
| multi-worker | ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``) | workers x devices | as gpu |

On Keras' JAX backend the same targets map to ``keras.distribution``, on PyTorch to one
device; a target without a meaning there is refused with a message naming the way:

| target | JAX | PyTorch |
|---|---|---|
| cpu | one CPU device, or ``DataParallel`` over N host devices (*) | the CPU |
| gpu | the first GPU | ``cuda:0`` (where Keras places) |
| multi-gpu | ``keras.distribution.DataParallel`` over the local GPUs | refused (**) |
| tpu | ``DataParallel`` over the TPU VM's local chips | refused (**) |
| multi-worker | refused: ``TF_CONFIG`` clusters are TensorFlow's | refused |

(*) started with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
(**) Keras' PyTorch backend has no distribution API: use JAX or TensorFlow.

float16 pays only on GPUs with tensor cores (Volta, compute capability 7.0, and later:
V100, T4, A100, H100); on a K80 (3.7) or P100 (6.0) it is slower or no faster, so ``auto``
keeps float32 there. TPUs compute in bfloat16 natively, so ``auto`` always uses it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxdata.errors import OptionsError, RxDataError

TARGETS = ("cpu", "gpu", "multi-gpu", "tpu", "multi-worker")
BACKENDS = ("tensorflow", "jax", "torch")  # Keras 3's backends (KERAS_BACKEND)
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# Compute capability from which float16 runs on tensor cores (Volta).
TENSOR_CORE_CAPABILITY = (7, 0)


class HardwareError(RxDataError, RuntimeError):
    """The hardware a target needs is absent or unreachable (says what to do instead)."""


@dataclass(frozen=True)
class GpuInfo:
    """One visible GPU: its TF device name and compute capability (``None`` if unknown)."""

    name: str
    compute_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class Cluster:
    """The multi-worker cluster read from ``TF_CONFIG``."""

    workers: tuple[str, ...]
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        """Worker 0 writes checkpoints, logs and pictures (the usual TF convention)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0)


@dataclass(frozen=True)
class StrategyPlan:
    """What :func:`make_strategy` will build (pure data, no TensorFlow objects)."""

    target: str
    kind: str  # default | one_device | mirrored | tpu | multi_worker | data_parallel
    devices: tuple[str, ...] = ()
    precision: str = "float32"
    tpu: str | None = None
    cluster: Cluster | None = None
    cpu_replicas: int = 1
    notes: tuple[str, ...] = field(default=())
    backend: str = "tensorflow"

    @property
    def is_chief(self) -> bool:
        """Whether this process should write outputs (always true outside multi-worker)."""
        return self.cluster is None or self.cluster.is_chief


def _pick_precision(requested: str, gpus: Sequence[GpuInfo], *, tpu: bool = False) -> str:
    if requested != "auto":
        if requested == "mixed_float16" and not gpus:
            raise OptionsError(
                "precision='mixed_float16' needs a GPU (float16 on a CPU or TPU is slow or "
                "unsupported); use 'auto', 'float32' or, on a TPU, 'mixed_bfloat16'"
            )
        return requested
    if tpu:
        return "mixed_bfloat16"
    if gpus and all(
        g.compute_capability is not None and g.compute_capability >= TENSOR_CORE_CAPABILITY
        for g in gpus
    ):
        return "mixed_float16"
    return "float32"


def parse_tf_config(text: str | None) -> Cluster:
    """Parse and check a ``TF_CONFIG`` value for multi-worker training.

    Example:
        >>> cfg = '{"cluster": {"worker": ["h0:2222", "h1:2222"]}, '
        >>> cfg += '"task": {"type": "worker", "index": 1}}'
        >>> c = parse_tf_config(cfg)
        >>> (len(c.workers), c.task_index, c.is_chief)
        (2, 1, False)
    """
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise HardwareError(
            "--target multi-worker needs the TF_CONFIG environment variable on every "
            f"machine, e.g. {example} (index 1 on the second machine)"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise OptionsError(f"TF_CONFIG is not valid JSON ({err}): {text!r}") from err
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise OptionsError(
            f"TF_CONFIG must have 'cluster' and 'task' objects, got {text!r}; e.g. {example}"
        )
    workers = [*cluster.get("chief", []), *cluster.get("worker", [])]
    if not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise OptionsError(
            f"TF_CONFIG cluster must list 'worker' addresses as 'host:port', got {cluster!r}"
        )
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in cluster or not isinstance(task_index, int):
        raise OptionsError(
            f"TF_CONFIG task {task!r} must name a job of the cluster ({sorted(cluster)}) "
            "and an integer index"
        )
    if not 0 <= task_index < len(cluster[task_type]):
        raise OptionsError(
            f"TF_CONFIG task index {task_index} is out of range for job {task_type!r} "
            f"with {len(cluster[task_type])} address(es)"
        )
    return Cluster(workers=tuple(workers), task_type=str(task_type), task_index=task_index)


def _find_tpu(tpu: str | None, env: Mapping[str, str], dev_dir: Path) -> str:
    if tpu:
        return tpu
    if env.get("TPU_NAME"):
        return env["TPU_NAME"]
    if env.get("COLAB_TPU_ADDR"):  # legacy Colab TPU node runtime
        return "grpc://" + env["COLAB_TPU_ADDR"]
    if any(dev_dir.glob("accel*")) or (dev_dir / "vfio").is_dir():  # TPU VM / Colab TPU VM
        return "local"
    raise HardwareError(
        "--target tpu but no TPU was found: pass --tpu NAME (a Cloud TPU node), "
        "--tpu local (on a TPU VM), or set TPU_NAME; in Colab choose Runtime > "
        "Change runtime type > TPU"
    )


def plan_strategy(
    target: str,
    *,
    gpus: Sequence[GpuInfo] | None = None,
    precision: str = "auto",
    tpu: str | None = None,
    cpu_replicas: int = 1,
    env: Mapping[str, str] | None = None,
    dev_dir: str | Path = "/dev",
    backend: str = "tensorflow",
    devices: Mapping[str, int] | None = None,
) -> StrategyPlan:
    """Decide the strategy for ``target`` from the visible hardware.

    Args:
        target: One of :data:`TARGETS`.
        gpus: The visible GPUs; ``None`` asks TensorFlow (``list_physical_devices``).
        precision: ``auto`` (see the module table) or a Keras dtype policy name.
        tpu: TPU name or address for ``target='tpu'`` (``local`` on a TPU VM); ``None``
            looks at ``TPU_NAME``, ``COLAB_TPU_ADDR`` and ``/dev/accel*``.
        cpu_replicas: For ``target='cpu'``: split the CPU into this many logical devices
            and mirror over them (tests the multi-replica path without GPUs).
        env: Environment to read (default ``os.environ``).
        dev_dir: Where TPU VM device files are looked for.
        backend: Keras' backend (``keras.backend.backend()``); JAX and PyTorch plans
            are made by :func:`plan_backend`.
        devices: For JAX/PyTorch: the device count per platform (``{"gpu": 2}``);
            ``None`` asks the backend.

    Raises:
        HardwareError: the target's hardware is absent (the message says what to do).
        OptionsError: a bad target, precision or ``TF_CONFIG``.

    Example:
        >>> plan = plan_strategy("multi-gpu", gpus=[GpuInfo("/gpu:0", (7, 5)),
        ...                                         GpuInfo("/gpu:1", (7, 5))])
        >>> plan.kind, plan.devices, plan.precision
        ('mirrored', ('/gpu:0', '/gpu:1'), 'mixed_float16')
    """
    if target not in TARGETS:
        raise OptionsError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if precision not in PRECISIONS:
        raise OptionsError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if not isinstance(cpu_replicas, int) or cpu_replicas < 1:
        raise OptionsError(f"cpu_replicas must be an integer >= 1; got {cpu_replicas!r}")
    if cpu_replicas > 1 and target != "cpu":
        raise OptionsError(f"cpu_replicas applies to --target cpu only; got target {target!r}")
    if backend not in BACKENDS:
        raise OptionsError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "tensorflow":
        return plan_backend(
            target, backend, precision=precision, tpu=tpu, cpu_replicas=cpu_replicas,
            devices=devices,
        )  # fmt: skip
    env = os.environ if env is None else env
    if target == "tpu":
        address = _find_tpu(tpu, env, Path(dev_dir))
        if precision == "mixed_float16":
            raise OptionsError("TPUs do not support float16; use 'auto' or 'mixed_bfloat16'")
        return StrategyPlan(
            target, "tpu", tpu=address, precision=_pick_precision(precision, [], tpu=True)
        )
    if gpus is None:
        gpus = visible_gpus()
    if target == "cpu":
        if precision not in ("auto", "float32"):
            raise OptionsError(f"--target cpu trains in float32; got precision {precision!r}")
        if cpu_replicas == 1:
            return StrategyPlan(target, "default", devices=("/cpu:0",))
        devices = tuple(f"/cpu:{i}" for i in range(cpu_replicas))
        return StrategyPlan(target, "mirrored", devices=devices, cpu_replicas=cpu_replicas)
    if target == "multi-worker":
        cluster = parse_tf_config(env.get("TF_CONFIG"))
        return StrategyPlan(
            target,
            "multi_worker",
            devices=tuple(g.name for g in gpus) or ("/cpu:0",),
            precision=_pick_precision(precision, gpus),
            cluster=cluster,
        )
    if not gpus:
        raise HardwareError(
            f"--target {target} but TensorFlow sees no GPU: check `nvidia-smi`, that the "
            "CUDA build of TensorFlow is installed (pip install 'tensorflow[and-cuda]') "
            "and CUDA_VISIBLE_DEVICES; use --target cpu to train without one"
        )
    if target == "gpu":
        notes: tuple[str, ...] = ()
        if len(gpus) > 1:
            notes = (f"{len(gpus)} GPUs visible, using only the first; use --target multi-gpu",)
        return StrategyPlan(
            target,
            "one_device",
            devices=(gpus[0].name,),
            precision=_pick_precision(precision, gpus[:1]),
            notes=notes,
        )
    if len(gpus) < 2:
        raise HardwareError(
            f"--target multi-gpu needs at least 2 GPUs; TensorFlow sees {len(gpus)} "
            f"({gpus[0].name}); use --target gpu"
        )
    return StrategyPlan(
        target,
        "mirrored",
        devices=tuple(g.name for g in gpus),
        precision=_pick_precision(precision, gpus),
    )


def plan_backend(
    target: str,
    backend: str,
    *,
    precision: str = "auto",
    tpu: str | None = None,
    cpu_replicas: int = 1,
    devices: Mapping[str, int] | None = None,
) -> StrategyPlan:
    """The plan of ``target`` on Keras' JAX or PyTorch backend (see the module table).

    JAX distributes with ``keras.distribution.DataParallel`` over the target's local
    devices; Keras' PyTorch backend has no distribution API, so it runs on one device.

    Raises:
        HardwareError: the target's devices are absent.
        OptionsError: a target or option without a meaning on ``backend`` (the message
            names the alternative).

    Example:
        >>> plan = plan_backend("multi-gpu", "jax", devices={"cpu": 1, "gpu": 4})
        >>> plan.kind, plan.devices, plan.precision
        ('data_parallel', ('gpu:0', 'gpu:1', 'gpu:2', 'gpu:3'), 'float32')
    """
    found = backend_devices(backend) if devices is None else dict(devices)
    other = "KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow"
    if target == "multi-worker":
        raise OptionsError(
            f"--target multi-worker reads a TensorFlow TF_CONFIG cluster; on the {backend} "
            "backend this script trains on one host: use KERAS_BACKEND=tensorflow for "
            "several machines"
        )
    if backend == "torch" and (target in ("multi-gpu", "tpu") or cpu_replicas > 1):
        what = f"--cpu-replicas {cpu_replicas}" if cpu_replicas > 1 else f"--target {target}"
        raise OptionsError(
            f"{what}: Keras' PyTorch backend has no data-parallel distribution; use {other}"
        )
    if target == "tpu" and tpu not in (None, "local"):
        raise OptionsError(
            f"--tpu {tpu}: on JAX the TPU is the TPU VM this script runs on (--tpu local or "
            "no --tpu); a remote TPU node needs KERAS_BACKEND=tensorflow"
        )
    if cpu_replicas > 1:
        raise OptionsError(
            f"--cpu-replicas {cpu_replicas} makes TensorFlow logical CPUs; on JAX start with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={cpu_replicas} and "
            "--target cpu uses keras.distribution.DataParallel over those devices"
        )
    platform = {"cpu": "cpu", "gpu": "gpu", "multi-gpu": "gpu", "tpu": "tpu"}[target]
    count = int(found.get(platform, 0))
    if count == 0:
        raise HardwareError(
            f"--target {target} but the {backend} backend sees no {platform.upper()}: check "
            f"the {backend} build (its CUDA/TPU variant) and the devices; use --target cpu "
            "to train without one"
        )
    if platform == "cpu":
        if precision not in ("auto", "float32"):
            raise OptionsError(f"--target cpu trains in float32; got precision {precision!r}")
        chosen = "float32"
    elif platform == "tpu":
        if precision == "mixed_float16":
            raise OptionsError("TPUs do not support float16; use 'auto' or 'mixed_bfloat16'")
        chosen = _pick_precision(precision, [], tpu=True)
    else:
        # the compute capability is not asked of JAX/PyTorch: auto keeps float32 there
        chosen = precision if precision != "auto" else "float32"
    names = tuple(f"{platform}:{i}" for i in range(count))
    if target == "multi-gpu" and count < 2:
        raise HardwareError(
            f"--target multi-gpu needs at least 2 GPUs; {backend} sees 1; use --target gpu"
        )
    notes: tuple[str, ...] = ()
    if target == "gpu" and count > 1:
        notes = (f"{count} GPUs visible, using only the first; use --target multi-gpu",)
    if backend == "jax" and (target in ("multi-gpu", "tpu") or (target == "cpu" and count > 1)):
        kind, used = "data_parallel", names
    else:
        kind, used = "default", names[:1]
    return StrategyPlan(target, kind, devices=used, precision=chosen, notes=notes, backend=backend)


def backend_devices(backend: str) -> dict[str, int]:
    """How many devices of each platform (``cpu``, ``gpu``, ``tpu``) ``backend`` sees."""
    if backend == "torch":
        import torch

        return {"cpu": 1, "gpu": torch.cuda.device_count()}
    import jax

    counts = {}
    for platform in ("cpu", "gpu", "tpu"):
        try:
            counts[platform] = len(jax.devices(platform))
        except RuntimeError:  # no such backend in this jaxlib
            counts[platform] = 0
    return counts


class BackendStrategy:
    """What train.py asks of a strategy, for Keras' JAX and PyTorch backends.

    The distribution itself (JAX: ``keras.distribution.DataParallel``) is set globally
    by :func:`make_strategy`; ``scope()`` has nothing to do.
    """

    def __init__(self, plan: StrategyPlan) -> None:
        self.plan = plan
        self.num_replicas_in_sync = len(plan.devices) if plan.kind == "data_parallel" else 1

    @property
    def description(self) -> str:
        """What the log says: the backend and its distribution."""
        if self.plan.kind == "data_parallel":
            devices = ", ".join(self.plan.devices)
            return f"{self.plan.backend}: keras.distribution.DataParallel over {devices}"
        return f"{self.plan.backend}: one device ({self.plan.devices[0]})"

    def scope(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to enter: variables follow the global distribution."""
        return contextlib.nullcontext()


def visible_gpus() -> list[GpuInfo]:
    """The GPUs TensorFlow sees, with their compute capability."""
    import tensorflow as tf

    found = []
    for i, device in enumerate(tf.config.list_physical_devices("GPU")):
        details: dict[str, Any] = {}
        with contextlib.suppress(ValueError, RuntimeError):  # driver-specific
            details = tf.config.experimental.get_device_details(device)
        found.append(GpuInfo(f"/gpu:{i}", details.get("compute_capability")))
    return found


def make_strategy(plan: StrategyPlan) -> Any:
    """Build the live ``tf.distribute.Strategy`` for ``plan`` and set the Keras dtype policy.

    On JAX/PyTorch: a :class:`BackendStrategy` (after setting the JAX distribution).

    Must run before any other TensorFlow work in the process for ``cpu_replicas > 1``
    (logical devices can only be configured before TensorFlow initialises) and for TPUs.

    Raises:
        HardwareError: the TPU cannot be reached or logical devices cannot be configured.
    """
    import keras

    keras.mixed_precision.set_global_policy(plan.precision)
    if plan.backend != "tensorflow":
        if plan.kind == "data_parallel":
            devices = keras.distribution.list_devices(plan.devices[0].split(":")[0])
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return BackendStrategy(plan)
    import tensorflow as tf

    if plan.kind == "default":
        return tf.distribute.get_strategy()
    if plan.kind == "one_device":
        return tf.distribute.OneDeviceStrategy(plan.devices[0])
    if plan.kind == "mirrored":
        if plan.cpu_replicas > 1:
            _split_cpu(plan.cpu_replicas)
        return tf.distribute.MirroredStrategy(list(plan.devices))
    if plan.kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if plan.kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=plan.tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            raise HardwareError(
                f"cannot connect to TPU {plan.tpu!r}: {err}; check the name/zone, that the "
                "TPU and this VM run the same TensorFlow version, and that the TPU is READY"
            ) from err
        return tf.distribute.TPUStrategy(resolver)
    raise OptionsError(f"unknown strategy kind {plan.kind!r}")  # pragma: no cover


def _split_cpu(n: int) -> None:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    existing = tf.config.get_logical_device_configuration(cpus[0])
    if existing and len(existing) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:
        raise HardwareError(
            f"cannot split the CPU into {n} logical devices: TensorFlow is already "
            "initialised in this process; choose the strategy before any other TF work"
        ) from err
