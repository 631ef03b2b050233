"""A pool of worker processes that map one function over tasks, answers in task order.

What :mod:`unijob.batch.runner` runs its replicas on, instead of ``multiprocessing.Pool``: that
pool's worker-handler thread wakes on every result (it watches the result pipe) and, while the
result thread has not yet read it, spins through ``select`` and ``waitpid``; with a few hundred
results a second that thread cost the parent about a fifth of a core, on a machine whose cores
the workers need (``benchmarks/bench_batch.py``). It also hangs for ever when a worker dies or
its initializer raises (the task is lost; the initializer is retried without end). Here the
parent has no thread of its own: it blocks in :func:`multiprocessing.connection.wait` until a
worker answers, keeps :data:`IN_FLIGHT` tasks queued at each worker (so none waits for the
parent between tasks), and raises :class:`WorkerError` when a worker fails to start, raises,
or dies. Each worker reads its tasks on a second thread, so a parent busy sending never
deadlocks with a worker busy answering however large tasks and answers are.
"""

from __future__ import annotations

import collections
import multiprocessing
import queue
import threading
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator, Optional

#: Tasks queued at each worker at once: one being worked on, one waiting.
IN_FLIGHT = 2


class WorkerError(RuntimeError):
    """A worker process could not load (``init`` raised), raised on a task, or died."""


def _worker(conn: Connection, init: Callable[..., Any], init_args: tuple, fn: Callable[[Any], Any]) -> None:
    try:
        init(*init_args)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises WorkerError
        conn.send(("init", None, traceback.format_exc()))
        return
    tasks: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        task: Any = None
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):  # the parent exited
                task = None
            tasks.put(task)
            if task is None:
                return

    threading.Thread(target=read, daemon=True).start()
    while (task := tasks.get()) is not None:
        seq, arg = task
        try:
            out = fn(arg)
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises WorkerError
            conn.send((seq, None, traceback.format_exc()))
            return
        conn.send((seq, out, None))


class WorkerPool:
    """``processes`` workers, each running ``init(*init_args)`` once, then ``fn`` on its tasks.
    Use as a context manager; the workers are stopped (SIGTERM after a second) on exit."""

    def __init__(self, processes: int, init: Callable[..., Any], init_args: tuple, fn: Callable[[Any], Any]) -> None:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, init, init_args, fn), daemon=True)
            p.start()
            child.close()
            self._procs.append(p)
            self._conns.append(parent)

    def imap(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """``fn(task)`` for each task, in task order, computed by whichever worker is free.

        Raises:
            WorkerError: a worker's ``init`` or ``fn`` raised (its traceback is in the message),
                or a worker exited.
        """
        it = iter(tasks)
        busy: dict[Connection, int] = collections.Counter()
        done: dict[int, Any] = {}
        sent = emitted = 0
        exhausted = False

        def feed(conn: Connection) -> None:
            nonlocal sent, exhausted
            while not exhausted and busy[conn] < IN_FLIGHT:
                task: Optional[Any] = next(it, _END)
                if task is _END:
                    exhausted = True
                    return
                try:
                    conn.send((sent, task))
                except OSError:  # the worker is gone (its init failed, or it died): reading its pipe
                    return  # gives its last message or EOF, and that raises WorkerError below
                busy[conn] += 1
                sent += 1

        for conn in self._conns:
            feed(conn)
        while emitted < sent or not exhausted:
            for conn in wait(self._conns):
                try:
                    seq, out, error = conn.recv()
                except (EOFError, OSError):
                    i = self._conns.index(conn)
                    self._procs[i].join(1)
                    raise WorkerError(f"batch worker {i} (pid {self._procs[i].pid}) exited with code "
                                      f"{self._procs[i].exitcode}") from None
                if error is not None:
                    what = "failed to load" if seq == "init" else "failed"
                    raise WorkerError(f"batch worker {self._conns.index(conn)} {what}:\n{error.rstrip()}")
                busy[conn] -= 1
                done[seq] = out
                feed(conn)
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1

    def close(self) -> None:
        """Tell the workers to stop and wait for them (SIGTERM after 1 s)."""
        for conn in self._conns:  # a stop message: with fork, later workers hold this pipe too (no EOF)
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass
        for p in self._procs:
            p.join(1)
            if p.exitcode is None:
                p.terminate()
                p.join()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_END = object()
