"""runtime.model_dir: a model channel as a directory of files, whether it arrived as a directory
or as SageMaker's model.tar.gz."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from unijob import runtime


def _channels(monkeypatch, **paths):
    monkeypatch.setenv("UNIJOB_CHANNELS", json.dumps({k: str(v) for k, v in paths.items()}))


def _tarball(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_a_directory_channel_is_returned_as_is(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_bytes(b"x")
    _channels(monkeypatch, model=tmp_path / "m")
    assert runtime.model_dir() == tmp_path / "m"


@pytest.mark.parametrize("as_file", [True, False], ids=["channel is the tarball", "tarball alone in the channel dir"])
def test_sagemakers_model_tarball_is_unpacked(tmp_path, monkeypatch, as_file):
    chan = tmp_path / "data" / "model"
    chan.mkdir(parents=True)
    _tarball(chan / "model.tar.gz", {"model.pkl": b"weights", "sub/metrics.json": b"{}"})
    _channels(monkeypatch, model=chan / "model.tar.gz" if as_file else chan)
    d = runtime.model_dir("model", extract_to=tmp_path / "x")
    assert d == tmp_path / "x" and (d / "model.pkl").read_bytes() == b"weights" and (d / "sub" / "metrics.json").exists()


def test_a_tarball_escaping_its_directory_is_refused(tmp_path, monkeypatch):
    chan = tmp_path / "model"
    chan.mkdir()
    _tarball(chan / "model.tar.gz", {"../evil.py": b"print('owned')"})
    _channels(monkeypatch, model=chan)
    with pytest.raises((tarfile.TarError, ValueError)):
        runtime.model_dir(extract_to=tmp_path / "x")
    assert not (tmp_path / "evil.py").exists()


def test_a_missing_channel_names_the_ones_there_are(tmp_path, monkeypatch):
    _channels(monkeypatch, train=tmp_path)
    with pytest.raises(KeyError, match="channels: \\['train'\\]"):
        runtime.model_dir("model")
    _channels(monkeypatch, model="s3://bucket/model.tar.gz")
    with pytest.raises(FileNotFoundError, match="not a path on this machine"):
        runtime.model_dir("model")
