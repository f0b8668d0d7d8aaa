"""The one answer extractor (GSM8K numbers, StrategyQA yes/no): eval accuracy and the LPO
exact-match reward read a reply through the same functions, so they score it the same way.

Follows the DoLa/SLED reference `clean_answer`: after the trigger "the answer is" take the
first number, otherwise the last number in the text; `#### N` (the GSM8K label format) wins
when the model writes it. Commas are dropped; a trailing '.' is not part of the number.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"-?\d+\.?\d*")
_GOLD = re.compile(r"####\s*(-?[0-9.,]+)")
TRIGGER = "the answer is"
STOP_STRINGS = ("\nQ:", "\n\n")


def truncate(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> str:
    """Cut a completion at the first stop string (the reference stops on 'Q:')."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def _canonical(number: str) -> str | None:
    number = number.replace(",", "").rstrip(".")
    try:
        value = float(number)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def gold_number(answer: str) -> str:
    """The `#### N` label of a GSM8K answer; ValueError when there is none."""
    match = _GOLD.search(answer)
    number = _canonical(match.group(1)) if match else None
    if number is None:
        raise ValueError("answer has no '#### N' label")
    return number


def extract_number(completion: str) -> str | None:
    """The model's numeric answer, canonical ('18.0' -> '18'), or None."""
    hashes = _GOLD.search(completion)
    if hashes:
        return _canonical(hashes.group(1))
    text = completion.lower().replace(",", "")
    head, trigger, tail = text.partition(TRIGGER)
    found = _NUMBER.findall(tail if trigger else head)
    if not found:
        return None
    return _canonical(found[0] if trigger else found[-1])


def predicted_number(reply: str) -> str | None:
    """The number a reply answers with: the reply cut at the first stop string, then
    `extract_number`. Eval's GSM8K accuracy and LPO's exact_match reward both use it."""
    return extract_number(truncate(reply))


def gold_yes_no(answer: Any) -> bool:
    """StrategyQA label: a JSON bool or 'yes'/'no'/'true'/'false'; ValueError otherwise."""
    if isinstance(answer, bool):
        return answer
    text = str(answer).strip().lower()
    if text in ("yes", "true"):
        return True
    if text in ("no", "false"):
        return False
    raise ValueError(f"answer {answer!r} is not yes/no or true/false")


def extract_yes_no(completion: str) -> bool | None:
    """First yes/no word after the trigger (or in the whole text without one), else None."""
    text = completion.lower()
    head, trigger, tail = text.partition(TRIGGER)
    match = re.search(r"\b(yes|no)\b", tail if trigger else head)
    return None if match is None else match.group(1) == "yes"


def exact_match(reply: str, answer) -> float:
    """1.0 when the reply's number (`predicted_number`, the rule eval's GSM8K accuracy uses) equals the reference answer's (`#### N`, else its number), else 0.0."""
    reference = extract_number(str(answer))
    if reference is None:
        reference = str(answer).strip()
    return float(predicted_number(reply) == reference)
