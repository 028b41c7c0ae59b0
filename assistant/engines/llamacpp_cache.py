"""What llama.cpp's prompt cache holds, as far as the engine can tell (for ``LlamaCppModel.warm``).

llama.cpp's server keeps processed prompt states in RAM. When a request arrives it saves its one
slot's state to the cache, then loads the cached state that shares strictly more with the new
prompt than the slot's own (if any). A loaded state leaves the cache; when the new prompt does not
fully start with it (another passage sharing its first words, the other language's system
message), the request overwrites its tail and that state is gone. One the prompt starts with is
kept: the slot, saved at the next request, still starts with it.

``CacheBook`` mirrors that rule over the prompts ``warm`` processed, so a re-warm rebuilds only
the ones taken over. It is a mirror of a private rule of llama.cpp's (``server_context::
get_available_slot`` and ``prompt_cache::load`` in its ``tools/server``): if a llama.cpp update
changes the rule, the book is wrong in the safe direction for a re-warm with ``again`` (which
processes everything), and the tests in tests/test_llm_llamacpp.py that warm a real model say so;
tests/test_llamacpp_cache.py checks the mirror itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from assistant.stages import Message


def prompt_key(messages: Iterable[Message]) -> str:
    """The messages as one string whose common prefixes follow the rendered prompt's."""
    return "".join(f"\x00{m.role}\x01{m.content}" for m in messages)


def common_prefix_chars(a: str, b: str) -> int:
    """Length of the longest common prefix (a binary search over C-level slice compares: fast
    enough to run over every warmed prompt at each request)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class CacheBook:
    """The warmed prompt keys believed to be in llama.cpp's cache, and what its slot holds."""

    def __init__(self) -> None:
        self._cached: dict[str, None] = {}
        """Insertion-ordered: the oldest first, as llama.cpp evicts when the cache is full."""
        self.slot = ""
        """The key of the prompt last sent to llama.cpp: what its one slot holds."""

    def __contains__(self, key: str) -> bool:
        return key in self._cached

    def __len__(self) -> int:
        return len(self._cached)

    def warmed(self, key: str) -> None:
        """``key`` was processed by a warm-up (it is now the newest state in the cache)."""
        self._cached.pop(key, None)
        self._cached[key] = None

    def starts(self, key: str) -> str | None:
        """A request for ``key`` is about to start: forget the warmed state it will take over and
        overwrite (returned), if any. The slot then holds ``key``."""
        shared = common_prefix_chars(self.slot, key)
        self.slot = key
        best = None
        for cached in self._cached:
            n = common_prefix_chars(cached, key)
            if n > shared:
                best, shared = cached, n
        if best is not None and shared < len(best):
            del self._cached[best]
            return best
        return None
