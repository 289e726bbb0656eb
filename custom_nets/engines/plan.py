"""The training plan, logged once at start-up: which recipe, how long, how fast, and when (and on what) it stops.

Early stopping on a small validation split is noisy (a 6-image split stopped text bundles after 23-28 of 200
epochs on MoNuSeg), so a run says up front what it will stop on; see the bundles' ``configs/recipes``.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def describe_scheduler(scheduler) -> str:
    """``CosineAnnealingLR(T_max=200, eta_min=1e-06)``: the class and its settings, as a recipe writes them."""
    if scheduler is None:
        return "none (fixed learning rate)"
    name = type(scheduler).__name__
    if name == "ConstantLR" and getattr(scheduler, "factor", None) == 1.0:
        return "none (fixed learning rate)"
    settings = {k: getattr(scheduler, k) for k in ("T_max", "T_0", "T_mult", "eta_min", "milestones", "gamma", "factor")
                if hasattr(scheduler, k)}
    if "milestones" in settings:
        settings["milestones"] = sorted(settings["milestones"])
    return f"{name}({', '.join(f'{k}={v}' for k, v in settings.items())})"


def log_training_plan(recipe: str, epochs: int, batch_size: int, learning_rate: float, scheduler,
                      early_stop_patience: int | None, monitored: str, val_interval: int = 1) -> str:
    """Log (and return) the plan: the recipe, epochs, batch size, learning rate and schedule, and early stopping:
    its patience in validations and the metric it watches, or that it is off.

    Example:
        >>> log_training_plan("LViT (MoNuSeg)", 2000, 2, 1e-3, None, 50, "val_mean_dice")
        'recipe: LViT (MoNuSeg); up to 2000 epochs, batch 2, learning rate 0.001, schedule none (fixed learning rate); early stopping after 50 validations (every 1 epoch(s)) without a better val_mean_dice (higher is better); the checkpoint kept is the best val_mean_dice'
    """
    better = "lower" if monitored.endswith("loss") else "higher"
    if early_stop_patience:
        stopping = (f"early stopping after {early_stop_patience} validations (every {val_interval} epoch(s)) without a "
                    f"better {monitored} ({better} is better)")
    else:
        stopping = "early stopping off (all epochs run)"
    plan = (f"recipe: {recipe}; up to {epochs} epochs, batch {batch_size}, learning rate {learning_rate:g}, schedule "
            f"{describe_scheduler(scheduler)}; {stopping}; the checkpoint kept is the best {monitored}")
    logger.info(plan)
    return plan
