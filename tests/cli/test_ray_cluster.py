"""`emort enhance --ray` on a local Ray instance (2 CPUs): the same output bytes and results as a local run,
one model load per worker, the marker and report written by the driver (resume works). Skipped when Ray
is not installed (the `cluster` extra); every step runs under a deadline so a stuck Ray fails, not hangs."""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import signal
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'emort[cluster]'")

from emort.cli.app import app  # noqa: E402
from emort.cli.cluster import RayPool, bundle_identity  # noqa: E402
from emort.runtime.batch import MARKER, enhance_files  # noqa: E402

runner = CliRunner()


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (TimeoutError) instead of hanging when Ray does not answer in time."""
    def expire(signum, frame):
        raise TimeoutError(f"Ray did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def local_ray():
    with deadline(90):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def clips(root: Path) -> Path:
    sr = 16000
    for k in range(4):
        t = np.arange(int((0.4 + 0.1 * k) * sr)) / sr
        f0 = 130 + 15 * k + 30 * np.sin(2 * np.pi * 1.5 * t)
        x = sum(np.sin(h * 2 * np.pi * np.cumsum(f0) / sr) / h for h in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
        path = root / f"spk{k % 2}" / f"c{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.2 * x / np.abs(x).max()).astype(np.float32), sr)
    sf.write(root / "silent.wav", np.zeros(8000, np.float32), sr)  # fails the same way on a worker
    return root


def test_ray_outputs_and_report_match_a_local_run(tmp_path, local_ray):
    src = clips(tmp_path / "in")
    common = ["enhance", str(src), "-e", "angry", "--steps", "2"]
    r = runner.invoke(app, [*common, "-o", str(tmp_path / "local"), "--json", str(tmp_path / "local.json")])
    assert r.exit_code == 1, r.output  # the silent clip fails, the others are written
    with deadline(240):
        r = runner.invoke(app, [*common, "-o", str(tmp_path / "ray"), "--json", str(tmp_path / "ray.json"), "--ray", "local"])
    assert r.exit_code == 1, r.output
    assert "2 worker(s)" in r.stderr  # one per CPU of the 2-CPU instance
    wavs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.wav"))
    assert len(wavs) == 4 and wavs == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.wav"))
    assert all(filecmp.cmp(tmp_path / "local" / p, tmp_path / "ray" / p, shallow=False) for p in wavs)  # byte-identical
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "ray"))

    def comparable(results: list[dict], out: str) -> list[dict]:
        return [{k: (v.replace(str(tmp_path / out), "OUT") if k == "output" else v) for k, v in x.items() if k != "seconds"}
                for x in results]

    assert comparable(remote["results"], "ray") == comparable(local["results"], "local")
    assert remote["cluster"] == {"ray": "local", "workers": 2} and remote["settings"]["device"] == "cpu"
    # The driver wrote the marker: a second run resumes (done) without starting an edit.
    assert set(json.loads((tmp_path / "ray" / MARKER).read_text())["outputs"]) == {p.as_posix() for p in wavs}
    with deadline(240):
        r = runner.invoke(app, [*common, "-o", str(tmp_path / "ray"), "--ray", "local"])
    assert "done 4" in r.stdout, r.output


def test_one_model_load_per_worker_and_no_edit_on_the_driver(tmp_path, local_ray):
    from emort.runtime.bundle import load_bundle

    src = clips(tmp_path / "in")
    bundle = load_bundle()
    driver = types.SimpleNamespace(bundle=bundle)  # no enhance(): every edit must run on a worker
    opts = replace(bundle.defaults, steps=2)
    with deadline(240), RayPool("local", workers=2, bundle_hash=bundle_identity(bundle), prosody_hash=bundle.prosody_hash) as pool:
        recs = list(enhance_files(driver, [str(src)], tmp_path / "out", "sad", opts, compute=pool.compute))
        stats = pool.stats()
    assert sorted((r.status, r.reason) for r in recs) == [("failed", "invalid-audio")] + [("written", None)] * 4
    assert len(stats) == 2 and len({s["pid"] for s in stats}) == 2
    assert [s["loads"] for s in stats] == [1, 1] and sum(s["edits"] for s in stats) == 4  # the silent clip fails on reading
    assert all(s["bundle"] == bundle_identity(bundle) and s["prosody_table"] == bundle.prosody_hash for s in stats)
    assert all(s["edit_basis"] == bundle.basis_hash() for s in stats)


def test_workers_with_another_bundle_prosody_table_or_edit_basis_are_refused(local_ray, monkeypatch):
    import emort
    from emort.runtime.bundle import load_bundle
    from emort.runtime.errors import EmortError

    bundle = load_bundle()
    with deadline(240):
        real = emort.__version__
        with monkeypatch.context() as m:  # the driver another emort than the workers (which would ignore options they lack)
            m.setattr(emort, "__version__", "0.0.0")
            with pytest.raises(EmortError, match=f"runs emort {real}, this machine 0.0.0; install the same emort"):
                RayPool("local", workers=1, bundle_hash=bundle_identity(bundle))
        with pytest.raises(EmortError, match="loads bundle"):
            RayPool("local", workers=1, bundle_hash="0" * 16)
        with pytest.raises(EmortError, match="prosody table"):
            RayPool("local", workers=1, bundle_hash=bundle_identity(bundle), prosody_hash="0" * 16)
        with pytest.raises(EmortError, match="edit basis"):
            RayPool("local", workers=1, bundle_hash=bundle_identity(bundle), basis_hash="0" * 16)
        with pytest.raises(EmortError, match="cannot run the psola prosody renderer"):  # one the workers lack
            RayPool("local", workers=1, bundle_hash=bundle_identity(bundle), prosody_renderer="psola")
        with RayPool("local", workers=1, bundle_hash=bundle_identity(bundle), prosody_hash=bundle.prosody_hash,
                     prosody_renderer="stretch") as pool:
            assert "stretch" in pool.stats()[0]["prosody_renderers"]


def test_workers_that_resolve_auto_differently_are_refused():
    """--precision auto on nodes of different CPUs would mix float32 and bf16 edits in one batch."""
    from emort.cli.cluster import one_precision
    from emort.runtime.errors import EmortError

    same = [{"node": "a" * 20, "precision": "bf16"}, {"node": "b" * 20, "precision": "bf16"}]
    assert one_precision(same, "auto") == "bf16"
    assert one_precision([{"node": "c" * 20}], "auto") == "fp32"  # workers of emort before 0.20
    with pytest.raises(EmortError, match=r"bf16 and fp32 \(node bbbbbbbbbbbb: fp32\)"):
        one_precision([same[0], {"node": "b" * 20, "precision": "fp32"}], "auto")


def test_a_worker_bundle_with_other_centroids_is_another_bundle(tmp_path):
    """Same graphs, other centroids: the edit differs, so the driver must not take that worker."""
    import json
    import shutil

    from emort.runtime.bundle import load_bundle

    b = load_bundle(None)
    dst = tmp_path / "b"
    shutil.copytree(b.path, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["centroids"]["angry"] = m["centroids"]["sad"]
    (dst / "manifest.json").write_text(json.dumps(m))
    other = load_bundle(dst)
    assert other.content_hash == b.content_hash and bundle_identity(other) != bundle_identity(b)


def test_a_dead_worker_fails_one_edit_and_the_others_take_its_queue(tmp_path, local_ray):
    from emort.runtime.bundle import load_bundle

    src = clips(tmp_path / "in")  # 4 clips and a silent one (fails on reading)
    bundle = load_bundle()
    driver = types.SimpleNamespace(bundle=bundle)
    opts = replace(bundle.defaults, steps=2)
    with deadline(240), RayPool("local", workers=2, bundle_hash=bundle_identity(bundle)) as pool:
        ray.kill(pool.actors[0])  # dies before its first edit (out of memory, node lost)
        recs = list(enhance_files(driver, [str(src)], tmp_path / "out", "sad", opts, compute=pool.compute))
    failed = [r for r in recs if r.status == "failed" and r.reason != "invalid-audio"]
    assert len(failed) == 1 and "Ray worker failed" in failed[0].error  # the edit it held, not half of the batch
    assert sum(r.status == "written" for r in recs) == 3
