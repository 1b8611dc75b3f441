"""Package layout only (metadata lives in pyproject.toml).

The repository keeps its design's top-level folders (``methods/``, ``benchmarks/``,
``catalog/``), but installed they live under one distinctive namespace, so mcbench
puts no generic top-level package into site-packages:

    methods/     -> mcbench.methods      (algorithms only)
    benchmarks/  -> mcbench.benchmarks   (harness: data, training, measuring, store, CLI)
    catalog/     -> mcbench.catalog      (the records as package data, and the code that loads them)
    site/        -> mcbench.site         (mkdocs sources and the generator; no clash with stdlib ``site``)
"""
from setuptools import find_packages, setup

ROOTS = {"mcbench.methods": "methods", "mcbench.benchmarks": "benchmarks", "mcbench.catalog": "catalog",
         "mcbench.site": "site"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder, exclude=["docs*", "hooks*"])]

setup(
    packages=packages,
    package_dir=ROOTS,
    package_data={"mcbench.catalog": ["README.md", "papers/*.yaml", "papers/*.bib", "settings/*.yaml", "reading_lists.yaml", "tags.yaml"],
                  "mcbench.site": ["mkdocs.yml", "docs/*.md", "docs/*/*", "hooks/*.py", "overrides/partials/*.html"]},
    include_package_data=False,
)
