"""Grounded prompting: every prompt text the assistant sends, in one place per language.

The original FAQ bot's failure was a model that "made up" answers contradicting what retrieval
returned. So the model is given numbered passages, told to use nothing else, told exactly what to say
when the passages do not hold the answer (one fixed sentence per language, which the faithfulness
benchmark and the tests can recognise), to answer in the question's language, and to stay short and
plain enough to be spoken: two or three sentences, no markdown, no lists, no links to read out.

The system message is short and the same on every turn (llama.cpp reuses a cached prefix; everything
that varies comes last). Passages are numbered most relevant first, an FAQ entry as its question with
its answer on the next line. The answer language is repeated after the question (an English question
over a Chinese passage was otherwise answered in Chinese). Both prompts carry one worked example about
a library the knowledge base does not have: a question its passage answers although the passage's FAQ
question differs from it, and one it does not answer, declined. The system message also says that the
passages come from a search and may be about something else. How each of these was chosen, and the
wordings tried and left out, is in docs/measurements.md ("The prompts").

Query rewriting for follow-ups ("and for interns?", "那实习生呢？") is deterministic: an elliptical
question is joined to the previous question before retrieval. An LLM rewrite was considered and not
used: on the embedded CPU models it adds a whole generation (0.3-1 s) before retrieval can even
start, small models rewrite unreliably (they answer the question instead of rewriting it), and the
joined query already retrieves the right entry because both the dense and the lexical index see the
topic words of the previous question plus the new qualifier.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from assistant.language import detect_language
from assistant.stages import Message, Passage


@dataclass(frozen=True)
class PromptSet:
    system: str
    passage_header: str
    question_label: str
    faq_question: str
    faq_answer: str
    no_passages: str
    """Stands in for the passages when retrieval found none (the model must then decline)."""
    decline: str
    """The exact sentence the model is told to say when the passages do not contain the answer."""
    fallback: str
    """What the assistant says, without the LLM, when retrieval found nothing relevant."""
    reminder: str
    """The answer language, said again after the question: the small models otherwise answer an English
    question from a Chinese passage in Chinese ("2000元")."""


PROMPTS: dict[str, PromptSet] = {
    "zh": PromptSet(
        system=(
            "你是公司前台的语音助手。用户会给你检索到的资料，资料可能和问题无关。根据资料回答问题，数字、时间、地点和名称照资料原样说，"
            "不要添加资料里没有的内容。资料里没有答案时，只说：“{decline}”否则就用中文直接回答，一到三句，口语化，不用列表。\n"
            "例：资料“[1] 问：有图书馆吗\n答：有，在二楼，工作日9:00到17:00开放。”问题“图书馆几点关门？”回答“图书馆工作日17:00关门。”"
            "问题“图书馆一次能借几本书？”资料没讲借书，回答“{decline}”"
        ),
        passage_header="资料：",
        question_label="问题：",
        faq_question="问：",
        faq_answer="答：",
        no_passages="（没有找到相关资料）",
        decline="抱歉，我的资料里没有这个问题的答案，请咨询前台工作人员。",
        fallback="抱歉，这个问题我暂时回答不了，请咨询前台工作人员。",
        reminder="请用中文回答。",
    ),
    "en": PromptSet(
        system=(
            "You are the voice assistant at a company's front desk. The user gives you passages a search found, which "
            "may be about something else. Answer the question from the passages. Keep numbers, times, places and names "
            "exactly as written and add nothing that is not in them. If no passage answers the question, say only: "
            '"{decline}" Otherwise answer it directly in English, in one to three short spoken sentences, with no lists.\n'
            'Example: passage "[1] Q: Is there a library?\nA: Yes, on the 2nd floor, open 9:00 to 17:00 on weekdays." '
            'Question "What time does the library close?" Answer "The library closes at 17:00 on weekdays." '
            'Question "How many books can I borrow?" The passage does not say, so answer "{decline}"'
        ),
        passage_header="Passages:",
        question_label="Question: ",
        faq_question="Q: ",
        faq_answer="A: ",
        no_passages="(no relevant passages were found)",
        decline="Sorry, my documents don't cover that. Please ask the front desk staff.",
        fallback="Sorry, I don't know the answer to that. Please ask the front desk staff.",
        reminder="Answer in English.",
    ),
}


def prompt_set(language: str) -> PromptSet:
    """The prompts for ``language``; anything but Chinese gets English (the lingua franca fallback)."""
    return PROMPTS["zh" if language == "zh" else "en"]


def format_passage(number: int, passage: Passage, p: PromptSet) -> str:
    """One numbered passage: an FAQ entry as its question and, on the next line, its answer; a document
    chunk on one line after its title and section."""
    if passage.kind == "faq" and passage.answer:
        return f"[{number}] {p.faq_question}{passage.text.strip()}\n{p.faq_answer}{passage.answer.strip()}"
    heading = " - ".join(h for h in (passage.title.strip(), passage.section.strip()) if h)
    body = " ".join(passage.text.split())
    return f"[{number}] {heading}: {body}" if heading else f"[{number}] {body}"


def system_message(language: str) -> Message:
    """The system message of every generated answer in ``language`` (``zh`` / ``en``)."""
    p = prompt_set(language)
    return Message("system", p.system.format(decline=p.decline))


def passages_block(passages: list[Passage], p: PromptSet) -> str:
    """The start of the last user message: the header and the numbered passages, as given."""
    blocks = [format_passage(i, passage, p) for i, passage in enumerate(passages, start=1)] or [p.no_passages]
    return f"{p.passage_header}\n" + "\n\n".join(blocks)


def passage_prefix(passage: Passage, *, language: str = "") -> list[Message]:
    """How every first-turn prompt whose most relevant passage is ``passage`` begins: the system
    message, then the user message up to the end of passage [1]. The engine can keep the state of
    this prefix (``assistant.stages.PromptCache``), so such a prompt starts with only its other
    passages and the question left to process. ``language``: the question's; by default the
    passage's own (``build_messages`` picks the system message by the question's language)."""
    lang = language if language in PROMPTS else (passage.language if passage.language in PROMPTS else "")
    lang = lang or detect_language(f"{passage.text} {passage.answer or ''}")
    return [system_message(lang), Message("user", passages_block([passage], prompt_set(lang)))]


def build_messages(question: str, passages: list[Passage], history: list[Message], *, language: str) -> list[Message]:
    """The chat for one generated answer: system rules, the earlier turns, then the numbered
    passages (most relevant first) with the question.

    ``language`` is the question's language (``zh`` / ``en``; anything else is detected from the
    question). The system message is the same for every turn in a language, so llama.cpp reuses its
    cached prefill; everything that varies comes after it. The passages go only into the last user
    message: earlier turns stay as they were spoken, so the model resolves "and for interns?" from the
    history while grounding on the new passages.
    """
    lang = language if language in PROMPTS else detect_language(question)
    p = prompt_set(lang)
    ranked = sorted(passages, key=lambda passage: -passage.score)  # stable: ties keep retrieval's order
    user = passages_block(ranked, p) + f"\n\n{p.question_label}{question.strip()}\n{p.reminder}"
    messages = [system_message(lang)]
    messages.extend(m for m in history if m.role in ("user", "assistant") and m.content.strip())
    messages.append(Message("user", user))
    return messages


# --------------------------------------------------------------------------------------------
# Checking an FAQ match before it is read out ([answer] verify_faq_below)
# --------------------------------------------------------------------------------------------

VERIFY = {
    "zh": (
        "你判断一条资料是否回答了用户的问题。问的事情和资料讲的事情必须是同一件事。只回答“是”或“否”。",
        "问题：{question}\n资料：问：{entry}\n答：{answer}\n这条资料回答了这个问题吗？",
    ),
    "en": (
        "You judge whether a passage answers the user's question. The question and the passage must be about "
        "the same thing. Answer only Yes or No.",
        "Question: {question}\nPassage: Q: {entry}\nA: {answer}\nDoes this passage answer the question?",
    ),
}
"""The FAQ check's wording per language (``verify_messages``); how it was probed is in
docs/measurements.md ("The FAQ check")."""


def verify_messages(question: str, entry: Passage, *, language: str) -> list[Message]:
    """The chat asking the model whether the FAQ ``entry`` answers ``question`` (yes / no)."""
    system, user = VERIFY["zh" if language == "zh" else "en"]
    text = user.format(question=question.strip(), entry=entry.text.strip(), answer=(entry.answer or "").strip())
    return [Message("system", system), Message("user", text)]


def verdict_is_no(reply: str) -> bool:
    """The model's verdict: only a clear no counts (anything else keeps the FAQ answer)."""
    head = reply.strip().lstrip("“\"'「").lower()
    return head.startswith(("否", "不", "no"))


def fallback_line(language: str) -> str:
    """The honest hand-off line spoken when nothing relevant was found (no LLM involved)."""
    return prompt_set(language).fallback


def decline_line(language: str) -> str:
    """The sentence the model is told to say when its passages do not hold the answer."""
    return prompt_set(language).decline


_NOT_WORDS = re.compile(r"[\W_]+")


def _words(text: str) -> str:
    return _NOT_WORDS.sub("", text.casefold().replace("’", "'"))


def _decline_opening(p: PromptSet) -> str:
    """The words that make a reply a decline: the decline line without the hand-off it shares with
    the fallback line ("... Please ask the front desk staff."), which a model may leave out."""
    decline, fallback = _words(p.decline), _words(p.fallback)
    shared = 0
    while shared < min(len(decline), len(fallback)) and decline[-1 - shared] == fallback[-1 - shared]:
        shared += 1
    return decline[: len(decline) - shared]


def decline_state(text: str) -> bool | None:
    """Whether a reply, as far as it is written, is the decline line of either language (the model
    saying its passages do not answer): True when it begins with a decline's opening words, False
    when it cannot, None when too little is written to tell. Case, spacing and punctuation do not
    matter."""
    words = _words(text)
    if not words:
        return None
    undecided = False
    for p in PROMPTS.values():
        opening = _decline_opening(p)
        if words.startswith(opening):
            return True
        undecided = undecided or opening.startswith(words)
    return None if undecided else False


# --------------------------------------------------------------------------------------------
# Follow-up questions
# --------------------------------------------------------------------------------------------

_ZH_FOLLOW_START = re.compile(r"^(那么|那|还有|另外|再问一下|那如果|如果是|对于|至于|要是|换成)")
_ZH_FOLLOW_END = re.compile(r"(呢|的话)[？?。.!！\s]*$")
_ZH_PRONOUN = re.compile(r"(这个|那个|它|他们|她们|这些|那些|也|同样)")
_EN_FOLLOW_START = re.compile(r"^(and|but|also|so|what about|how about|what if|same for|or|then|plus)\b", re.IGNORECASE)
_EN_QUESTION_START = re.compile(
    r"^(what|where|when|who|whom|whose|which|why|how|can|could|do|does|did|is|are|was|were|may|might|should|"
    r"will|would|shall|i|we|my|our|please|tell|show|explain|give|list)\b",
    re.IGNORECASE,
)
_EN_BACK_REFERENCE = re.compile(r"\b(it|its|that|those|these|they|them|the same)\b", re.IGNORECASE)
_PUNCT = re.compile(r"[\s，。？！、,.?!;；:：\"'“”‘’()（）]+")

ZH_SHORT_CHARS = 8
"""A Chinese question with this many Han characters or fewer may lean on the previous one."""
EN_SHORT_WORDS = 4
"""An English fragment this short without a question word ("for interns?") leans on the previous one."""


def _is_follow_up(question: str, language: str) -> bool:
    text = question.strip()
    if language == "zh":
        core = _PUNCT.sub("", text)
        han = len(re.findall(r"[\u3400-\u9fff]", core))
        return bool(
            _ZH_FOLLOW_START.search(core)
            or len(core) <= 4
            or (han <= ZH_SHORT_CHARS and (_ZH_FOLLOW_END.search(text) or _ZH_PRONOUN.search(core)))
        )
    words = re.findall(r"[A-Za-z0-9'-]+", text)
    return bool(
        _EN_FOLLOW_START.search(text)
        or (len(words) <= EN_SHORT_WORDS and not _EN_QUESTION_START.search(text))
        or (len(words) <= 7 and _EN_BACK_REFERENCE.search(text))
    )


def rewrite_query(question: str, history: list[Message]) -> str:
    """The retrieval query for ``question`` given the conversation so far.

    A question that stands on its own is returned unchanged (stripped). A follow-up (it starts with
    "and / what about / 那 / 还有", ends with "呢", or is so short or pronoun-laden that it cannot
    stand alone) is joined after the previous user question, so retrieval sees both the topic and the
    new qualifier: "What is the annual leave?" + "and for interns?" becomes
    "What is the annual leave? and for interns?". The anchor is the last question that stood on
    its own. A follow-up that restates the anchor's topic ("那员工停车呢？" after a question about
    visitor parking) is searched as it is: joined, the anchor's own FAQ entry would outscore it.
    Deterministic and instant (see the module note).
    """
    q = question.strip()
    if not q or not _is_follow_up(q, detect_language(q)):
        return q
    # The anchor is the last question that stood on its own: after "annual leave?" -> "and for
    # interns?" -> "and contractors?", the third is about annual leave, not about interns.
    asked = [m.content.strip() for m in history if m.role == "user" and m.content.strip()]
    anchor = next((a for a in reversed(asked) if not _is_follow_up(a, detect_language(a))), asked[-1] if asked else "")
    if not anchor or _restates_topic(q, anchor):
        return q
    return f"{anchor} {q}"


_ZH_PARTICLES = re.compile(r"(呢|的话|吗|啊|呀|吧)+$")
_EN_STOP = frozenset(
    "a an the and or but so also what about how for of to in on at is are do does did i we you my our your "
    "can could will would should may might then same plus please it its they them that this those these".split()
)


def _restates_topic(question: str, anchor: str) -> bool:
    """True when a follow-up names the anchor's topic itself, so it retrieves better alone.

    "那员工停车呢？" after "访客停车怎么收费" shares "停车", and "And how about sick leave?" after
    "How many days of annual leave do I get?" shares "leave": joined to the anchor, the anchor's exact
    FAQ match would win; alone, they find their own entries. "那海外呢？", "And dinner?" share nothing
    and need the anchor. Measured on bench/faithfulness.jsonl's follow-ups.
    """
    if detect_language(question) == "zh":
        core = _PUNCT.sub("", question)
        core = _ZH_PARTICLES.sub("", _ZH_FOLLOW_START.sub("", core))
        if _ZH_PRONOUN.search(core):
            return False
        han = re.findall(r"[\u3400-\u9fff]", core)
        bigrams = {a + b for a, b in itertools.pairwise(han)}
        return any(b in anchor for b in bigrams)
    words = {w for w in re.findall(r"[a-z0-9'-]+", question.lower()) if w not in _EN_STOP}
    anchor_words = {w for w in re.findall(r"[a-z0-9'-]+", anchor.lower()) if w not in _EN_STOP}
    return bool(words & anchor_words) and not _EN_BACK_REFERENCE.search(question)
