"""GE2E voice embeddings of corpus files for training (``emort train stats --features ge2e``).

The runtime's front end and pooling (:mod:`emort.runtime.voice`) with Resemblyzer's packaged
PyTorch encoder in place of its ONNX export, so a classifier is fitted on what the runtime
computes (``emort export voice`` checks the two encoders agree). Cached per file under
``$EMORT_CACHE/voice``. Needs ``pip install --no-deps resemblyzer`` on the ``[train]`` extra.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from emort.runtime.audio import read_audio
from emort.runtime.errors import EmortError
from emort.runtime.settings import VoiceSettings
from emort.runtime.voice import VOICE_DIM, VOICE_VERSION, partial_mels, pool_windows, voice_input


def import_resemblyzer():
    """The ``resemblyzer`` package, or one-line EmortError naming how to install it."""
    try:
        with warnings.catch_warnings():
            # resemblyzer imports scipy.ndimage.morphology, deprecated in SciPy.
            warnings.simplefilter("ignore", DeprecationWarning)
            import resemblyzer
    except ImportError as e:
        raise EmortError(f"GE2E voice embeddings need resemblyzer: pip install --no-deps resemblyzer==0.1.4 "
                         f"(on the [train] extra; {e})") from None
    return resemblyzer


@lru_cache(maxsize=1)
def voice_encoder():
    """Resemblyzer's packaged ``VoiceEncoder`` (weights from its wheel) on the CPU, loaded once."""
    return import_resemblyzer().VoiceEncoder(device="cpu", verbose=False)


def encode_windows(windows: np.ndarray) -> np.ndarray:
    """``(windows, partial_frames, n_mels)`` power mel -> the encoder's L2-normalised window
    embeddings ``(windows, VOICE_DIM)``, float32 (PyTorch, one intra-op thread: the LSTM's
    matrices are small and a second thread only waits for a core on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return voice_encoder()(torch.from_numpy(np.ascontiguousarray(windows, np.float32))).numpy()
    finally:
        torch.set_num_threads(threads)


def embed(wav: np.ndarray, sample_rate: int, settings: VoiceSettings | None = None) -> np.ndarray:
    """One clip (8 kHz and up, any layout) -> float32 ``(VOICE_DIM,)``, as the runtime computes it."""
    s = settings or VoiceSettings()
    return pool_windows(encode_windows(partial_mels(voice_input(wav, sample_rate, s), s)))


def voice_matrix(pool: list, settings: VoiceSettings | None = None, progress: bool = False) -> np.ndarray:
    """GE2E embeddings ``(N, VOICE_DIM)`` of corpus items (anything with ``.path``), cached per file."""
    from emort.training.data import file_cache_path, read_cached_array, write_cached_array

    s = settings or VoiceSettings()
    it = pool
    if progress:
        from rich.progress import track

        it = track(pool, description="voice embeddings", transient=True)
    rows = []
    for item in it:
        f = file_cache_path("voice", item.path, VOICE_VERSION, s.to_dict())
        v = read_cached_array(f, (VOICE_DIM,))
        if v is None:
            a = read_audio(item.path)
            v = embed(a.samples, a.sample_rate, s)
            write_cached_array(f, v)
        rows.append(v)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, VOICE_DIM), np.float32)
