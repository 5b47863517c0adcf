"""Read an offline W&B run's transaction log (``run-*.wandb``).

wandb >= 0.19 writes offline runs only into this log (no ``wandb-summary.json``), and its
Python reader is gone, so tests parse the documented LevelDB-style record format: a
7-byte file header, 32 KiB blocks, records with a 7-byte header (crc32, length, type),
split across blocks as FIRST/MIDDLE/LAST pieces.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the block end
            pos += room
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _updates(path: Path, kind: str) -> dict[str, Any]:
    """The latest value of every key in the log's ``summary`` or ``config`` records."""
    values: dict[str, Any] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == kind:
            for item in getattr(record, kind).update:
                values[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return values


def summary(path: Path) -> dict[str, Any]:
    """The run summary: the last value of every logged key."""
    return _updates(path, "summary")


def config(path: Path) -> dict[str, Any]:
    """The run config (hyperparameters) as logged."""
    return _updates(path, "config")


def run_record(path: Path) -> wandb_internal_pb2.RunRecord:
    """The run's identity as logged: display name, group, tags, job type."""
    return next(record.run for record in records(path) if record.WhichOneof("record_type") == "run")
