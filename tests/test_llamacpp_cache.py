"""The engine's mirror of llama.cpp's prompt cache (assistant.engines.llamacpp_cache), without a
model: which warmed beginnings a request takes over, and which it leaves."""

from __future__ import annotations

from assistant.engines.llamacpp_cache import CacheBook, common_prefix_chars, prompt_key
from assistant.stages import Message

SYSTEM = Message("system", "You answer from the passages.")


def beginning(passage: str) -> str:
    return prompt_key([SYSTEM, Message("user", f"[1] {passage}")])


def question(passage: str, asked: str) -> str:
    return prompt_key([SYSTEM, Message("user", f"[1] {passage}\nQuestion: {asked}")])


def test_common_prefix_chars() -> None:
    assert common_prefix_chars("abcdef", "abcxyz") == 3
    assert common_prefix_chars("", "abc") == 0 and common_prefix_chars("same", "same") == 4


def test_a_request_that_starts_with_a_warmed_beginning_keeps_it() -> None:
    book = CacheBook()
    for passage in ("The gym opens at 7.", "The canteen opens at 11:30."):
        book.starts(beginning(passage))
        book.warmed(beginning(passage))
    assert book.starts(question("The gym opens at 7.", "When does the gym open?")) is None
    assert beginning("The gym opens at 7.") in book and len(book) == 2


def test_a_request_sharing_only_part_of_a_warmed_beginning_takes_it_over() -> None:
    book = CacheBook()
    for passage in ("The gym opens at 7.", "The canteen opens at 11:30."):
        book.starts(beginning(passage))
        book.warmed(beginning(passage))
    # another passage that begins like the gym's: llama.cpp loads the gym's state and overwrites its tail
    lost = book.starts(question("The gym opens at 6 on Saturdays.", "And on Saturday?"))
    assert lost == beginning("The gym opens at 7.")
    assert beginning("The gym opens at 7.") not in book and beginning("The canteen opens at 11:30.") in book


def test_the_slot_sharing_more_than_any_cached_state_loads_nothing() -> None:
    book = CacheBook()
    book.starts(beginning("The gym opens at 7."))
    book.warmed(beginning("The gym opens at 7."))
    book.starts(question("The gym opens at 7.", "When"))  # the slot now holds the gym's prompt
    # a follow-up sharing even more with the slot than with the cached beginning: nothing is loaded
    assert book.starts(question("The gym opens at 7.", "When does it close?")) is None
    assert beginning("The gym opens at 7.") in book
