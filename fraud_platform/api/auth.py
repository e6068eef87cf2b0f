"""API keys (stored as SHA-256 hashes only), scopes, and a per-key token-bucket rate limit shared
by every worker process (a GCRA counter in the online store's Redis).

Keys are 32 random bytes (``fraud-platform api-key``), so an unsalted SHA-256 is enough: there is
nothing to brute-force, and the hash is what the configuration and any leaked file hold. A key
entry is ``name:sha256hex[:scope,scope]``; no scopes means every scope.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fraud_platform.infra.online_store import LuaScript

SCOPES = ("decide", "read")


class AuthError(Exception):
    """``status`` is 401 (no or unknown key) or 403 (valid key, scope missing)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    scopes: frozenset[str]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, scopes: tuple[str, ...] = SCOPES) -> tuple[str, str]:
    """(the key to hand out once, the entry to configure)."""
    key = "fpk_" + secrets.token_urlsafe(32)
    return key, f"{name}:{hash_key(key)}:{','.join(scopes)}"


def parse_entries(text: str) -> list[ApiKey]:
    """Entries separated by newlines or semicolons; ``#`` starts a comment."""
    keys = []
    for raw in text.replace(";", "\n").splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3) or len(parts[1]) != 64 or any(c not in "0123456789abcdef" for c in parts[1].lower()):
            raise ValueError(f"API key entry {parts[0]!r}: expected name:sha256hex[:scopes] (64 hex chars)")
        scopes = frozenset(s.strip() for s in parts[2].split(",") if s.strip()) if len(parts) == 3 else frozenset(SCOPES)
        unknown = scopes - set(SCOPES)
        if unknown:
            raise ValueError(f"API key entry {parts[0]!r}: unknown scope(s) {sorted(unknown)}; known: {list(SCOPES)}")
        keys.append(ApiKey(parts[0], parts[1].lower(), scopes or frozenset(SCOPES)))
    return keys


class KeyRing:
    """Looks a presented key up by its hash (constant-time compare) and checks the scope."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = list(keys)

    @classmethod
    def from_config(cls, entries: str | None, file: Path | None) -> "KeyRing":
        text = (entries or "") + "\n" + (file.read_text() if file else "")
        return cls(parse_entries(text))

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None, scope: str) -> ApiKey:
        if not presented:
            raise AuthError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        digest = hash_key(presented)
        match = next((k for k in self._keys if hmac.compare_digest(k.sha256, digest)), None)
        if match is None:
            raise AuthError(401, "unknown API key")
        if scope not in match.scopes:
            raise AuthError(403, f"API key {match.name!r} lacks the {scope!r} scope")
        return match


class RateLimiter:
    """Token bucket per key name: ``rate`` requests/s sustained, ``burst`` at once (this process only:
    :class:`SharedRateLimiter`'s fallback while Redis is unreachable)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """0 if allowed, else the seconds to wait before ``cost`` tokens are available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate

    async def acquire_async(self, key: str, cost: float = 1.0) -> float:
        return self.acquire(key, cost)


# GCRA is a token bucket of ``burst`` tokens refilled at ``rate`` kept as ONE number per key, its
# theoretical arrival time: a request is allowed when the new arrival time is at most ``burst``
# intervals ahead of now. Redis' clock, so every worker and host agrees. Lua functions: the
# decision path's admit-and-read script (``fraud_platform.api.engine``) is built from them too.
GCRA_LUA = """
local function redis_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- 0 when allowed (the key's arrival time moves on), else the microseconds to wait
local function gcra(key, cost, interval, tolerance, now)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local wait = new_tat - tolerance - now
  if wait > 0 then return math.ceil(wait) end
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  return 0
end
"""
# ARGV: us per request (1/rate), tolerance (burst x that), then (key, cost) pairs, checked in order.
_GCRA_SCRIPT = LuaScript(GCRA_LUA + """
local now = redis_now_us()
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 2 do
  out[#out + 1] = gcra(ARGV[i], tonumber(ARGV[i + 1]), interval, tolerance, now)
end
return out
""")


class SharedRateLimiter:
    """The per-key token bucket (``rate`` requests/s, ``burst`` at once) counted in the online
    store's Redis, so N worker processes together allow what one would. Decisions are checked in
    their feature read's round trip, before the read (:meth:`head` and :meth:`limit`, used by the
    engine's admit-and-read script); other requests call :meth:`acquire_async`. When Redis cannot
    be reached, the per-process bucket decides.
    """

    def __init__(self, store, rate: float, burst: int) -> None:
        self.store, self.rate, self.burst = store, rate, float(burst)
        self.local = RateLimiter(rate, burst)
        self.head = [f"{1e6 / rate:.6f}", f"{1e6 / rate * burst:.6f}"]

    def limit(self, key: str, cost: float) -> tuple[str, str]:
        """The script arguments of one check of ``key`` (a cost is capped at ``burst``)."""
        return f"{self.store.prefix}rl:{key}", f"{min(cost, self.burst):g}"

    async def acquire_async(self, key: str, cost: float = 1.0) -> float:
        """0 if allowed, else the seconds to wait before ``cost`` tokens are available."""
        try:
            (reply,) = await self.store.async_client().scripts([(_GCRA_SCRIPT, [], [*self.head, *self.limit(key, cost)])])
        except Exception:  # Redis unreachable: this process' own bucket keeps limiting
            return self.local.acquire(key, min(cost, self.burst))
        return int(reply[0]) / 1e6
