"""Save a network once, when training completes: for phases checkpointed at their end, not on a validation metric
(C2Seg's stage I)."""

from __future__ import annotations

import logging
import os

import torch
from ignite.engine import Engine, Events
from torch import nn

from custom_nets.utils.files import write_atomically


class FinalCheckpoint:
    """Write ``network.state_dict()`` to ``path`` when the engine completes, atomically (a plain state dict, as
    MONAI's ``CheckpointSaver`` writes for a single ``save_dict`` entry).

    MONAI's ``CheckpointSaver(save_final=True)`` also writes its final file when the run raises (and on a keyboard
    interrupt): a crashed pretraining would leave a ``model.pt`` that the next phase loads as if it were finished.
    This handler writes only on ``Events.COMPLETED`` (all epochs done, or stopped by a handler on purpose), through a
    temporary file, so the path holds a finished checkpoint or nothing. A ``DistributedDataParallel`` network is
    saved without its ``module.`` prefix; with ``main_process=False`` (the other ranks) it writes nothing.

    Args:
        path: the checkpoint's path (its folder is made).
        network: the network to save.
        main_process: whether this process writes.

    Example (JSON config)::

        {"_target_": "custom_nets.handlers.FinalCheckpoint", "path": "$@ckpt_dir + '/model.pt'",
         "network": "@network", "main_process": "@main_process"}
    """

    def __init__(self, path: str | os.PathLike, network: nn.Module, main_process: bool = True) -> None:
        self.path = str(path)
        self.network = network
        self.main_process = bool(main_process)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.main_process:
            return
        network = self.network.module if isinstance(self.network, nn.parallel.DistributedDataParallel) else self.network
        state = network.state_dict()
        write_atomically(self.path, lambda tmp: torch.save(state, tmp))
        self.logger.info(f"saved the final checkpoint (epoch {engine.state.epoch}) to {self.path}")
