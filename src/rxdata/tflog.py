"""Keep TensorFlow's C++ start-up lines out of a program's output, and nothing else.

Importing TensorFlow 2.19+ on a CPU machine writes lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796516081.852319   23359 port.cc:153] oneDNN custom operations are on...
    I0000 00:00:1796516081.860528   23359 cudart_stub.cc:31] Could not find cuda drivers...

from C++ straight to file descriptor 2, and ``TF_CPP_MIN_LOG_LEVEL`` no longer silences
them (tensorflow/tensorflow#100442). :func:`quiet_tensorflow_startup` arranges that the
first ``import tensorflow`` of the process (whenever it happens, so a command that never
needs TensorFlow never pays for it) runs with descriptor 2 captured; afterwards every
captured line that is not such a start-up line is written back to stderr, so Python
warnings and errors raised by the import are never hidden. The ``rxdata`` command, its
worker processes and the example scripts call it.

The lines are shown when the user asks for them: ``TF_CPP_MIN_LOG_LEVEL=0`` set in the
environment, or ``RXDATA_TF_LOGS=1``.

Example:
    >>> quiet_tensorflow_startup()  # before TensorFlow is imported; harmless after
    >>> is_startup_line("I0000 00:00:1.0   7 cudart_stub.cc:31] Could not find cuda drivers")
    True
    >>> is_startup_line("Traceback (most recent call last):")
    False
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from types import ModuleType

__all__ = ["LOGS_ENV", "is_startup_line", "quiet_tensorflow_startup", "wants_logs"]

#: Set to ``1`` to see TensorFlow's start-up lines.
LOGS_ENV = "RXDATA_TF_LOGS"

# An informational or warning C++ log line of absl/TF (severity letter, MMDD, time,
# thread, file:line]), the error line of a CPU-only machine's CUDA probe, absl's note about
# logging before InitializeLog, and the continuation line of TF's CPU-features note.
_STARTUP = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\] .*"
    r"|E\d{4} \d\d:\d\d:[\d.]+\s+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit: .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow "
    r"with the appropriate compiler flags\.)$"
)
_PACKAGES = ("tensorflow",)


def is_startup_line(line: str) -> bool:
    """True for a line TensorFlow's C++ start-up writes (absl/TF log lines, absl's note)."""
    return bool(_STARTUP.match(line.rstrip("\r\n")))


def wants_logs() -> bool:
    """True when the user asked for TensorFlow's C++ lines (see the module docstring)."""
    return (
        os.environ.get(LOGS_ENV, "") not in ("", "0")
        or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
    )


def _replay(data: bytes) -> None:
    kept = [
        line
        for line in data.decode("utf-8", "replace").splitlines(keepends=True)
        if not is_startup_line(line)
    ]
    if kept:
        os.write(2, "".join(kept).encode("utf-8", "replace"))


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader with file descriptor 2 captured, then replays other lines."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 (a daemon): nothing to keep clean
            self._loader.exec_module(module)
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                self._loader.exec_module(module)
                # Probe the devices now, still captured: on a CPU-only machine the CUDA
                # probe logs an error line at the first operation otherwise. Listing
                # devices does not initialize them (set_memory_growth still works).
                config = getattr(module, "config", None)
                if config is not None:
                    config.list_physical_devices()
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                _replay(capture.read())


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the first ``import tensorflow``, then steps aside."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PACKAGES:
            return None
        _remove_finder()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]


def quiet_tensorflow_startup() -> None:
    """Silence TensorFlow's C++ start-up lines when it is first imported in this process.

    Does nothing when TensorFlow is already imported or the user asked for the lines
    (:func:`wants_logs`). Also sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless set, which quiets
    TensorFlow's later informational lines.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if wants_logs() or any(p in sys.modules for p in _PACKAGES):
        return
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


def is_quiet() -> bool:
    """True while the first TensorFlow import of this process is set to be quiet."""
    return any(isinstance(f, _QuietFinder) for f in sys.meta_path)
