"""What a card number is, and how it is hidden: the one rule every string from Concur passes through.

A card number in free text is 13-19 digits, optionally grouped by single spaces or dashes, that
passes the Luhn check; it becomes ``****`` and its last four digits wherever it stands, and nothing
else in the text changes. So a 13-digit ticket number, a loyalty number or a phone number arrives as
sent unless it happens to be Luhn-valid (one in ten random digit strings is: the price of catching
every card number an agent pastes into a remark). A field that *is* a card number (an FOP account
number) is masked whatever it holds, and a card verification code is hidden entirely.
"""

from __future__ import annotations

import re

# 13 or more digits joined by single spaces or dashes; the separators are where a card number may
# start or end inside a longer run ("call 0044 4111 1111 1111 1111").
_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}(?!\d)", re.ASCII)
# Groups of four as cards are printed, split the same way throughout by up to two of " ._/-"
# (4111.1111.1111.1111, "4111  1111  1111  1111"). Only whole groups of four, so a decimal such as a
# latitude (38.812690000000) is never read as one.
_GROUPED = re.compile(r"(?<!\d)\d{4}([ ._/-]{1,2})\d{4}\1\d{4}\1\d{1,7}(?!\d|\1\d)", re.ASCII)
_SEPARATOR = re.compile(r"[ -]")
_MASKED = re.compile(r"[*Xx•]+\d{4}", re.ASCII)
_NOT_DIGIT = re.compile(r"\D", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)
MIN_DIGITS, MAX_DIGITS = 13, 19


def mask(secret: str) -> str:
    """A secret shown by its last four characters only (the rule for tokens and card numbers alike)."""
    return "****" + secret[-4:] if len(secret) > 8 else "****"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = ord(digit) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and luhn_valid(digits)


def scrub_card_numbers(text: str) -> str:
    """``text`` with every card number in it masked to its last four digits, and nothing else changed."""
    if len(text) < MIN_DIGITS:
        return text
    return _GROUPED.sub(_scrub_grouped, _RUN.sub(_scrub_run, text))


def mask_card_field(value: str) -> str:
    """A value that is a card number by where it stands: masked whether or not it passes Luhn (one
    Concur masked already, ``XXXXXXXXXXXX1111``, shows the same last four)."""
    compact = _SEPARATOR.sub("", value)
    if _MASKED.fullmatch(compact):
        return "****" + compact[-4:]
    return mask(compact)


def hide(value: str) -> str:
    """A value nobody downstream may see any part of (a CVV)."""
    return "****"


def _scrub_grouped(match: re.Match[str]) -> str:
    digits = _NOT_DIGIT.sub("", match.group())
    return mask(digits) if is_card_number(digits) else match.group()


def _scrub_run(match: re.Match[str]) -> str:
    """Mask the card numbers in one run of digit groups: the whole run, or a card-shaped span of whole
    groups inside it ("call 0044 4111 1111 1111 1111"); overlapping spans are masked as one."""
    run = match.group()
    groups = [(m.start(), m.end()) for m in _DIGITS.finditer(run)]
    sizes = [end - start for start, end in groups]
    spans: list[tuple[int, int]] = []  # in order of start, overlaps merged
    for first in range(len(groups)):
        count = 0
        for last in range(first, len(groups)):
            count += sizes[last]
            if count > MAX_DIGITS:
                break
            if count < MIN_DIGITS:  # counted before anything is joined: most spans end here
                continue
            whole = first == 0 and last == len(groups) - 1
            if not (whole or _card_shaped(sizes[first : last + 1])):
                continue
            if not luhn_valid("".join(run[start:end] for start, end in groups[first : last + 1])):
                continue
            start, end = groups[first][0], groups[last][1]
            if spans and start < spans[-1][1]:
                previous_start, previous_end = spans.pop()
                start, end = previous_start, max(end, previous_end)
            spans.append((start, end))
    if not spans:
        return run
    out, position = [], 0
    for start, end in spans:
        out += [run[position:start], mask(_NOT_DIGIT.sub("", run[start:end]))]
        position = end
    out.append(run[position:])
    return "".join(out)


def _card_shaped(sizes: list[int]) -> bool:
    """How cards are printed: one block, fours with a shorter tail (4-4-4-4, 4-4-4-4-3), or 4-6-5/4-6-4."""
    if len(sizes) == 1:
        return True
    return all(size == 4 for size in sizes[:-1]) or sizes in ([4, 6, 5], [4, 6, 4])
