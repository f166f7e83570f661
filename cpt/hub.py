"""Is a failure "the Hugging Face hub cannot be reached"?

Both hub users, streamed datasets (`cpt/data/readers/hf.py`) and `model.init` downloads
(`cpt/model/hf.py`), turn an unreachable hub into one UserError line pointing at local
copies; every other failure keeps its own message. The libraries wrap the network error, so
the whole cause chain is searched.
"""

from __future__ import annotations

from typing import Iterator


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
