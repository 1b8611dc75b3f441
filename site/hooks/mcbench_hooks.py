"""mkdocs hook: generate the catalog and leaderboard pages at build time.

Everything under ``catalog/``, ``leaderboard/`` and ``tags.md`` in the built site comes from
``mcbench.site`` (inputs: ``MCBENCH_CATALOG_DIR`` / ``MCBENCH_RESULTS_DIR``, defaulting to the
repository's ``catalog/`` and ``results/snapshot/``). Nothing generated is written into ``site/docs``.
Hand-written pages may hold ``<!-- mcbench:environment -->`` or ``<!-- mcbench:overview -->`` markers.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from mcbench.site import pages as sitegen_pages
from mcbench.site import sources

log = logging.getLogger("mkdocs.hooks.mcbench")
MARKER = re.compile(r"<!--\s*mcbench:([a-z_]+)\s*-->")
_state: dict = {}


def on_config(config, **kwargs):
    from mcbench.catalog.model import CatalogError

    try:
        inputs = sources.load_inputs()
    except CatalogError as exc:
        raise PluginError(f"the catalog in {sources.catalog_dir()} is invalid:\n" + "\n".join(exc.problems)) from None
    except (ValueError, OSError) as exc:
        raise PluginError(f"cannot read the site's inputs: {exc}") from None
    label = _label(inputs.results_dir)
    try:
        generated = sitegen_pages.generate(inputs.catalog, inputs.runs, inputs.env, inputs.implementations,
                                           repo_url=config.repo_url, results_label=label,
                                           results_files=sources.results_files(inputs.results_dir),
                                           complexity=inputs.complexity)
    except (KeyError, ValueError) as exc:  # e.g. a snapshot lacking result-row columns
        raise PluginError(f"cannot render the results snapshot in {inputs.results_dir}: {exc!r}") from None
    _state["generated"] = generated
    _state["watch"] = [sources.catalog_dir(), inputs.results_dir]
    if inputs.runs is None:
        log.info("mcbench: no results snapshot in %s; claims show 'not yet run'", inputs.results_dir)
    config.nav = _expand_nav(config.nav, generated)
    return config


def _label(folder: Path | None) -> str:
    if folder is None:
        return "results/snapshot"
    try:
        return folder.relative_to(sources.REPO_ROOT).as_posix()
    except ValueError:
        return folder.name


def _expand_nav(nav, generated):
    """Replace the nav entries pointing at the generated section indexes with the generated sections."""
    if nav is None:
        return None
    sections = {"catalog/index.md": generated.nav_catalog, "leaderboard/index.md": generated.nav_leaderboard}
    out = []
    for item in nav:
        if isinstance(item, dict) and len(item) == 1:
            (title, value), = item.items()
            if isinstance(value, str) and value in sections:
                out.append({title: sections[value]})
                continue
        out.append(item)
    return out


def on_files(files: Files, config, **kwargs):
    for rel, content in _state["generated"].files.items():
        if files.get_file_from_path(rel) is not None:
            raise ValueError(f"site/docs/{rel} exists but is generated at build time; remove it from site/docs")
        files.append(File.generated(config, rel, content=content))
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.generated_by is not None:
        return markdown
    snippets = _state["generated"].snippets

    def fill(m):
        name = m.group(1)
        if name not in snippets:
            log.warning("mcbench: unknown marker <!-- mcbench:%s --> in %s", name, page.file.src_uri)
            return m.group(0)
        return snippets[name]

    return MARKER.sub(fill, markdown)


def on_serve(server, config, builder, **kwargs):
    for path in _state.get("watch", []):
        if path is not None and Path(path).exists():
            server.watch(str(path))
    return server
