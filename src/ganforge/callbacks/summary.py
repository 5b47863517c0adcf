"""The model summary at the start of training, without Lightning's FLOPs column."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

#: Lightning's summary logger, so the table goes where Lightning's messages go (the console, train.log).
log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class ModelSummary(LightningModelSummary):
    """Lightning's table of modules, parameter counts and modes, without FLOPs: Lightning counts them in a forward
    pass of the module's ``example_input_array``, which a GAN's module (two players, no single input) has not, so
    every run printed "Total FLOPs: 0"."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *columns
        )
        log.info("\n" + "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops")))
