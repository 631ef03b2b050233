"""Checkpointer: payload kinds, atomicity (torn and crashed saves), sha256 fallback, keep-N, fsspec."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unijob.runtime import CheckpointCorrupt, Checkpointer, Context


@pytest.fixture(params=["local", "file", "memory"])
def root(request, tmp_path):
    """A fresh checkpoint root: a plain path, a file:// URI, an fsspec memory:// URI."""
    if request.param == "local":
        yield str(tmp_path / "ckpt")
        return
    if request.param == "file":
        yield f"file://{tmp_path}/ckpt"
        return
    uri = f"memory://unijob-tests/{uuid.uuid4().hex}/ckpt"
    yield uri
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def ck(uri, keep=3, rank=0, world=1):
    return Checkpointer(uri, keep=keep, ctx=Context(rank=rank, world_size=world))


def _data_file(uri: str, step: int, rel: str = "checkpoint.bin") -> str:
    return f"{uri}/step-{step:012d}/data/{rel}"


def _corrupt(uri: str, step: int, rel: str = "checkpoint.bin") -> None:
    path = _data_file(uri, step, rel)
    with fsspec.open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with fsspec.open(path, "wb") as f:
        f.write(bytes(data))


def test_bytes_round_trip_and_manifest(root):
    c = ck(root)
    payload = os.urandom(100_000)
    info = c.save(payload, 7)
    assert info.step == 7 and info.kind == "bytes" and info.size == len(payload) and info.files == ("checkpoint.bin",)
    assert c.load() == payload and c.load(7) == payload and c.steps() == [7]
    latest = c.latest()
    assert latest.step == 7 and abs(latest.time - time.time()) < 60
    with fsspec.open(f"{root}/step-000000000007/manifest.json", "rb") as f:
        manifest = json.loads(f.read())
    assert manifest["files"] == [{"path": "checkpoint.bin", "size": len(payload),
                                  "sha256": hashlib.sha256(payload).hexdigest()}]
    assert manifest["step"] == 7 and manifest["format"] == "unijob-checkpoint/1"


def test_file_payload(root, tmp_path):
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights" * 1000)
    c = ck(root)
    assert c.save(src, 1).kind == "file"
    assert c.save(str(src), 2).files == ("model.pt",)
    assert c.load() == src.read_bytes()
    out = c.load_to(tmp_path / "restore")
    assert out == tmp_path / "restore" / "model.pt" and out.read_bytes() == src.read_bytes()


def test_directory_payload(root, tmp_path):
    src = tmp_path / "state"
    (src / "shards" / "deep").mkdir(parents=True)
    files = {"optimizer.bin": os.urandom(5000), "shards/0.bin": os.urandom(70_000),
             "shards/deep/1.bin": b"", "meta.json": b'{"epoch": 3}'}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    c = ck(root)
    info = c.save(src, 3)
    assert info.kind == "dir" and sorted(info.files) == sorted(files) and info.size == sum(map(len, files.values()))
    dest = c.load_to(tmp_path / "restore")
    assert dest == tmp_path / "restore"
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files
    with pytest.raises(ValueError, match="load_to"):
        c.load()


def test_keep_last_n(root):
    c = ck(root, keep=2)
    for step in range(5):
        c.save(f"s{step}".encode(), step)
    assert c.steps() == [3, 4]
    assert c.load(3) == b"s3"
    with pytest.raises(FileNotFoundError):
        c.load(1)


def test_saving_a_step_again_replaces_it(root):
    c = ck(root)
    c.save(b"first", 4)
    c.save(b"second", 4)
    assert c.steps() == [4] and c.load() == b"second"


def test_no_checkpoint(root):
    c = ck(root)
    assert c.latest() is None and c.steps() == []
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        c.load()


def test_corrupt_newest_falls_back_with_a_warning(root, tmp_path):
    c = ck(root)
    c.save(b"good-1", 1)
    c.save(b"good-2", 2)
    c.save(b"newest", 3)
    _corrupt(root, 3)
    assert c.latest().step == 3  # cheap: manifests only
    with pytest.warns(RuntimeWarning, match="step 3 .* is corrupt"):
        assert c.load() == b"good-2"
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert c.latest(verify=True).step == 2
    with pytest.raises(CheckpointCorrupt, match="sha256"):
        c.load(3)  # an explicit step does not fall back
    with pytest.warns(RuntimeWarning):
        out = c.load_to(tmp_path / "r")
    assert out.read_bytes() == b"good-2"


def test_missing_file_is_corrupt(root):
    c = ck(root)
    c.save(b"old", 1)
    c.save(b"new", 2)
    fs, path = fsspec.core.url_to_fs(_data_file(root, 2))
    fs.rm(path)
    with pytest.warns(RuntimeWarning, match="missing"):
        assert c.load() == b"old"


def test_every_checkpoint_corrupt(root):
    c = ck(root)
    c.save(b"a", 1)
    c.save(b"b", 2)
    _corrupt(root, 1)
    _corrupt(root, 2)
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointCorrupt, match="no good checkpoint"):
        c.load()


def test_a_step_without_manifest_is_ignored(root):
    # What a save cut off after its data and before its manifest leaves on an object store.
    c = ck(root)
    c.save(b"complete", 1)
    with fsspec.open(_data_file(root, 2), "wb") as f:
        f.write(b"torn")
    assert c.steps() == [1] and c.latest().step == 1 and c.load() == b"complete"
    c.save(b"redo", 2)  # the torn step is replaced, not mixed with
    assert c.load() == b"redo"


def test_a_garbled_manifest_is_ignored(root):
    c = ck(root)
    c.save(b"complete", 1)
    c.save(b"x", 2)
    with fsspec.open(f"{root}/step-000000000002/manifest.json", "wb") as f:
        f.write(b'{"format": "unijob-checkpoint/1", "fil')
    assert c.steps() == [1] and c.load() == b"complete"


def test_interrupted_save_leaves_latest_alone(tmp_path, monkeypatch):
    from unijob.runtime import storage

    src = tmp_path / "state"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.bin").write_bytes(os.urandom(1000))
    c = ck(tmp_path / "ckpt")
    c.save(src, 1)
    real = storage._write_local_file
    calls = []

    def fail_on_second(dst, s, rel):
        calls.append(rel)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a save
        return real(dst, s, rel)

    monkeypatch.setattr(storage, "_write_local_file", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        c.save(src, 2)
    assert c.steps() == [1] and c.latest().step == 1
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["step-000000000001"]  # temp dir removed


def test_process_killed_mid_save(tmp_path):
    """A real crash: SIGKILL while a save is between its data and its manifest."""
    root = tmp_path / "ckpt"
    ck(root).save(b"before", 1)
    script = textwrap.dedent(f"""
        import os, sys, time
        from unijob.runtime import Checkpointer, Context
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("in-fsync", flush=True)
            time.sleep(60)
        os.fsync = slow_fsync
        Checkpointer({str(root)!r}, ctx=Context()).save(os.urandom(3 << 20), 2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in-fsync"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [n for n in os.listdir(root) if n.startswith(".tmp-")]
    assert len(leftovers) == 1 and (root / leftovers[0] / "data" / "checkpoint.bin").exists()
    c = ck(root)
    assert c.steps() == [1] and c.latest().step == 1 and c.load() == b"before"
    c.save(b"after", 2)  # the next save sweeps the dead process's temp dir
    assert sorted(os.listdir(root)) == ["step-000000000001", "step-000000000002"]


def test_only_rank_0_saves_by_default(tmp_path):
    root = tmp_path / "ckpt"
    assert ck(root, rank=1, world=2).save(b"x", 1) is None
    assert not root.exists()
    assert ck(root, rank=1, world=2).save(b"x", 1, all_ranks=True).step == 1
    assert ck(root).steps() == [1]


def test_default_location_comes_from_the_context(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_CHECKPOINT_DIR", str(tmp_path / "syncdir"))
    monkeypatch.setenv("UNIJOB_CHECKPOINT_URI", "s3://bucket/never-used-when-a-dir-is-given")
    assert Checkpointer().uri == str(tmp_path / "syncdir")
    monkeypatch.delenv("UNIJOB_CHECKPOINT_DIR")
    monkeypatch.setenv("UNIJOB_CHECKPOINT_URI", f"memory://unijob-tests/{uuid.uuid4().hex}")
    c = Checkpointer()
    assert c.uri.startswith("memory://") and c.save(b"1", 1).uri.startswith("memory://")
    monkeypatch.delenv("UNIJOB_CHECKPOINT_URI")
    with pytest.warns(RuntimeWarning, match="no checkpoint location"):
        c = Checkpointer()
    assert Path(c.uri).is_dir() and "unijob-checkpoints-" in c.uri


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (10**12, ValueError), (1.0, ValueError), (True, ValueError)])
def test_bad_step(tmp_path, bad, exc):
    with pytest.raises(exc):
        ck(tmp_path).save(b"x", bad)


def test_bad_payload(tmp_path):
    with pytest.raises(TypeError, match="bytes, a file path or a directory"):
        ck(tmp_path).save({"a": 1}, 1)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        ck(tmp_path).save(tmp_path / "nope", 1)
    with pytest.raises(ValueError, match="keep"):
        ck(tmp_path, keep=0)


def test_large_payload_spans_chunks(tmp_path):
    from unijob.runtime import storage

    payload = os.urandom(storage.CHUNK * 2 + 12345)
    c = ck(tmp_path)
    assert c.save(payload, 1).size == len(payload)
    assert c.load() == payload
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    c.save(src, 2)
    assert c.load() == payload


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(max_size=2000), min_size=1, max_size=6), keep=st.integers(1, 4))
def test_round_trip_property(payloads, keep):
    uri = f"memory://unijob-tests/{uuid.uuid4().hex}"
    c = ck(uri, keep=keep)
    for step, p in enumerate(payloads):
        c.save(p, step * 10)
    n = len(payloads)
    assert c.steps() == [s * 10 for s in range(max(0, n - keep), n)]
    assert c.load() == payloads[-1]
    for s in c.steps():
        assert c.load(s) == payloads[s // 10]
