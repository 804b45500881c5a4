"""Text normalisation and word error counting for ASR-based evaluation.

Both the reference transcripts (e.g. ``/work/shared/data/dev.csv``: an4 is
uppercase with spelled letters and numbers written as words, LJSpeech is mixed
case with punctuation and numbers written as words) and ASR hypotheses
(Whisper: mixed case, punctuation, digits) are mapped to one canonical form:

* lowercase ASCII, accents stripped;
* punctuation removed, apostrophes kept only inside words ("neild's",
  but "debtors'" -> "debtors");
* hyphens, dashes, slashes -> spaces ("twenty-seven" -> "twenty seven",
  "R-O-B-E-R-T-S" -> "r o b e r t s");
* digits expanded with ``num2words`` in the style of spoken read speech:
  ordinals ("42nd" -> "forty second"), 4-digit numbers 1100..2099 as years
  ("1990" -> "nineteen ninety", "1803" -> "eighteen oh three"), other integers
  as cardinals without "and" ("199" -> "one hundred ninety nine"),
  decimals digit-wise after "point", "%" -> "percent", "$5" -> "five dollars";
  digit strings that are read digit by digit (5+ digits without grouping
  commas, a leading zero, or hyphen-joined groups like "331-0188") become
  single digit words ("15136" -> "one five one three six");
* "oh" next to a number word -> "zero" ("one oh one" == "1-0-1");
* spelled letters: any letters separated by spaces, hyphens or dots become
  single-letter tokens ("R-O-B-E-R-T-S", "R. O. B." and "R O B" all give
  "r o b ..."); in text that has lowercase letters (ASR output, LJSpeech) an
  all-caps run of 2+ letters is read as an acronym / spelled word and split too
  ("Erase PQYVT 598" -> "erase p q y v t ...", "the US" -> "the u s"), while
  all-uppercase texts (the an4 references) are left as they are. With ``spelled="join"`` runs of two or more single-letter
  tokens are instead joined into one word ("r o b e r t s" -> "roberts"),
  which also matches an ASR that writes the spelled word as "Roberts".
"""

from __future__ import annotations

import re
import unicodedata

import jiwer
from num2words import num2words

__all__ = ["normalize_text", "word_errors"]

_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}

# A number token: grouped (1,234,567), or plain digits, optionally with a decimal part.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_RE_CURRENCY = re.compile(r"([$£€])\s?(" + _NUM + r")")
_RE_PERCENT = re.compile(r"(" + _NUM + r")\s?%")
_RE_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")
_RE_DIGIT_GROUPS = re.compile(r"\b\d+(?:-\d+)+\b")  # 331-0188, 412-268-3000
_RE_NUMBER = re.compile(_NUM)
_RE_CAPS_RUN = re.compile(r"(?<![A-Za-z'])([A-Z]{2,})('[sS])?(?![A-Za-z])")
_NUMBER_WORDS = frozenset(
    _DIGIT_WORDS
    + "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
    + "twenty thirty forty fifty sixty seventy eighty ninety hundred thousand".split()
)


def _clean_n2w(words: str) -> str:
    """num2words output -> plain words: no commas, hyphens or 'and'."""
    words = words.replace(",", " ").replace("-", " ")
    return " ".join(w for w in words.split() if w != "and")


def _digits(s: str) -> str:
    return " ".join(_DIGIT_WORDS[int(c)] for c in s if c.isdigit())


def _number_words(tok: str) -> str:
    """Spell one number token (as matched by ``_NUM``)."""
    if "." in tok:
        int_part, frac = tok.split(".", 1)
        return _number_words(int_part) + " point " + _digits(frac)
    if "," in tok:
        return _clean_n2w(num2words(int(tok.replace(",", ""))))
    if len(tok) > 1 and tok[0] == "0":
        return _digits(tok)
    if len(tok) >= 5:
        return _digits(tok)
    n = int(tok)
    if len(tok) == 4 and 1100 <= n <= 2099:
        return _clean_n2w(num2words(n, to="year"))
    return _clean_n2w(num2words(n))


def _split_caps(m: re.Match) -> str:
    letters, suffix = m.group(1), m.group(2) or ""
    return " " + " ".join(letters) + suffix + " "


def _expand_numbers(s: str) -> str:
    def currency(m: re.Match) -> str:
        amount = m.group(2)
        unit = _CURRENCY[m.group(1)]
        whole, _, cents = amount.partition(".")
        if whole == "1":
            unit = unit[:-1]
        if len(cents) == 2:  # $1.50 -> one dollar fifty cents
            cents_words = _number_words(str(int(cents))) + " cents" if int(cents) else ""
            return f" {_number_words(whole)} {unit} {cents_words} "
        return f" {_number_words(amount)} {unit} "

    s = _RE_CURRENCY.sub(currency, s)
    s = _RE_PERCENT.sub(lambda m: f" {_number_words(m.group(1))} percent ", s)
    s = s.replace("%", " percent ")
    s = _RE_ORDINAL.sub(
        lambda m: " " + _clean_n2w(num2words(int(m.group(1)), to="ordinal")) + " ", s
    )
    s = _RE_DIGIT_GROUPS.sub(lambda m: " " + _digits(m.group(0)) + " ", s)
    s = _RE_NUMBER.sub(lambda m: " " + _number_words(m.group(0)) + " ", s)
    return s


def normalize_text(s: str | None, spelled: str = "split", caps: str = "auto") -> str:
    """Canonical lowercase word sequence for WER scoring (see module docstring).

    ``spelled``: "split" (default) keeps spelled letters as single-letter
    tokens; "join" joins runs of >= 2 single-letter tokens into one word.
    ``caps``: what an all-caps word ("PQYVT", "SPEER") means. "auto" (default):
    spelled letters if the text also has lowercase letters, else an ordinary
    word (all-uppercase transcripts); "split": always spelled letters (text from
    a cased ASR such as Whisper); "keep": always an ordinary word.
    """
    if spelled not in ("split", "join"):
        raise ValueError(f"spelled must be 'split' or 'join', not {spelled!r}")
    if caps not in ("auto", "split", "keep"):
        raise ValueError(f"caps must be 'auto', 'split' or 'keep', not {caps!r}")
    if not s:
        return ""
    s = unicodedata.normalize("NFKC", str(s))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # Strip accents (café -> cafe) but keep other characters for now.
    s = "".join(
        c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c)
    )
    if caps == "split" or (caps == "auto" and any(c.islower() for c in s)):
        # Mixed-case text (ASR output, LJSpeech): an all-caps run of 2+ letters is an
        # acronym / spelled word ("Erase PQYVT 598", "the US") -> single letters.
        # All-uppercase texts (an4, speechocean762 references) are left alone.
        s = _RE_CAPS_RUN.sub(_split_caps, s)
    s = s.lower()
    s = s.replace("&", " and ")
    s = _expand_numbers(s)
    # Apostrophes survive only between two word characters (don't, neild's).
    s = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", s)
    # Everything else that isn't a letter or apostrophe is a separator
    # (punctuation, hyphens, dashes, dots between spelled letters, ...).
    s = re.sub(r"[^a-z']+", " ", s)
    words = s.split()
    # "oh" next to a number word is a spoken zero ("three one oh one", "eighteen oh
    # three"); digit strings are spelled with "zero", so map it to that.
    words = [
        "zero"
        if w == "oh"
        and (
            (i > 0 and words[i - 1] in _NUMBER_WORDS)
            or (i + 1 < len(words) and words[i + 1] in _NUMBER_WORDS)
        )
        else w
        for i, w in enumerate(words)
    ]
    if spelled == "join":
        out: list[str] = []
        run: list[str] = []
        for w in words + [""]:
            if len(w) == 1:
                run.append(w)
                continue
            if len(run) >= 2:
                out.append("".join(run))
            else:
                out.extend(run)
            run = []
            if w:
                out.append(w)
        words = out
    return " ".join(words)


def word_errors(
    reference: str | None,
    hypothesis: str | None,
    spelled: str = "split",
    hyp_caps: str = "split",
) -> dict:
    """Word error counts between normalised reference and hypothesis.

    The reference is normalised with ``caps="auto"``, the hypothesis with
    ``caps=hyp_caps`` (default "split": it comes from a cased ASR like Whisper,
    which writes spelled words as "SPEER" or "PQYVT", or from a lowercase one
    like pocketsphinx; pass "auto" for an ASR that outputs all-uppercase text).

    Returns dict with ``wer``, ``substitutions``, ``deletions``, ``insertions``,
    ``hits``, ``ref_words`` (and the normalised ``reference``/``hypothesis``).
    For an empty reference, ``wer`` is the number of inserted words (0.0 when
    the hypothesis is empty too), i.e. errors / max(ref_words, 1). To pool over
    many clips, sum errors and ``ref_words`` rather than averaging ``wer``.
    """
    ref = normalize_text(reference, spelled=spelled, caps="auto")
    hyp = normalize_text(hypothesis, spelled=spelled, caps=hyp_caps)
    ref_n = len(ref.split())
    if ref_n == 0:
        ins = len(hyp.split())
        return {
            "wer": float(ins),
            "substitutions": 0,
            "deletions": 0,
            "insertions": ins,
            "hits": 0,
            "ref_words": 0,
            "reference": ref,
            "hypothesis": hyp,
        }
    out = jiwer.process_words(ref, hyp)
    s, d, i, h = (int(out.substitutions), int(out.deletions), int(out.insertions), int(out.hits))
    return {
        "wer": (s + d + i) / ref_n,
        "substitutions": s,
        "deletions": d,
        "insertions": i,
        "hits": h,
        "ref_words": ref_n,
        "reference": ref,
        "hypothesis": hyp,
    }
