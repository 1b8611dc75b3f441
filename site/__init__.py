"""The site generator: catalog + results snapshot -> Markdown pages and Pareto plots for mkdocs.

- :mod:`mcbench.site.pages`: ``generate(catalog, runs, env, implementations)`` returns every
  generated file; ``write_tree`` writes them to a folder. Pure; nothing here runs a model.
- :mod:`mcbench.site.claims`: the per-claim status.
- :mod:`mcbench.site.sources`: where the inputs come from (``MCBENCH_CATALOG_DIR``,
  ``MCBENCH_RESULTS_DIR``).
- :mod:`mcbench.site.cli`: ``mcbench site build|serve``.

``site/hooks/mcbench_hooks.py`` (an mkdocs hook) calls them at build time.
"""
