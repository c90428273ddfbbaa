"""What is checked before a connection is served: its Origin, its rate, and Twilio's signature.

- **Origin** (websockets): a browser always sends it, so a page on another site cannot open a
  socket with a token it stole or guessed. Same-origin pages and the origins in
  ``COACH_SERVER__ALLOWED_ORIGINS`` pass; clients that send no Origin (telephony, scripts) pass.
- **Rate**: at most ``connections_per_minute`` websocket connections and API requests from one
  client address in any 60 s; beyond, 4429 (websocket) or 429 (HTTP).
- **Twilio signature**: with ``COACH_TWILIO_AUTH_TOKEN`` set, ``/ws/twilio`` checks
  ``X-Twilio-Signature`` (base64 HMAC-SHA1 of the stream's URL, keyed with the auth token), the way
  Twilio signs every request it makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque
from urllib.parse import urlsplit, urlunsplit

TOO_MANY = 4429  # websocket close code: too many connections or calls


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """May a websocket with this ``Origin`` header talk to the server at ``host``?"""
    if origin is None:
        return True  # not a browser: telephony platforms and scripts send none
    if "*" in allowed:
        return True
    parts = urlsplit(origin.strip())
    if parts.scheme in ("http", "https") and host and parts.netloc.lower() == host.strip().lower():
        return True  # the page came from this server
    return origin.strip().rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}


class RateLimiter:
    """Connections per client address in a sliding 60 s window (0: no limit)."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str | None) -> bool:
        if self.per_minute <= 0:
            return True
        now = self.clock()
        key = address or "?"
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - 60.0:
            seen.popleft()
        if len(seen) >= self.per_minute:
            return False
        seen.append(now)
        if len(self._seen) > 10000:  # forget addresses gone quiet, so the table cannot grow without bound
            for stale in [k for k, v in self._seen.items() if not v or v[-1] <= now - 60.0]:
                del self._seen[stale]
        return True


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's request signature: the URL, then each POST parameter's name and value in name order."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_signature_valid(auth_token: str, signature: str, urls: list[str]) -> bool:
    """Whether ``signature`` signs any of ``urls`` (the stream's URL as Twilio may have written it:
    behind a TLS proxy the server sees ``ws://`` where Twilio used ``wss://``, and a default port
    may or may not be written)."""
    candidates: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        schemes = {parts.scheme, {"ws": "wss", "http": "https"}.get(parts.scheme, parts.scheme)}
        for scheme in schemes:
            netlocs = {parts.netloc}
            if parts.port in (80, 443):
                netlocs.add(host)
            elif parts.port is None:
                netlocs.add(f"{host}:{443 if scheme in ('wss', 'https') else 80}")
            for netloc in netlocs:
                candidates.append(urlunsplit((scheme, netloc, parts.path, parts.query, "")))
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:  # a base64 signature is ASCII: anything else is not one
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, url).encode(), given) for url in dict.fromkeys(candidates))


SECURITY_HEADERS = {
    # the pages load their own scripts and styles only; websockets and media from this server
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # the pages carry their token in their own URL: never send it on as a Referer
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
