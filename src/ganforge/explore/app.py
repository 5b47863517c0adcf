"""The explorer's page: Gradio controls for what a checkpoint's :class:`~ganforge.explore.drawing.Controls` say it
takes, pictures from :class:`~ganforge.explore.drawing.Explorer`, and a browser over the runs under one folder.

Every control exists once on the page and is shown or hidden per checkpoint (InfoGAN's codes up to
:data:`MAX_CATEGORICAL` and :data:`MAX_CONTINUOUS`; more stay random), so that one set of events serves every family.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from omegaconf import DictConfig

from ganforge.errors import ConfigError, GanforgeError
from ganforge.explore import runs as run_folder
from ganforge.explore.drawing import BANDS, Controls, Draw, Explorer
from ganforge.explore.runs import Library, checkpoint_of, default_config, inside
from ganforge.kept_images import COUNT

MAX_CATEGORICAL = 4
MAX_CONTINUOUS = 8


def choice(value: Any, anything: str) -> int | None:
    """A dropdown's integer choice, or None for its ``anything`` entry ("all", "random")."""
    if value in (None, anything):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{value!r} is no choice here: pick {anything} or a number") from None


def code_values(controls: Controls, categorical: list[Any], continuous: list[Any]) -> tuple[float | None, ...]:
    """InfoGAN's codes as the controls set them: each categorical value (None: random) in order, then each continuous
    one; codes beyond the page's controls stay random."""
    values: list[float | None] = [
        choice(categorical[i], "random") if i < len(categorical) else None for i in range(len(controls.categorical))
    ]
    return (*values, *(float(v) for v in continuous[: controls.continuous]))


def plain(text: object) -> str:
    """``text`` shown as it is in Markdown (``_target_`` and run paths are full of underscores)."""
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", str(text))


def describe(explorer: Explorer, path: Path) -> str:
    """One line about a checkpoint: its generator and what it takes."""
    c, module = explorer.controls, explorer.module
    parts = [f"**{plain(path)}**: {type(module.generator).__name__}"]  # as given, or relative to the runs
    if c.num_classes is not None:
        parts.append(f"conditional on {c.num_classes} classes")
    if c.categorical or c.continuous:
        parts.append(f"codes {list(c.categorical)} categorical, {c.continuous} continuous")
    if c.encoder:
        parts.append(f"encoder ({type(module.game).__name__})")
    if c.translator:
        parts.append("translates " + ("both ways" if c.two_way else "one way"))
    parts.append("EMA generator beside it" if c.ema else "no EMA copy")
    return ", ".join(parts)


def picker(elem_id: str) -> gr.Gallery:
    """A row of test images to click on (read-only: the checkpoint keeps them; hidden where it keeps none)."""
    return gr.Gallery(
        label="or pick a test image", elem_id=elem_id, columns=COUNT, interactive=False, allow_preview=False
    )


def build_app(library: Library, start: str | None, defaults: DictConfig) -> gr.Blocks:
    """The page (a ``gradio.Blocks``), opening ``start`` (a checkpoint path) when it loads."""
    with gr.Blocks(title="ganforge explorer", analytics_enabled=False) as page:
        current = gr.State(start)
        shown = gr.State("samples")  # the picture tab on show
        with gr.Row():
            status = gr.Markdown(elem_id="status")
            ema = gr.Checkbox(True, label="EMA generator", elem_id="ema", visible=False)
        with gr.Row(visible=False) as noise_row:
            seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
            n = gr.Slider(1, 64, value=16, step=1, label="samples", elem_id="n")
            label = gr.Dropdown(
                ["all"], value="all", label="class", elem_id="label", visible=False, allow_custom_value=True
            )
            psi = gr.Slider(0, 1, value=1, step=0.05, label="truncation ψ (1: none)", elem_id="psi", visible=False)
            threshold = gr.Slider(
                0, 3, value=0, step=0.1, label="truncation threshold on |z| (0: none)", elem_id="trunc"
            )
        with gr.Row():
            categorical = [
                gr.Dropdown(
                    ["random"],
                    value="random",
                    label=f"code {i}",
                    elem_id=f"cat{i}",
                    visible=False,
                    allow_custom_value=True,
                )
                for i in range(MAX_CATEGORICAL)
            ]
            continuous = [
                gr.Slider(-1, 1, value=0, step=0.1, label=f"code c{i}", elem_id=f"cont{i}", visible=False)
                for i in range(MAX_CONTINUOUS)
            ]
        with gr.Tabs():
            with gr.Tab("Samples", visible=False) as samples_tab:
                samples = gr.Image(label="samples", elem_id="samples", format="png", interactive=False)
            with gr.Tab("Interpolation", visible=False) as walk_tab:
                with gr.Row():
                    seed_b = gr.Number(1, label="to seed", precision=0, elem_id="seed_b")
                    steps = gr.Slider(2, 16, value=8, step=1, label="steps", elem_id="steps")
                walk = gr.Image(label="interpolation", elem_id="walk", format="png", interactive=False)
            with gr.Tab("Style mixing", visible=False) as mix_tab:
                with gr.Row():
                    mix_seed = gr.Number(1, label="styles from seed", precision=0, elem_id="mix_seed")
                    band = gr.Radio(list(BANDS), value="coarse", label="styles taken", elem_id="band")
                mix = gr.Image(label="rows: seed, second seed, mixed", elem_id="mix", format="png", interactive=False)
            with gr.Tab("Encode", visible=False) as encode_tab:
                with gr.Row():
                    encode_in = gr.Image(label="x", type="numpy", sources=["upload"], elem_id="encode_in")
                    encode_pick = picker("encode_pick")
                encode_out = gr.Image(label="x and G(E(x))", elem_id="encode_out", format="png", interactive=False)
                code = gr.Textbox(label="E(x)", elem_id="code")
            with gr.Tab("Translate", visible=False) as translate_tab:
                with gr.Row():
                    direction = gr.Radio(["A → B", "B → A"], value="A → B", label="direction", elem_id="direction")
                    translate_in = gr.Image(label="input", type="numpy", sources=["upload"], elem_id="translate_in")
                    translate_pick = picker("translate_pick")
                translate_out = gr.Image(label="input and output", elem_id="translate_out", format="png")
            with gr.Tab("Run") as run_tab:
                run_grids = gr.Gallery(
                    label="sample grids over training", columns=6, elem_id="grids", interactive=False
                )
                run_curves = gr.Image(label="metrics over training", elem_id="curves", interactive=False)
                run_protocol = gr.JSON(label="metrics.json", elem_id="protocol")
                run_diff = gr.Markdown(elem_id="diff")
            with gr.Tab("Runs") as runs_tab:
                runs = gr.Dropdown(library.runs(), label=f"runs under {library.root}", elem_id="runs")
                open_run = gr.Button("Open in the explorer", elem_id="open_run")
                preview_curves = gr.Image(
                    label="its metrics over training", elem_id="preview_curves", interactive=False
                )
                preview_diff = gr.Markdown(elem_id="preview_diff")

        shared: list[Any] = [
            seed,
            n,
            ema,
            label,
            psi,
            threshold,
            seed_b,
            steps,
            mix_seed,
            band,
            *categorical,
            *continuous,
        ]
        pictures = [samples, walk, mix]

        def settings(explorer: Explorer, values: list[Any]) -> tuple[Draw, dict[str, Any]]:
            seed_, n_, ema_, label_, psi_, threshold_, seed_b_, steps_, mix_seed_, band_ = values[:10]
            c = explorer.controls
            draw = Draw(
                seed=int(seed_ or 0),
                ema=bool(ema_),
                label=choice(label_, "all") if c.num_classes is not None else None,
                psi=float(psi_) if c.style and psi_ < 1 else None,
                truncation=float(threshold_) if threshold_ else None,
                codes=code_values(c, values[10 : 10 + MAX_CATEGORICAL], values[10 + MAX_CATEGORICAL :]),
            )
            extra = {"n": int(n_), "seed_b": int(seed_b_ or 0), "steps": int(steps_), "mix_seed": int(mix_seed_ or 0)}
            return draw, {**extra, "band": band_}

        def draw_shown(path: str | None, tab: str | None, *values: Any) -> list[Any]:
            """The picture of the tab on show (the others wait until theirs is picked: a change costs one drawing)."""
            if path is None or tab is None:
                return [gr.skip()] * 3
            explorer = library.open(path)
            if explorer.controls.translator or (tab == "mix" and not explorer.controls.style):
                return [gr.skip()] * 3
            try:
                draw, extra = settings(explorer, list(values))
                with library.lock:
                    if tab == "samples":
                        return [explorer.samples(extra["n"], draw), gr.skip(), gr.skip()]
                    if tab == "walk":
                        return [gr.skip(), explorer.interpolation(extra["seed_b"], extra["steps"], draw), gr.skip()]
                    return [gr.skip(), gr.skip(), explorer.mixing(extra["mix_seed"], extra["band"], 4, draw)]
            except GanforgeError as err:
                raise gr.Error(str(err)) from None

        def open_checkpoint(path: str | None) -> dict[Any, Any]:
            hidden = {
                part: gr.update(visible=False)
                for part in (noise_row, samples_tab, walk_tab, mix_tab, encode_tab, translate_tab)
            }
            if path is None:
                return {current: None, status: "Pick a run under **Runs** to explore it.", **hidden, **run_view(None)}
            try:
                explorer = library.open(path)
            except GanforgeError as err:  # a forged, damaged or foreign checkpoint: said in the page
                return {current: None, status: f"**refused**: {plain(err)}", **hidden, **run_view(None)}
            c = explorer.controls
            noise = not c.translator
            updates: dict[Any, Any] = {
                current: path,
                status: describe(explorer, shown_as(Path(path))),
                noise_row: gr.update(visible=noise),
                samples_tab: gr.update(visible=noise),
                walk_tab: gr.update(visible=noise and not c.vectors),
                mix_tab: gr.update(visible=c.style),
                encode_tab: gr.update(visible=c.encoder),
                translate_tab: gr.update(visible=c.translator),
                ema: gr.update(visible=c.ema, value=c.ema),
                label: gr.update(
                    visible=c.num_classes is not None,
                    choices=["all", *map(str, range(c.num_classes or 0))],
                    value="all",
                ),
                psi: gr.update(visible=c.style, value=1),
                direction: gr.update(visible=c.two_way, value="A → B"),
            }
            for i, box in enumerate(categorical):
                values = c.categorical[i] if i < len(c.categorical) else 0
                updates[box] = gr.update(visible=i < len(c.categorical), choices=["random", *map(str, range(values))])
            for i, slider in enumerate(continuous):
                updates[slider] = gr.update(visible=i < c.continuous, value=0)
            picks = explorer.test_images()  # the images the checkpoint keeps (none: only uploads)
            for gallery, reads in ((encode_pick, c.encoder), (translate_pick, c.translator)):
                updates[gallery] = gr.update(value=picks if reads else None, visible=reads and bool(picks))
            run = Path(path).resolve().parent.parent
            return {**updates, **run_view(run if run.is_relative_to(library.root.resolve()) else None)}

        def diff_table(run: Path) -> str:
            """The run's config diff against the defaults as a Markdown table."""
            try:
                rows = run_folder.config_diff(run_folder.run_config(run), defaults)
            except GanforgeError as err:  # a forged checkpoint's config is not read
                return f"**config diff refused**: {plain(err)}"
            lines = [f"| {plain(key)} | {plain(default)} | {plain(value)} |" for key, default, value in rows]
            header = (
                "**Config diff** against ganforge-train's defaults\n\n| setting | default | this run |\n|---|---|---|"
            )
            return "\n".join([header, *lines]) if lines else "The run's config is ganforge-train's defaults."

        def shown_as(path: Path) -> Path:
            """A checkpoint's path relative to the runs' folder when it lies in it, else as given."""
            resolved, root = path.resolve(), library.root.resolve()
            return resolved.relative_to(root) if resolved.is_relative_to(root) else path

        def run_view(run: Path | None) -> dict[Any, Any]:
            if run is None:
                return {run_grids: None, run_curves: None, run_protocol: None, run_diff: None}
            return {
                run_grids: run_folder.grids(run),
                run_curves: run_folder.curves(run),
                run_protocol: run_folder.protocol(run),
                run_diff: diff_table(run),
            }

        def preview(run: str | None) -> tuple[Any, Any]:
            if not run:
                return None, None
            try:
                folder = inside(library.root, library.root / run)
            except ConfigError as err:
                raise gr.Error(str(err)) from None
            return run_folder.curves(folder), diff_table(folder)

        everything = [
            current,
            status,
            noise_row,
            samples_tab,
            walk_tab,
            mix_tab,
            encode_tab,
            translate_tab,
            ema,
            label,
            psi,
        ]
        everything += [direction, *categorical, *continuous, encode_pick, translate_pick]
        everything += [run_grids, run_curves, run_protocol, run_diff]

        def open_selected(run: str | None) -> dict[Any, Any]:
            if not run:
                raise gr.Error("pick a run first")
            try:
                folder = inside(library.root, library.root / run)
                return open_checkpoint(str(checkpoint_of(folder)))
            except ConfigError as err:
                raise gr.Error(str(err)) from None

        drawing = [current, shown, *shared]
        page.load(open_checkpoint, current, everything).then(draw_shown, drawing, pictures)
        open_run.click(open_selected, runs, everything).then(draw_shown, drawing, pictures)
        runs.change(preview, runs, [preview_curves, preview_diff])
        gr.on([control.change for control in shared], draw_shown, drawing, pictures, trigger_mode="always_last")
        for tab, name in (
            (samples_tab, "samples"),
            (walk_tab, "walk"),
            (mix_tab, "mix"),
            (run_tab, None),
            (runs_tab, None),
        ):
            tab.select(lambda name=name: name, None, shown).then(draw_shown, drawing, pictures)
        runs_tab.select(lambda: gr.update(choices=library.runs()), None, runs)  # runs that appeared since

        def picked(path: str | None, way: str, event: gr.SelectData) -> Any:
            return library.open(path).test_images(targets=way == "B → A")[event.index] if path else None

        def encoded(path: str | None, image: np.ndarray | None, ema_: bool) -> tuple[Any, Any]:
            if path is None or image is None:
                return None, ""
            try:
                with library.lock:
                    pair, z = library.open(path).reconstruction(image, ema=bool(ema_))
            except GanforgeError as err:
                raise gr.Error(str(err)) from None
            return pair, np.array2string(z, precision=3, max_line_width=120)

        def translated(path: str | None, image: np.ndarray | None, way: str, ema_: bool) -> Any:
            if path is None or image is None:
                return None
            try:
                with library.lock:
                    return library.open(path).translation(image, inverse=way == "B → A", ema=bool(ema_))
            except GanforgeError as err:
                raise gr.Error(str(err)) from None

        def other_side(path: str | None, way: str) -> Any:
            return library.open(path).test_images(targets=way == "B → A") if path else None

        encode_pick.select(picked, [current, direction], encode_in)
        translate_pick.select(picked, [current, direction], translate_in)
        gr.on([encode_in.change, ema.change], encoded, [current, encode_in, ema], [encode_out, code])
        gr.on(
            [translate_in.change, direction.change], translated, [current, translate_in, direction, ema], translate_out
        )
        direction.change(other_side, [current, direction], translate_pick)
    return page


def explore(cfg: DictConfig) -> None:
    """``ganforge-explore``: serve the page on ``host:port`` until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    root = Path(cfg.runs)
    ckpt = Path(cfg.ckpt) if cfg.ckpt else None
    if ckpt is None and not root.is_dir():
        raise ConfigError(f"runs={cfg.runs!r} is no folder and no ckpt= was given: nothing to explore")
    library = Library(root, ckpt, cfg.device)
    page = build_app(library, str(ckpt) if ckpt else None, default_config())
    print(f"ganforge-explore: http://{cfg.host}:{cfg.port} (Ctrl-C stops it)", flush=True)
    try:
        page.queue().launch(server_name=cfg.host, server_port=cfg.port, share=False, quiet=True, show_error=True)
    except OSError:  # Gradio's own message names its environment variables, not these settings
        raise ConfigError(
            f"cannot listen on {cfg.host}:{cfg.port}: the port is taken or the address is not this machine's; "
            "pick another port= (or host=)"
        ) from None
