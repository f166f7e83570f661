"""Is a failure "the Hugging Face hub cannot be reached"?

Both hub users, streamed datasets (`cpt/data/readers/hf.py`) and `model.init` downloads
(`cpt/model/hf.py`), turn an unreachable hub into one UserError line pointing at local
copies; every other failure keeps its own message. The libraries wrap the network error, so
the whole cause chain is searched.

Before either calls the hub, `unreachable_reason` probes it once (one HEAD request, a few
seconds at most): the libraries' own retries took 33 s and 11 warning lines to give up.
"""

from __future__ import annotations

import os
from typing import Iterator

PROBE_TIMEOUT_S = 3.0
_probed: dict[str, str] = {}  # endpoint -> "" (it answered) or why not: once per process
OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def unreachable_reason() -> str:
    """Why the hub cannot be used from here ("" if it can): an offline flag, or no answer."""
    from cpt.net import no_answer

    for flag in OFFLINE_FLAGS:
        if os.environ.get(flag, "").lower() in ("1", "true", "yes", "on"):
            return f"offline mode: {flag}=1"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if endpoint not in _probed:
        reason = no_answer(endpoint, PROBE_TIMEOUT_S, method="HEAD")
        _probed[endpoint] = reason and f"{endpoint} did not answer within {PROBE_TIMEOUT_S:g} s: {reason[:80]}"
    return _probed[endpoint]


def is_unreachable(error: BaseException) -> bool:
    """True when `error`, or anything in its cause chain, means the hub could not be reached."""
    network = _network_error_types()
    return any(isinstance(e, network) for e in _causes(error))


def _network_error_types() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the hub could not be reached", across hub/datasets versions."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:  # raised when offline mode is on, or nothing is cached (FileNotFoundError subclass)
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        types += [LocalEntryNotFoundError, OfflineModeIsEnabled]
    except ImportError:
        pass
    try:  # huggingface_hub >= 1 talks through httpx, whose errors are not OSErrors
        from huggingface_hub.utils import httpx

        types.append(httpx.TransportError)
    except (ImportError, AttributeError):
        pass
    try:  # older huggingface_hub / fsspec's HTTP filesystem
        import requests

        types += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:
        pass
    try:
        import aiohttp

        types.append(aiohttp.ClientConnectionError)
    except ImportError:
        pass
    return tuple(types)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
