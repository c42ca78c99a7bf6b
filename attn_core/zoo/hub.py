"""Weights from the Hugging Face Hub: downloads with a progress bar into the standard cache, resumable, with errors
that name the repo and say what to do. ``huggingface_hub`` does the HTTP (ETag, resume, cache layout); this module
only decides what to fetch and turns its exceptions into one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_VALUES = ("1", "true", "yes", "on")
# Set once by a caller that found the Hub unreachable (the app at launch): from then on everything behaves as with
# HF_HUB_OFFLINE=1 (no download is attempted, nothing is promised), instead of each request retrying for ~25 s.
_unreachable: dict[str, str] = {}


class HubError(RuntimeError):
    """A download that did not happen; the message names the repo, the file, the reason and what to do."""


def offline_reason() -> str | None:
    """Why no download may be attempted (the user asked for offline mode), or None."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in OFFLINE_VALUES:
            return f"offline mode is on ({variable}={os.environ[variable]})"
    return _unreachable.get("reason")


def treat_as_offline(reason: str | None) -> None:
    """Behave as offline from now on, for ``reason`` (e.g. the Hub did not answer at launch); None undoes it."""
    if reason is None:
        _unreachable.pop("reason", None)
    else:
        _unreachable["reason"] = reason


def endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def cached_file(repo_id: str, filename: str) -> Path | None:
    """A file of ``repo_id`` (main revision) in the local Hugging Face cache, or None; never makes a request."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    return Path(cached) if isinstance(cached, str) else None


def download(repo_id: str, filename: str, *, fallback: str | None = None, required: bool = True) -> Path | None:
    """``hf_hub_download`` with a progress bar on stderr; a dropped connection is resumed (HTTP Range) within the call.

    Args:
        fallback: another file of the repo to fetch when ``filename`` does not exist there (404 on the file).
        required: False for optional files: a missing one returns None instead of raising.
    """
    from huggingface_hub import errors, hf_hub_download

    reason = offline_reason()
    if reason:
        cached = cached_file(repo_id, filename)
        if cached is not None or not required:
            return cached
        raise HubError(f"{repo_id}/{filename} is not in the local Hugging Face cache and {reason}. Unset it to "
                       f"download, or copy a cache that holds it (HF_HOME), or pass --weights FILE.")
    where = f"{repo_id} on {endpoint()}"
    try:
        return Path(hf_hub_download(repo_id, filename))
    except errors.GatedRepoError:
        raise HubError(f"{where} is gated: accept its terms on its Hub page with your account, then log in "
                       f"(`hf auth login` or HF_TOKEN) and run again.") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{where} was not found (404), or it is private and needs a login (401): check the name, "
                       f"or log in (`hf auth login` or HF_TOKEN).") from None
    except errors.LocalEntryNotFoundError as error:  # before EntryNotFoundError: it is a subclass
        # huggingface_hub raises this when the Hub cannot be reached and nothing is cached.
        raise HubError(f"{where} could not be reached and {filename} is not cached ({_cause(error)}). Check the "
                       f"connection (or HF_ENDPOINT) and run again.") from None
    except (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError):
        if fallback:
            return download(repo_id, fallback, required=required)
        if not required:
            return None
        raise HubError(f"{where} has no file {filename} (404).") from None
    except errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", "?")
        raise HubError(f"{where} answered HTTP {status} for {filename}: {str(error).splitlines()[0][:200]}") from None
    except (OSError, ValueError, *_transport_errors()) as error:
        # Dropped connections, timeouts, a short read. huggingface_hub already resumed a dropped connection with
        # HTTP Range requests within this run (up to 5 times); a download that still failed leaves no partial file
        # in the cache (it writes to a temporary file and moves it into place only when complete).
        raise HubError(f"the download of {filename} from {where} was interrupted ({type(error).__name__}: "
                       f"{str(error)[:200]}). Nothing incomplete was cached; run the same command again to retry.") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's transport errors (huggingface_hub 2.x uses ``httpx2``, 1.x ``httpx``, older ``requests``)."""
    import importlib

    found = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _cause(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return f"{type(cause).__name__}: {str(cause)[:160]}" if cause else str(error)[:200]


def check_reachable(repo_id: str, timeout: float = 4.0) -> str | None:
    """None when the Hub answers for ``repo_id``; otherwise the reason (offline mode, no connection, 404/401)."""
    reason = offline_reason()
    if reason:
        return reason
    from huggingface_hub import HfApi, errors

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except errors.RepositoryNotFoundError:
        return f"{repo_id} was not found on {endpoint()} (404 or 401)"
    except errors.HfHubHTTPError as error:
        return f"{endpoint()} answered HTTP {getattr(getattr(error, 'response', None), 'status_code', '?')}"
    except Exception as error:  # connection refused, DNS failure, timeout: the Hub is not reachable from here
        return f"the Hub at {endpoint()} is not reachable ({type(error).__name__})"
    return None


def unreachable_reason(repo_id: str, timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached at all (connection refused, DNS, timeout), or None when it answered anything:
    its answers (404, gated) are left to :func:`download`, which names them."""
    from huggingface_hub import HfApi, errors

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except errors.HfHubHTTPError:
        return None
    except Exception as error:
        return f"the Hub at {endpoint()} is not reachable ({type(error).__name__})"
    return None
