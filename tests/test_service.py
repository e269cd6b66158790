"""Tests for rxdata.service: a dispatcher and a worker in this process serve tf.data."""

from __future__ import annotations

import pytest
import tensorflow as tf

from rxdata.errors import OptionsError
from rxdata.service import dispatcher_address, start_dispatcher, start_worker

_service = tf.data.experimental.service


def test_a_worker_registered_with_a_dispatcher_serves_a_dataset() -> None:
    dispatcher = start_dispatcher()
    try:
        address = dispatcher_address(dispatcher)
        host, port = address.split(":")
        assert host == "localhost" and 0 < int(port) <= 65535
        worker = start_worker(f"grpc://{address}")  # the scheme is accepted and dropped
        try:
            ds = tf.data.Dataset.range(10).map(lambda x: x * x)
            served = ds.apply(
                _service.distribute(
                    processing_mode=_service.ShardingPolicy.OFF, service=dispatcher.target
                )
            )
            assert sorted(int(x) for x in served) == [x * x for x in range(10)]
        finally:
            worker.stop()
    finally:
        dispatcher.stop()


@pytest.mark.parametrize("port", [-1, 65536, 1.5, "5050", True], ids=repr)
def test_bad_ports_are_refused_with_the_range(port: object) -> None:
    with pytest.raises(OptionsError, match=r"port=.*expected 0 \(any free port\) to 65535"):
        start_dispatcher(port)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="port="):
        start_worker("localhost:5050", port)  # type: ignore[arg-type]


@pytest.mark.parametrize("dispatcher", ["localhost", "", 5050, None], ids=repr)
def test_a_dispatcher_without_a_port_is_refused(dispatcher: object) -> None:
    with pytest.raises(OptionsError, match=r"dispatcher=.*expected 'HOST:PORT'"):
        start_worker(dispatcher)  # type: ignore[arg-type]
