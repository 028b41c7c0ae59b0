"""Routing: what a question leads to before any reply is written.

``plan_answer``: retrieval (a follow-up joined to the previous question first), the route
(``decide_route``: ``faq`` reads a stored answer verbatim, ``generated`` has the LLM answer from the
passages, ``fallback`` says honestly that the knowledge base does not cover it), and on the
generated route the LLM's messages. ``verify_faq`` may then put a weak FAQ match to the LLM. Pure
with respect to the session: the same inputs give the same plan, so a plan made ahead of time (on
the transcript at a pause, ``assistant.ahead``) is the one the turn would make.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from assistant import prompts
from assistant.config import Settings
from assistant.errors import GenerateError
from assistant.kb.query import sub_questions
from assistant.language import detect_language
from assistant.stages import Engines, Message, Passage, Route, Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    passages: list[Passage]
    """The passages shown as sources: the FAQ entry on ``faq``, the relevant ones on ``generated``."""


def decide_route(passages: list[Passage], settings: Settings, *, parts: Sequence[list[Passage]] = ()) -> RouteDecision:
    """``faq`` when the best FAQ match clears the FAQ threshold and is unambiguous, ``generated`` when
    anything clears the relevance threshold, else ``fallback``.

    Unambiguous: the best match also holds at least ``faq_threshold`` of its own and the runner-up's
    scores together (with 0.80, the runner-up scores under a quarter of the best). A runner-up that
    close means the question may be the other entry's: "每天的午餐补贴有多少钱？" matches the travel
    per diem at 0.89 and the lunch subsidy at 0.37, "How many days of sick leave?" annual leave at
    0.79 and sick leave at 0.45. Read out verbatim, the first entry is a wrong answer; the model, given
    both (``generated``), picks the one that answers.

    ``parts`` are the results for the question's parts (assistant.kb.query.sub_questions): when two
    or more parts each match a different passage at the FAQ threshold, the visitor asked several
    things, and the answer is ``generated`` from all of those passages.
    """
    answer = settings.answer
    strong: dict[str, Passage] = {}
    for results in parts:
        if results and results[0].score >= answer.faq_threshold:
            strong.setdefault(results[0].id, results[0])
    if len(strong) >= 2:
        extra = [p for p in passages if p.score >= answer.relevance_threshold and p.id not in strong]
        limit = max(answer.max_passages, len(strong))
        return RouteDecision("generated", [*strong.values(), *extra][:limit])
    ranked = sorted(passages, key=lambda p: -p.score)  # stable: ties keep retrieval's order
    faq = [p for p in ranked if p.kind == "faq" and p.answer]
    if faq and faq[0].score >= answer.faq_threshold:
        best = faq[0]
        runner_up = next((p for p in ranked if p.id != best.id), None)
        if runner_up is None or best.score >= answer.faq_threshold * (best.score + runner_up.score):
            return RouteDecision("faq", [best])
        rest = [p for p in ranked if p.id not in (best.id, runner_up.id) and p.score >= answer.relevance_threshold]
        return RouteDecision("generated", [best, runner_up, *rest][: max(answer.max_passages, 2)])
    relevant = [p for p in ranked if p.score >= answer.relevance_threshold]
    if relevant:
        return RouteDecision("generated", relevant[: answer.max_passages])
    return RouteDecision("fallback", [])


def answer_language(transcript: Transcript) -> str:
    """The language a reply to ``transcript`` is written in (``zh`` / ``en``)."""
    if transcript.language in ("zh", "en"):
        return transcript.language
    return detect_language(transcript.text)


@dataclass(frozen=True)
class Plan:
    """Everything a question leads to before the reply is written: retrieval, the route, and on the
    ``generated`` route the LLM's messages. Made by the turn, or ahead of it (``assistant.ahead`` plans
    on the transcript at a pause, to prefill the LLM and to recognise a question it can answer)."""

    transcript: str
    language: str
    history: tuple[Message, ...]
    decision: RouteDecision
    messages: list[Message] | None
    """The chat for the LLM (``generated`` only)."""
    candidates: tuple[Passage, ...] = ()
    """What retrieval returned, best first, whatever the route."""

    def fits(self, transcript: str, language: str, history: Sequence[Message]) -> bool:
        """Was this plan made for exactly this question, in this language, after this history?"""
        return self.transcript == transcript and self.language == language and self.history == tuple(history)


async def plan_answer(
    transcript: Transcript, history: Sequence[Message], *, engines: Engines, settings: Settings
) -> Plan:
    """Retrieve for ``transcript`` (a follow-up joined to the previous question), decide the route and
    build the LLM's messages. Pure with respect to the session: the same inputs give the same plan."""
    history = list(history)
    language = answer_language(transcript)
    query = prompts.rewrite_query(transcript.text, history)
    passages = await engines.retriever.search(query, k=settings.kb.top_k)
    parts = [await engines.retriever.search(q, k=3) for q in sub_questions(query)]
    decision = decide_route(passages, settings, parts=parts)
    messages = None
    if decision.route == "generated":
        messages = grounded_messages(transcript.text, decision.passages, history, language, settings)
    return Plan(transcript.text, language, tuple(history), decision, messages, tuple(passages))


async def verify_faq(plan: Plan, *, engines: Engines, settings: Settings) -> Plan:
    """``plan`` unchanged unless it answers an FAQ entry verbatim with a score under ``[answer]
    verify_faq_below``: then the LLM is asked whether the entry answers the question, and on a
    clear no the plan becomes the honest ``fallback`` (an entry read out for the wrong question, "产假"
    answered with annual leave, is the unfaithful answer this exists to stop). A failing LLM keeps
    the entry: the check is a safeguard, not a dependency."""
    decision = plan.decision
    if decision.route != "faq" or not decision.passages or decision.passages[0].score >= settings.answer.verify_faq_below:
        return plan
    messages = prompts.verify_messages(plan.transcript, decision.passages[0], language=plan.language)
    try:
        verdict = "".join([delta async for delta in engines.llm.stream(messages, max_tokens=3, temperature=0.0)])
    except GenerateError as err:
        log.warning("checking the FAQ match failed; answering it as it is: %s", err.message)
        return plan
    if not prompts.verdict_is_no(verdict):
        return plan
    log.info("the LLM says FAQ entry %s does not answer %r: declining", decision.passages[0].id, plan.transcript)
    return dataclasses.replace(plan, decision=RouteDecision("fallback", []), messages=None)


def grounded_messages(
    question: str, passages: list[Passage], history: Sequence[Message], language: str, settings: Settings
) -> list[Message]:
    """The generated route's chat: the question over ``passages``, after the last ``[answer]
    history_turns`` question/answer pairs."""
    recent = list(history)[-2 * settings.answer.history_turns :]
    return prompts.build_messages(question, passages, recent, language=language)
