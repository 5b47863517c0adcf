"""README's families table (issue 33, item 15): rendered from docs/families.yaml, which must agree with the
experiment configs, benchmarks/RESULTS.md, docs/images/ and the README's own headings. Each check is also shown
failing on a mutated copy, so that none of them passes vacuously."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "families_table.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("families_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


ft = _load_script()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(ft.FAMILIES.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def repo() -> dict[str, Any]:
    return {
        "experiments": ft.experiment_names(),
        "results": ft.RESULTS.read_text(encoding="utf-8"),
        "readme": ft.README.read_text(encoding="utf-8"),
    }


def problems_of(data: dict[str, Any], repo: dict[str, Any], **changes: Any) -> list[str]:
    return ft.problems(ft.parse(data), **{**repo, **changes})


def family(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in data["families"] if f["name"] == name)


# --- the repository as it is -----------------------------------------------------------------------------------


def test_families_yaml_agrees_with_configs_results_images_and_headings(
    raw: dict[str, Any], repo: dict[str, Any]
) -> None:
    assert problems_of(raw, repo) == []


def test_readme_table_is_what_the_script_renders(repo: dict[str, Any]) -> None:
    block = ft.readme_block(repo["readme"])
    assert block is not None, "README.md lacks the families markers"
    assert block == ft.render(ft.load()), "stale families table: run python scripts/families_table.py"


def test_table_opens_the_readme_before_quickstart(repo: dict[str, Any]) -> None:
    readme = repo["readme"]
    assert readme.index(ft.BEGIN) < readme.index("## Quickstart")
    assert [level for level, _ in ft.headings(readme.split(ft.BEGIN)[0])] == [1, 2]  # title, the table's heading


def test_every_experiment_config_is_one_row_of_the_table(repo: dict[str, Any]) -> None:
    fams = ft.load()
    listed = [e for f in fams.families for e in f.experiments + f.presets]
    assert sorted(listed) == sorted(repo["experiments"])
    block = ft.readme_block(repo["readme"])
    for exp in repo["experiments"]:
        assert f"`{exp}`" in block


def test_check_mode_passes_on_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_headline_shows_the_quoted_values_the_protocol_and_the_results_link() -> None:
    fams = ft.load()
    table = ft.render(fams)
    for fam in fams.families:
        row = next(line for line in table.splitlines() if line.startswith(f"| [{fam.name}](#{fam.section})"))
        if fam.headline is None:
            assert f"| {ft.NOT_MEASURED} |" in row
            continue
        for fig in fam.headline.figures:
            assert fig.quoted.value in row
        assert fams.protocols[fam.headline.protocol].name in row
        assert f"benchmarks/RESULTS.md#{ft.slug(fam.headline.figures[0].quoted.results)}" in row


# --- each check fails when it should ---------------------------------------------------------------------------


def test_a_missing_experiment_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "SAGAN (+ conditional)")["presets"].remove("celeba64_sagan")
    assert problems_of(data, repo) == [
        "experiment 'celeba64_sagan' (conf/experiment/celeba64_sagan.yaml) is missing from docs/families.yaml"
    ]
    # ... and a new config nobody added to the table
    found = problems_of(raw, repo, experiments=repo["experiments"] | {"fmnist_newgan"})
    assert found == [
        "experiment 'fmnist_newgan' (conf/experiment/fmnist_newgan.yaml) is missing from docs/families.yaml"
    ]


def test_an_experiment_listed_twice_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "DCGAN")["experiments"].append("fmnist_sagan")
    assert problems_of(data, repo) == [
        "experiment 'fmnist_sagan' is listed twice ('DCGAN' and 'SAGAN (+ conditional)')"
    ]


def test_a_listed_experiment_that_does_not_exist_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "CycleGAN")["presets"].append("horse2zebra_cyclegan")
    assert problems_of(data, repo) == [
        "CycleGAN: experiment 'horse2zebra_cyclegan' does not exist (no conf/experiment/horse2zebra_cyclegan.yaml)"
    ]


def test_a_figure_not_verbatim_in_its_results_section_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    headline = family(data, "DCGAN")["headline"]
    fig = headline["figures"][0]
    value = fig["value"]  # e.g. 0.793: forged as 0.794
    forged = value[:-1] + str((int(value[-1]) + 1) % 10)
    fig["value"], fig["quote"] = forged, fig["quote"].replace(value, forged)
    [problem] = problems_of(data, repo)
    assert f"is not verbatim in RESULTS.md's section '{headline['results']}'" in problem

    # the value must be in its own quote, as a whole number (0.79 is not 0.793)
    data = copy.deepcopy(raw)
    family(data, "DCGAN")["headline"]["figures"][0]["value"] = value[:-1]
    [problem] = problems_of(data, repo)
    assert f"the figure '{value[:-1]}' is not in its quote" in problem

    # a row of another section does not count: pix2pix's row quoted as if it were in the wall-time section
    data = copy.deepcopy(raw)
    family(data, "pix2pix (+ L1 baseline)")["headline"]["results"] = "Architectures at a fixed wall time"
    found = problems_of(data, repo)
    assert len(found) == 2 and all("is not verbatim in RESULTS.md's section" in p for p in found)

    # ... and when RESULTS.md changes the figure, the table's check fails
    results = repo["results"].replace("| 6,387 | – | **1.201** |", "| 6,387 | – | **1.2** |")
    [problem] = problems_of(raw, repo, results=results)
    assert problem.startswith("StyleGAN2 (+ ADA, DiffAugment), fmnist_stylegan2 FID: the quote")


def test_a_renamed_results_section_or_protocol_floor_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    results = repo["results"].replace("## Image-to-image (issue 16)", "## Image-to-image")
    found = problems_of(raw, repo, results=results)
    assert len(found) == 5 and all("has no heading 'Image-to-image (issue 16)'" in p for p in found)
    data = copy.deepcopy(raw)
    data["protocols"]["domain-fid"]["floor"]["value"] = "0.0125"
    assert problems_of(data, repo) == [
        "protocol domain-fid, real-data floor: the figure '0.0125' is not in its quote "
        "'The real-data floor under this protocol (test vs train split) is FID 0.0124'"
    ]


def test_a_figure_of_another_familys_experiment_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "DCGAN")["headline"]["figures"][0]["experiment"] = "fmnist_sagan"
    assert problems_of(data, repo) == ["DCGAN: the figure of 'fmnist_sagan' is not one of the family's experiments"]


def test_only_the_exact_words_stand_for_a_missing_figure(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "BiGAN / ALI")["headline"] = "not measured yet"
    fams = ft.parse(data)
    assert ft.problems(fams, **repo) == []
    row = next(line for line in ft.render(fams).splitlines() if line.startswith("| [BiGAN / ALI]"))
    assert "| not measured yet |" in row
    for words in ("TBD", "about 0.7", "not measured"):
        family(data, "BiGAN / ALI")["headline"] = words
        with pytest.raises(ValueError, match="exactly 'not measured yet'"):
            ft.parse(data)


def test_a_missing_thumbnail_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    family(data, "BiGAN / ALI")["thumbnail"] = "docs/images/fmnist_bigan_samples.png"
    assert problems_of(data, repo) == ["BiGAN / ALI: the thumbnail docs/images/fmnist_bigan_samples.png does not exist"]


def test_a_link_to_a_missing_heading_is_reported(raw: dict[str, Any], repo: dict[str, Any]) -> None:
    readme = repo["readme"].replace("## The StyleGAN family and augmentation", "## StyleGAN2")
    assert problems_of(raw, repo, readme=readme) == [
        f"{name}: README.md has no heading with the anchor #the-stylegan-family-and-augmentation"
        for name in ("StyleGAN", "StyleGAN3", "StyleGAN2 (+ ADA, DiffAugment)")
    ]


def test_a_hand_edited_or_stale_readme_table_is_detected(
    repo: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dcgan = next(f for f in ft.load().families if f.name == "DCGAN")
    assert dcgan.headline is not None
    edited = repo["readme"].replace(f"FID **{dcgan.headline.figures[0].quoted.value}**", "FID **0.5**")
    assert edited != repo["readme"]
    assert ft.readme_block(edited) != ft.render(ft.load())
    # --check refuses it; the script rewrites only the block, and leaves a README that --check accepts
    readme = tmp_path / "README.md"
    readme.write_text(edited, encoding="utf-8")
    monkeypatch.setattr(ft, "README", readme)
    assert ft.main(["--check"]) == 1
    assert ft.main([]) == 0
    assert readme.read_text(encoding="utf-8") == repo["readme"]
    assert ft.main(["--check"]) == 0


def test_slugs_follow_github() -> None:
    assert ft.slug("Evaluation: FID, KID, IS, precision/recall") == "evaluation-fid-kid-is-precisionrecall"
    assert ft.slug("Quickstart (fresh Debian/Ubuntu machine, Python ≥ 3.10)") == (
        "quickstart-fresh-debianubuntu-machine-python--310"
    )
    assert ft.slug("Mode collapse: 2-D ring and grid (PacGAN protocol)") == (
        "mode-collapse-2-d-ring-and-grid-pacgan-protocol"
    )
    assert ft.anchors("## A\n```\n## B\n```\n## A\n") == {"a", "a-1"}
