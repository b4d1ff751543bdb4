"""User-facing errors: what was wrong, where, and what to do. The CLI prints them without a traceback."""

from typing import Iterable, List, Optional


class EdgeSdkError(Exception):
    """An error the user can act on. The message must say what was wrong and what to do."""

    exit_code = 2


class ConfigError(EdgeSdkError):
    """Bad user input: an unknown target, a wrong flag combination, a missing file."""


class ModelError(EdgeSdkError):
    """A model file that is missing, corrupt, or does not follow the model I/O contract."""


class BundleError(EdgeSdkError):
    """A bundle that is missing files, has a bad hash, or was made for another target."""


class SourceError(EdgeSdkError):
    """A video/camera/image source that cannot be opened or disappeared."""


class BrokerError(EdgeSdkError):
    """An MQTT broker that cannot be reached or refused us."""


def nearest_names(name: str, known: Iterable[str], limit: Optional[int] = None) -> List[str]:
    """Sort ``known`` by similarity to ``name`` (nearest first), for 'did you mean' error messages."""
    import difflib

    scored = sorted(known, key=lambda k: (-difflib.SequenceMatcher(None, name, k).ratio(), k))
    return scored[:limit] if limit else scored
