"""Remote reads: settings for http://, https:// and s3:// URLs.

A URL is accepted wherever a path is; the C core reads it by byte ranges
through libcurl (see docs/remote.md). These functions set how: timeouts,
retries, the per-file cache, TLS verification and S3 addressing. S3
credentials come from the standard AWS_* environment variables, copied to
the core at import and again before every call given an s3:// URL (the
core itself never reads the environment).
"""
import os
from typing import Dict, Tuple, Union

import torch

_ops = torch.ops.torchfits

# Python name -> (core option, to core units, from core units)
_SETTINGS = {
    "connect_timeout": ("connect_timeout_ms", lambda s: int(round(float(s) * 1000)), lambda v: v / 1000),
    "read_timeout": ("read_timeout_ms", lambda s: int(round(float(s) * 1000)), lambda v: v / 1000),
    "retries": ("remote_retries", int, int),
    "cache_mb": ("remote_cache_mb", int, int),
    "verify_tls": ("verify_tls", lambda b: 1 if b else 0, bool),
    "s3_addressing": ("s3_addressing", lambda s: _ADDRESSING.index(s), lambda v: _ADDRESSING[v]),
    "meta_cache_mb": ("remote_meta_mb", int, int),
    "batch_threads": ("remote_threads", int, int),
}
_ADDRESSING = ("auto", "path", "virtual")

# Core setting <- environment variables, first set wins.
_AWS = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
}
_aws_sent: Dict[str, Union[str, None]] = {}

SCHEMES: Tuple[str, ...] = ("http://", "https://", "s3://")


def is_url(path: str) -> bool:
    """Whether the core reads `path` as a URL (http://, https://, s3://)."""
    return isinstance(path, str) and path.startswith(SCHEMES)


def sync_aws_environment() -> None:
    """Copy the AWS_* variables to the core where they changed."""
    for key, names in _AWS.items():
        value = next((os.environ[n] for n in names if os.environ.get(n)), None)
        if _aws_sent.get(key, "") != value:
            _ops.set_remote_config(key, value)
            _aws_sent[key] = value


def set_remote(**settings) -> Dict[str, object]:
    """Set how URLs are read; returns the previous settings (all of them).

    connect_timeout (seconds, 10), read_timeout (seconds without progress
    before a transfer fails, 30; whole seconds), retries (of a 5xx answer or
    a broken connection, 3, backoff 0.1 s doubling), cache_mb (bytes kept
    per open file, 64), verify_tls (True), s3_addressing ("auto": virtual-
    host style on AWS, path style for a custom AWS_ENDPOINT_URL; "path";
    "virtual"), meta_cache_mb (MiB of what opens learnt about URLs, kept
    across opens so a later open of the same URL sends only its data
    request, conditional on the version; 16; 0 turns it off and empties
    it), batch_threads (threads that open the URLs of one batch at once,
    16). Affects files opened after the call."""
    previous = remote_settings()
    for name, value in settings.items():
        if name not in _SETTINGS:
            raise TypeError(f"set_remote() got an unknown setting {name!r} "
                            f"(settings: {', '.join(_SETTINGS)})")
        option, to_core, _ = _SETTINGS[name]
        try:
            core = to_core(value)
        except (ValueError, TypeError):
            raise ValueError(f"set_remote(): {name}={value!r} is not valid") from None
        if core < 0:
            raise ValueError(f"set_remote(): {name} must be >= 0, got {value!r}")
        _ops.set_option(option, core)
    return previous


def remote_settings() -> Dict[str, object]:
    """The current remote settings (see set_remote)."""
    return {name: from_core(_ops.get_option(option))
            for name, (option, _, from_core) in _SETTINGS.items()}


def remote_stats(reset: bool = False) -> Dict[str, int]:
    """Requests made and bytes received by remote reads in this process
    since import (or the last reset=True, which zeroes them)."""
    requests, nbytes = _ops.remote_stats(bool(reset))
    return {"requests": int(requests), "bytes": int(nbytes)}


def shown(path: str) -> str:
    """A path as messages show it: a URL without user:password@ and with
    its query as "?..." (the core does the same), anything else as is."""
    if not is_url(path):
        return path
    scheme, _, rest = path.partition("://")
    cut = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    host = host.rpartition("@")[2]
    for mark in ("?", "#"):
        if mark in tail:
            tail = tail[:tail.index(mark)] + "?..."
            break
    return f"{scheme}://{host}{tail}"
