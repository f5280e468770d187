"""UA of the four candidates of docs/ser/kws/PREREGISTRATION.md on six cells: held-out speakers
(fitted on the training speakers of the three corpora) and leave one corpus out (fitted on the
other two corpora's non-test speakers), on the validation speakers (``val``) or the test speakers
(``test``, read once, after the choice). Every speaker is z-scored over all of its clips, any label.

    python docs/ser/kws/kws_cells.py val     # -> docs/ser/kws/val_cells.json

W = the keyword-spotting speech embedding that openWakeWord 0.4.0 ships (mean and standard deviation
over the clip's windows); S+G = the shipped voice classifier's features. Needs the [train] extra,
resemblyzer and ``pip install --no-deps openwakeword==0.4.0``; run from the repository root.
"""
import hashlib
import importlib.resources
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from emort.evaluation.scorer_compare import cell_features, cell_pool, speaker_cells, write_cells
from emort.runtime.audio import read_audio
from emort.runtime.bundle import load_bundle

WINDOW, STEP = 76, 8                      # mel frames per embedding window, frames between windows
CACHE = Path.home() / ".cache" / "emort" / "kws1"


def sessions():
    d = importlib.resources.files("openwakeword") / "resources" / "models"
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 2, 1
    return tuple(ort.InferenceSession(str(d / n), o, providers=["CPUExecutionProvider"])
                 for n in ("melspectrogram.onnx", "embedding_model.onnx"))


def kws_embedding(path, mel_s, emb_s) -> np.ndarray:
    """(192,): mean and std over windows of the 96-d speech embedding of the clip at 16 kHz."""
    x = read_audio(path, 16000).samples
    x = np.clip(x * 32767.0, -32768, 32767).astype(np.float32)
    x = np.pad(x, (0, max(0, 16000 - len(x))))               # at least one whole window
    spec = np.squeeze(mel_s.run(None, {"input": x[None]})[0]) / 10 + 2   # openWakeWord's transform
    wins = np.stack([spec[i:i + WINDOW] for i in range(0, spec.shape[0] - WINDOW + 1, STEP)])
    e = emb_s.run(None, {"input_1": wins[..., None].astype(np.float32)})[0].reshape(len(wins), -1)
    return np.concatenate([e.mean(0), e.std(0)]).astype(np.float32)


def kws_matrix(pool) -> np.ndarray:
    mel_s, emb_s = sessions()
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for it in pool:
        f = CACHE / (hashlib.sha1(str(Path(it.path).resolve()).encode()).hexdigest() + ".npy")
        if f.exists():
            rows.append(np.load(f))
            continue
        v = kws_embedding(it.path, mel_s, emb_s)
        np.save(f, v)
        rows.append(v)
    return np.stack(rows)


if __name__ == "__main__":
    split = sys.argv[1] if len(sys.argv) > 1 else "val"
    D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
    b = load_bundle(None)
    c = cell_pool(D, tuple(b.labels), split)
    xs, xg = cell_features(c.items, b.mel, "SG").values()
    t = time.time()
    xw = kws_matrix(c.items)
    print("W", xw.shape, f"{time.time() - t:.0f} s", flush=True)
    feats = {"S+G": np.hstack([xs, xg]), "W": xw, "S+W": np.hstack([xs, xw]), "S+G+W": np.hstack([xs, xg, xw])}
    cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, c.held, c.test, c.labels)
    write_cells(cells, Path(__file__).parent / f"{split}_cells.json")
