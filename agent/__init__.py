"""dairy-edge: the edge agent for dairy barns.

The package reads as a pipeline, one sub-package per stage:

    sources -> ingest -> detect -> store -> sync  ->  central
                                   web (status page) and cli at the edges,
                                   runtime wires the parts together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
