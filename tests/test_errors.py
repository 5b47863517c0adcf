"""User errors as ganforge-train reports them: one line naming the setting and the fix, exit code 1, no traceback."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganforge.config import CONFIG_MODULE, build
from ganforge.errors import ConfigError
from ganforge.metrics.image_metrics import split_images, split_labels
from ganforge.validation import validate, validate_callbacks
from tests.conftest import TINY, Compose, compose_config
from tests.test_cli import BIN, run
from tests.test_image_folder import write_every_kind

#: TINY without the evaluations (they need Inception weights), and a run short enough should a check not fire.
QUICK = [*TINY, "~callbacks.image_metrics", "~callbacks.best_checkpoint", "max_gen_steps=1"]

#: (id, overrides, message fragments); ``{folders}`` stands for a folder of prepared data folders.
CLI_CASES = [
    ("unknown-group-option", ["model=nope"], ["Could not find 'model/nope'", "Available options in 'model'"]),
    ("negative-lr", ["optim.generator.lr=-1"], ["error: optim.generator.lr=-1: a learning rate must be > 0"]),
    ("zero-lr", ["optim.discriminator.lr=0"], ["error: optim.discriminator.lr=0: a learning rate must be > 0"]),
    ("zero-batch-size", ["data.batch_size=0"], ["error: data.batch_size=0: a batch needs at least one sample"]),
    ("zero-n_critic", ["n_critic=0"], ["error: n_critic must be >= 1", "got 0"]),
    ("negative-max_gen_steps", ["max_gen_steps=-1"], ["error: max_gen_steps=-1: train at least one generator step"]),
    ("odd-resolution", ["data.resolution=9"], ["error: data.resolution=9 cannot be built", "e.g. 28, 32 or 64"]),
    ("points-on-a-conv-net", ["data=ring"], ["error: convolutional nets need image data", "use model=mlp"]),
    ("conditional-progan", ["model=progan", "model.conditional=true"], ["error: model=progan is unconditional"]),
    (
        "missing-data_dir",
        ["data=image_folder", "data.data_dir=/nonexistent"],
        ["error: data.data_dir='/nonexistent' does not exist; set data.data_dir to a folder of images"],
    ),
    (
        "empty-folder",
        ["data=image_folder", "data.data_dir={folders}/empty"],
        ["holds no images (it is empty)", "put .jpg, .jpeg, .png"],
    ),
    (
        "folder-without-images",
        ["data=image_folder", "data.data_dir={folders}/text"],
        ["holds no images (only 1 other file(s), e.g. 'notes.txt')"],
    ),
    (
        "corrupt-image",
        ["data=image_folder", "data.data_dir={folders}/corrupt"],
        ["1 of 3 image files", "x.png (cannot identify image file); remove or re-save them"],
    ),
    (  # callbacks=default (sample grids) crashed at their first grid, step 500, on the U-Net's missing latent_dim
        "translation-model-default-callbacks",
        ["model=pix2pix", "game=pix2pix", "data=paired_edges"],
        [
            "error: callbacks.samples cannot run model.generator (UNetGenerator): it translates images",
            "use callbacks=translation",
        ],
    ),
    (
        "malformed-max_time",
        ["max_time=00:00:00:900"],
        ["error: max_time='00:00:00:900': a wall-clock budget is HH:MM:SS, DD:HH:MM:SS or seconds", "=00:15:00"],
    ),
    (  # printed as Lightning's exception inside Hydra's, after the run folder and loggers were made
        "malformed-trainer.max_time",
        ["+trainer.max_time=00:00:00:900"],
        ["error: trainer.max_time='00:00:00:900': Lightning reads DD:HH:MM:SS", "trainer.max_time=00:00:15:00"],
    ),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every CLI case, run as a user runs it; two at a time, since each spends its few seconds importing."""
    folders = tmp_path_factory.mktemp("folders")
    (folders / "empty").mkdir()
    (folders / "text").mkdir()
    (folders / "text" / "notes.txt").write_text("no images here")
    write_every_kind(folders / "corrupt")
    for name in ("gray16.png", "gray.jpeg", "photo.jpg", "palette.png", "rgba.png"):
        (folders / "corrupt" / name).unlink()
    (folders / "corrupt" / "x.png").write_bytes(b"\x89PNG but then random bytes \x00\x13\x37")

    def attempt(case: tuple[str, list[str], list[str]]) -> subprocess.CompletedProcess[str]:
        name, overrides, _ = case
        cwd = tmp_path_factory.mktemp(name)
        args = [*QUICK, f"paths.output_dir={cwd / 'run'}", *(o.format(folders=folders) for o in overrides)]
        return run(str(BIN / "ganforge-train"), *args, cwd=cwd)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([case[0] for case in CLI_CASES], pool.map(attempt, CLI_CASES), strict=True))


@pytest.mark.parametrize(("name", "overrides", "fragments"), CLI_CASES, ids=[case[0] for case in CLI_CASES])
def test_bad_setting_is_one_clear_line(
    outcomes: dict[str, subprocess.CompletedProcess[str]], name: str, overrides: list[str], fragments: list[str]
) -> None:
    """Exit code 1, a message with every fragment, no Python traceback; ganforge's own message is one line."""
    result = outcomes[name]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    if name != "unknown-group-option":  # Hydra's message lists the options, one per line
        assert len(ours) == 1 and fragments[0].removeprefix("error: ") in ours[0], result.stderr[-3000:]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optim.generator.lr=-1"],
            r"^optim\.generator\.lr=-1: a learning rate must be > 0; set e\.g\. optim\.generator\.lr=2e-4$",
        ),
        (["optim.discriminator.lr=0"], r"^optim\.discriminator\.lr=0: "),
        (["optim.generator.lr=fast"], r"^optim\.generator\.lr='fast': "),
        (
            ["optim.discriminator.betas=[1.5,0.9]"],
            r"^optim\.discriminator \(torch\.optim\.Adam\) refuses .*Invalid beta parameter at index 0: 1\.5",
        ),
        (["+optim.generator.momentum=0.9"], r"optim\.generator \(torch\.optim\.Adam\) refuses .*momentum"),
        (["data.batch_size=0"], r"^data\.batch_size=0: .* set e\.g\. data\.batch_size=64$"),
        (["data.num_workers=-1"], r"^data\.num_workers=-1: set data\.num_workers=0"),
        (["max_gen_steps=0"], r"^max_gen_steps=0: .*max_gen_steps=null"),
        (["ema_decay=1.5"], r"^ema_decay=1\.5: the EMA decay must be in \[0, 1\)"),
        (["ema_decay=-0.1"], r"^ema_decay=-0\.1: "),
        (
            ["loss=wgan_gp", "loss.penalties.gp.every=0"],
            r"^loss\.penalties\.gp\.every=0: set loss\.penalties\.gp\.every=1",
        ),
        (["model.pack=3"], r"^data\.batch_size=16 is not a multiple of model\.pack=3 .* e\.g\. data\.batch_size=15$"),
        (["model=progan", "data.batch_size=6"], r"batch of 6 .* model\.discriminator\.group_size=4"),
        (["+trainer.max_time=00:15:00"], r"^trainer\.max_time='00:15:00': Lightning reads DD:HH:MM:SS"),
        (["+trainer.max_time=900"], r"^trainer\.max_time=900: .* e\.g\. trainer\.max_time=00:00:15:00"),
    ],
)
def test_validate_names_the_setting_and_the_fix(tiny_cfg: Compose, overrides: list[str], message: str) -> None:
    """Each rule of validate() refuses in one line that names the setting and a value that works."""
    with pytest.raises(ConfigError, match=message):
        validate(tiny_cfg(*overrides))


CONF = resources.files(CONFIG_MODULE)
SHIPPED = [
    f"{group}={path.name.removesuffix('.yaml')}"
    for group in ("experiment", "model", "loss", "optim", "data", "debug")
    for path in sorted(CONF.joinpath(group).iterdir())
    if path.name.endswith(".yaml")
]


@pytest.mark.parametrize("option", SHIPPED)
def test_shipped_configs_pass_validation(option: str, tmp_path: Path) -> None:
    """No option the project ships is refused (points need the MLP; image folders a data_dir)."""
    overrides = [option, f"paths.output_dir={tmp_path}"]
    if option in ("data=ring", "data=grid"):
        overrides.append("model=mlp")
    if option == "data=image_folder":
        overrides.append(f"data.data_dir={tmp_path}")
    validate(compose_config("train", overrides))


def test_a_lightning_max_time_it_reads_passes(tiny_cfg: Compose) -> None:
    validate(tiny_cfg("+trainer.max_time=00:00:15:00"))


@pytest.mark.parametrize(
    ("overrides", "message", "fix"),
    [
        (
            ["experiment=fmnist_srgan", "callbacks=default"],  # grids and FID of noise samples for an SRResNet
            r"^callbacks\.samples and callbacks\.image_metrics cannot run model\.generator \(SRResNetGenerator\): it "
            r"translates images .* use callbacks=translation",
            "callbacks=translation",
        ),
        (
            ["data=paired_edges", "callbacks=translation"],  # a DCGAN on paired data with the translation grids
            r"^callbacks\.translation_grid and callbacks\.translation_metrics cannot run model\.generator "
            r"\(DCGANGenerator\): it draws from noise .* use callbacks=default",
            "callbacks=default",
        ),
    ],
)
def test_callbacks_that_cannot_run_the_generator_are_refused(
    tiny_cfg: Compose, overrides: list[str], message: str, fix: str
) -> None:
    """Each kind of generator with the other kind's callbacks: refused before training, naming the callbacks that
    fit; with those, it passes."""
    cfg = tiny_cfg(*overrides)
    with pytest.raises(ConfigError, match=message):
        validate_callbacks(cfg, build(cfg.model.generator))
    fixed = tiny_cfg(*overrides, fix)
    validate_callbacks(fixed, build(fixed.model.generator))


def test_unknown_mixture_kind_names_data_kind(tiny_cfg: Compose) -> None:
    """data.kind other than ring or grid: refused as the datamodule is built (Hydra's wrapper removed)."""
    cfg = tiny_cfg("data=ring", "model=mlp", "data.kind=hexagon")
    with pytest.raises(
        ConfigError, match=r"^data\.kind='hexagon' is not a mixture; set data\.kind=ring .* data\.kind=grid"
    ):
        build(cfg.data)


def test_mode_coverage_on_image_data_names_the_fix(tiny_cfg: Compose) -> None:
    """callbacks=toy on image data: refused when training sets up, not at the first evaluation."""
    cfg = tiny_cfg("callbacks=toy")
    callback = build(cfg.callbacks.mode_coverage)
    trainer = SimpleNamespace(datamodule=build(cfg.data))  # fit's setup hook only reads the datamodule
    message = (
        r"^callbacks\.mode_coverage \(callbacks=toy\) scores 2-D mixtures, but the data is Fashion-MNIST; "
        r"train on data=ring or data=grid \(with model=mlp\), or use callbacks=default for image data$"
    )
    with pytest.raises(ConfigError, match=message):
        callback.setup(trainer, None, "fit")
    with pytest.raises(ConfigError, match=message):  # and should a run get there some other way
        callback.run(trainer, None)


def test_unknown_reference_split_names_the_setting(tiny_cfg: Compose) -> None:
    """metrics.reference_split other than train or test: refused before any data is read."""
    cfg = tiny_cfg("metrics.reference_split=val")
    datamodule = build(cfg.data)
    message = (
        r"^metrics\.reference_split='val': .* set metrics\.reference_split=train or metrics\.reference_split=test$"
    )
    with pytest.raises(ConfigError, match=message):
        next(split_images(datamodule, cfg.metrics.reference_split, 10, seed=0, batch_size=5))
    with pytest.raises(ConfigError, match=message):
        split_labels(datamodule, cfg.metrics.reference_split, 10, seed=0)
