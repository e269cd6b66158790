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

import tensorflow as tf

from rxdata.errors import OptionsError

__all__ = ["dispatcher_address", "start_dispatcher", "start_worker"]

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
