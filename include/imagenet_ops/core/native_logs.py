"""Keep native libraries' start-up noise out of task logs at ERROR level.

TensorFlow's C++ runtime writes lines such as ``E0000 ... failed call to cuInit`` and
``oneDNN custom operations are on`` straight to file descriptor 2 when it loads, before
``TF_CPP_MIN_LOG_LEVEL`` applies. Airflow's task supervisor logs every stderr line of a task
at ERROR, so a successful load check showed six red lines. :func:`import_tensorflow` loads
TensorFlow with fd 2 pointed at a temporary file and relays what was written at DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

log = logging.getLogger(__name__)


@contextlib.contextmanager
def native_stderr_to_debug(what: str) -> Iterator[None]:
    """Capture what native code writes to fd 2 inside the block and log it at DEBUG."""
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr without a descriptor
        fd = 2
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        if line.strip():
            log.debug("%s: %s", what, line)
    if lines:
        log.debug("%s wrote %d native log line(s) at start-up (relayed at DEBUG)", what, len(lines))


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, with its native start-up lines relayed at DEBUG instead of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_to_debug("tensorflow"):
        import tensorflow

        tensorflow.config.list_physical_devices("CPU")  # the cuInit probe runs here, inside the capture
    return tensorflow
