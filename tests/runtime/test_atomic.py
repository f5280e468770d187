

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
