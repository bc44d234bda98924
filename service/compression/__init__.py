"""Compression jobs: prune a published version (FPGM by default), fine-tune, check, publish.

Importable without torch: the CLI and the API validate method names against ``METHOD_NAMES``,
the same table ``service.compression.importance`` builds its criteria over.
"""

METHOD_NAMES: tuple[str, ...] = ("fpgm", "l1", "random", "tp_fpgm")
