"""``ganforge-explore``: what it draws (against ganforge-sample's samples and the generators' own definitions), what it
reads, and what it refuses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from omegaconf import OmegaConf

from ganforge.config import build, load_checkpoint
from ganforge.errors import CheckpointError, ConfigError
from ganforge.explore.drawing import TILE, Draw, Explorer, slerp
from ganforge.explore.runs import Library, config_diff, curves, default_config, find_runs, grids, run_config
from ganforge.generation import generate_batches
from ganforge.kept_images import COUNT, KEY
from ganforge.train import train
from tests.browser import Page, chromium
from tests.conftest import TINY, compose_config
from tests.test_cli import BIN, assert_clean_error, run
from tests.test_encoder_games import TINY_ENCODING
from tests.test_games import TINY_CODED
from tests.test_translation import CYCLE_TINY

#: Tiny runs of the families whose controls the explorer has: their overrides, trained for 2 G steps.
FAMILIES = {
    "conditional": [*TINY, "model.conditional=true"],
    "stylegan2": [
        *TINY,
        "model=stylegan2",
        "model.generator.latent_dim=16",
        "model.generator.w_dim=16",
        "model.generator.mapping_layers=2",
        "model.generator.max_width=16",
        "model.discriminator.max_width=16",
    ],
    "infogan": [*TINY_CODED, "experiment=fmnist_infogan"],
    "cyclegan": CYCLE_TINY,
    "bigan": [*TINY_ENCODING, "experiment=fmnist_bigan", "model.discriminator.image.width=8"],
}
FAST = ["~callbacks.best_checkpoint", "metrics.every_n_gen_steps=1", "max_gen_steps=2"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``outputs/`` folder with one tiny run of each family in :data:`FAMILIES`, and a run whose checkpoint was
    forged (its generator's ``_target_`` names a function that trains and writes)."""
    root = tmp_path_factory.mktemp("outputs")
    for name, overrides in FAMILIES.items():
        train(compose_config("train", [*overrides, *FAST, f"paths.output_dir={root / name}"]))
    contents = torch.load(root / "conditional/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    contents["hyper_parameters"]["model"]["generator"]["_target_"] = "ganforge.train.train"
    (root / "forged" / "checkpoints").mkdir(parents=True)
    torch.save(contents, root / "forged" / "checkpoints" / "last.ckpt")
    return root


def explorer(outputs: Path, name: str) -> Explorer:
    return Library(outputs).open(outputs / name / "checkpoints" / "last.ckpt")


def tiles(picture: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The tiles of a picture of :func:`~ganforge.explore.drawing.picture` (2 px padding), as (rows, columns, ...)."""
    size = (picture.shape[0] - 2) // rows - 2
    return np.stack(
        [
            np.stack([picture[2 + r * (size + 2) :, 2 + c * (size + 2) :][:size, :size] for c in range(columns)])
            for r in range(rows)
        ]
    )


def test_a_grid_is_ganforge_samples_first_samples_enlarged(outputs: Path) -> None:
    """Seed s draws what ``ganforge-sample seed=s`` draws first, each pixel repeated to about TILE pixels."""
    explore = explorer(outputs, "stylegan2")
    picture = explore.samples(4, Draw(seed=3))
    expected = next(generate_batches(explore.module.sampling_generator, 4, seed=3, batch_size=4))
    zoom = TILE // expected.shape[-1]
    pixels = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(zoom, -1).repeat_interleave(zoom, -2).expand(-1, 3, -1, -1)
    got = torch.from_numpy(tiles(picture, 2, 2)).flatten(0, 1).permute(0, 3, 1, 2)
    assert torch.equal(got, pixels)
    assert np.array_equal(explore.samples(4, Draw(seed=3)), picture)
    assert not np.array_equal(explore.samples(4, Draw(seed=4)), picture)


def test_psi_zero_draws_the_average_image_and_leaves_the_generators_setting(outputs: Path) -> None:
    explore = explorer(outputs, "stylegan2")
    average = tiles(explore.samples(4, Draw(seed=1, psi=0.0)), 2, 2).reshape(4, -1)
    assert (average == average[0]).all()
    assert explore.module.sampling_generator.truncation_psi == 1.0
    with pytest.raises(ConfigError, match=r"psi=1\.5"):
        explore.samples(4, Draw(psi=1.5))


def test_style_mixing_takes_the_band_of_styles_from_the_second_seed(outputs: Path) -> None:
    """Rows: seed, second seed, mixed. The second seed equal to the first mixes nothing; every band changes the
    first row, and the fine band (the last ws) differently from the coarse one."""
    explore = explorer(outputs, "stylegan2")
    same = tiles(explore.mixing(7, "coarse", 3, Draw(seed=7)), 3, 3)
    assert np.array_equal(same[2], same[0])
    coarse, fine = (tiles(explore.mixing(8, band, 3, Draw(seed=7)), 3, 3) for band in ("coarse", "fine"))
    assert np.array_equal(coarse[0], same[0]) and not np.array_equal(coarse[2], coarse[0])
    assert not np.array_equal(fine[2], coarse[2])
    with pytest.raises(ConfigError, match="style-based generator"):
        explorer(outputs, "conditional").mixing(1, "coarse", 3, Draw())


def test_the_interpolation_runs_from_one_seeds_latent_to_the_others(outputs: Path) -> None:
    explore = explorer(outputs, "infogan")
    strip = tiles(explore.interpolation(5, 4, Draw(seed=2)), 1, 4)[0].astype(int)
    for end, seed in ((strip[0], 2), (strip[-1], 5)):  # a batch of 4, not 1: rounding may differ by a level
        assert np.abs(end - tiles(explore.samples(1, Draw(seed=seed)), 1, 1)[0, 0]).max() <= 1
    a, b = torch.randn(8), torch.randn(8)
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    middle = slerp(a, b, 0.5)
    assert torch.allclose(middle.norm(), (a.norm() + b.norm()) / 2, rtol=0.1)


def test_classes_codes_truncation_and_ema_each_change_the_picture(outputs: Path) -> None:
    conditional, infogan = explorer(outputs, "conditional"), explorer(outputs, "infogan")
    assert conditional.controls.num_classes == 10 and conditional.controls.ema
    assert infogan.controls.categorical == (10,) and infogan.controls.continuous == 2
    base = conditional.samples(4, Draw(seed=1, label=2))
    for changed in (Draw(seed=1, label=3), Draw(seed=1, label=2, ema=False), Draw(seed=1, label=2, truncation=0.3)):
        assert not np.array_equal(conditional.samples(4, changed), base), changed
    with pytest.raises(ConfigError, match=r"classes 0\.\.9"):
        conditional.samples(4, Draw(label=10))
    coded = infogan.samples(4, Draw(seed=1, codes=(3, 0.0, 0.0)))
    assert not np.array_equal(infogan.samples(4, Draw(seed=1, codes=(4, 0.0, 0.0))), coded)
    assert not np.array_equal(infogan.samples(4, Draw(seed=1, codes=(3, 0.9, 0.0))), coded)


def test_translators_and_encoders_draw_from_pictures(outputs: Path) -> None:
    cyclegan, bigan = explorer(outputs, "cyclegan"), explorer(outputs, "bigan")
    assert cyclegan.controls.translator and cyclegan.controls.two_way and not bigan.controls.translator
    picked = cyclegan.test_images()
    assert len(picked) == COUNT and picked[0].dtype == np.uint8 and picked[0].shape[-1] == 3
    there, back = cyclegan.translation(picked[0]), cyclegan.translation(picked[0], inverse=True)
    assert there.shape == back.shape and not np.array_equal(there, back)
    assert np.array_equal(cyclegan.translation(picked[0][..., 0]), there)  # a grey upload: the same image
    pair, code = bigan.reconstruction(bigan.test_images()[0])
    assert code.shape == (bigan.module.latent_dim,) and pair.shape[1] > pair.shape[0]
    with pytest.raises(ConfigError, match="no encoder"):
        cyclegan.reconstruction(picked[0])
    with pytest.raises(ConfigError, match="reads noise"):
        bigan.translation(picked[0])


def test_the_pictures_to_pick_are_the_test_images_the_checkpoint_keeps(outputs: Path) -> None:
    """Translators and encoders keep test images spread over the split (sorted by class: one of each here), both
    sides of a translator's pairs; noise generators keep none; the explorer shows what is kept, never the data."""
    checkpoints = {name: load_checkpoint(outputs / name / "checkpoints" / "last.ckpt") for name in FAMILIES}
    assert {name for name, c in checkpoints.items() if KEY in c} == {"cyclegan", "bigan"}
    split = build(OmegaConf.create(checkpoints["cyclegan"]["hyper_parameters"]["data"])).load_split(train=False)
    targets, sources = split[len(split) - 1]
    kept = checkpoints["cyclegan"][KEY]
    assert kept["inputs"].shape == (COUNT, *sources.shape) and torch.equal(kept["inputs"][-1], sources)
    assert torch.equal(kept["targets"][-1], targets)
    bigan = checkpoints["bigan"]
    images = bigan[KEY]["inputs"]
    assert set(bigan[KEY]) == {"inputs"} and images.dtype == torch.uint8 and len(images) == COUNT
    bigan["hyper_parameters"]["data"]["data_dir"] = str(outputs / "no such folder")  # the data is not read
    bigan["hyper_parameters"]["data"]["system_dir"] = None
    shown = Explorer(bigan).test_images()
    assert np.array_equal(shown[2], images[2].expand(3, -1, -1).permute(1, 2, 0).numpy())
    del bigan[KEY]  # a checkpoint from before they were kept: uploads only
    assert Explorer(bigan).test_images() == []
    bigan[KEY] = {"inputs": images.float()}
    with pytest.raises(ConfigError, match=f"checkpoint's '{KEY}' are not batches of at most {COUNT} uint8"):
        Explorer(bigan)


def test_the_library_opens_only_its_runs_and_its_checkpoint(outputs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.ckpt"
    elsewhere.write_bytes((outputs / "conditional" / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(ConfigError, match="outside"):
        Library(outputs).open(elsewhere)
    with pytest.raises(ConfigError, match="outside"):
        Library(outputs).open(outputs / ".." / elsewhere.parent.name / elsewhere.name)
    assert Library(outputs, elsewhere).open(elsewhere).controls.num_classes == 10
    library = Library(outputs)
    assert library.open(outputs / "infogan/checkpoints/last.ckpt") is library.open(
        outputs / "infogan" / "checkpoints" / ".." / "checkpoints" / "last.ckpt"
    )


#: Everything the explorer does with a folder of runs, in a process that records each file it opens or lists once
#: its modules are imported (an audit hook); prints the paths outside the folder and the installed code.
EVERY_USE = """
import os, sys
from pathlib import Path
import ganforge
from ganforge.explore import runs
from ganforge.explore.drawing import Draw
from ganforge.kept_images import COUNT

seen = []

def record(event, args):
    if event in ("open", "os.listdir", "os.scandir") and isinstance(args[0], (str, bytes, os.PathLike)):
        seen.append(os.path.realpath(os.fsdecode(args[0])))

root = Path(sys.argv[1]).resolve()
sys.addaudithook(record)
library, defaults = runs.Library(root), runs.default_config()
for name in library.runs():
    run = root / name
    runs.grids(run), runs.curves(run), runs.protocol(run), runs.config_diff(runs.run_config(run), defaults)
    explorer = library.open(runs.checkpoint_of(run))
    c = explorer.controls
    if c.translator or c.encoder:
        pictures = explorer.test_images()
        assert len(pictures) == COUNT, name
        for image in pictures:
            explorer.translation(image) if c.translator else explorer.reconstruction(image)
    else:
        explorer.samples(4, Draw()), explorer.interpolation(1, 3, Draw())
        if c.style:
            explorer.mixing(1, "coarse", 2, Draw())
code = (root, sys.prefix, sys.base_prefix, os.path.dirname(ganforge.__file__), "/proc", "/sys", "/dev")
allowed = [os.path.realpath(path) for path in code]
print(*sorted({p for p in seen if not any(p == a or p.startswith(a + os.sep) for a in allowed)}), sep="\\n")
"""


def test_the_explorer_reads_nothing_outside_outputs_and_its_checkpoint(outputs: Path, tmp_path: Path) -> None:
    """Every run's grids, curves, protocol, config diff, checkpoint and drawings, the encoders' and translators' on
    every test image they offer: no file opened or listed outside ``outputs/`` but the installed code's own."""
    runs = tmp_path / "outputs"
    for name in FAMILIES:  # the forged run is refused before anything is read (tested below)
        shutil.copytree(outputs / name, runs / name)
    found = subprocess.run(
        [sys.executable, "-c", EVERY_USE, str(runs)], capture_output=True, text=True, timeout=600, check=True
    )
    assert found.stdout.split() == [], found.stdout


def test_a_forged_checkpoint_is_refused_with_the_safe_loaders_message(outputs: Path) -> None:
    forged = outputs / "forged" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError) as safe:
        load_checkpoint(forged)
    with pytest.raises(CheckpointError) as explored:
        Library(outputs).open(forged)
    assert str(explored.value) == str(safe.value) and "ganforge.train.train" in str(safe.value)


def test_the_run_view_reads_grids_curves_and_the_config_diff(outputs: Path) -> None:
    assert {run.name for run in find_runs(outputs)} == {*FAMILIES, "forged"}
    run = outputs / "conditional"
    found = grids(run)
    assert [caption for _, caption in found] == ["G step 2"] and found[0][0].ndim == 3
    picture = curves(run)
    assert picture is not None and picture.ndim == 3
    diff = {key: (default, ours) for key, default, ours in config_diff(run_config(run), default_config())}
    assert diff["model.conditional"] == ("False", "True")
    assert diff["data.batch_size"][1] == "16"
    assert not any(key.startswith("paths.") for key in diff)


def test_a_hydra_run_is_diffed_from_its_saved_config(tmp_path: Path) -> None:
    """A run of ``ganforge-train`` keeps ``.hydra/config.yaml`` (unresolved): derived settings are not differences."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    saved = OmegaConf.to_container(compose_config("train", ["model.conditional=true"]), resolve=False)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    (run / "metrics.json").write_text(json.dumps({"gen_step": 3}))
    assert [key for key, *_ in config_diff(run_config(run), default_config())] == ["model.conditional"]
    assert find_runs(tmp_path) == [run]


# --- the page in a real browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``ganforge-explore`` on the conditional run's checkpoint, browsing ``outputs``, on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ckpt = outputs / "conditional" / "checkpoints" / "last.ckpt"
    command = [str(BIN / "ganforge-explore"), f"ckpt={ckpt}", f"runs={outputs}", f"port={port}"]
    cwd = tmp_path_factory.mktemp("explore")
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"ganforge-explore did not start:\n{process.communicate()[0][-3000:]}") from None
            time.sleep(0.5)
    yield url, process
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def page(server: tuple[str, subprocess.Popen[str]]) -> Iterator[Page]:
    found = chromium()
    if found is None:
        message = "no chromium and chromedriver (Debian: apt-get install chromium chromium-driver; make setup does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    opened = Page(server[0], *found)
    yield opened
    opened.close()


def open_run(page: Page, run: str, kind: str) -> None:
    """Open a run of ``outputs`` from the Runs tab and wait for the status line to name its generator."""
    page.tab("Runs")
    page.choose("runs", run)
    page.click("#open_run")
    page.wait(lambda: kind in page.text("status"), f"the page did not open {run} ({kind})")


def moves_every_noise_control(page: Page, shown: tuple[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """The controls every noise generator has, each moved once on the page: the seed (and back: the same picture
    again), the number of samples, EMA or not, the truncation threshold, then the interpolation's second seed and
    steps. Returns the samples picture last shown."""

    def other(elem_id: str, a: float, b: float) -> float:
        return b if float(page.element(f"#{elem_id} input[type=number]").get_attribute("value") or 0) == a else a

    seed = int(other("seed", 0, 1))
    moved = page.changed("samples", shown, lambda: page.type_number("seed", seed))
    page.type_number("seed", 1 - seed)
    again = page.picture("samples", other_than=moved[0])
    assert np.array_equal(again[1], shown[1])  # the same seed, the same picture
    step = page.changed("samples", again, lambda: page.type_number("n", other("n", 8, 12)))
    step = page.changed("samples", step, lambda: page.click("#ema input[type=checkbox]"))
    step = page.changed("samples", step, lambda: page.type_number("trunc", other("trunc", 0.5, 0.8)))
    page.tab("Interpolation")
    walk = page.changed("walk", page.picture("walk"), lambda: page.type_number("seed_b", other("seed_b", 7, 8)))
    page.changed("walk", walk, lambda: page.type_number("steps", other("steps", 4, 5)))
    page.tab("Samples")
    return step


def test_every_control_of_four_families_changes_the_picture_in_a_browser(page: Page) -> None:
    """Moved as a person moves them, each control changes the picture; the same seed draws the same picture again.
    The screenshots of README are taken here (to ``$GANFORGE_SCREENSHOTS`` when set)."""
    shots = os.environ.get("GANFORGE_SCREENSHOTS")
    page.wait(
        lambda: "conditional/checkpoints/last.ckpt: DCGANGenerator, conditional on 10 classes" in page.text("status"),
        "the given checkpoint did not open",
    )
    shown = moves_every_noise_control(page, page.picture("samples"))
    shown = page.changed("samples", shown, lambda: page.choose("label", "3"))

    open_run(page, "stylegan2", "StyleGAN2Generator")
    page.tab("Samples")
    shown = moves_every_noise_control(page, page.picture("samples", other_than=shown[0]))
    shown = page.changed("samples", shown, lambda: page.type_number("psi", 0.5))
    page.tab("Style mixing")
    mixed = page.changed("mix", page.picture("mix"), lambda: page.radio("band", "fine"))
    page.changed("mix", mixed, lambda: page.type_number("mix_seed", 5))
    if shots:
        page.screenshot(Path(shots) / "explorer_stylegan2.png")

    open_run(page, "infogan", "CodedGenerator")
    page.tab("Samples")
    shown = moves_every_noise_control(page, page.picture("samples", other_than=shown[0]))
    shown = page.changed("samples", shown, lambda: page.choose("cat0", "3"))
    shown = page.changed("samples", shown, lambda: page.type_number("cont0", 0.8))
    page.changed("samples", shown, lambda: page.type_number("cont1", -0.8))

    open_run(page, "cyclegan", "translates both ways")
    page.tab("Translate")
    page.click("#translate_pick button.thumbnail-item")
    there = page.picture("translate_out")
    page.changed("translate_out", there, lambda: page.radio("direction", "B → A"))
    page.element("#translate_pick button.thumbnail-item")  # domain B's test images, for the screenshot
    if shots:
        page.screenshot(Path(shots) / "explorer_cyclegan.png")

    open_run(page, "bigan", "encoder")
    page.tab("Encode")
    page.click("#encode_pick button.thumbnail-item")
    assert page.picture("encode_out")[1].shape[1] > page.picture("encode_out")[1].shape[0]  # x beside G(E(x))
    page.wait(lambda: page.element("#code textarea").get_attribute("value"), "E(x) is not shown")


def test_the_run_browser_shows_a_runs_config_diff_and_refuses_a_forged_checkpoint(page: Page, outputs: Path) -> None:
    page.tab("Runs")
    page.choose("runs", "conditional")
    page.wait(lambda: "model.conditional" in page.text("preview_diff"), "the run's config diff is not shown")
    assert page.picture("preview_curves")[1].ndim == 3
    with pytest.raises(CheckpointError) as safe:
        load_checkpoint(outputs / "forged" / "checkpoints" / "last.ckpt")
    open_run(page, "forged", "refused")
    assert str(safe.value) in page.text("status")


def test_the_server_listens_on_loopback_only_and_serves_no_other_file(
    server: tuple[str, subprocess.Popen[str]], outputs: Path
) -> None:
    url, process = server
    listening = {c.laddr.ip for c in psutil.Process(process.pid).net_connections("inet") if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}
    secret = outputs.parent / "secret.txt"
    secret.write_text("not for the page")
    for path in (secret, Path("/etc/hostname")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert refused.value.code in (403, 404)


def test_the_command_says_what_it_does_and_refuses_what_it_cannot_serve(
    server: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    command = str(BIN / "ganforge-explore")
    shown = run(command, "--help", cwd=tmp_path).stdout
    assert shown.startswith("ganforge-explore: a local web page") and "host: 127.0.0.1" in shown
    assert_clean_error(run(command, cwd=tmp_path), "ganforge-explore: error: runs='outputs' is no folder and no ckpt=")
    taken = server[0].rstrip("/").rsplit(":", 1)[1]
    (tmp_path / "outputs").mkdir()
    assert_clean_error(run(command, f"port={taken}", cwd=tmp_path), f"cannot listen on 127.0.0.1:{taken}")
