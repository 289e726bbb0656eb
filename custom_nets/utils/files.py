"""Writing files safely: temporary name then rename, and never replacing a result unasked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def refuse_overwrite(paths: str | os.PathLike | list, overwrite: bool = False) -> None:
    """Stop a run at start-up when one of ``paths`` exists and ``overwrite`` is off (bundle ``initialize``).

    Example (JSON config)::

        "initialize": ["$custom_nets.utils.refuse_overwrite(@ckpt_dir + '/model.pt', @overwrite)"]
    """
    existing = [str(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths]) if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} already exist(s); this run would replace it. Pass --overwrite True to allow "
            f"that, or choose another --bundle_root / output folder."
        )


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file beside ``path`` (same suffixes), then rename it into place.

    A crash or an exception in ``write`` leaves no file (the temporary one is removed), never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
