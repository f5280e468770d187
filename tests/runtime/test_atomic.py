import os
import sys

import pytest


def test_report_json_is_the_same_value_with_one_record_per_line(tmp_path):
    import json

    from emort.runtime.atomic import report_json, write_json_atomic

    rep = {"command": "score", "settings": {"inputs": ["a", "\0rows\0"], "results": []}, "summary": {"scored": 2},
           "results": [{"path": "a\u00e9.flac", "scores": {"sad": 0.5}}, {"path": "b \"q\".wav", "status": "failed"}]}
    text = report_json(rep)
    assert json.loads(text) == rep
    lines = text.splitlines()
    assert sum(1 for ln in lines if ln.startswith('    {"path"')) == 2  # each record on its own line
    assert json.loads(report_json({**rep, "results": []})) == {**rep, "results": []}
    write_json_atomic(tmp_path / "r.json", rep, rows="results")
    assert json.loads((tmp_path / "r.json").read_text()) == rep


def test_report_json_puts_the_records_last_and_keeps_every_other_key():
    import json

    from emort.runtime.atomic import report_json

    rep = {"command": "enhance", "results": [{"path": "a.wav", "x": float("nan")}], "shard": {"index": 1, "of": 2}}
    text = report_json(rep)
    assert text.rstrip().endswith("]\n}") and list(json.loads(text)) == ["command", "shard", "results"]
    assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(rep, sort_keys=True)  # NaN kept as json.dumps writes it


def test_reading_the_umask_from_several_threads_leaves_it_as_it_was(monkeypatch):
    """os.umask is read by setting it to 0 and back: two threads at once could leave it at 0 (every
    later file world-writable) unless the reads take turns. Each umask call here yields the GIL
    (a sleep), as a thread switch between the two calls would."""
    import os
    import threading
    import time

    from emort.runtime.atomic import _umask

    real = os.umask

    def slow_umask(mask):
        old = real(mask)
        time.sleep(1e-4)
        return old

    before = real(0o027)
    assert _umask() == 0o027 == real(0o027)  # as the OS reports it (Linux) or by setting it
    monkeypatch.setattr("emort.runtime.atomic._umask_from_proc", lambda: None)  # the fallback: setting and resetting it
    monkeypatch.setattr(os, "umask", slow_umask)
    try:
        threads = [threading.Thread(target=lambda: [_umask() for _ in range(20)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert real(0o027) == 0o027
    finally:
        real(before)


def _hold_then_exit(lock_path, q) -> None:
    from emort.runtime.atomic import Claims

    c = Claims(lock_path)
    q.put(c.take("x.wav"))
    q.get()  # held until told, then the process ends without releasing it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="claims use Linux open-file-description locks")
def test_claims_exclude_other_holders_and_end_with_their_process(tmp_path):
    import multiprocessing as mp

    from emort.runtime.atomic import Claims, exclusive_lock

    lock = tmp_path / "out" / ".lock"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_hold_then_exit, args=(lock, q))
    p.start()
    try:
        assert q.get(timeout=60) is True
        mine = Claims(lock)
        assert mine.take("x.wav") is False and mine.take("y.wav") is True  # another process holds x, not y
        with exclusive_lock(lock):  # another descriptor of the file opened and closed: y stays claimed
            pass
        assert Claims(lock).take("y.wav") is False  # a second holder in this process is excluded too
        q.put("end")
    finally:
        p.join(60)
    assert mine.take("x.wav") is True  # its process ended: the kernel dropped its claim
    mine.release("x.wav")
    mine.close()
    assert Claims(lock).take("x.wav") and Claims(lock).take("y.wav") is True


def test_claims_are_granted_where_they_cannot_be_made(tmp_path, monkeypatch):
    """Not Linux, no such locks on the file system, or a lock file this user cannot open: every
    claim is granted (no exclusion, as before claims existed), never an error."""
    from emort.runtime.atomic import Claims

    c = Claims(tmp_path / "out" / ".lock")
    monkeypatch.setattr(c, "_usable", False)
    assert c.take("x.wav") and c.take("x.wav")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):  # root can write anyway
            pytest.skip("running as root: the folder stays writable")
        assert Claims(d / ".lock").take("x.wav") is True
    finally:
        d.chmod(0o700)
