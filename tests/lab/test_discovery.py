"""Discovery records: written on start, removed on stop, stale ones ignored and cleaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nbserve import discovery


def records(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(discovery.PREFIX))


def test_runtime_dir_follows_jupyter_runtime_dir(runtime_dir):
    assert discovery.runtime_dir() == str(runtime_dir)


def test_start_writes_a_record_and_stop_removes_it(runtime_dir, fake_server):
    server = fake_server("discovered")
    names = records(runtime_dir)
    assert len(names) == 1
    assert names[0].startswith(f"{discovery.PREFIX}{os.getpid()}-")
    record = json.loads((runtime_dir / names[0]).read_text())
    assert record["pid"] == os.getpid()
    assert record["rest_url"] == server.rest_url
    assert record["grpc_target"] is None
    assert record["ports"] == {"rest": server.rest_port, "grpc": None}
    assert record["host"] == "127.0.0.1"
    assert record["models"] == ["discovered"]
    assert record["started"] > 0
    assert discovery.record_path(server) == str(runtime_dir / names[0])
    assert [r["id"] for r in discovery.list_servers()] == [record["id"]]

    server.stop(grace=0)
    assert records(runtime_dir) == []
    assert discovery.list_servers() == []
    assert discovery.record_path(server) is None


def test_two_servers_two_records_oldest_first(runtime_dir, fake_server):
    first, second = fake_server("a"), fake_server("b")
    listed = discovery.list_servers()
    assert [r["rest_url"] for r in listed] == [first.rest_url, second.rest_url]
    second.stop(grace=0)
    assert [r["rest_url"] for r in discovery.list_servers()] == [first.rest_url]


def write_record(folder, pid, **extra):
    path = folder / f"{discovery.PREFIX}{pid}-test{len(list(folder.iterdir()))}.json"
    path.write_text(json.dumps({"id": path.stem, "pid": pid, "rest_url": None, **extra}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_records_of_dead_processes_are_ignored_and_removed(runtime_dir):
    stale = write_record(runtime_dir, dead_pid())
    live = write_record(runtime_dir, os.getpid(),
                        process_start=discovery.process_start(os.getpid()))
    assert [r["id"] for r in discovery.list_servers(clean=False)] == [live.stem]
    assert stale.exists()  # clean=False leaves it
    assert [r["id"] for r in discovery.list_servers()] == [live.stem]
    assert not stale.exists() and live.exists()


def test_registering_prunes_stale_records(runtime_dir, fake_server):
    stale = write_record(runtime_dir, dead_pid())
    fake_server()
    assert not stale.exists()
    assert len(records(runtime_dir)) == 1


def test_a_reused_pid_is_stale(runtime_dir):
    start = discovery.process_start(os.getpid())
    if start is None:
        import pytest

        pytest.skip("no /proc: process start times are unknown on this platform")
    reused = write_record(runtime_dir, os.getpid(), process_start=start + 1)
    assert discovery.list_servers() == []
    assert not reused.exists()


def test_unreadable_and_foreign_files_are_skipped_not_deleted(runtime_dir):
    broken = runtime_dir / f"{discovery.PREFIX}1-broken.json"
    broken.write_text("{not json")
    no_pid = runtime_dir / f"{discovery.PREFIX}2-nopid.json"
    no_pid.write_text("[]")
    other = runtime_dir / "kernel-123.json"
    other.write_text("{}")
    assert discovery.list_servers() == []
    assert broken.exists() and no_pid.exists() and other.exists()


def test_a_missing_runtime_dir_lists_nothing(tmp_path):
    assert discovery.list_servers(str(tmp_path / "absent")) == []


def test_register_never_raises(tmp_path, fake_server, runtime_dir):
    server = fake_server()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert discovery.register(server, directory=str(blocker / "sub")) is None  # not a folder
    assert discovery.unregister(object()) is False
