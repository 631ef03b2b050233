"""Job records: concurrent CLI calls, and a CLI killed mid-submit."""

import multiprocessing as mp

from unijob.records import Records


def _submit_many(path, n, out):
    # every process submits the same 25 specs while the others are alive: none may merge
    with Records(path) as r:
        ids = [r.begin_submission(name="j", target="local", spec_hash=f"h{i}", spec_path=None)[0].id for i in range(n)]
        out.put(ids)
        import time
        time.sleep(2)  # stay alive until the others have submitted


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    # fork, not spawn: a spawned child re-imports this module by name (tests.test_records), and a
    # top-level `tests` package some dependencies install (smdebug_rulesconfig, via the SageMaker SDK)
    # shadows ours. Each forked process still opens its own SQLite connection inside Records().
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_submit_many, args=(path, 25, q)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in q.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(ids)) == 100
    with Records(path) as r:
        assert len(r.list(limit=1000)) == 100


def test_unfinished_submission_is_resumed_not_duplicated(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    with Records(path) as r:
        first, resumed = r.begin_submission(name="j", target="local", spec_hash="abc", spec_path=None)
        assert not resumed
    # the CLI "died" here: state is still SUBMITTING and its process is gone
    with Records(path) as r:
        r._conn.execute("UPDATE jobs SET owner_pid=? WHERE id=?", (_dead_pid(), first.id))
        again, resumed = r.begin_submission(name="j", target="local", spec_hash="abc", spec_path=None)
        assert resumed and again.submission_id == first.submission_id and again.id == first.id
        r.set_submitted(first.id, "native-1", {"target": "local", "native_id": "native-1"})
        # once submitted, a new submit of the same spec is a new job
        third, resumed = r.begin_submission(name="j", target="local", spec_hash="abc", spec_path=None)
        assert not resumed and third.id != first.id


def test_explicit_key_maps_to_the_same_record(tmp_path):
    with Records(tmp_path / "db") as r:
        a, _ = r.begin_submission(name="j", target="x", spec_hash="h", spec_path=None, submission_id="key-1")
        b, resumed = r.begin_submission(name="j", target="x", spec_hash="other", spec_path=None, submission_id="key-1")
        assert resumed and a.id == b.id


def test_history_and_prefix_lookup(tmp_path):
    with Records(tmp_path / "db") as r:
        rec, _ = r.begin_submission(name="j", target="x", spec_hash="h", spec_path=None)
        r.update(rec.id, state="RUNNING")
        r.update(rec.id, state="SUCCEEDED")
        got = r.get(rec.id[:5])
        assert [s for _, s, _ in got.history] == ["SUBMITTING", "RUNNING", "SUCCEEDED"]


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
