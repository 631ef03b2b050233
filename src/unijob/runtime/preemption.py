"""The preemption notice: SIGTERM as "you are about to be stopped, save what you can".

Every platform unijob targets stops a job the same way: SIGTERM to the process, a grace period,
then SIGKILL (Kubernetes ``terminationGracePeriodSeconds``, default 30 s; SageMaker managed spot
interruptions; Vertex AI and GCE preemption, 30 s; Databricks spot loss; unijob's local target
with ``--simulate-preemption``). Python's default SIGTERM action ends the process at once and
throws that grace period away. This module replaces it, lazily, with a handler that:

1. records when the notice arrived (:func:`preemption_notice`),
2. sets the flag :func:`preempted` returns,
3. runs the callbacks registered with :func:`on_preemption`, once, in registration order,
4. and does *not* end the process: the training loop decides when to stop (typically after
   saving a checkpoint) and should then exit non-zero, e.g. ``sys.exit(143)`` (128 + SIGTERM).

The handler is installed on the first call of :func:`preempted`, :func:`on_preemption`,
:func:`preemption_notice` or :func:`unijob.runtime.context`, and only from the main thread
(CPython runs signal handlers in the main thread only). A Python-level SIGTERM handler that was
installed before is chained: it runs after the callbacks.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable, Optional

_log = logging.getLogger("unijob.runtime")

_lock = threading.RLock()
_installed = False
_flag = threading.Event()
_notice_at: Optional[float] = None
_callbacks: list[Callable[[], Any]] = []
_ran_callbacks = False
_previous: Any = None


def _handler(signum: int, frame: Any) -> None:
    global _notice_at, _ran_callbacks
    if _notice_at is None:
        _notice_at = time.time()
    _flag.set()
    if _ran_callbacks:  # a second SIGTERM during the grace period: the callbacks already ran
        return
    _ran_callbacks = True
    _log.warning("unijob: preemption notice (SIGTERM) received%s",
                 f"; running {len(_callbacks)} callback(s)" if _callbacks else "")
    for cb in list(_callbacks):
        _run(cb)
    prev = _previous
    if callable(prev) and prev is not _handler:
        try:
            prev(signum, frame)
        except Exception:  # noqa: BLE001 - a chained handler must not break ours
            _log.exception("unijob: the previously installed SIGTERM handler raised")


def _run(cb: Callable[[], Any]) -> None:
    try:
        cb()
    except Exception:  # noqa: BLE001 - one failing callback must not stop the others
        _log.exception("unijob: preemption callback %r raised", cb)


def install() -> bool:
    """Install the SIGTERM handler if it is not installed yet.

    Returns:
        True when the handler is in place; False when called from a thread other than the main
        thread before any main-thread call installed it (signals can only be handled there).
    """
    global _installed, _previous
    with _lock:
        if _installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        _previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _handler)
        _installed = True
        return True


def preempted() -> bool:
    """True once a preemption notice (SIGTERM) has arrived in this process."""
    install()
    return _flag.is_set()


def preemption_notice() -> Optional[float]:
    """When the preemption notice arrived (POSIX seconds, ``time.time()``), or ``None``."""
    install()
    return _notice_at


def on_preemption(callback: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``callback()`` (no arguments) when the preemption notice arrives.

    Callbacks run once, in the main thread, inside the signal handler, in registration order;
    an exception in one is logged and the others still run. A callback registered after the
    notice arrived runs at once. Returns ``callback``, so this works as a decorator.
    """
    install()
    with _lock:
        _callbacks.append(callback)
        late = _ran_callbacks
    if late:
        _run(callback)
    return callback


def wait(timeout: Optional[float] = None) -> bool:
    """Block until the preemption notice arrives or ``timeout`` seconds pass; True if it arrived."""
    install()
    return _flag.wait(timeout)


def _reset_for_tests() -> None:
    """Forget the notice and callbacks and restore the previous handler (tests only)."""
    global _installed, _notice_at, _ran_callbacks, _previous
    with _lock:
        if _installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _previous if _previous is not None else signal.SIG_DFL)
        _installed = False
        _flag.clear()
        _notice_at = None
        _ran_callbacks = False
        _callbacks.clear()
        _previous = None
