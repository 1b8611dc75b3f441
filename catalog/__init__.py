"""The paper catalog: BibTeX + YAML records under ``catalog/``, loaded and validated.

    from mcbench.catalog import load_catalog
    cat = load_catalog()                 # raises CatalogError("path:line: field: message" lines)
    problems = validate()                # load + registry cross-check, as a list (empty = valid)

See ``catalog/README.md`` for the data format.
"""
from mcbench.catalog.loader import DEFAULT_ROOT, load_catalog, load_with_problems
from mcbench.catalog.model import (
    CATALOG_FAMILIES, MEASURES, STATUSES, Catalog, CatalogError, Claim, Compare, Paper,
)
from mcbench.catalog.registry_check import check_registry, validate

__all__ = [
    "CATALOG_FAMILIES", "DEFAULT_ROOT", "MEASURES", "STATUSES", "Catalog", "CatalogError", "Claim", "Compare",
    "Paper", "check_registry", "load_catalog", "load_with_problems", "validate",
]
