"""Training loops on real clips: loss falls (SER and diffusion), resume, seeding.

Losses are measured on a fixed batch outside the trainer: initial weights are rebuilt
with the trainer's seed (``seed_everything(seed)`` then the model constructor), final
weights come from the run folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.runtime.samplers import NoiseSchedule  # noqa: E402
from emort.runtime.settings import EMOTIONS, MelSettings  # noqa: E402
from emort.training.common import load_weights, seed_everything  # noqa: E402
from emort.training.data import NormStats, crop_or_pad, load_mel  # noqa: E402
from emort.training.diffusion import (  # noqa: E402
    DiffusionModel,
    DiffusionTrainConfig,
    load_diffusion,
    train_diffusion,
)
from emort.training.models.denoiser import DenoiserConfig  # noqa: E402
from emort.training.models.ser import ResNetSER, SERConfig  # noqa: E402
from emort.training.models.style import StyleConfig  # noqa: E402
from emort.training.ser import SERTrainConfig, load_ser, predict, train_ser  # noqa: E402


def _ser_cfg(csv_path: Path, out: Path, **kw) -> SERTrainConfig:
    base = dict(preset="tiny", batch_size=8, test_speakers=[], val_speakers=["tiny/10"], crop_s=1.0, progress=False, patience=100)
    base.update(kw)
    return SERTrainConfig(data=[f"csv={csv_path}"], out=str(out), **base)


def _train_rows(csv_path: Path) -> list[dict]:
    return [r for r in csv.DictReader(open(csv_path)) if r["speaker"] != "10"]


def _read(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


SER_STEPS = 30


@pytest.fixture(scope="module")
def ser_run(tiny_csv: Path, tmp_path_factory) -> tuple[Path, SERTrainConfig, dict]:
    out = tmp_path_factory.mktemp("ser")
    # 3 steps per epoch (33 training clips, batch 12) x 10 epochs = 30 steps.
    cfg = _ser_cfg(tiny_csv, out, lr=3e-3, specaugment=False, mixup_alpha=0.0, label_smoothing=0.0, batch_size=12, crop_s=2.0,
                   epochs=10, max_steps=SER_STEPS)
    result = train_ser(cfg)
    return out, cfg, result


@pytest.fixture(scope="module")
def fixed_mels(tiny_csv: Path) -> tuple[list[np.ndarray], np.ndarray]:
    rows = _train_rows(tiny_csv)
    settings = MelSettings()
    mels = [load_mel(r["path"], settings) for r in rows]
    y = np.array([list(EMOTIONS).index(r["emotion"]) for r in rows])
    return mels, y


# --- SER -------------------------------------------------------------------------------------


def test_ser_run_folder(ser_run):
    out, cfg, result = ser_run
    for name in ("ser.safetensors", "ser.json", "ser_last.safetensors", "ser_last.json", "ser_last.state.pt", "ser_history.json"):
        assert (out / name).is_file(), name
    conf = json.loads((out / "ser.json").read_text())
    assert conf["kind"] == "ser" and conf["labels"] == list(EMOTIONS)
    assert conf["split"]["val_speakers"] == ["tiny/10"] and conf["split"]["test"] == 0
    assert set(conf["split"]["train_speakers"]) == {"tiny/09", "tiny/11"}
    assert set(conf["centroids"]) == set(EMOTIONS)
    assert all(len(v) == conf["model"]["embedding_dim"] for v in conf["centroids"].values())
    assert 1 <= conf["best"]["epoch"] <= len(result["history"])
    state = torch.load(out / "ser_last.state.pt", weights_only=False)["state"]
    assert state["step"] == SER_STEPS
    model, _ = load_ser(out)
    assert not model.training


def test_ser_training_loss_falls(ser_run, fixed_mels):
    out, cfg, result = ser_run
    conf = json.loads((out / "ser.json").read_text())
    stats = NormStats.from_dict(conf["norm"])
    mels, y = fixed_mels
    frames = int(round(cfg.crop_s * MelSettings().frames_per_second))
    x = torch.from_numpy(np.stack([crop_or_pad(stats.apply(m), frames, None) for m in mels]))[:, None]
    y_t = torch.from_numpy(y)

    seed_everything(cfg.seed)  # what train_ser does before building its model
    model = ResNetSER(SERConfig.from_dict(conf["model"]))

    def loss() -> float:
        # BatchNorm on batch statistics (dropout off): after 30 high-LR steps the running
        # statistics still lag the fast-moving weights, so eval mode would not show the fit.
        model.train()
        model.drop.p = 0.0
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x)[0], y_t))

    before = loss()
    load_weights(out, "ser_last", model)
    after = loss()
    assert before == pytest.approx(np.log(6), abs=0.3)  # untrained: near uniform
    assert after < 0.85 * before, (before, after)
    hist = [h["loss"] for h in result["history"]]
    assert len(hist) == cfg.epochs and hist[-1] < 0.9 * hist[0]


def test_ser_resume_continues(tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = train_ser(_ser_cfg(tiny_csv, out, epochs=1, max_steps=None))
    assert [h["epoch"] for h in first["history"]] == [1]
    assert (out / "ser.json").is_file() and (out / "ser.safetensors").is_file()
    w1 = _read(out / "ser_last.safetensors")
    step1 = torch.load(out / "ser_last.state.pt", weights_only=False)["state"]["step"]
    assert step1 >= 1
    # More epochs on the same folder: picks up ser_last.state.pt (and a longer LR horizon).
    second = train_ser(_ser_cfg(tiny_csv, out, epochs=2))
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]
    state = torch.load(out / "ser_last.state.pt", weights_only=False)["state"]
    assert state["step"] == 2 * step1
    w2 = _read(out / "ser_last.safetensors")
    assert not torch.equal(w1["head.weight"], w2["head.weight"])
    hist = json.loads((out / "ser_history.json").read_text())
    assert len(hist["history"]) == 2
    # Nothing left to do: a third call with the same epochs trains nothing.
    third = train_ser(_ser_cfg(tiny_csv, out, epochs=2))
    assert len(third["history"]) == 2
    torch.testing.assert_close(_read(out / "ser_last.safetensors")["head.weight"], w2["head.weight"])


def test_ser_seeding_reproducible(tiny_csv: Path, tmp_path: Path):
    # All augmentation on (SpecAugment, mixup, random crops, speaker-style) so every RNG path is exercised.
    aug = dict(epochs=1, max_steps=2, warp=0.1, stretch=0.1, gain_db=6.0)
    a = train_ser(_ser_cfg(tiny_csv, tmp_path / "a", **aug))
    b = train_ser(_ser_cfg(tiny_csv, tmp_path / "b", **aug))
    c = train_ser(_ser_cfg(tiny_csv, tmp_path / "c", seed=1, **aug))
    wa, wb, wc = (_read(tmp_path / n / "ser_last.safetensors") for n in "abc")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a["history"][0]["loss"] == b["history"][0]["loss"]
    assert not torch.equal(wa["stem.0.weight"], wc["stem.0.weight"])
    assert c["history"][0]["loss"] != a["history"][0]["loss"]


def test_epoch_orders_of_two_seeds_differ():
    """Seed 1's epoch 0 is not seed 0's epoch 1 (0.24.0 seeded the order with ``seed + epoch``), so two
    seeds' runs do not share their data orders; the order stays a function of (seed, epoch)."""
    from emort.training.ser import epoch_permutation_rng

    perms = {(s, e): tuple(epoch_permutation_rng(s, e).permutation(33)) for s in range(3) for e in range(3)}
    assert perms[(0, 1)] != perms[(1, 0)]
    assert len(set(perms.values())) == len(perms)
    assert perms[(0, 1)] == tuple(epoch_permutation_rng(0, 1).permutation(33))


def test_a_run_cut_by_max_steps_mid_epoch_resumes_that_epoch(tiny_csv: Path, tmp_path: Path):
    """An epoch cut by --max-steps is not counted as finished (0.24.0 skipped its rest on resume): cut in
    epoch 1, again in epoch 2, then resumed, the run ends as one run of 2 epochs straight through."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    whole = train_ser(_ser_cfg(tiny_csv, straight, epochs=2))  # 5 batches an epoch (33 clips, batch 8)
    first = train_ser(_ser_cfg(tiny_csv, cut, epochs=2, max_steps=3))
    assert first["stopped"] == "step_limit" and [(h["epoch"], h.get("partial")) for h in first["history"]] == [(1, True)]
    assert json.loads((cut / "ser.json").read_text())["best"]["epoch"] == 1  # the part is the model while there is none
    second = train_ser(_ser_cfg(tiny_csv, cut, epochs=2, max_steps=7))
    assert [(h["epoch"], h.get("partial")) for h in second["history"]] == [(1, None), (2, True)]
    assert json.loads((cut / "ser.json").read_text())["best"]["selection"] == "best validation UA"
    last = train_ser(_ser_cfg(tiny_csv, cut, epochs=2))
    assert last["stopped"] == "epochs"
    keys = ("epoch", "loss", "val_wa", "val_ua")
    assert [[h[k] for k in keys] for h in last["history"]] == [[h[k] for k in keys] for h in whole["history"]]
    for run in (straight, cut):
        assert torch.load(run / "ser_last.state.pt", weights_only=False)["state"]["step"] == 10
    for name in ("ser_last", "ser"):
        a, b = _read(straight / f"{name}.safetensors"), _read(cut / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# --- diffusion -------------------------------------------------------------------------------

DIFF_STEPS = 40


def _diff_cfg(tiny_csv: Path, ser: Path, out: Path, **kw) -> DiffusionTrainConfig:
    base = dict(channels=[16, 32], blocks_per_level=1, steps=DIFF_STEPS, batch_size=8, crop_s=0.5, sample_every=0,
                checkpoint_every=20, progress=False)
    base.update(kw)
    return DiffusionTrainConfig(data=[f"csv={tiny_csv}"], ser=str(ser), out=str(out), **base)


@pytest.fixture(scope="module")
def diffusion_run(ser_run, tiny_csv: Path, tmp_path_factory) -> tuple[Path, DiffusionTrainConfig, dict]:
    out = tmp_path_factory.mktemp("diffusion")
    cfg = _diff_cfg(tiny_csv, ser_run[0], out, lr=3e-2)  # 200-step warm-up: a high peak so 40 steps move
    return out, cfg, train_diffusion(cfg)


def test_diffusion_run_folder(diffusion_run):
    out, cfg, result = diffusion_run
    assert result["steps"] == DIFF_STEPS
    assert [h["step"] for h in result["history"]] == [20, 40]
    for name in ("diffusion.safetensors", "diffusion.json", "diffusion_last.safetensors", "diffusion_last.state.pt", "diffusion_history.json"):
        assert (out / name).is_file(), name
    model, conf = load_diffusion(out)
    assert conf["kind"] == "diffusion" and conf["prediction"] == "v"
    assert conf["denoiser"]["channels"] == [16, 32]
    assert set(conf["held_out_speakers"]) == {"tiny/10"}
    assert conf["train_speakers"] == ["tiny/09", "tiny/11"]
    assert not (out / "samples").exists()  # sample_every=0


def test_diffusion_denoising_loss_falls(diffusion_run, ser_run, fixed_mels):
    out, cfg, _ = diffusion_run
    ser_model, ser_conf = load_ser(ser_run[0])
    stats = NormStats.from_dict(ser_conf["norm"])
    mels, _ = fixed_mels
    _, emb = predict(ser_model, mels, stats)
    model, conf = load_diffusion(out)  # EMA weights
    dcfg = DenoiserConfig.from_dict(conf["denoiser"])
    frames = int(round(cfg.crop_s * MelSettings().frames_per_second / dcfg.stride)) * dcfg.stride
    x0 = torch.from_numpy(np.stack([crop_or_pad(stats.apply(m), frames, None) for m in mels]))
    n = len(mels)
    gen = torch.Generator().manual_seed(123)
    ts = torch.tensor([50, 200, 400, 600, 800, 950])
    t = ts[torch.arange(n) % len(ts)]
    ac = torch.from_numpy(NoiseSchedule.from_dict(conf["schedule"]).alphas_cumprod.astype(np.float32))
    a, s = ac[t].sqrt()[:, None, None], (1 - ac[t]).sqrt()[:, None, None]
    noise = torch.randn(x0.shape, generator=gen)
    xt = a * x0 + s * noise
    v = a * noise - s * x0
    e = torch.from_numpy(emb.astype(np.float32))
    mask = torch.ones(n, 1)

    def mse(m: DiffusionModel) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(m.denoiser(xt, t.float(), e, mask, m.style(x0)), v))

    seed_everything(cfg.seed)  # what train_diffusion does before building its model
    init = DiffusionModel(dcfg, StyleConfig.from_dict(conf["style"])).eval()
    before = mse(init)
    raw = DiffusionModel(dcfg, StyleConfig.from_dict(conf["style"])).eval()
    load_weights(out, "diffusion_last", raw)
    after_raw, after_ema = mse(raw), mse(model)
    assert after_raw < 0.9 * before, (before, after_raw)
    assert after_ema < before, (before, after_ema)


def test_diffusion_resume_continues(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    import shutil

    out = tmp_path / "diff"
    shutil.copytree(diffusion_run[0], out)
    res = train_diffusion(_diff_cfg(tiny_csv, ser_run[0], out, steps=DIFF_STEPS + 4, checkpoint_every=2))
    assert res["steps"] == DIFF_STEPS + 4
    assert [h["step"] for h in res["history"]] == [20, 40, 42, 44]
    state = torch.load(out / "diffusion_last.state.pt", weights_only=False)["state"]
    assert state["step"] == DIFF_STEPS + 4


def test_a_resumed_diffusion_run_is_the_run_made_straight_through(ser_run, tiny_csv: Path, tmp_path: Path, monkeypatch):
    """Cut by its time limit after 4 steps and resumed, a run ends with the weights of one that ran
    its 8 steps at once: the batches, noise levels and noise draw on (0.23 re-seeded them on resume
    and trained on the batches of steps 0-3 again)."""
    from safetensors.torch import load_file
    from tiny import MinuteClock

    import emort.training.diffusion as diffusion_mod

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_diffusion(_diff_cfg(tiny_csv, ser_run[0], straight, steps=8, checkpoint_every=100))
    monkeypatch.setattr(diffusion_mod, "time", MinuteClock())  # each reading a minute later
    assert train_diffusion(_diff_cfg(tiny_csv, ser_run[0], cut, steps=8, checkpoint_every=100, max_minutes=3.5))["steps"] == 4
    monkeypatch.undo()
    assert train_diffusion(_diff_cfg(tiny_csv, ser_run[0], cut, steps=8, checkpoint_every=100))["steps"] == 8
    a, b = load_file(straight / "diffusion_last.safetensors"), load_file(cut / "diffusion_last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_diffusion_warm_start_from_another_run(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    # lr 0: one step leaves the weights where --init-from put them (the source run's EMA weights).
    out = tmp_path / "warm"
    res = train_diffusion(_diff_cfg(tiny_csv, ser_run[0], out, steps=1, lr=0.0, init_from=str(diffusion_run[0])))
    assert res["steps"] == 1
    src, warm = _read(diffusion_run[0] / "diffusion.safetensors"), _read(out / "diffusion_last.safetensors")
    assert src.keys() == warm.keys()
    assert all(torch.equal(src[k], warm[k]) for k in src)
    ema = _read(out / "diffusion.safetensors")  # the EMA starts from the same weights
    assert all(torch.allclose(src[k], ema[k], atol=1e-6) for k in src)
    assert json.loads((out / "diffusion.json").read_text())["train"]["init_from"] == str(diffusion_run[0])


def test_a_warm_start_from_weights_that_heard_a_held_out_speaker_is_refused(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    """--init-from's weights are this model's too: a start trained on a test or validation speaker
    is refused, and a warm start records its source's speakers (0.24 recorded only its own)."""
    import shutil

    from emort.runtime.errors import EmortError

    src = tmp_path / "src"
    shutil.copytree(diffusion_run[0], src)
    rec = json.loads((src / "diffusion.json").read_text())
    (src / "diffusion.json").write_text(json.dumps({**rec, "train_speakers": [*rec["train_speakers"], "emodb/03"]}))
    with pytest.raises(EmortError, match="emodb/03, which this run holds out"):
        train_diffusion(_diff_cfg(tiny_csv, ser_run[0], tmp_path / "w", steps=1, lr=0.0, init_from=str(src)))
    train_diffusion(_diff_cfg(tiny_csv, ser_run[0], tmp_path / "ok", steps=1, lr=0.0, init_from=str(diffusion_run[0])))
    got = json.loads((tmp_path / "ok" / "diffusion.json").read_text())["init_from"]
    assert got == {"run": str(diffusion_run[0]), "train_speakers": rec["train_speakers"]}


def test_diffusion_warm_start_needs_same_architecture(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    from emort.runtime.errors import EmortError

    with pytest.raises(EmortError, match="architecture differs"):
        train_diffusion(_diff_cfg(tiny_csv, ser_run[0], tmp_path / "w", steps=1, channels=[16, 24], init_from=str(diffusion_run[0])))


def test_diffusion_resume_refuses_another_ser(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    import shutil

    from safetensors.torch import load_file, save_file

    from emort.runtime.errors import EmortError

    other = tmp_path / "other_ser"
    shutil.copytree(ser_run[0], other)
    w = load_file(str(other / "ser.safetensors"))
    w["head.bias"] = w["head.bias"] + 1.0
    save_file(w, str(other / "ser.safetensors"))
    out = tmp_path / "diff"
    shutil.copytree(diffusion_run[0], out)
    with pytest.raises(EmortError, match="another SER"):
        train_diffusion(_diff_cfg(tiny_csv, other, out, steps=DIFF_STEPS + 2))


def test_diffusion_resume_refuses_other_data_or_seed(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    import shutil

    from emort.runtime.errors import EmortError

    out = tmp_path / "diff"
    shutil.copytree(diffusion_run[0], out)
    for kw, name in (({"seed": 7}, "seed"), ({"centroid_mix": False}, "centroid_mix")):
        with pytest.raises(EmortError, match=name):
            train_diffusion(_diff_cfg(tiny_csv, ser_run[0], out, steps=DIFF_STEPS + 2, **kw))


def test_diffusion_resume_refuses_other_training_speakers(diffusion_run, ser_run, tiny_csv: Path, tmp_path: Path):
    """A run recorded as trained on other speakers than this session's (0.23 trained on test speakers of
    corpora its SER did not read; the SER's held-out set may change) is not resumed; a record without
    them (older runs) resumes as before."""
    import shutil

    from emort.runtime.errors import EmortError

    out = tmp_path / "diff"
    shutil.copytree(diffusion_run[0], out)
    last = out / "diffusion_last.json"
    conf = json.loads(last.read_text())
    assert conf["train_speakers"] == ["tiny/09", "tiny/11"]
    for was, why in ((["tiny/09", "tiny/10", "tiny/11"], "leaves out tiny/10"), (["tiny/09"], "adds tiny/11"),
                     (["tiny/09", "tiny/10"], "adds tiny/11 and leaves out tiny/10")):
        last.write_text(json.dumps({**conf, "train_speakers": was}))
        with pytest.raises(EmortError, match="other speakers") as e:
            train_diffusion(_diff_cfg(tiny_csv, ser_run[0], out, steps=DIFF_STEPS + 1))
        assert why in str(e.value) and str(out) in str(e.value) and "new --out" in str(e.value) and "\n" not in str(e.value)
    last.write_text(json.dumps({k: v for k, v in conf.items() if k != "train_speakers"}))
    assert train_diffusion(_diff_cfg(tiny_csv, ser_run[0], out, steps=DIFF_STEPS + 1))["steps"] == DIFF_STEPS + 1


def test_ser_ema_is_what_is_validated_saved_and_resumed(tiny_csv: Path, tmp_path: Path):
    from emort.runtime.errors import EmortError

    out = tmp_path / "ema"
    train_ser(_ser_cfg(tiny_csv, out, epochs=1, max_steps=3, ema=0.5))
    ck = torch.load(out / "ser_last.state.pt", weights_only=False)
    raw = _read(out / "ser_last.safetensors")
    best = _read(out / "ser.safetensors")
    avg = {k.removeprefix("module."): v for k, v in ck["ema"].items() if k.startswith("module.")}
    assert avg.keys() == best.keys()
    for k in best:
        assert torch.equal(best[k], avg[k]), k  # the saved model is the average ...
    assert not torch.equal(raw["stem.0.weight"], best["stem.0.weight"])  # ... not the raw weights
    assert int(ck["ema"]["n_averaged"]) == 3
    train_ser(_ser_cfg(tiny_csv, out, epochs=2, max_steps=5, ema=0.5))  # resume carries the average on
    assert int(torch.load(out / "ser_last.state.pt", weights_only=False)["ema"]["n_averaged"]) == 5
    plain = tmp_path / "plain"
    train_ser(_ser_cfg(tiny_csv, plain, epochs=1, max_steps=1))
    with pytest.raises(EmortError, match=r"ema=0.0 \(now 0.5\)"):  # named among the run's options since 0.24
        train_ser(_ser_cfg(tiny_csv, plain, epochs=2, max_steps=2, ema=0.5))
    with pytest.raises(EmortError, match=r"ema=0.5 \(now 0.0\)"):  # and the other way round
        train_ser(_ser_cfg(tiny_csv, out, epochs=3, max_steps=6))


def test_a_run_started_on_another_front_end_is_not_resumed(tmp_path):
    """Resuming a run begun on the log-mels of another front end would mix the two."""
    from emort.runtime.errors import EmortError
    from emort.training.data import FRONTEND_VERSION, check_resume_frontend

    check_resume_frontend({"frontend_version": FRONTEND_VERSION}, tmp_path)
    for cfg, was in (({}, 1), ({"frontend_version": 2}, 2)):
        with pytest.raises(EmortError, match=f"started on log-mels of front end {was} .*this emort computes front end {FRONTEND_VERSION}"):
            check_resume_frontend(cfg, tmp_path)


def test_the_shipped_classifiers_were_fitted_on_this_front_end():
    """The default bundle's statistics and voice classifiers read the statistics the runtime computes."""
    from emort.runtime.bundle import MANIFEST, load_bundle
    from emort.training.data import FRONTEND_VERSION

    training = json.loads((load_bundle().path / MANIFEST).read_text())["training"]
    for model in ("stats", "stats_voice"):
        assert training[model]["frontend_version"] == FRONTEND_VERSION, model
