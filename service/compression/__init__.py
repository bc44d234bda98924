"""Compression jobs: prune a published version (FPGM by default), fine-tune, check, publish.

Importable without torch: the CLI and the API validate names against these tables, the same
ones ``service.compression.importance`` and ``service.compression.allocation`` build on.
"""

CRITERIA: tuple[str, ...] = ("fpgm", "l1", "random", "tp_fpgm")
"""Channel criteria: which filters of a layer go first."""
SCRATCH = "scratch"
"""Not a criterion: the architecture the FPGM criterion prunes to, re-initialised and trained
with the same budget (Liu et al., ICLR 2019), to show what inheriting the weights is worth."""
METHOD_NAMES: tuple[str, ...] = (*CRITERIA, SCRATCH)
ALLOCATIONS: tuple[str, ...] = ("global", "uniform")
SCHEDULES: tuple[str, ...] = ("linear", "agp")
LR_SCHEDULES: tuple[str, ...] = ("onecycle", "cosine")
