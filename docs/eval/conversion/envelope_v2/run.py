"""The runs of docs/eval/conversion/envelope_v2/PREREGISTRATION.md.

    python docs/eval/conversion/envelope_v2/run.py b1|b2 v1|v2|test    # ~7-12 minutes each on 2 cores

b1: the shipped `--prosody`; b2: the envelope step averaged over at least 300 Hz
(../envelope/band_average.py). v1: the first validation group with the shipped bundle; v2: the
second with the proxy bundle runs/v2/bundle (its diffusion model trained without V1, V2 and the test
speakers: the commands in report.md); test: the test speakers (read once, after the decision).
Writes docs/eval/conversion/envelope_v2/<cand>_<group>/prosody_eval_<split>.{json,md}.
"""
import sys
from pathlib import Path

HERE = Path(__file__).parent
cand, group = sys.argv[1], sys.argv[2]
assert cand in ("b1", "b2") and group in ("v1", "v2", "test"), "usage: run.py b1|b2 v1|v2|test"
if cand == "b2":
    sys.path.insert(0, str(HERE.parent / "envelope"))
    from band_average import install

    install()

from emort.evaluation import prosody_eval  # noqa: E402

D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
split = ["--split", "test"] if group == "test" else ["--split", "val"]
if group == "v2":
    split += ["--bundle", "runs/v2/bundle", "--speakers", "emodb/09,nemo/MK0,ravdess/17,ravdess/18"]
sys.exit(prosody_eval.main(D + split + ["--configs", "both-stretch@4", "--sources", "all", "--out", str(HERE / f"{cand}_{group}")]))
