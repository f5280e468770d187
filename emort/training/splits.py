"""The project's fixed speaker split (MISSION.md, "Honest evaluation").

Test speakers never appear in any training (SER, judges, diffusion); the
validation speakers are used only for early stopping. One male and one female
speaker per corpus are tested (EmoDB 03 m / 08 f; RAVDESS actor 21 m / 22 f).
"""

TEST_SPEAKERS: tuple[str, ...] = ("emodb/03", "emodb/08", "ravdess/21", "ravdess/22")
VAL_SPEAKERS: tuple[str, ...] = ("emodb/10", "ravdess/19", "ravdess/20")
