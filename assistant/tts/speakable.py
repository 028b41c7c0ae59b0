"""Text made speakable: what a voice should say for a written reply.

Replies are written for the eye (Markdown, links, emoji, citation marks like ``[1]``, figures such as
``¥1,200``, ``3.5%``, ``2024-03-05``, ``14:30``, ``5 km``); a TTS engine would spell them out, skip
them or misread them. ``make_speakable(text)`` removes what should not be heard and writes numbers,
dates, times, currencies and units out as words, in Chinese or English: the language is the text's own
(``assistant.language.detect_language``) unless given, so "价格是¥1,200" reads 一千二百元 and
"It costs $5" reads "five dollars".

``split_by_language(text)`` then cuts speakable text into runs of one language each, so that a voice
that speaks only one language can hand the rest to another (the router does this).

Pure functions, no I/O: heavily tested in tests/test_tts_speakable.py.
"""

from __future__ import annotations

import re

from assistant.language import detect_language

# --------------------------------------------------------------------------------------------
# Removing what should not be heard
# --------------------------------------------------------------------------------------------

_CODE_FENCE = re.compile(r"```[^\n]*\n?(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_LINK_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_BLOCKQUOTE = re.compile(r"^\s{0,3}>\s?", re.M)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.M)
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.M)
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|~~|\*|_)(?=\S)(.+?)(?<=\S)\1")
# Citation marks as LLM answers and documents write them: [1], [1, 2], [1-3], [^1], 【1】, [source 2].
_CITATION = re.compile(
    r"\[\^?\d+(?:\s*[,，、\-–]\s*\d+)*\]|【\s*\d+(?:\s*[,，、\-–]\s*\d+)*\s*】|\[(?:source|来源|出处)\s*\d+\]",
    re.I,
)
# A URL ends before trailing sentence punctuation ("see https://x.y/z." keeps its full stop).
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'，。！？、；：）)】]*[^\s<>\"'，。！？、；：）)】.,;:!?]", re.I)
# A URL that is the object of "at", "visit", 访问, 是 ... leaves a hole in the sentence when removed:
# the visitor hears where to look instead (the captions on the avatar page show the address).
_URL_OBJECT_EN = re.compile(r"\b(at|on|to|visit|see|via|from|open)\s+" + _URL.pattern, re.I)
_URL_OBJECT_ZH = re.compile(r"(是|为|访问|登录|打开|见|到|在)\s*" + _URL.pattern, re.I)
URL_PLACEHOLDER = {"en": "the address shown on screen", "zh": "屏幕上显示的网址"}
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Emoji and pictographs, their modifiers, joiners and variation selectors.
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # symbols, pictographs, emoticons, transport, supplemental
    "\U00002600-\U000027bf"  # miscellaneous symbols, dingbats
    "\U00002b00-\U00002bff"  # arrows, stars
    "\U0001f1e6-\U0001f1ff"  # regional indicators (flags)
    "\U0000fe00-\U0000fe0f"  # variation selectors
    "\U0000200d"  # zero-width joiner
    "\U000020e3"  # combining keycap
    "\U0001f3fb-\U0001f3ff"  # skin tones
    "]+"
)


def strip_markup(text: str) -> str:
    """Markdown, HTML tags, URLs, e-mail addresses, emoji and citation marks removed; the words kept."""
    text = _CODE_FENCE.sub(lambda m: m.group(1), text)
    text = _INLINE_CODE.sub(lambda m: m.group(1), text)
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _REF_LINK.sub(lambda m: m.group(1), text)
    text = _LINK_DEF.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _CITATION.sub("", text)
    text = _URL.sub("", text)
    text = _EMAIL.sub("", text)
    text = _EMOJI.sub("", text)
    text = _TABLE_SEP.sub("", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _BULLET.sub("", text)
    for _ in range(2):  # nested emphasis: ***bold italic***
        text = _EMPHASIS.sub(lambda m: m.group(2), text)
    # Table rows: the cells, with a pause between them.
    return "\n".join(
        ", ".join(c.strip() for c in line.strip().strip("|").split("|") if c.strip()) if "|" in line else line
        for line in text.split("\n")
    )


# --------------------------------------------------------------------------------------------
# Numbers as words
# --------------------------------------------------------------------------------------------

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_SMALL_UNITS = ["", "十", "百", "千"]
_ZH_BIG_UNITS = ["", "万", "亿", "万亿"]


def _zh_below_10000(n: int) -> str:
    out: list[str] = []
    zero = False
    for pos in range(3, -1, -1):
        d = (n // 10**pos) % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_ZH_DIGITS[d] + _ZH_SMALL_UNITS[pos])
    return "".join(out)


def zh_integer(n: int) -> str:
    """1200 -> 一千二百, 10 -> 十, 105 -> 一百零五, 20000 -> 二万, -3 -> 负三."""
    if n < 0:
        return "负" + zh_integer(-n)
    if n == 0:
        return "零"
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_ZH_BIG_UNITS):
        return zh_digits(str(sum(g * 10000**i for i, g in enumerate(groups))))
    out = ""
    need_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out += "零"
        out += _zh_below_10000(g) + _ZH_BIG_UNITS[i]
        need_zero = False
    # 一十五 -> 十五 at the start, as people say it.
    if out.startswith("一十"):
        out = out[1:]
    # 两千, 两万, 两百 at the start, as people say it (but 二十, 十二).
    if out[:2] in ("二百", "二千", "二万", "二亿"):
        out = "两" + out[1:]
    return out


def zh_digits(digits: str) -> str:
    """Digit by digit: years, phone numbers, codes."""
    return "".join(_ZH_DIGITS[int(d)] if d.isdigit() else d for d in digits)


def zh_number(literal: str) -> str:
    """A number literal (may hold commas, a sign, a fraction) read in Chinese: 3.5 -> 三点五."""
    literal = literal.replace(",", "").replace("，", "")
    sign = ""
    if literal.startswith(("-", "−")):
        sign, literal = "负", literal[1:]
    whole, _, frac = literal.partition(".")
    out = zh_integer(int(whole or "0"))
    if frac:
        out += "点" + zh_digits(frac)
    return sign + out


_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]


def en_integer(n: int) -> str:
    """1200 -> one thousand two hundred; 21 -> twenty-one; -3 -> minus three."""
    if n < 0:
        return "minus " + en_integer(-n)
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_EN_ONES[hundreds]} hundred" + (f" {en_integer(rest)}" if rest else "")
    for scale, name in _EN_SCALES:
        if n >= scale:
            if n >= scale * 1000 and scale == 10**12:
                return en_digits(str(n))
            high, rest = divmod(n, scale)
            return f"{en_integer(high)} {name}" + (f" {en_integer(rest)}" if rest else "")
    raise AssertionError("unreachable")


def en_digits(digits: str) -> str:
    return " ".join(_EN_ONES[int(d)] if d.isdigit() else d for d in digits)


def en_number(literal: str) -> str:
    """A number literal read in English: 3.5 -> three point five; 1,200 -> one thousand two hundred."""
    literal = literal.replace(",", "")
    sign = ""
    if literal.startswith(("-", "−")):
        sign, literal = "minus ", literal[1:]
    whole, _, frac = literal.partition(".")
    out = en_integer(int(whole or "0"))
    if frac:
        out += " point " + en_digits(frac)
    return sign + out


def en_year(year: int) -> str:
    """2024 -> twenty twenty-four; 2005 -> two thousand five; 1900 -> nineteen hundred."""
    if 2000 <= year <= 2009 or year % 1000 == 0:
        return en_integer(year)
    high, low = divmod(year, 100)
    if low == 0:
        return f"{en_integer(high)} hundred"
    return f"{en_integer(high)} {'oh ' + _EN_ONES[low] if low < 10 else en_integer(low)}"


_EN_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def en_ordinal(n: int) -> str:
    """21 -> twenty-first."""
    words = en_integer(n)
    head, sep, last = words.rpartition(" ")
    pre, dash, last_word = last.rpartition("-")
    if last_word in _EN_ORDINAL_IRREGULAR:
        last_word = _EN_ORDINAL_IRREGULAR[last_word]
    elif last_word.endswith("y"):
        last_word = last_word[:-1] + "ieth"
    else:
        last_word += "th"
    return head + sep + pre + dash + last_word


_MONTHS = "January February March April May June July August September October November December".split()

# --------------------------------------------------------------------------------------------
# Patterns: figures with their context
# --------------------------------------------------------------------------------------------

_NUM = r"[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-−]?\d+(?:\.\d+)?"
# A figure must not be glued to letters/digits on its left (model names like "GPT4", "v2").
_L = r"(?<![A-Za-z0-9_.])"

_CURRENCY_PREFIX = {"¥": ("元", "yuan"), "￥": ("元", "yuan"), "$": ("美元", "dollars"), "€": ("欧元", "euros"),
                    "£": ("英镑", "pounds"), "US$": ("美元", "dollars"), "HK$": ("港元", "Hong Kong dollars"),
                    "RMB": ("元", "yuan"), "CNY": ("元", "yuan"), "USD": ("美元", "dollars")}
_CURRENCY_SUFFIX = {"元": ("元", "yuan"), "块": ("块", "yuan"), "美元": ("美元", "dollars"),
                    "RMB": ("元", "yuan"), "CNY": ("元", "yuan"), "USD": ("美元", "dollars"),
                    "yuan": ("元", "yuan"), "dollars": ("美元", "dollars"), "dollar": ("美元", "dollars")}
_CENTS = {"dollars": "cents", "euros": "cents", "pounds": "pence"}

# unit -> (Chinese, English singular, English plural)
_UNITS: dict[str, tuple[str, str, str]] = {
    "km": ("公里", "kilometer", "kilometers"),
    "kg": ("公斤", "kilogram", "kilograms"),
    "cm": ("厘米", "centimeter", "centimeters"),
    "mm": ("毫米", "millimeter", "millimeters"),
    "m": ("米", "meter", "meters"),
    "g": ("克", "gram", "grams"),
    "mg": ("毫克", "milligram", "milligrams"),
    "ml": ("毫升", "milliliter", "milliliters"),
    "mL": ("毫升", "milliliter", "milliliters"),
    "L": ("升", "liter", "liters"),
    "℃": ("摄氏度", "degree Celsius", "degrees Celsius"),
    "°C": ("摄氏度", "degree Celsius", "degrees Celsius"),
    "°F": ("华氏度", "degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("度", "degree", "degrees"),
    "km/h": ("公里每小时", "kilometer per hour", "kilometers per hour"),
    "kmh": ("公里每小时", "kilometer per hour", "kilometers per hour"),
    "m²": ("平方米", "square meter", "square meters"),
    "㎡": ("平方米", "square meter", "square meters"),
    "GB": ("GB", "gigabyte", "gigabytes"),
    "MB": ("MB", "megabyte", "megabytes"),
    "TB": ("TB", "terabyte", "terabytes"),
    "kB": ("KB", "kilobyte", "kilobytes"),
    "KB": ("KB", "kilobyte", "kilobytes"),
    "GHz": ("吉赫兹", "gigahertz", "gigahertz"),
    "MHz": ("兆赫兹", "megahertz", "megahertz"),
    "Hz": ("赫兹", "hertz", "hertz"),
    "kW": ("千瓦", "kilowatt", "kilowatts"),
    "W": ("瓦", "watt", "watts"),
    "V": ("伏", "volt", "volts"),
    "h": ("小时", "hour", "hours"),
    "min": ("分钟", "minute", "minutes"),
    "ms": ("毫秒", "millisecond", "milliseconds"),
    "s": ("秒", "second", "seconds"),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))

_DATE_ISO = re.compile(_L + r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_DATE_ZH = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
_YEAR_RANGE_ZH = re.compile(r"(\d{4})\s*[-–~～至到]\s*(\d{4})\s*年")
_YEAR_ZH = re.compile(r"(\d{4})\s*年")
_MONTH_ZH = re.compile(r"(?<!\d)(\d{1,2})\s*月(?!\s*\d)")
_DATE_EN = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?\b")
_TIME = re.compile(_L + r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?\s?[Mm](?:\.(?=\S))?)?(?!\d)")
_TIME_AMPM = re.compile(_L + r"(\d{1,2})\s*([AaPp])\.?[Mm](?:\.(?=\S))?(?![A-Za-z])")
_CUR_PRE = re.compile(r"(US\$|HK\$|RMB|CNY|USD|[¥￥$€£])\s?(" + _NUM + r")(\s?(?:万|亿|k|K|million|billion))?")
_CUR_POST = re.compile(_L + r"(" + _NUM + r")\s?(万|亿)?\s?(美元|元|块|RMB|CNY|USD|yuan|dollars?)(?![A-Za-z])")
_PERCENT = re.compile(_L + r"(" + _NUM + r")\s?[%％]")
_RANGE = re.compile(_L + r"(" + _NUM + r")\s?[-–~～至到]\s?(" + _NUM + r")(?=\s?(?:" + _UNIT_RE + r"|[%％]|[^\d\W]|\s|$))")
_UNIT = re.compile(_L + r"(" + _NUM + r")\s?(" + _UNIT_RE + r")(?![A-Za-z²])")
_ORDINAL_EN = re.compile(_L + r"(\d+)(st|nd|rd|th)\b")
_PHONE = re.compile(_L + r"(\+\d[\d\- ]{5,}\d|0\d{2,3}-\d{7,8}|\d{3}-\d{3,4}-\d{4}|1[3-9]\d{9})(?!\d)")
_ROOM_EN = re.compile(r"\b(room|gate|flight|platform|bus|route|ext\.?|extension|suite|unit)\s*#?(\d{3,5})\b", re.I)
_ROOM_ZH_BEFORE = re.compile(r"(房间|会议室|航班|分机|车次|工号)\s*(\d{2,6})")
_ROOM_ZH_AFTER = re.compile(r"(?<![\d.])(\d{3,5})(室|房间|号房|号会议室)")
_NUMBER = re.compile(_L + r"(" + _NUM + r")(?![\d])")


def _speak_time(m: re.Match[str], zh: bool) -> str:
    h, mi = int(m.group(1)), int(m.group(2))
    ampm = (m.group(4) or "").lower()
    if h > 24 or mi > 59:
        return m.group(0)
    if zh:
        prefix = {"a": "上午", "p": "下午"}.get(ampm, "")
        out = prefix + zh_integer(h) + "点"
        if mi:
            out += ("零" if mi < 10 else "") + zh_integer(mi) + "分"
        return out
    words = en_integer(h)
    if mi == 0:
        words += "" if ampm else " o'clock"
    else:
        words += " " + ("oh " + _EN_ONES[mi] if mi < 10 else en_integer(mi))
    if ampm:
        words += " a m" if ampm == "a" else " p m"
    return words


def _plural(literal: str) -> bool:
    return literal.replace(",", "") not in ("1", "1.0", "-1")


def _render(text: str, zh: bool) -> str:
    num = zh_number if zh else en_number

    def date_iso(m: re.Match[str]) -> str:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= mo <= 12 and 1 <= d <= 31):
            return m.group(0)
        if zh:
            return f"{zh_digits(m.group(1))}年{zh_integer(mo)}月{zh_integer(d)}日"
        return f"{_MONTHS[mo - 1]} {en_ordinal(d)}, {en_year(y)}"

    text = _DATE_ISO.sub(date_iso, text)

    def date_zh(m: re.Match[str]) -> str:
        y, mo, d = m.group(1), int(m.group(2)), int(m.group(3))
        if zh:
            return (f"{zh_digits(y)}年" if y else "") + f"{zh_integer(mo)}月{zh_integer(d)}日"
        return f"{_MONTHS[mo - 1]} {en_ordinal(d)}" + (f", {en_year(int(y))}" if y else "") if 1 <= mo <= 12 else m.group(0)

    text = _DATE_ZH.sub(date_zh, text)
    if zh:
        text = _YEAR_RANGE_ZH.sub(lambda m: f"{zh_digits(m.group(1))}到{zh_digits(m.group(2))}年", text)
        text = _YEAR_ZH.sub(lambda m: zh_digits(m.group(1)) + "年", text)
        text = _MONTH_ZH.sub(lambda m: zh_integer(int(m.group(1))) + "月", text)
    else:

        def date_en(m: re.Match[str]) -> str:
            out = f"{m.group(1)} {en_ordinal(int(m.group(2)))}"
            return out + (f", {en_year(int(m.group(3)))}" if m.group(3) else "")

        text = _DATE_EN.sub(date_en, text)

    text = _TIME.sub(lambda m: _speak_time(m, zh), text)
    if not zh:
        text = _TIME_AMPM.sub(lambda m: f"{en_integer(int(m.group(1)))} {'a m' if m.group(2) in 'Aa' else 'p m'}", text)

    def money(amount: str, scale: str, unit: tuple[str, str]) -> str:
        scale = scale.strip()
        if zh:
            zh_scale = {"k": "千", "K": "千", "million": "百万", "billion": "十亿"}.get(scale, scale)
            return num(amount) + zh_scale + unit[0]
        en_scale = {"万": " ten thousand", "亿": " hundred million", "k": " thousand", "K": " thousand"}.get(
            scale, f" {scale}" if scale else ""
        )
        whole, _, cents = amount.replace(",", "").partition(".")
        if unit[1] in _CENTS and cents and not en_scale:
            c = int((cents + "0")[:2])
            out = f"{en_integer(int(whole))} {unit[1] if int(whole) != 1 else unit[1][:-1]}"
            return out + (f" and {en_integer(c)} {_CENTS[unit[1]] if c != 1 else 'cent'}" if c else "")
        name = unit[1]
        if not _plural(amount) and not en_scale and name.endswith("s"):
            name = name[:-1]
        return f"{num(amount)}{en_scale} {name}"

    text = _CUR_PRE.sub(lambda m: money(m.group(2), m.group(3) or "", _CURRENCY_PREFIX[m.group(1)]), text)
    text = _CUR_POST.sub(lambda m: money(m.group(1), m.group(2) or "", _CURRENCY_SUFFIX[m.group(3)]), text)

    def phone(m: re.Match[str]) -> str:
        digits = re.sub(r"[^\d+]", "", m.group(1))
        if len(digits.lstrip("+")) < 7:
            return m.group(0)
        spoken = zh_digits(digits.lstrip("+")) if zh else en_digits(digits.lstrip("+"))
        return ("加" if zh else "plus ") * digits.startswith("+") + spoken

    text = _PHONE.sub(phone, text)
    # Room, gate, flight and extension numbers are read digit by digit: "room three oh one", 三零一室.
    if zh:
        text = _ROOM_ZH_BEFORE.sub(lambda m: m.group(1) + zh_digits(m.group(2)), text)
        text = _ROOM_ZH_AFTER.sub(lambda m: zh_digits(m.group(1)) + m.group(2), text)
    else:
        text = _ROOM_EN.sub(
            lambda m: ("extension" if m.group(1).lower().startswith("ext") else m.group(1))
            + " "
            + " ".join("oh" if d == "0" else _EN_ONES[int(d)] for d in m.group(2)),
            text,
        )

    if zh:
        text = _PERCENT.sub(lambda m: "百分之" + num(m.group(1)), text)
    else:
        text = _PERCENT.sub(lambda m: num(m.group(1)) + " percent", text)

    def ranged(m: re.Match[str]) -> str:
        return num(m.group(1)) + ("到" if zh else " to ") + num(m.group(2))

    text = _RANGE.sub(ranged, text)

    def unit(m: re.Match[str]) -> str:
        zh_name, one, many = _UNITS[m.group(2)]
        if zh:
            return num(m.group(1)) + zh_name
        return f"{num(m.group(1))} {many if _plural(m.group(1)) else one}"

    text = _UNIT.sub(unit, text)
    if not zh:
        text = _ORDINAL_EN.sub(lambda m: en_ordinal(int(m.group(1))), text)


    def number(m: re.Match[str]) -> str:
        literal = m.group(1)
        bare = literal.lstrip("-−")
        # Codes and long digit strings (room 0101, order 20240305001) are read digit by digit.
        if "," not in bare and "." not in bare and (len(bare) > 9 or (len(bare) > 1 and bare.startswith("0"))):
            return zh_digits(bare) if zh else en_digits(bare)
        if not zh and "," not in bare and "." not in bare and len(bare) == 4 and 1100 <= int(bare) <= 2099:
            return en_year(int(bare))
        return num(literal)

    text = _NUMBER.sub(number, text)
    if zh:
        text = text.replace("&", "和").replace("+", "加").replace("@", " at ")
    else:
        text = re.sub(r"\s*&\s*", " and ", text)
        text = re.sub(r"(?<=\w)@(?=\w)", " at ", text)
    return text


def make_speakable(text: str, *, language: str | None = None) -> str:
    """What a voice should say for ``text``: markup removed, figures written out in ``language``.

    ``language`` (``"zh"`` / ``"en"``) defaults to the text's own. Whitespace is collapsed; an empty
    result means there is nothing to say.
    """
    lang = language or detect_language(strip_markup(text))
    if lang.startswith("zh"):
        text = _URL_OBJECT_ZH.sub(lambda m: m.group(1) + URL_PLACEHOLDER["zh"], text)
    else:
        text = _URL_OBJECT_EN.sub(lambda m: f"{m.group(1)} {URL_PLACEHOLDER['en']}", text)
    text = strip_markup(text)
    text = _render(text, zh=lang.startswith("zh"))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    # Lines of a list become sentences: a pause between them, not a run-on.
    text = re.sub(r"(?<=[^\s。！？.!?，,；;：:])\n", "。" if lang.startswith("zh") else ". ", text)
    text = text.replace("\n", " ")
    # Punctuation left dangling by removed parts: "见 。" -> "见。", "(, )" -> "".
    text = re.sub(r"\(\s*[,，]?\s*\)|（\s*）", "", text)
    text = re.sub(r"\s+([,.;:!?，。；：！？、])", r"\1", text)
    text = re.sub(r"([,，、])\1+", r"\1", text)
    text = re.sub(r"[:：,，;；、]\s*([.。!?！？])", r"\1", text)  # "Details: <url>." -> "Details."
    return re.sub(r" {2,}", " ", text).strip()


# --------------------------------------------------------------------------------------------
# Language runs
# --------------------------------------------------------------------------------------------

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_CHAR = re.compile(r"[A-Za-z]")
_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+|[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")


def split_by_language(text: str) -> list[tuple[str, str]]:
    """Cut speakable text into ``(language, text)`` runs, Chinese (``"zh"``) or Latin (``"en"``).

    Punctuation, digits and spaces join the run they follow (or the next run at the start); runs
    with no letters at all are merged into their neighbour, so nothing is lost and no voice is asked
    to say only a comma.
    """
    runs: list[list[str]] = []
    for piece in _RUN.findall(text):
        if _CJK_CHAR.search(piece) or re.match(r"[\u3000-\u303f\uff00-\uffef]", piece):
            lang = "zh" if _CJK_CHAR.search(piece) else ""
        else:
            lang = "en" if _LATIN_CHAR.search(piece) else ""
        if runs and (not lang or runs[-1][0] == lang or not runs[-1][0]):
            if not runs[-1][0]:
                runs[-1][0] = lang
            runs[-1][1] += piece
        else:
            runs.append([lang, piece])
    out = [(lang or detect_language(t), t.strip()) for lang, t in runs]
    # A Latin run's voice reads Latin punctuation: "Login。" -> "Login."
    out = [(lang, t.translate(_ASCII_PUNCT).strip() if lang != "zh" else t) for lang, t in out]
    return [(lang, t) for lang, t in out if t]


_ASCII_PUNCT = str.maketrans({"，": ", ", "。": ". ", "！": "! ", "？": "? ", "；": "; ", "：": ": ", "、": ", ",
                              "（": " (", "）": ") ", "“": '"', "”": '"', "‘": "'", "’": "'"})
