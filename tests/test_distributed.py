"""DDP on CPU processes (gloo): the adversarial loop, sharded evaluation, and what only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganforge.evaluate import evaluate
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 100 samples scored in batches of 50: each of the 2 ranks generates one batch.
COUNTS = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50", "metrics.scorer.kid_subset_size=50"]


def train_ddp(trainer: str, out: Path, *overrides: str) -> dict[int, dict]:
    """Train 6 generator steps on 2 CPU ranks; every rank's final G, D and metrics, by rank."""
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    # PYTHONPATH: the ranks import tests.ddp_probe
    cmd = [
        str(BIN / "ganforge-train"), f"trainer={trainer}", *TINY, *COUNTS, "max_gen_steps=6",
        f"paths.output_dir={out / 'run'}", "+callbacks.probe._target_=tests.ddp_probe.SaveRankState",
        f"+callbacks.probe.dirpath={out / 'probe'}", *overrides,
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {rank: torch.load(out / "probe" / f"rank{rank}.pt") for rank in (0, 1)}


def assert_same_weights(ranks: dict[int, dict]) -> None:
    for net in ("generator", "discriminator"):
        for name, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][name]), f"{net}.{name} differs between the ranks"


@pytest.mark.slow
def test_ddp_ranks_stay_identical_and_fid_gathered_across_ranks_equals_single_process(tmp_path: Path) -> None:
    ranks = train_ddp("ddp_cpu", tmp_path, "logger=wandb")
    assert ranks[0]["world_size"] == 2 and ranks[0]["generator_steps"] == 6
    assert_same_weights(ranks)
    assert ranks[0]["metrics"]["metrics/fid"] == ranks[1]["metrics"]["metrics/fid"]
    # The same samples scored by one process: the EMA generator rank 0 checkpointed, the same
    # latents, the same batches of 50 (so the features are computed identically); only the
    # gather and float reductions could differ, hence the 1e-5 relative tolerance.
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    single = evaluate(compose_config("eval", [f"ckpt={checkpoint}", f"out={tmp_path / 'eval.json'}", *COUNTS]))
    for name in ("fid", "kid", "is"):
        assert ranks[0]["metrics"][f"metrics/{name}"] == pytest.approx(single["metrics"][name], rel=1e-5), name
    # Only rank 0 writes files; the ranks' fakes come from distinct latent streams.
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one W&B run, from rank 0
    saved = torch.load(checkpoint, weights_only=False)
    rng = saved["ganforge"]["torch_rng"]
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1])
    hparams = (run / "csv" / "hparams.yaml").read_text()
    assert "world_size: 2" in hparams and "global_batch_size: 32" in hparams


@pytest.mark.slow
def test_ddp_spawn_trains_with_identical_ranks(tmp_path: Path) -> None:
    ranks = train_ddp("ddp_spawn_cpu", tmp_path, "loss=wgan_gp", "n_critic=2")
    assert_same_weights(ranks)
