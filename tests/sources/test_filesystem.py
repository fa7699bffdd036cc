"""FileSystemStoragePathSource without TensorFlow: discovery rules, policies, settling, watching."""

from __future__ import annotations

import os
import time

import pytest

from nbserve.options import ModelConfig, VersionPolicy
from nbserve.sources.filesystem import FileSystemStoragePathSource, parse_version
from nbserve.testing import FakeLoader
from tests.support import FakeClock, wait_for


@pytest.mark.parametrize("name,version", [
    ("1", 1), ("00000123", 123), ("9223372036854775807", 2**63 - 1),
    ("9223372036854775808", None), ("1.tmp", None), ("v2", None), ("0.1", None),
    ("temp-3", None), ("assets", None), (".tmp-upload", None), ("-1", None), ("", None),
    ("١٢", None),  # non-ASCII digits are not versions
])
def test_parse_version(name, version):
    assert parse_version(name) == version


class Recorder:
    def __init__(self):
        self.calls: list[tuple[str, list[int]]] = []

    def __call__(self, name, versions):
        self.calls.append((name, [d.id.version for d in versions]))

    def last(self, name):
        return [v for n, v in self.calls if n == name][-1]


def make_version(base, name, complete=True, old=True):
    path = base / name
    path.mkdir(parents=True)
    if complete:
        (path / "saved_model.pb").write_bytes(b"x")
    if old:
        past = time.time() - 60
        for p in (path, *(path.iterdir())):
            os.utime(p, (past, past))
    return path


def source_for(models, **kw):
    rec = Recorder()
    kw.setdefault("poll_wait_seconds", 1.0)
    src = FileSystemStoragePathSource(lambda sid, path: FakeLoader(label=(sid, path)), **kw)
    src.set_aspired_versions_callback(rec)
    src.update_config(models)
    return src, rec


def test_latest_all_specific(tmp_path):
    for v in ("1", "2", "00003", ".tmp-upload", "notes"):
        make_version(tmp_path, v)
    (tmp_path / "README").write_text("not a version")
    models = [ModelConfig("latest1", str(tmp_path)),
              ModelConfig("latest2", str(tmp_path), version_policy=VersionPolicy.latest(2)),
              ModelConfig("all", str(tmp_path), version_policy=VersionPolicy.all()),
              ModelConfig("specific", str(tmp_path), version_policy=VersionPolicy.specific(1, 7))]
    src, rec = source_for(models)
    src.poll_once()
    assert rec.last("latest1") == [3]
    assert rec.last("latest2") == [3, 2]
    assert rec.last("all") == [3, 2, 1]
    assert rec.last("specific") == [1]


def test_emits_only_on_change(tmp_path):
    make_version(tmp_path, "1")
    src, rec = source_for([ModelConfig("m", str(tmp_path))])
    src.poll_once()
    src.poll_once()
    assert rec.calls == [("m", [1])]
    make_version(tmp_path, "2")
    src.poll_once()
    assert rec.calls == [("m", [1]), ("m", [2])]


def test_missing_base_path_emits_nothing_and_empty_base_unloads(tmp_path):
    src, rec = source_for([ModelConfig("m", str(tmp_path / "absent"))])
    src.poll_once()
    assert rec.calls == []
    (tmp_path / "empty").mkdir()
    src.update_config([ModelConfig("m", str(tmp_path / "empty"))])
    src.poll_once()
    assert rec.calls == [("m", [])]


def test_half_written_version_waits_until_quiet(tmp_path):
    make_version(tmp_path, "1")
    clock = FakeClock()
    src, rec = source_for([ModelConfig("m", str(tmp_path))], settle_seconds=0.3,
                          incomplete_grace_seconds=0.6, clock=clock.monotonic,
                          wall_clock=clock.wall)
    src.poll_once()
    fresh = make_version(tmp_path, "2", complete=False, old=False)
    src.poll_once()
    assert rec.last("m") == [1]  # no saved_model.pb yet, and still changing
    (fresh / "saved_model.pb").write_bytes(b"x")
    src.poll_once()
    assert rec.last("m") == [1]  # complete but not quiet for the settle time yet
    clock.advance(0.29)
    src.poll_once()
    assert rec.last("m") == [1]  # still 10 ms to go
    clock.advance(0.01)
    src.poll_once()
    assert rec.last("m") == [2]


def test_a_tflite_only_version_is_complete_after_the_settle_time(tmp_path):
    clock = FakeClock()
    src, rec = source_for([ModelConfig("m", str(tmp_path))], settle_seconds=0.1,
                          incomplete_grace_seconds=3.0, clock=clock.monotonic,
                          wall_clock=clock.wall)
    fresh = make_version(tmp_path, "1", complete=False, old=False)
    (fresh / "model.tflite").write_bytes(b"x")
    src.poll_once()
    assert rec.calls == []
    clock.advance(0.1)  # the settle time, not the 3 s grace of a folder with no model file
    src.poll_once()
    assert rec.last("m") == [1]


def test_incomplete_version_is_taken_after_grace(tmp_path):
    clock = FakeClock()
    src, rec = source_for([ModelConfig("m", str(tmp_path))], settle_seconds=0.1,
                          incomplete_grace_seconds=0.3, clock=clock.monotonic,
                          wall_clock=clock.wall)
    make_version(tmp_path, "1", complete=False, old=False)
    src.poll_once()
    assert rec.calls == []  # nothing emitted while the only version settles
    clock.advance(0.2)  # quiet past the settle time, but it has no saved_model.pb
    src.poll_once()
    assert rec.calls == []
    clock.advance(0.1)
    src.poll_once()
    assert rec.last("m") == [1]


def test_deleted_version_falls_back(tmp_path):
    make_version(tmp_path, "1")
    v2 = make_version(tmp_path, "2")
    src, rec = source_for([ModelConfig("m", str(tmp_path))])
    src.poll_once()
    assert rec.last("m") == [2]
    for f in v2.iterdir():
        f.unlink()
    v2.rmdir()
    src.poll_once()
    assert rec.last("m") == [1]


def test_dropped_model_gets_empty_list_and_policy_change_reapplies(tmp_path):
    make_version(tmp_path, "1")
    make_version(tmp_path, "2")
    src, rec = source_for([ModelConfig("m", str(tmp_path))])
    src.poll_once()
    src.update_config([ModelConfig("m", str(tmp_path), version_policy=VersionPolicy.specific(1))])
    src.poll_once()
    assert rec.last("m") == [1]
    src.update_config([])
    assert rec.last("m") == []


def test_watching_reacts_before_the_poll_period(tmp_path):
    make_version(tmp_path, "1")
    src, rec = source_for([ModelConfig("m", str(tmp_path))], poll_wait_seconds=30.0,
                          watch_interval_seconds=0.05)
    src.start()
    try:
        wait_for(lambda: rec.calls, timeout=5, what="the first scan")
        tmp = make_version(tmp_path, ".tmp-upload")
        os.rename(tmp, tmp_path / "2")
        wait_for(lambda: rec.last("m") == [2], timeout=5, what="version 2 (the poll is 30 s)")
    finally:
        src.stop()
