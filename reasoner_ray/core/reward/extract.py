"""Find the final answer in a chain-of-thought response.

Order, first hit wins:
1. the text after the LAST `### Answer:` marker (the format the paper trains on), on its line, or on the next
   non-empty line when the marker ends its line;
2. otherwise the last line that starts with `Answer:` / `Final answer:` (any case, markdown `#`, `*`, `>` allowed
   in front), read the same way;
3. otherwise the content of the last `\\boxed{...}` (math habit).
The answer is then stripped of whitespace, markdown emphasis (`**`, backticks), one pair of enclosing `$...$`
and an enclosing `\\boxed{...}`. No final answer, or an empty one, gives None (scored 0, reason "unparsed").
"""

from __future__ import annotations

import re

ANSWER_MARKER = "### Answer:"  # what the paper's CoT responses end with; prompts.py writes it, this reads it

_ANSWER_LINE = re.compile(r"^[ \t#>*]*(?:final[ \t]+)?answer[ \t]*\**[ \t]*[:：]", re.IGNORECASE | re.MULTILINE)
_BOXED = "\\boxed{"
_EMPHASIS = "*`"


def extract_final_answer(response: str) -> str | None:
    marker = response.rfind(ANSWER_MARKER)
    if marker >= 0:
        return _clean(_rest_of_answer_line(response, marker + len(ANSWER_MARKER)))
    last_line = None
    for last_line in _ANSWER_LINE.finditer(response):
        pass
    if last_line is not None:
        return _clean(_rest_of_answer_line(response, last_line.end()))
    boxed = _last_boxed(response)
    return _clean(boxed) if boxed is not None else None


def _rest_of_answer_line(text: str, start: int) -> str:
    """The rest of the line from `start`; when that is blank, the next non-blank line."""
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    if line.strip() or end < 0:
        return line
    for following in text[end + 1 :].splitlines():
        if following.strip():
            return following
    return ""


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`; None when absent or unclosed."""
    start = text.rfind(_BOXED)
    return _braced_content(text, start + len(_BOXED)) if start >= 0 else None


def _braced_content(text: str, content_start: int) -> str | None:
    """The text from `content_start` up to its matching closing brace (nested braces balanced)."""
    depth = 0
    for i in range(content_start, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[content_start:i]
            depth -= 1
    return None


def _clean(answer: str) -> str | None:
    answer = answer.strip().strip(_EMPHASIS).strip()
    if len(answer) >= 2 and answer[0] == "$" and answer[-1] == "$":
        answer = answer.strip("$").strip()
    if answer.startswith(_BOXED):
        content = _braced_content(answer, len(_BOXED))
        if content is not None and len(content) + len(_BOXED) + 1 == len(answer):  # the box wraps it all
            answer = content.strip()
    return answer or None
