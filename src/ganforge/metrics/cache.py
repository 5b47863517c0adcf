"""On-disk cache of real-data features, keyed by everything that determines them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def cache_file(cache_dir: str | os.PathLike[str], key: dict[str, Any]) -> Path:
    """``<cache_dir>/<sha256 of the key>.pt``: any change of dataset, split, resolution,
    extractor (weights included) or sample count gives another file."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir).expanduser() / f"{digest}.pt"


def cached(
    cache_dir: str | os.PathLike[str] | None, key: dict[str, Any], compute: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The tensor stored under ``key``, computed (and stored) when absent or unreadable.

    Files are written to a temporary name and renamed, so a crash or a concurrent job never
    leaves a half-written file under the final name (a failed write removes its temporary file);
    ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return compute()
    path = cache_file(cache_dir, key)
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored["key"] == key:
                return stored["value"]
            log.warning("cache file %s holds another key; recomputing", path)
        except Exception as err:  # noqa: BLE001 - a damaged file is recomputed, whatever the damage
            log.warning("cache file %s is unreadable (%s); recomputing", path, err)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as tmp:
        try:
            torch.save({"key": key, "value": value.cpu()}, tmp)
            tmp.close()
            os.replace(tmp.name, path)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return value
