"""Ignite handlers that MONAI lacks: a run's outputs staged and renamed into place, never replacing results unasked."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)


class StagedOutputDir:
    """Write a run's outputs to a staging folder and move them into ``output_dir`` only when the run completes.

    Writers (``SaveImaged``, ``MetricsSaver``) are pointed at :attr:`staging_dir`. On ``COMPLETED`` every
    staged file is moved to the same relative path under ``output_dir``; on an exception the staging folder
    is removed, so a failed run leaves no partial output. An existing file is never replaced unless
    ``overwrite=True``: the run then stops with the list of clashing files and keeps the new results in the
    staging folder, so nothing is lost either way.

    Attach it as the last handler of the engine (Ignite fires handlers in the order they were attached).

    Args:
        output_dir: the final folder.
        overwrite: allow replacing files that already exist there.
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        # a unique name only: writers create the folder when they first write, so a run that fails before
        # writing anything leaves nothing behind
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.staging_dir = str(self.output_dir.parent / f".{self.output_dir.name}.staging-{token}")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.commit)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.discard)

    def staged_files(self) -> list[Path]:
        root = Path(self.staging_dir)
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []

    def commit(self, engine: Engine | None = None) -> list[Path]:
        """Move the staged files into place; the list of final paths."""
        staged = self.staged_files()
        clashes = [self.output_dir / rel for rel in staged if (self.output_dir / rel).exists()]
        if clashes and not self.overwrite:
            names = "\n  ".join(map(str, clashes[:20])) + ("\n  ..." if len(clashes) > 20 else "")
            raise FileExistsError(
                f"{len(clashes)} output file(s) already exist and overwrite is off:\n  {names}\n"
                f"The new results are kept in {self.staging_dir}; rerun with --overwrite true to replace, or "
                f"choose another output folder."
            )
        final = []
        for rel in staged:
            target = self.output_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(self.staging_dir) / rel, target)
            final.append(target)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        logger.info(f"wrote {len(final)} file(s) to {self.output_dir}")
        return final

    def discard(self, engine: Engine | None = None, e: BaseException | None = None) -> None:
        """Remove the staging folder (after a failure) and re-raise the engine's exception."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        if e is not None:
            raise e
