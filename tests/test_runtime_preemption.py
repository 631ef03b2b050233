"""The preemption notice: a real SIGTERM sets the flag, runs callbacks once, keeps the process alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from unijob.runtime import Checkpointer, Context, preemption


@pytest.fixture(autouse=True)
def _fresh():
    preemption._reset_for_tests()
    yield
    preemption._reset_for_tests()


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    # CPython runs the handler at the next bytecode boundary of the main thread
    for _ in range(100):
        if preemption._flag.is_set():
            return
        time.sleep(0.001)


def test_sigterm_sets_the_flag_and_runs_callbacks_once():
    calls = []
    assert not preemption.preempted() and preemption.preemption_notice() is None
    preemption.on_preemption(lambda: calls.append("a"))
    preemption.on_preemption(lambda: 1 / 0)  # a failing callback does not stop the others
    preemption.on_preemption(lambda: calls.append("b"))
    before = time.time()
    _sigterm_self()
    assert preemption.preempted()
    assert before <= preemption.preemption_notice() <= time.time()
    assert calls == ["a", "b"]
    _sigterm_self()  # a second notice: callbacks do not run again
    assert calls == ["a", "b"]
    late = []
    preemption.on_preemption(lambda: late.append(1))  # registered after the notice: runs at once
    assert late == [1]


def test_a_previous_python_handler_is_chained():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append("previous"))
    try:
        preemption.on_preemption(lambda: seen.append("callback"))
        _sigterm_self()
        assert seen == ["callback", "previous"]
    finally:
        preemption._reset_for_tests()
        signal.signal(signal.SIGTERM, old)


def test_not_installed_until_used():
    assert signal.getsignal(signal.SIGTERM) is not preemption._handler
    preemption.preempted()
    assert signal.getsignal(signal.SIGTERM) is preemption._handler


def test_install_from_a_worker_thread_is_refused():
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(preemption.install()))
    t.start()
    t.join()
    assert out == [False] and signal.getsignal(signal.SIGTERM) is not preemption._handler


SCRIPT = textwrap.dedent("""
    import sys, time
    from unijob.runtime import Checkpointer, on_preemption, preempted, preemption_notice

    ckpt = Checkpointer(sys.argv[1])
    state = {"step": 0}

    @on_preemption
    def save():
        ckpt.save(("step %d" % state["step"]).encode(), state["step"])
        print("saved", state["step"], flush=True)

    print("ready", flush=True)
    while not preempted():
        state["step"] += 1
        time.sleep(0.005)
    time.sleep(0.05)  # still alive after the notice: the grace period is ours
    print("notice-at", preemption_notice(), flush=True)
    sys.exit(143)
""")


def test_real_sigterm_to_a_subprocess_that_checkpoints_in_its_handler(tmp_path):
    root = tmp_path / "ckpt"
    env = {**os.environ, "UNIJOB_CHECKPOINT_DIR": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out  # exited by itself, not killed by the signal (-15)
    lines = out.split("\n")
    saved_step = int(next(line for line in lines if line.startswith("saved")).split()[1])
    notice_at = float(next(line for line in lines if line.startswith("notice-at")).split()[1])
    assert saved_step > 0 and abs(notice_at - sent) < 5
    c = Checkpointer(root, ctx=Context())
    assert c.latest().step == saved_step and c.load() == f"step {saved_step}".encode()
