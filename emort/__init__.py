"""emort: make the emotion in recorded speech clearer, or change it.

The top level re-exports the runtime API only (numpy + onnxruntime); training
and export live behind the ``[train]`` / ``[export]`` extras.
"""

__version__ = "0.33.0"

from emort.runtime.errors import EmortError  # noqa: E402

__all__ = ["Enhancer", "Scorer", "EmortError", "__version__"]


def __getattr__(name: str):  # lazy: `import emort` stays cheap for the CLI
    if name == "Enhancer":
        from emort.runtime.enhancer import Enhancer

        return Enhancer
    if name == "Scorer":
        from emort.runtime.scorer import Scorer

        return Scorer
    raise AttributeError(name)
