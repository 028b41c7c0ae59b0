"""The FAQ answers of the current knowledge-base index, for the instant-reply cache.

The daemon calls ``prerender_faq(settings, router)`` at start (in the background: a reply needing
an answer that is not rendered yet is rendered on first use anyway), and ``assistant kb build`` may
call it after a build so the first visitor already gets instant replies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from assistant.config import Settings
from assistant.tts.router import VoiceRouter


def faq_answers(settings: Settings, index_dir: str | Path | None = None) -> list[str]:
    """Every distinct FAQ answer in the index's current generation (empty when there is no index)."""
    from assistant.kb import index_path
    from assistant.kb.index import current_generation, read_records

    generation = current_generation(index_path(settings, index_dir))
    if generation is None:
        return []
    seen: dict[str, None] = {}
    for record in read_records(generation):
        if record.kind == "faq" and record.answer and record.answer.strip():
            seen.setdefault(record.answer.strip(), None)
    return list(seen)


async def prerender_faq(
    settings: Settings,
    router: VoiceRouter,
    index_dir: str | Path | None = None,
    *,
    wait_idle: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Render the index's FAQ answers, and the "I don't know" lines of the fallback route, into the
    cache (each unit in its language's voice); returns how many were new."""
    from assistant.prompts import fallback_line

    if not settings.tts.faq_cache:
        return 0
    texts = [*faq_answers(settings, index_dir), fallback_line("zh"), fallback_line("en")]
    return await router.prerender(texts, wait_idle=wait_idle)
