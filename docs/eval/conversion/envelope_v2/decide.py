"""The rule of docs/eval/conversion/envelope_v2/PREREGISTRATION.md, from the four validation runs of
run.py; prints the cells and writes docs/eval/conversion/envelope_v2/decision.json.

    python docs/eval/conversion/envelope_v2/decide.py
"""
import json
from pathlib import Path

from emort.evaluation.prosody_eval import paired_cells
from emort.runtime.atomic import write_json_atomic

HERE = Path(__file__).parent
CFG = "both-stretch@4"


def load(cand: str, group: str) -> dict:
    return json.loads((HERE / f"{cand}_{group}" / "prosody_eval_val.json").read_text())


runs = {(c, g): load(c, g) for c in ("b1", "b2") for g in ("v1", "v2")}
r = paired_cells([runs["b1", "v1"], runs["b1", "v2"]], [runs["b2", "v1"], runs["b2", "v2"]], CFG, CFG)
f0 = {g: {c: runs[c, g]["f0_fidelity"][CFG] for c in ("b1", "b2")} for g in ("v1", "v2")}
ok = {"mean >= -1.0": r["mean"]["diff"] >= -1.0,
      "every cell >= -2.0": r["worst_diff"] >= -2.0,
      "F0 RMSE not higher in either group": all(f0[g]["b2"]["f0_rmse_st_median"] <= f0[g]["b1"]["f0_rmse_st_median"] for g in f0)}
print("soft cells, V1 + V2 pooled, B1 -> B2 (paired difference, points [95% interval over the clips])")
for corpus, judges in r["cells"].items():
    print(f"  {corpus:8s}", "  ".join(f"{j} {v['a']:.3f} -> {v['b']:.3f} {v['diff']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}]"
                                     for j, v in judges.items()))
m = r["mean"]
print(f"  mean of nine {m['a']:.4f} -> {m['b']:.4f} {m['diff']:+.2f} [{m['lo']:+.2f}, {m['hi']:+.2f}]; worst cell difference {r['worst_diff']:+.2f}")
for g in f0:
    print(f"  {g}: F0 RMSE {f0[g]['b1']['f0_rmse_st_median']:.3f} -> {f0[g]['b2']['f0_rmse_st_median']:.3f} st, "
          f"voicing agreement {f0[g]['b1']['voicing_agreement_mean']:.3f} -> {f0[g]['b2']['voicing_agreement_mean']:.3f}")
adopted = all(ok.values())
print("conditions:", ok, "->", "ADOPTED" if adopted else "not adopted")
write_json_atomic(HERE / "decision.json", {"paired_soft": r, "f0_fidelity": f0, "conditions": ok, "adopted": adopted})
