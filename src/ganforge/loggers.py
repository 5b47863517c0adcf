"""Lightning's loggers and messages as a run shows them, without the advertisements and deprecation notices that
their defaults print at every run."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, except that it does not hand ``wandb.init`` an ``anonymous`` setting it was not
    given: Lightning passes ``anonymous=None``, and wandb (0.19 and later) warns "The anonymous setting has no effect
    and will be removed" whenever the argument is there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]


class _NoTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip:")


_TIPS = _NoTips()


def drop_lightning_tips() -> None:
    """Keep Lightning's advertisements for its cloud products (logged when a Trainer is built) off the console and
    train.log; its other messages stay."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _TIPS not in logger.filters:
        logger.addFilter(_TIPS)
