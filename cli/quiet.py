"""Third-party noise kept off the CLI's stderr: the libraries' warnings (transformers'
FutureWarnings, PEFT's rank_pattern and other UserWarnings) and their log lines below ERROR
(bitsandbytes' kernels message on every job). `adapters -v` or ADAPTERS_DEBUG=1 shows them.
Errors are never hidden: exceptions are not warnings, and log records at ERROR and above pass."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

LIBRARIES = ("transformers", "peft", "bitsandbytes", "accelerate", "torch", "huggingface_hub", "safetensors")


def quiet_libraries() -> Callable[[], None]:
    """Silence the libraries' warnings and sub-ERROR logs (before they import); returns what
    restores the warning filters and log levels (an in-process caller, tests, runs many commands)."""
    saved_filters = list(warnings.filters)
    saved_levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    pattern = r"(" + "|".join(LIBRARIES) + r")(\..*)?$"
    # `module` matches the module a warning is attributed to; a library's deprecation warnings
    # point at their caller (a stacklevel), hence FutureWarning by category.
    warnings.filterwarnings("ignore", module=pattern)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # transformers sets its root logger's level at import from this variable.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)

    def restore() -> None:
        warnings.filters[:] = saved_filters  # type: ignore[index]
        warnings._filters_mutated()  # type: ignore[attr-defined]
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)

    return restore


def wanted(verbose: bool) -> bool:
    """Whether the libraries' noise is shown: -v, or ADAPTERS_DEBUG set."""
    return verbose or bool(os.environ.get("ADAPTERS_DEBUG"))
