

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
