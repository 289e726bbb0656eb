"""CT intensities: the one home of the lung window and of what makes a CT window valid.

The clinical path (:func:`window`), the bundles' ``inference.json`` (``ct_window_hu`` feeds MONAI's
``ScaleIntensityRanged``; ``displayable_configs`` defaults to :data:`LUNG_WINDOW`) and MONAI Label's request checks
all use these, so the window is stated once.
"""

from __future__ import annotations

import math

import numpy as np

#: lung window (centre, width) in HU: the default for CT, mapped to 0..255 as the training PNGs are
LUNG_WINDOW = (-600.0, 1500.0)
#: the CT window centres and widths (HU) accepted: finite, and wide enough for any clinical window (metal included)
CT_WINDOW_CENTRE_RANGE = (-2000.0, 5000.0)
CT_WINDOW_MAX_WIDTH = 10000.0


def ct_window_range(centre: float | str, width: float | str) -> tuple[float, float]:
    """The HU range ``(low, high)`` of a CT window given as centre and width (strings from a UI are accepted).

    Both must be finite numbers: the centre within :data:`CT_WINDOW_CENTRE_RANGE`, the width in
    ``(0, CT_WINDOW_MAX_WIDTH]``; anything else is a ValueError naming the value (a NaN window would give an
    all-zero mask without a word). Booleans are refused, since ``True`` is not a window.

    Example:
        >>> ct_window_range(-600, 1500)  # lung window
        (-1350.0, 150.0)
    """
    values = []
    for name, value in (("centre", centre), ("width", width)):
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"CT window centre and width must be numbers (HU), got centre={centre!r}, width={width!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"CT window {name} must be a finite number of HU, got {value!r}")
        values.append(number)
    centre, width = values
    low, high = CT_WINDOW_CENTRE_RANGE
    if not low <= centre <= high:
        raise ValueError(f"CT window centre must be within [{low:g}, {high:g}] HU, got {centre}")
    if not width > 0:
        raise ValueError(f"CT window width must be > 0 HU, got {width}")
    if width > CT_WINDOW_MAX_WIDTH:
        raise ValueError(f"CT window width must be at most {CT_WINDOW_MAX_WIDTH:g} HU, got {width}")
    return centre - width / 2, centre + width / 2


def window(hu: np.ndarray, centre: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Map Hounsfield units to 0..255 through a window (values outside it are clipped), as
    ``ScaleIntensityRanged(a_min=low, a_max=high, b_min=0, b_max=255, clip=True)`` does in ``inference.json``.

    Example:
        >>> window(np.array([-1350.0, -600.0, 150.0])).tolist()
        [0.0, 127.5, 255.0]
    """
    low, high = ct_window_range(centre, width)
    return (np.clip((hu - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.float32)
