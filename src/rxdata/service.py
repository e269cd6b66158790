"""Start the tf.data service that runs :func:`rxdata.make_dataset`'s per-record work.

Contract:
    On an accelerator host with few CPUs, decoding PNG records and normalizing can starve
    the device. TensorFlow's tf.data service moves that work to other CPU machines: one
    **dispatcher** hands out shards, **workers** (any number, on any hosts) read, decode,
    transform and batch them, and the training process only receives finished batches.
    Pass ``PipelineOptions(data_service="grpc://DISPATCHER:PORT")`` to
    :func:`rxdata.make_dataset`.

    * :func:`start_dispatcher` and :func:`start_worker` start the servers in this process
      and return them (TensorFlow's ``DispatchServer`` / ``WorkerServer``); they serve
      until ``stop()`` or the end of the process. A server process calls ``.join()`` to
      block, e.g. ``python -c "import rxdata.service as s; s.start_worker('host:5050').join()"``.
    * The workers read the shards themselves: they must see the same paths as the
      training process (a shared disk or ``gs://``), and have rxdata's TensorFlow version.
    * Bounded wait: TensorFlow retries an unreachable dispatcher forever, logging at INFO
      level only. So :func:`rxdata.make_dataset` first connects to the address with
      :func:`check_reachable`, which raises :class:`~rxdata.errors.UnreachableError`
      naming the address after at most ``PipelineOptions(data_service_timeout=...)``
      seconds (default :data:`DEFAULT_TIMEOUT_S`), as the Dask runner's
      ``ConvertOptions(dask_timeout=...)`` bounds its wait for a scheduler. A listening
      port is all it checks: a port held by another program still lets TensorFlow wait.

Example:
    >>> dispatcher = start_dispatcher()
    >>> worker = start_worker(dispatcher_address(dispatcher))
    >>> import tensorflow as tf
    >>> ds = tf.data.Dataset.range(3).apply(tf.data.experimental.service.distribute(
    ...     processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
    ...     service=dispatcher.target))
    >>> sorted(int(x) for x in ds)
    [0, 1, 2]
    >>> worker.stop(); dispatcher.stop()
"""

from __future__ import annotations

import math
import numbers
import socket
import time

import tensorflow as tf

from rxdata.errors import Option, OptionsError, UnreachableError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "check_reachable",
    "check_seconds",
    "dispatcher_address",
    "start_dispatcher",
    "start_worker",
]

DEFAULT_TIMEOUT_S = 10.0
"""Seconds :func:`check_reachable` waits for a dispatcher to accept a connection: long
enough for a dispatcher on a busy network (a connect takes milliseconds), short enough
that a wrong address is an error before the first training step. The default of
``DistributeOptions.data_service_timeout``."""

_service = tf.data.experimental.service


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise OptionsError(f"port={port!r}; expected 0 (any free port) to 65535")
    return port


def start_dispatcher(port: int = 0) -> tf.data.experimental.service.DispatchServer:
    """Start a tf.data service dispatcher in this process.

    Args:
        port: The port to listen on; 0 picks a free one (read it from
            :func:`dispatcher_address`). Workers and clients connect to it.

    Returns:
        The running ``DispatchServer``; ``.join()`` blocks, ``.stop()`` stops it.

    Example:
        >>> dispatcher = start_dispatcher()
        >>> dispatcher.target.startswith("grpc://localhost:")
        True
        >>> dispatcher.stop()
    """
    config = _service.DispatcherConfig(port=_check_port(port))
    return _service.DispatchServer(config)


def start_worker(
    dispatcher: str, port: int = 0, *, worker_address: str | None = None
) -> tf.data.experimental.service.WorkerServer:
    """Start a tf.data service worker in this process and register it with a dispatcher.

    Args:
        dispatcher: The dispatcher's ``HOST:PORT`` (``grpc://`` is accepted and dropped).
        port: The port the worker listens on for clients; 0 picks a free one.
        worker_address: How clients reach this worker, ``HOST:%port%`` style (TensorFlow's
            default is ``localhost:%port%``; on a remote machine pass its host name,
            e.g. ``"cpu-7.internal:%port%"``).

    Returns:
        The running ``WorkerServer``; ``.join()`` blocks, ``.stop()`` stops it.

    Example:
        >>> dispatcher = start_dispatcher()
        >>> worker = start_worker(dispatcher.target)
        >>> worker.stop(); dispatcher.stop()
    """
    if not isinstance(dispatcher, str) or ":" not in dispatcher:
        raise OptionsError(f"dispatcher={dispatcher!r}; expected 'HOST:PORT'")
    address = dispatcher.split("://", 1)[-1]
    kwargs = {} if worker_address is None else {"worker_address": worker_address}
    config = _service.WorkerConfig(dispatcher_address=address, port=_check_port(port), **kwargs)
    return _service.WorkerServer(config)


def dispatcher_address(dispatcher: tf.data.experimental.service.DispatchServer) -> str:
    """``HOST:PORT`` of a dispatcher started here (for :func:`start_worker`).

    Example:
        >>> dispatcher = start_dispatcher()
        >>> dispatcher_address(dispatcher).startswith("localhost:")
        True
        >>> dispatcher.stop()
    """
    return str(dispatcher.target).split("://", 1)[-1]


def check_reachable(address: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Return when a server accepts a connection at ``address``; raise after ``timeout_s``.

    Connection attempts are repeated (a dispatcher may be starting) until the deadline.

    Args:
        address: ``HOST:PORT`` or ``grpc://HOST:PORT``.
        timeout_s: Seconds to wait in all (:func:`rxdata.make_dataset` passes
            ``PipelineOptions.data_service_timeout``).

    Raises:
        UnreachableError: Nothing accepted a connection in time (the message names the
            address, the wait and the last error).
        OptionsError: ``address`` or the timeout is malformed.

    Example:
        >>> dispatcher = start_dispatcher()
        >>> check_reachable(dispatcher.target)
        >>> dispatcher.stop()
    """
    wait = check_seconds("timeout_s", timeout_s)
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise OptionsError(f"data service address {address!r}; expected 'HOST:PORT'")
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=max(left, 0.01)):
                return
        except OSError as err:
            if time.monotonic() + 0.2 >= deadline:
                longer = Option("data_service_timeout", placeholder="SECONDS")
                raise UnreachableError(
                    f"the tf.data service at {address} did not accept a connection within "
                    f"{wait:g} s ({err}); start its dispatcher (rxdata.service."
                    f"start_dispatcher), check the address, or wait longer with {longer}",
                    options=[longer],
                ) from None
            time.sleep(0.2)


def check_seconds(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number of seconds above 0, else refuse it.

    The rule for every wait rxdata bounds (this module's, ``DistributeOptions``').

    Raises:
        OptionsError: Naming ``name`` and the value.

    Example:
        >>> check_seconds("timeout_s", 2)
        2.0
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise OptionsError(f"{name}={value!r}; expected a number of seconds > 0, e.g. 30")
    return float(value)
