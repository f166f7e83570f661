"""Does a server answer at an address? One request with a bounded wait: the libraries' own
retries (MLflow's client, the Hugging Face hub's) take half a minute to minutes to give up."""

from __future__ import annotations


def no_answer(url: str, timeout_s: float, method: str = "GET") -> str:
    """"" if the server answered (any HTTP status, even an error, is an answer), else why not."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return ""
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", None) or e)
    return ""
