"""Routing policies and fault dice: pure, deterministic, no sockets.

A policy sees a :class:`RequestKey` (session key, client address, pin) and returns the :class:`Upstream` that
answers. Given the seed and the sequence of requests, every choice is reproducible: randomness comes from
``random.Random(seed)`` and hashing from :func:`stable_hash` (never Python's per-process randomized
``hash``). Policies are not thread-safe; the proxy serialises calls to :meth:`Policy.choose`.

=============  ============================================================================================
round-robin    instances in config order, one after another
weighted       a version drawn by weight from ``Random(seed)``, then round-robin within that version
sticky         session key (header, else cookie, else client IP) -> one version for good (stable hash,
               weighted when ``weights`` are given); round-robin within that version
yoyo           per session key, consecutive requests alternate versions (v1, v2, v1 … or a cycle through
               all of them); the first version of a session comes from hash(seed, key); requests without a
               session key alternate globally
pinned         the pin header names a version or an instance; an unknown pin raises :class:`UnknownPin`;
               requests without a pin go to the ``fallback`` policy
=============  ============================================================================================
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import Fault, RouterConfig, Upstream

MAX_SESSIONS = 100_000  # yo-yo session state is bounded (least recently seen sessions are forgotten)


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process and on every machine."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class RequestKey:
    """What a policy may look at: the session key (header, else cookie), the client address, the pin."""

    session: str | None = None
    client: str = ""
    pin: str | None = None


class UnknownPin(LookupError):
    """The pin header names neither a version nor an instance of this router."""

    def __init__(self, pin: str, versions: Sequence[str], instances: Sequence[str]) -> None:
        self.pin = pin
        self.versions = tuple(versions)
        self.instances = tuple(instances)
        super().__init__(
            f"pin {pin!r} names no version or instance here; versions: {', '.join(self.versions)}; "
            f"instances: {', '.join(self.instances)}"
        )


class _Rotor:
    """Round-robin within each version."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.by_version: dict[str, tuple[Upstream, ...]] = {}
        for upstream in upstreams:
            self.by_version[upstream.version] = (*self.by_version.get(upstream.version, ()), upstream)
        self.turn: dict[str, int] = dict.fromkeys(self.by_version, 0)

    def next(self, version: str) -> Upstream:
        boxes = self.by_version[version]
        turn = self.turn[version]
        self.turn[version] = turn + 1
        return boxes[turn % len(boxes)]


class Policy:
    """Base class: ``choose(request) -> Upstream``."""

    name = ""

    def __init__(
        self, upstreams: Sequence[Upstream], *, seed: int = 0, weights: Mapping[str, float] | None = None
    ) -> None:
        if not upstreams:
            raise ValueError("a policy needs at least one upstream")
        self.upstreams = tuple(upstreams)
        self.versions = tuple(dict.fromkeys(u.version for u in self.upstreams))
        self.seed = seed
        self.weights = dict(weights or {})

    def choose(self, request: RequestKey) -> Upstream:
        raise NotImplementedError

    def _cumulative(self) -> list[float]:
        """Cumulative weights per version (no weights: equal; a version without a weight: 0)."""
        total = 0.0
        cumulative = []
        for version in self.versions:
            total += self.weights.get(version, 0.0) if self.weights else 1.0
            cumulative.append(total)
        if total <= 0:
            raise ValueError(f"weights {self.weights!r} give every version weight 0")
        return cumulative


class RoundRobin(Policy):
    name = "round-robin"

    def __init__(
        self, upstreams: Sequence[Upstream], *, seed: int = 0, weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(upstreams, seed=seed, weights=weights)
        self.turn = 0

    def choose(self, request: RequestKey) -> Upstream:
        upstream = self.upstreams[self.turn % len(self.upstreams)]
        self.turn += 1
        return upstream


class Weighted(Policy):
    name = "weighted"

    def __init__(
        self, upstreams: Sequence[Upstream], *, seed: int = 0, weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(upstreams, seed=seed, weights=weights)
        self.rng = random.Random(seed)
        self.cumulative = self._cumulative()
        self.rotor = _Rotor(self.upstreams)

    def choose(self, request: RequestKey) -> Upstream:
        point = self.rng.random() * self.cumulative[-1]
        version = self.versions[bisect.bisect_right(self.cumulative, point)]
        return self.rotor.next(version)


class Sticky(Policy):
    name = "sticky"

    def __init__(
        self, upstreams: Sequence[Upstream], *, seed: int = 0, weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(upstreams, seed=seed, weights=weights)
        self.cumulative = self._cumulative()
        self.rotor = _Rotor(self.upstreams)

    def version_of(self, key: str) -> str:
        """The version a session key sticks to: a stable hash mapped onto the (weighted) versions."""
        point = stable_hash(self.seed, "sticky", key) / 2.0**64 * self.cumulative[-1]
        return self.versions[bisect.bisect_right(self.cumulative, point)]

    def choose(self, request: RequestKey) -> Upstream:
        key = request.session if request.session is not None else request.client
        return self.rotor.next(self.version_of(key))


class Yoyo(Policy):
    name = "yoyo"

    def __init__(
        self, upstreams: Sequence[Upstream], *, seed: int = 0, weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(upstreams, seed=seed, weights=weights)
        self.rotor = _Rotor(self.upstreams)
        self.sessions: OrderedDict[str, int] = OrderedDict()  # key -> next position in the cycle
        self.anonymous = stable_hash(seed, "yoyo") % len(self.versions)

    def first_version(self, key: str) -> str:
        return self.versions[stable_hash(self.seed, "yoyo", key) % len(self.versions)]

    def choose(self, request: RequestKey) -> Upstream:
        count = len(self.versions)
        if request.session is None:
            position = self.anonymous
            self.anonymous = (position + 1) % count
        else:
            key = request.session
            found = self.sessions.pop(key, None)
            position = found if found is not None else stable_hash(self.seed, "yoyo", key) % count
            self.sessions[key] = (position + 1) % count
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return self.rotor.next(self.versions[position])


class Pinned(Policy):
    name = "pinned"

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        fallback: str = "round-robin",
    ) -> None:
        super().__init__(upstreams, seed=seed, weights=weights)
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback {fallback!r} is not one of {sorted(FALLBACKS)}")
        self.fallback = FALLBACKS[fallback](upstreams, seed=seed, weights=weights)
        self.rotor = _Rotor(self.upstreams)
        self.instances = {u.name: u for u in self.upstreams}

    def choose(self, request: RequestKey) -> Upstream:
        pin = request.pin
        if pin is None or not pin.strip():
            return self.fallback.choose(request)
        pin = pin.strip()
        if pin in self.rotor.by_version:
            return self.rotor.next(pin)
        if pin in self.instances:
            return self.instances[pin]
        raise UnknownPin(pin, self.versions, tuple(self.instances))


FALLBACKS: dict[str, type[Policy]] = {
    RoundRobin.name: RoundRobin,
    Weighted.name: Weighted,
    Sticky.name: Sticky,
    Yoyo.name: Yoyo,
}


def make_policy(config: RouterConfig) -> Policy:
    """The policy ``config`` names, in its initial state."""
    if config.policy == Pinned.name:
        return Pinned(config.upstreams, seed=config.seed, weights=config.weights, fallback=config.fallback)
    return FALLBACKS[config.policy](config.upstreams, seed=config.seed, weights=config.weights)


class FaultDice:
    """Seeded fault decisions: one ``Random`` per upstream, so its sequence does not depend on the policy.

    Each request to an upstream with an error or drop rate draws one number ``r`` in [0, 1):
    ``r < drop_rate`` drops the connection, ``r < drop_rate + error_rate`` answers ``error_status``.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rngs: dict[str, random.Random] = {}

    def roll(self, upstream: Upstream, fault: Fault) -> str | None:
        """``"drop"``, ``"error"`` or ``None`` (forward normally) for the next request to ``upstream``."""
        if fault.drop_rate <= 0 and fault.error_rate <= 0:
            return None
        rng = self.rngs.get(upstream.name)
        if rng is None:
            rng = self.rngs[upstream.name] = random.Random(stable_hash(self.seed, "fault", upstream.name))
        draw = rng.random()
        if draw < fault.drop_rate:
            return "drop"
        if draw < fault.drop_rate + fault.error_rate:
            return "error"
        return None
