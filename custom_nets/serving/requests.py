"""Request values are data: validate and coerce what a client sends before a MONAI bundle config sees it.

MONAI Label's bundle tasks copy request values into the bundle config and re-parse it, and MONAI's
``ConfigParser`` evaluates strings that start with ``$`` (Python), resolves ``@id`` (references) and ``%file#id``
(macros: any readable file), rewrites ``@#``/``%#`` (relative ids) and the id separators ``#``/``::`` anywhere in a
string, and instantiates dicts with a ``_target_``. So every value that reaches the config must be a literal of the type the bundle declares:

- strings: plain text (:func:`literal_text`), never config syntax; a prompt is also cleaned as a sentence;
- numbers: finite, in the range the key allows (a CT window through
  :func:`~custom_nets.transforms.ct_window_range`); booleans are booleans;
- choices (device, model file, run id): one of the values the server offers;
- anything else (a dict, a list where a scalar is due) is refused.

A refused request raises :class:`RequestError`, which names the key, the value and what is allowed; the MONAI
Label app answers it with HTTP 422. The functions return a new dict; keys they do not know pass unchanged, since
MONAI Label's tasks do not write them into the config (see ``scripts/monailabel/app/lib/tasks.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from custom_nets.text.prompts import clean_sentence
from custom_nets.transforms.intensity import ct_window_range

#: what MONAI's ConfigParser treats as syntax in a string: expression, reference, macro (at the start) ...
CONFIG_PREFIXES = ("$", "@", "%")
#: ... and the id separators, rewritten anywhere in a string (MONAI 1.6 turns "#" into "::", older releases the reverse)
CONFIG_MARKERS = ("#", "::")
MAX_TEXT_LENGTH = 10_000
WINDOW_KEYS = ("ct_window_centre", "ct_window_width")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RequestError(ValueError):
    """A request value that is not a literal of the expected type; the message names key, value and rule."""


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def literal_text(key: str, value: Any, max_length: int = MAX_TEXT_LENGTH) -> str:
    """``value`` as a string that MONAI's ConfigParser keeps as it is; RequestError otherwise.

    Example:
        >>> literal_text("prompt", "Unilateral pulmonary infection, one infected area, upper left lung.")
        'Unilateral pulmonary infection, one infected area, upper left lung.'
        >>> literal_text("prompt", "$__import__('os').system('id')")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        RequestError: prompt must be plain text, not MONAI config syntax ...
    """
    if not isinstance(value, str):
        raise RequestError(f"{key} must be a string, got {type(value).__name__} {_shown(value)}")
    if len(value) > max_length:
        raise RequestError(f"{key} is {len(value)} characters long; at most {max_length} are accepted")
    if value.lstrip().startswith(CONFIG_PREFIXES) or any(m in value for m in CONFIG_MARKERS):
        raise RequestError(f"{key} must be plain text, not MONAI config syntax (it may not start with '$', '@' or '%', "
                           f"nor contain '#' or '::'); got {_shown(value)}")
    return value


def safe_name(key: str, value: Any) -> str:
    """A name a client gives to something stored (an image id, a label tag): letters, digits, ``.``, ``_``, ``-``,
    starting with a letter or digit, at most 128 characters; so never a path (``/``) nor ``..`` alone.

    Example:
        >>> safe_name("label_tag", "final")
        'final'
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.strip(".") == "":
        raise RequestError(f"{key} must be a name of letters, digits, '.', '_' and '-' (no path), got {_shown(value)}")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(f"{key} must be a number, got {type(value).__name__} {_shown(value)}")
    try:
        number = float(value)
    except ValueError:
        raise RequestError(f"{key} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise RequestError(f"{key} must be a finite number, got {_shown(value)}")
    return number


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RequestError(f"{key} must be true or false, got {_shown(value)}")


def _choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    """One of ``allowed``; MONAI Label clients may send a one-element list for an option shown as a list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or value not in allowed:
        raise RequestError(f"{key} must be one of {list(allowed)}, got {_shown(value)}")
    return value


def _like_default(key: str, value: Any, default: Any) -> Any:
    """A displayable config value coerced to its default's type."""
    if isinstance(default, bool):
        return _boolean(key, value)
    if isinstance(default, (int, float)):
        number = _number(key, value)
        return int(number) if isinstance(default, int) and number.is_integer() else number
    if isinstance(default, str) or default is None:
        # cleaned first (control and zero-width characters out), so nothing hides config syntax from the check
        return literal_text(key, clean_sentence(value) if isinstance(value, str) else value)
    raise RequestError(f"{key}: the bundle declares a {type(default).__name__} option, which requests may not set")


def clean_displayable(request: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's displayable options (``displayable_configs``) from a request, each a literal of its default's type.

    A missing key takes its default. Text (the prompt) is cleaned as a sentence (control and zero-width characters
    out, white space folded) before it is checked; a CT window must be finite and sane (:func:`~custom_nets.transforms.ct_window_range`).
    """
    out = {key: _like_default(key, request.get(key, default), default) for key, default in defaults.items()}
    if all(k in out for k in WINDOW_KEYS):
        try:
            ct_window_range(out["ct_window_centre"], out["ct_window_width"])
        except ValueError as e:
            raise RequestError(str(e)) from None
    return out


def clean_infer_request(request: Mapping[str, Any], displayable: Mapping[str, Any], model_files: Iterable[str],
                        devices: Sequence[str]) -> dict[str, Any]:
    """A MONAI Label inference request whose config-bound values are safe literals.

    Args:
        request: what the client sent, merged with the model's defaults (MONAI Label's ``req``).
        displayable: the bundle's ``displayable_configs`` defaults.
        model_files: the checkpoint names the bundle offers (``models/*.pt``).
        devices: the devices the server offers.
    """
    return _clean_common(request, displayable, model_files, devices)


def _clean_common(request: Mapping[str, Any], displayable: Mapping[str, Any], model_files: Iterable[str],
                  devices: Sequence[str]) -> dict[str, Any]:
    """What inference and training requests share: the displayable options, the device and the model file."""
    out = dict(request)
    out.update(clean_displayable(request, displayable))
    if "device" in request and request["device"] is not None:
        out["device"] = _choice("device", request["device"], devices)
    if "model_filename" in request:
        out["model_filename"] = _choice("model_filename", request["model_filename"], sorted(model_files))
    return out


#: the config ids a training request may run
TRAIN_RUN_IDS = ("", "run", "training")  # "": MONAI Label's default, the bundle's "run"


def clean_train_request(request: Mapping[str, Any], displayable: Mapping[str, Any], model_files: Iterable[str],
                        devices: Sequence[str], max_epochs_limit: int = 10_000) -> dict[str, Any]:
    """A MONAI Label training request whose config-bound values are safe literals (see :func:`clean_infer_request`)."""
    out = _clean_common(request, displayable, model_files, devices)
    if "max_epochs" in request:
        epochs = _number("max_epochs", request["max_epochs"])
        if not epochs.is_integer() or not 1 <= epochs <= max_epochs_limit:
            raise RequestError(f"max_epochs must be a whole number from 1 to {max_epochs_limit}, got {_shown(request['max_epochs'])}")
        out["max_epochs"] = int(epochs)
    if "val_split" in request:
        split = _number("val_split", request["val_split"])
        if not (0.0 <= split < 1.0 or split == -1):
            raise RequestError(f"val_split must be in [0, 1) (or -1: the bundle's own validation data), got {_shown(request['val_split'])}")
        out["val_split"] = split
    for key in ("pretrained", "multi_gpu", "force_multi_gpu"):
        if key in request:
            out[key] = _boolean(key, request[key])
    if "run_id" in request:
        out["run_id"] = _choice("run_id", request["run_id"], TRAIN_RUN_IDS)
    if "gpus" in request:
        gpus = request["gpus"]
        if not isinstance(gpus, str) or not (gpus == "all" or all(g.strip().isdigit() for g in gpus.split(","))):
            raise RequestError(f"gpus must be 'all' or GPU numbers such as '0,1', got {_shown(gpus)}")
    tracking = request.get("tracking")
    first = tracking[0] if isinstance(tracking, list) and tracking else tracking  # MONAI Label takes the first
    if first not in (None, "") and str(first).lower() != "none":
        raise RequestError(f"experiment tracking is off on this server; tracking must be empty or 'none', got {_shown(tracking)}")
    return out
