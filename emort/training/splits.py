"""The project's fixed speaker split (``corpus/speaker`` keys, :attr:`Item.speaker_key`).

Test speakers never appear in any training (SER, judges, diffusion); the
validation speakers are used only for early stopping. One male and one female
speaker per corpus are tested: EmoDB 03 m / 08 f; RAVDESS actor 21 m / 22 f;
nEMO IC0 f / KS0 m (the first female and the first male speaker code in
alphabetical order). Validation: EmoDB 10; RAVDESS 19, 20; nEMO MP0 m, which
leaves nEMO's KD0, MK0 (f) and SM0, TP0 (m) for training.

A corpus missing from ``--data`` simply contributes no clips to either list.
"""

TEST_SPEAKERS: tuple[str, ...] = ("emodb/03", "emodb/08", "ravdess/21", "ravdess/22", "nemo/IC0", "nemo/KS0")
VAL_SPEAKERS: tuple[str, ...] = ("emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0")
#: The second validation group of the reports since 0.21 (V2; V1 is ``VAL_SPEAKERS``): training speakers
#: of the shipped models that a check holds out with a retrained proxy, so that a choice can be read on
#: two groups (docs/eval/soft, docs/ser/clip_v2, docs/ser/single_v2, docs/ser/small_groups).
VAL2_SPEAKERS: tuple[str, ...] = ("emodb/09", "nemo/MK0", "ravdess/17", "ravdess/18")
