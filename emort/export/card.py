"""Model card for a bundle: data, commands, metrics, licences (written next to the manifest)."""

from __future__ import annotations

import json
from pathlib import Path

from emort.runtime.atomic import write_text_atomic
from emort.runtime.bundle import load_bundle

LICENCES = {
    "emodb": "EmoDB (Burkhardt et al., Interspeech 2005): free for research use.",
    "ravdess": "RAVDESS (Livingstone & Russo, PLoS ONE 2018): CC BY-NC-SA 4.0 — models trained on it inherit the non-commercial, share-alike terms.",
}


def write_model_card(bundle: Path, commands: list[str], ser_eval: Path | None = None, enhance_report: Path | None = None, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` into the bundle folder ``bundle`` and return its path.

    Data and parity come from the bundle's manifest (through :func:`load_bundle`);
    ``ser_eval`` / ``enhance_report`` are the JSON reports of ``emort eval ser`` / ``emort eval
    enhance``, summarised when given. Raises BundleError when ``bundle`` is not a bundle.
    """
    b = load_bundle(bundle, verify=False)  # checksums are the export's business, not the card's
    diffusion = b.training.get("diffusion")
    trained_on = diffusion.split.train_speakers if diffusion else ()
    held_out = diffusion.split.held_out_speakers if diffusion else ()
    lines = [
        f"# Model card: {b.name} (emort {b.emort_version})",
        "",
        "Emotion enhancement bundle: ResNet SER (scoring + emotion embeddings), utterance-style encoder and an emotion-conditioned "
        f"mel diffusion denoiser, exported to ONNX (opset {b.opset}) with a torch-vs-onnxruntime parity check.",
        "",
        "## Data",
        "",
        "- Training speakers (SER and diffusion): " + ", ".join(trained_on),
        "- Never used for training: " + ", ".join(held_out) + " (test: EmoDB 03/08, RAVDESS 21/22; the rest validation).",
        "- Labels: " + ", ".join(b.labels) + " (EmoDB boredom, RAVDESS calm/surprised excluded).",
        "",
        "## Licences of the training data",
        "",
        *[f"- {v}" for v in LICENCES.values()],
        "",
        "## Commands that produced it",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "## Metrics",
        "",
        f"- ONNX parity (max relative difference vs PyTorch): {b.parity}",
        f"- Default enhance options: `{json.dumps(b.defaults.to_dict())}`",
    ]
    if ser_eval and ser_eval.exists():
        r = json.loads(ser_eval.read_text())
        lines += ["", f"### SER, {r['protocol']} protocol (test speakers {', '.join(r['test_speakers'])})", "", "| corpus | WA | UA | macro-F1 | n |", "|---|---|---|---|---|"]
        for c, v in r["corpora"].items():
            lines.append(f"| {c} | {v['wa']:.3f} | {v['ua']:.3f} | {v['macro_f1']:.3f} | {v['n']} |")
    if enhance_report and enhance_report.exists():
        md = enhance_report.with_suffix(".md")
        lines += ["", f"### Enhancement: see `{md.name}` of `emort eval enhance` (summary below)", ""]
        rep = json.loads(enhance_report.read_text())
        t5 = rep["table5"]
        lines += ["| corpus | judge | original WA / UA | emort WA / UA |", "|---|---|---|---|"]
        for corpus in t5["original"]["corpora"]:
            for j in ("features", "ser_judge"):
                o = t5["original"]["corpora"][corpus]["judges"][j]["report"]
                e = t5["emort"]["corpora"][corpus]["judges"][j]["report"]
                lines.append(f"| {corpus} | {j} | {o['wa']:.3f} / {o['ua']:.3f} | {e['wa']:.3f} / {e['ua']:.3f} |")
    if notes:
        lines += ["", "## Notes", "", notes]
    return write_text_atomic(bundle / "MODEL_CARD.md", "\n".join(lines) + "\n")
