"""Decoder settings from three places, one precedence: command line > model metadata > defaults.

A model's metadata may carry a ``decoder`` section (names of :class:`edge_sdk.runtime.decode.DecodeConfig`,
e.g. ``{"peak_threshold": 0.05}``) so an imported model brings the settings that suit it; ``run``,
``eval``, ``bench`` and ``meta set`` take the same settings as flags (``--peak-threshold 0.05``). Every
value is checked against the bounds below, so a typo is a one-line error instead of a silent empty scene.
Device side: Python 3.6 syntax, numpy only.
"""

from typing import Any, Dict, Optional

from edge_sdk.errors import ConfigError

REFINE_METHODS = ("log_quadratic", "quadratic", "centroid", "none")
ASSIGNMENTS = ("optimal", "greedy")
CHOICES = {"refine": REFINE_METHODS, "assignment": ASSIGNMENTS}
"""The allowed values of the text settings."""
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

# name: (type, low, high, help); None bounds are open; the _NULLABLE ones also take "none"
SETTINGS = (
    ("peak_threshold", float, 0.0, 1.0, "a heatmap cell above this (and a 3x3 maximum) is a part candidate "
                                        "(default 0.1)"),
    ("min_parts", int, 1, 18, "drop people with fewer parts (default 3)"),
    ("max_people", int, 1, 1000, "keep at most this many people, best first (default: all)"),
    ("min_person_score", float, 0.0, 1.0, "drop people whose mean peak/limb evidence is below this (default 0.2)"),
    ("refine", str, None, None, "sub-pixel peak refinement: " + ", ".join(REFINE_METHODS) +
                                " (default log_quadratic)"),
    ("max_peaks_per_part", int, 1, 1000, "keep at most this many candidates per part (default 100)"),
    ("paf_samples", int, 2, 100, "points sampled along each candidate limb (default 10)"),
    ("paf_sample_threshold", float, 0.0, 1.0, "a sample agrees when the PAF along the limb exceeds this "
                                              "(default 0.05)"),
    ("paf_min_fraction", float, 0.0, 1.0, "a limb needs this fraction of agreeing samples (default 0.8)"),
    ("min_limb_score", float, -1.0, 1.0, "a limb needs a score above this (default 0)"),
    ("max_limb_fraction", float, 0.01, 10.0, "distance prior: limbs longer than this times the map height are "
                                             "penalised; none disables it (default 0.5)"),
    ("assignment", str, None, None, "per-limb matching: optimal (Hungarian within small groups) or greedy "
                                    "(default optimal)"),
    ("optimal_max_size", int, 0, 64, "groups with more candidates a side are matched greedily (default 16)"),
    ("share_peaks", bool, None, None, "an unmatched limb end may share its best partner's peak: true/false "
                                      "(default true)"),
    ("share_min_score", float, 0.0, 1.0, "a shared limb end needs at least this limb score (default 0.5)"),
    ("merge_fragments", bool, None, None, "join partial people that fit one canonical body, COCO-18 skeleton "
                                          "only: true/false (default true)"),
    ("merge_singles", bool, None, None, "unowned head/shoulder/hip peaks may join such fragments: true/false "
                                        "(default true)"),
    ("merge_max_cost", float, 0.0, 10.0, "largest mean relative anchor error of a fragment merge (default 0.5)"),
    ("merge_scale_ratio", float, 1.0, 10.0, "fragments whose torso lengths differ more are never merged "
                                            "(default 2.0)"),
    ("max_limb_pairs", int, 1, 10000000, "work cap: candidate limb pairs per frame; none disables it "
                                         "(default 40000)"),
    ("max_fragments", int, 0, 1000, "work cap: fragments (and single peaks) in the merge (default 32)"),
)
NAMES = tuple(s[0] for s in SETTINGS)
_BY_NAME = dict((s[0], s) for s in SETTINGS)
_NULLABLE = ("max_people", "max_limb_fraction", "max_limb_pairs")


def check_setting(name: str, value: Any, where: str = "decoder setting") -> Any:
    """``value`` (a number, or text from a flag) checked and converted for setting ``name``; ConfigError
    with the bounds when it cannot work."""
    if name not in _BY_NAME:
        from edge_sdk.errors import nearest_names

        # a setting the name begins (an abbreviation) first, then the most similar
        guess = [n for n in NAMES if n.startswith(str(name))] or nearest_names(str(name), NAMES, 1)
        raise ConfigError("{}: unknown decoder setting {!r} (did you mean {}?); known: {}".format(
            where, name, guess[0], ", ".join(NAMES)))
    _name, kind, low, high, _help = _BY_NAME[name]
    if name in _NULLABLE and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
        return None
    if kind is str:
        if value not in CHOICES[name]:
            raise ConfigError("{}: {} must be one of {}, got {!r}".format(where, name, ", ".join(CHOICES[name]),
                                                                           value))
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError("{}: {} must be true or false, got {!r}".format(where, name, value))
    if isinstance(value, bool):
        raise ConfigError("{}: {} must be a number, got {!r}".format(where, name, value)) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError("{}: {} must be a number, got {!r}".format(where, name, value)) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError("{}: {} must be a finite number, got {!r}".format(where, name, value))
    if kind is int:
        if number != int(number):
            raise ConfigError("{}: {} must be a whole number, got {!r}".format(where, name, value))
        number = int(number)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ConfigError("{}: {} must be in [{:g}, {:g}], got {!r}".format(where, name, low, high, value))
    return number


def check_decoder_settings(settings: Any, where: str = "decoder settings") -> Dict[str, Any]:
    """A dict of settings, every one checked (ValueError-compatible ConfigError on the first bad one)."""
    if not isinstance(settings, dict):
        raise ConfigError("{} must be a JSON object of decoder settings, got {}".format(
            where, type(settings).__name__))
    return dict((name, check_setting(name, value, where)) for name, value in sorted(settings.items()))


def merge_settings(meta_settings: Optional[Dict[str, Any]] = None,
                   overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The settings that apply: ``overrides`` (the command line) over ``meta_settings`` (the model's)."""
    merged = dict(meta_settings or {})
    merged.update(overrides or {})
    return merged


def decode_config(settings: Optional[Dict[str, Any]] = None) -> Any:
    """A DecodeConfig from (checked) settings; names not given keep DecodeConfig's defaults."""
    from edge_sdk.runtime.decode import DecodeConfig

    return DecodeConfig(**check_decoder_settings(settings or {}))


def add_decoder_arguments(parser: Any,
                          title: str = "decoder settings (override the model's metadata and the defaults)") -> None:
    """One ``--name-with-dashes`` flag per setting, default None (= not given)."""
    group = parser.add_argument_group(title)
    for name, kind, _low, _high, text in SETTINGS:
        group.add_argument("--" + name.replace("_", "-"), dest="decoder_" + name, default=None, metavar=(
            "METHOD" if kind is str else "BOOL" if kind is bool else "N" if kind is int else "X"), help=text)
    return group


def add_fit_argument(parser: Any) -> None:
    """``--fit letterbox|stretch`` (run, eval, bench); None keeps the model's metadata (default letterbox)."""
    parser.add_argument("--fit", default=None, help="how frames fit the model input: letterbox (keep the aspect "
                                                    "ratio, pad; the default) or stretch (fill the input)")


def settings_from_args(args: Any, where: str = "command line") -> Dict[str, Any]:
    """{name: checked value} of the decoder flags that were given."""
    given = {}
    for name in NAMES:
        value = getattr(args, "decoder_" + name, None)
        if value is not None:
            given[name] = check_setting(name, value, "--" + name.replace("_", "-"))
    return given


def check_fit(fit: Optional[str]) -> Optional[str]:
    """``fit`` if it is None, letterbox or stretch; else ConfigError."""
    from edge_sdk.runtime.model_meta import FITS

    if fit is not None and fit not in FITS:
        raise ConfigError("--fit must be one of {}, got {!r}".format(", ".join(FITS), fit))
    return fit


def apply_run_settings(meta: Any, decoder: Optional[Dict[str, Any]] = None, fit: Optional[str] = None) -> Any:
    """Apply command-line ``decoder`` settings and ``fit`` onto a loaded model's ``meta`` (in place)."""
    if decoder:
        meta.decoder = merge_settings(meta.decoder, check_decoder_settings(decoder, "command line"))
    if fit is not None:
        meta.input.fit = check_fit(fit)
    return meta

