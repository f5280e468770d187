"""Errors a user can cause. The CLI prints their message on one line, no traceback."""


def flat(text: object) -> str:
    """``text`` on one line: line breaks (a file name may hold them) shown as ``\\n`` / ``\\r``.
    For the batch layer's records and the CLI's lines; the JSON reports keep file names as they are."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class EmortError(Exception):
    """Base class for user-facing errors."""


class AudioError(EmortError):
    """An input file could not be used as speech audio."""


class MissingAudioError(AudioError):
    pass


class CorruptAudioError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class AudioFormatError(AudioError):
    """Samples or a sample rate in a form emort cannot take (a dtype, a shape, a rate), as a library
    caller passes them: the array or the rate needs fixing, not the recording (since 0.31; before,
    EmptyAudioError)."""


class SilentAudioError(AudioError):
    pass


class NonFiniteAudioError(AudioError):
    pass


class TooLongAudioError(AudioError):
    pass


class BundleError(EmortError):
    """A model bundle is missing, tampered with, or from an incompatible version."""


class LabelError(EmortError):
    """An unknown emotion name."""


class BackendError(EmortError):
    """A requested device/backend is not available."""
