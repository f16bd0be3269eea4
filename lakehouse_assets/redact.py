"""Credential-free forms of URLs, for everything that logs, stores, raises or shows one.

Why one helper: operators put credentials into URLs (``http://user:pass@mirror``, presigned S3
links, ``?token=`` webhooks), and a URL travels far: run logs, the event log, failure messages,
materialization metadata and the ``source_url`` column every lake reader can read. Each module
that prints or stores a URL passes it through :func:`redact_url` (or a whole message through
:func:`redact_text`); the real URL is used for the request itself and nowhere else.

What is removed: the user-info (``user:pass@`` becomes ``***@``) and the value of every query
parameter whose name says it is a secret (token, key, signature, password, AWS presigning
fields...). Everything else (scheme, host, port, path, other parameters) stays, so a log line
still tells which file or endpoint was meant.

Pure module: no Dagster, no network.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Final

__all__ = ["MASK", "RedactingFilter", "install_log_redaction", "redact_exception", "redact_text", "redact_url", "url_host"]

MASK: Final = "***"

#: Query parameter names (lower case) that are secrets whatever their value.
_SECRET_NAMES: Final = frozenset(
    {
        "key", "apikey", "api_key", "api-key", "access_key", "accesskey", "secret", "secret_key", "secretkey",
        "client_secret", "token", "access_token", "refresh_token", "id_token", "auth", "authorization",
        "password", "passwd", "pass", "pwd", "signature", "sig", "sign", "credential", "credentials",
        "session", "sessionid", "session_id", "code",
        # AWS / GCS / Azure presigned links
        "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
        "x-goog-signature", "x-goog-credential", "googleaccessid",
    }
)
#: Substrings that make any parameter name a secret (``webhook_token``, ``X-Api-Key``...).
_SECRET_PARTS: Final = ("token", "secret", "passw", "signature", "credential", "apikey", "api_key", "api-key",
                        "private")

# scheme://... up to whitespace, quotes, angle brackets or a closing bracket/paren that is not part of a URL.
_URL_RE: Final = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s'"<>`]+""")
# A Python repr of a split URL or a urllib3 message may carry user-info without a scheme: user:pw@host.
_BARE_USERINFO_RE: Final = re.compile(r"""(?<![\w/])([^\s'"<>@/:]+):([^\s'"<>@/]+)@(?=[A-Za-z0-9\[])""")


def _is_secret_name(name: str) -> bool:
    lowered = urllib.parse.unquote_plus(name).strip().lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def _redact_query(query: str) -> str:
    if not query:
        return query
    out = []
    for piece in query.split("&"):
        name, sep, _value = piece.partition("=")
        out.append(f"{name}={MASK}" if sep and _is_secret_name(name) else piece)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` without user-info and without the values of secret query parameters.

    Never raises: a string that does not parse as a URL is returned with any ``user:pass@`` it
    carries masked, so a malformed setting cannot leak through its own error message.
    """
    if not url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _BARE_USERINFO_RE.sub(f"{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    query = _redact_query(parts.query)
    fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """Every URL embedded in ``text`` (error messages, log lines, library exceptions) redacted."""
    if not text or ("://" not in text and "@" not in text):
        return text
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    return _BARE_USERINFO_RE.sub(f"{MASK}@", text) if "@" in text else text


def url_host(url: str | None) -> str:
    """``scheme://host[:port]`` only: how a webhook (whose path itself is the secret) is named anywhere."""
    if not url:
        return "<unset>"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if not host:
        return "<URL without host>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def redact_exception(exc: BaseException) -> BaseException:
    """Redact the messages of ``exc`` and of its whole cause/context chain, in place; returns ``exc``.

    Why in place: libraries (ccxt, requests, urllib3) put the request URL into their exception
    messages, and Dagster records a failure's chained causes too. Scrubbing the chain where the
    exception enters our code keeps the traceback (types, frames) while no message carries a secret.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = tuple(redact_text(a) if isinstance(a, str) else a for a in current.args)
        except (AttributeError, TypeError):  # an exception type with read-only args: leave it
            pass
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return exc


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every URL redacted (for libraries that log request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format: leave it to logging's own error handling
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction(*logger_names: str) -> None:
    """Attach one :class:`RedactingFilter` to each named logger (idempotent).

    Why: ccxt logs ``GET <url>`` at DEBUG and urllib3 logs request lines; an operator raising the log
    level for a diagnosis must not thereby print credentials.
    """
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
