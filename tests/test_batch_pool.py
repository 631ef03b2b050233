"""unijob.batch.pool: the batch runner's worker processes, for real (fork or spawn)."""

from __future__ import annotations

import os
import time

import pytest

from unijob.batch.pool import WorkerError, WorkerPool

_state: dict = {}


def _init(offset: int, fail: bool = False) -> None:
    if fail:
        raise RuntimeError("no model here")
    _state["offset"] = offset


def _work(x: int) -> tuple[int, int]:
    if x == -1:
        raise ValueError("bad task")
    if x == -2:
        os._exit(3)
    time.sleep(0.02 if x % 3 == 0 else 0.0)  # uneven tasks: answers come back out of order
    return x + _state["offset"], os.getpid()


def test_answers_come_in_task_order_from_every_worker():
    with WorkerPool(2, _init, (100,), _work) as pool:
        out = list(pool.imap(iter(range(60))))
    assert [y for y, _ in out] == [x + 100 for x in range(60)]
    assert len({pid for _, pid in out}) == 2


def test_no_tasks_is_no_answers():
    with WorkerPool(2, _init, (0,), _work) as pool:
        assert list(pool.imap(iter([]))) == []


@pytest.mark.parametrize("init_args, tasks, message", [
    ((0, True), [1, 2], "failed to load:\n.*RuntimeError: no model here"),
    ((0,), [1, -1, 2], "failed:\n.*ValueError: bad task"),
    ((0,), [1, -2, 2], "exited with code 3"),
])
def test_a_worker_that_fails_raises_instead_of_hanging(init_args, tasks, message):
    with WorkerPool(2, _init, init_args, _work) as pool:
        with pytest.raises(WorkerError, match=f"(?s){message}"):
            list(pool.imap(iter(tasks)))
