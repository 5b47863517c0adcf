"""DDP on CPU processes (gloo): the adversarial loop, sharded evaluation, and what only rank 0 writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ganforge.config import CONFIG_MODULE, build, generator_from_checkpoint
from ganforge.distributed import RANK_CONFIG, DDPStrategy, JobLauncher, rank_command, write_rank_config
from ganforge.errors import ConfigError
from ganforge.evaluate import evaluate
from ganforge.metrics.image_metrics import subset_index
from ganforge.metrics.translation import pairs, translation_scores, translator
from tests.conftest import TINY, compose_config
from tests.test_translation import CYCLE_TINY

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 100 samples scored in batches of 50: each of the 2 ranks generates one batch.
COUNTS = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50", "metrics.scorer.kid_subset_size=50"]


def run_train(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ganforge-train in ``cwd``; a hang is killed with every process it started (its session)."""
    env = os.environ | {
        "PYTHONPATH": str(ROOT),  # the ranks import tests.ddp_probe
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    cmd = [str(BIN / "ganforge-train"), *args]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"ganforge-train ran past {timeout} s (killed):\n{stderr[-3000:]}")
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_ranks(probe: Path) -> dict[int, dict]:
    return {rank: torch.load(probe / f"rank{rank}.pt") for rank in (0, 1)}


def train_ddp(trainer: str, out: Path, *overrides: str) -> dict[int, dict]:
    """Train 6 generator steps on 2 CPU ranks; every rank's final G, D and metrics, by rank."""
    run_train(
        out, f"trainer={trainer}", *TINY, *COUNTS, "max_gen_steps=6", f"paths.output_dir={out / 'run'}",
        "+callbacks.probe._target_=tests.ddp_probe.SaveRankState", f"+callbacks.probe.dirpath={out / 'probe'}",
        *overrides,
    )  # fmt: skip
    return load_ranks(out / "probe")


def evaluate_in_one_process(out: Path) -> tuple[dict, dict]:
    """``ganforge-eval`` (the COUNTS protocol) of the last checkpoint of :func:`train_ddp`'s run in ``out``, and
    that checkpoint. ganforge-eval builds no class from outside ganforge that a checkpoint's config names, so the
    probe callback is dropped from a copy first."""
    saved = torch.load(out / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    del saved["hyper_parameters"]["callbacks"]["probe"]
    torch.save(saved, out / "eval.ckpt")
    return evaluate(compose_config("eval", [f"ckpt={out / 'eval.ckpt'}", f"out={out / 'eval.json'}", *COUNTS])), saved


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
    single, saved = evaluate_in_one_process(tmp_path)
    for name in ("fid", "kid", "is"):
        assert ranks[0]["metrics"][f"metrics/{name}"] == pytest.approx(single["metrics"][name], rel=1e-5), name
    # Only rank 0 writes files; the ranks' fakes come from distinct latent streams.
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one W&B run, from rank 0
    rng = saved["ganforge"]["torch_rng"]
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1])
    hparams = (run / "csv" / "hparams.yaml").read_text()
    assert "world_size: 2" in hparams and "global_batch_size: 32" in hparams


@pytest.mark.slow
def test_ddp_spawn_trains_with_identical_ranks(tmp_path: Path) -> None:
    ranks = train_ddp("ddp_spawn_cpu", tmp_path, "loss=wgan_gp", "n_critic=2")
    assert_same_weights(ranks)


@pytest.mark.slow
def test_ddp_trains_an_image_to_image_game_with_identical_ranks(tmp_path: Path) -> None:
    """pix2pix on 2 CPU ranks: the (target, source) batches shard like images, the ranks' nets stay equal
    and every rank's translation metrics (it scores the whole set) agree."""
    mnist = ["data.base._target_=ganforge.data.MNIST5kDataModule", "~data.base.system_dir"]
    ranks = train_ddp("ddp_cpu", tmp_path, "experiment=fmnist_pix2pix", *mnist)
    assert ranks[0]["world_size"] == 2 and ranks[0]["generator_steps"] == 6
    assert_same_weights(ranks)
    assert ranks[0]["metrics"]["metrics/psnr"] == ranks[1]["metrics"]["metrics/psnr"]
    # ... and equal the single-process scores of the checkpointed generator on the same 100 seeded test pairs
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    generator, cfg = generator_from_checkpoint(saved, translation=True)
    test = build(cfg.data).load_split(train=False)
    single = translation_scores(translator(generator, "cpu"), pairs(test, subset_index(len(test), 100, 0), 50))
    for name in ("psnr", "ssim", "l1"):
        assert ranks[0]["metrics"][f"metrics/{name}"] == pytest.approx(single[name], rel=1e-5), name


@pytest.mark.slow
def test_ddp_ranks_keep_their_own_image_pools_through_a_resume(tmp_path: Path) -> None:
    """CycleGAN on 2 CPU ranks: each rank's image pools hold its own fakes while the nets stay identical; the
    checkpoint keeps every rank's pools, and each resumed rank continues from its own (not rank 0's, which the
    state_dict holds and DDP broadcasts when it wraps the module), as if uninterrupted."""
    quiet = ["~callbacks.translation_metrics", "~callbacks.best_checkpoint", "~callbacks.translation_grid"]
    probe = "+callbacks.probe._target_=tests.ddp_probe.SaveRankState"
    common = ["trainer=ddp_cpu", *CYCLE_TINY, *quiet, "game.pool_size=8", "max_gen_steps=4",
              "callbacks.checkpoint.every_n_gen_steps=3", probe]  # fmt: skip
    run_train(
        tmp_path, *common, f"paths.output_dir={tmp_path / 'run'}", f"+callbacks.probe.dirpath={tmp_path / 'straight'}"
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "gen_step_0000003.ckpt"
    run_train(tmp_path, *common, f"ckpt_path={checkpoint}", f"paths.output_dir={tmp_path / 'resumed_run'}",
              f"+callbacks.probe.dirpath={tmp_path / 'resumed'}")  # fmt: skip
    straight, resumed = load_ranks(tmp_path / "straight"), load_ranks(tmp_path / "resumed")
    assert_same_weights(straight)
    assert_same_weights({0: straight[0], 1: resumed[0]})
    pools = [f"game.pool_{side}.{buffer}" for side in "ab" for buffer in ("images", "count")]
    for images, count in zip(pools[0::2], pools[1::2], strict=True):
        assert straight[0]["buffers"][count] == straight[1]["buffers"][count] == 8  # full after 4 steps of 4 fakes
        assert (straight[0]["buffers"][images] != straight[1]["buffers"][images]).flatten(1).any(dim=1).all()
    for rank in (0, 1):
        for name, value in straight[rank]["buffers"].items():
            assert torch.equal(resumed[rank]["buffers"][name], value), (rank, name)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for name in pools:
        for rank in (0, 1):
            assert torch.equal(saved["ganforge"]["per_rank_buffers"][name][rank], straight[rank]["buffers"][name])


#: Two-job sweeps: Hydra's basic sweeper (two seeds) and Optuna (two trials, which it samples; the
#: study is named because the default study name, ${task_name}, is resolved before Hydra sets its config).
SWEEPS = {
    "basic": ["-m", "seed=1,2"],
    "optuna": [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.study_name=ddp",
        "optimized_metric=loss/g",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("sweeper", list(SWEEPS))
def test_ddp_ranks_join_their_own_job_in_a_multirun(sweeper: str, tmp_path: Path) -> None:
    """A sweep with ``trainer=ddp_cpu``: each job starts its own second rank, which trains that job's
    config as a single run (no sweep or study of its own) and writes only into that job's folder."""
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    run_train(
        tmp_path, *SWEEPS[sweeper], "trainer=ddp_cpu", *TINY, "max_gen_steps=4", "~callbacks.image_metrics",
        "~callbacks.best_checkpoint", "~callbacks.samples", "logger=wandb", f"hydra.sweep.dir={sweep}",
        "+callbacks.probe._target_=tests.ddp_probe.SaveRankState", "+callbacks.probe.dirpath=${paths.output_dir}/probe",
        timeout=300,
    )  # fmt: skip
    print(f"{sweeper}: 2 jobs x 2 ranks in {time.monotonic() - started:.1f} s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no run or sweep folder of a rank's own
    written = {"basic": "multirun.yaml", "optuna": "optimization_results.yaml"}[sweeper]
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == ["0", "1", written]
    jobs = {job: load_ranks(sweep / job / "probe") for job in ("0", "1")}
    for job, ranks in jobs.items():
        assert [ranks[rank]["hydra_mode"] for rank in (0, 1)] == ["MULTIRUN", "RUN"], job
        # The same resolved config in both ranks, down to what the sweep derives (the W&B run name).
        assert ranks[1]["hparams"] == ranks[0]["hparams"], job
        assert ranks[0]["hparams"]["logger"]["wandb"]["name"].startswith(f"{job}: ")
        assert ranks[0]["hparams"]["paths"]["output_dir"] == str(sweep / job)
        assert ranks[0]["world_size"] == 2 and ranks[0]["generator_steps"] == 4
        assert_same_weights(ranks)
    assert jobs["0"][0]["hparams"] != jobs["1"][0]["hparams"]  # the seeds, or the trials' samples
    assert jobs["0"][1]["pid"] != jobs["1"][1]["pid"]  # each job started its own rank 1
    weights = [jobs[job][0]["generator"] for job in ("0", "1")]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    runs = sorted(p.relative_to(sweep) for p in tmp_path.rglob("offline-run-*"))
    assert [run.parts[:2] for run in runs] == [("0", "wandb"), ("1", "wandb")]  # one W&B run per job, from rank 0


@pytest.fixture
def hydra_job(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """``hydra_job(mode, *overrides)``: make the composed train config the running Hydra job, in ``tmp_path``."""

    def start(mode: RunMode, *overrides: str) -> DictConfig:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose("train", overrides=[*TINY, *overrides], return_hydra_config=True)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.mode = mode
            cfg.hydra.job.num = 3
            cfg.hydra.runtime.output_dir = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        task = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])
        (tmp_path / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(task, tmp_path / ".hydra" / "config.yaml")  # as Hydra saves it: unresolved
        return cfg

    yield start
    HydraConfig.instance().cfg = None


def ddp_launcher(num_nodes: int = 1) -> object:
    strategy = DDPStrategy(cluster_environment=LightningEnvironment(), parallel_devices=[torch.device("cpu")] * 2)
    strategy.num_nodes = num_nodes
    strategy._configure_launcher()
    return strategy.launcher


def test_ddp_uses_its_job_launcher_only_in_a_multirun(hydra_job: Callable[..., DictConfig]) -> None:
    hydra_job(RunMode.RUN, "trainer=ddp_cpu")
    assert type(ddp_launcher()) is _SubprocessScriptLauncher  # Lightning's: re-running the command is exact
    hydra_job(RunMode.MULTIRUN, "trainer=ddp_cpu", "hydra.output_subdir=.hydra")
    assert isinstance(ddp_launcher(), JobLauncher)
    with pytest.raises(ConfigError, match="launcher=slurm"):
        ddp_launcher(num_nodes=2)
    hydra_job(RunMode.MULTIRUN, "trainer=ddp_cpu", "hydra.output_subdir=null")
    with pytest.raises(ConfigError, match="trainer=ddp_spawn or launcher=slurm"):
        ddp_launcher()


def test_rank_config_is_the_jobs_config_resolved_in_the_job(
    hydra_job: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = hydra_job(
        RunMode.MULTIRUN, "trainer=ddp_cpu", "hydra.output_subdir=.hydra", "logger=wandb", "+note=\\${not_a_key}"
    )
    path = write_rank_config()
    assert path == tmp_path / ".hydra" / RANK_CONFIG
    assert "${" not in path.read_text().replace("\\${", "")  # nothing left to resolve, in any process
    saved = OmegaConf.load(path)
    # Values that depend on the job (Hydra's runtime, the sweep resolvers) are the job's, as literals.
    assert saved.paths.output_dir == str(tmp_path)
    assert saved.task_name == cfg.task_name
    assert saved.logger.wandb.name == cfg.logger.wandb.name == f"3: {cfg.task_name}"
    assert saved.note == cfg.note == "${not_a_key}"  # an escaped interpolation stays a plain string
    assert OmegaConf.to_container(saved.hydra) == {"mode": "RUN", "run": {"dir": str(tmp_path)}, "output_subdir": None}
    command = rank_command(path, 1)
    assert command[1:] == [
        "-m", "ganforge.train", "--config-path", str(tmp_path / ".hydra"), "--config-name", "rank_config",
        f"hydra.job.name={cfg.hydra.job.name}_rank1",
    ]  # fmt: skip
