"""Rationales for easy-VQA written from the image's own annotations, in varied phrasings.

The stand-in teacher knows an image's shape and colour from every question asked about that image (easy-VQA
asks several per image). It then writes what a good rationale holds: the visual facts first, then the step
from them to the answer, then `### Answer: <answer>`. Pure functions; the server picks phrasings with a
seeded RNG so the same request always gets the same text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

SHAPES = ("circle", "rectangle", "triangle")
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
_SHAPE_RE = re.compile(r"\b(circle|rectangle|triangle)\b")
_COLOR_RE = re.compile(r"\b(red|green|blue|black|gray|teal|brown|yellow)\b")
_NEGATION_RE = re.compile(r"\b(not|no)\b")

DESCRIBE = (
    "The image shows a {color} {shape} on a plain background.",
    "In the image there is a single {color} {shape}.",
    "Looking at the picture, I see one shape: a {shape} filled with {color}.",
    "The only object in the image is a {shape}, and its color is {color}.",
)
ASK_PRESENCE = (
    "The question asks whether {target} is in the image.",
    "We need to check if {target} appears.",
    "The question is about {target}.",
)
PRESENCE_TRUE = ("So {target} is present.", "That matches {target}.")
PRESENCE_FALSE = ("So there is no {target}.", "That does not match {target}.")
NEGATED = ("The question is negated, so the answer flips.", "Because the question says not, the answer is the opposite.")
ASK_COLOR = ("The question asks for the color of the shape.", "We are asked which color the shape has.")
ASK_SHAPE = ("The question asks which shape it is.", "We are asked to name the shape.")
CONCLUDE = ("Therefore the answer is {answer}.", "So the answer is {answer}.", "Hence the answer is {answer}.")


def gather_facts(questions: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Shape and colour of one image from its (question, answer) pairs."""
    facts: dict[str, str] = {}
    for question, answer in questions:
        if answer in SHAPES:
            facts["shape"] = answer
            color = _COLOR_RE.search(question)
            if color:
                facts["color"] = color.group(1)
        elif answer in COLORS:
            facts["color"] = answer
            shape = _SHAPE_RE.search(question)
            if shape:
                facts["shape"] = shape.group(1)
        elif answer == "yes" and not _NEGATION_RE.search(question):
            for regex, key in ((_SHAPE_RE, "shape"), (_COLOR_RE, "color")):
                m = regex.search(question)
                if m:
                    facts[key] = m.group(1)
    return facts


def easy_vqa_rationale(question: str, answer: str, facts: dict[str, str], rng: random.Random) -> str:
    """A rationale that reaches `answer`, without the final `### Answer:` line."""
    shape = facts.get("shape", "shape")
    color = facts.get("color", "colored")
    steps = [rng.choice(DESCRIBE).format(shape=shape, color=color)]
    if answer in ("yes", "no"):
        m_shape, m_color = _SHAPE_RE.search(question), _COLOR_RE.search(question)
        target = f"a {m_shape.group(1)}" if m_shape else f"a {m_color.group(1) if m_color else 'matching'} shape"
        steps.append(rng.choice(ASK_PRESENCE).format(target=target))
        negated = bool(_NEGATION_RE.search(question))
        present = (answer == "yes") != negated
        steps.append(rng.choice(PRESENCE_TRUE if present else PRESENCE_FALSE).format(target=target))
        if negated:
            steps.append(rng.choice(NEGATED))
    elif answer in COLORS:
        steps.append(rng.choice(ASK_COLOR))
    else:
        steps.append(rng.choice(ASK_SHAPE))
    steps.append(rng.choice(CONCLUDE).format(answer=answer))
    return " ".join(steps)


def corpus_sentences() -> list[str]:
    """Every phrasing, filled with every shape and colour: text for training the tiny tokenizer."""
    out: list[str] = []
    for shape in SHAPES:
        for color in COLORS:
            out += [t.format(shape=shape, color=color) for t in DESCRIBE]
            for target in (f"a {shape}", f"a {color} shape"):
                out += [t.format(target=target) for t in ASK_PRESENCE + PRESENCE_TRUE + PRESENCE_FALSE]
    for answer in SHAPES + COLORS + ("yes", "no"):
        out += [t.format(answer=answer) for t in CONCLUDE]
    return out + list(NEGATED + ASK_COLOR + ASK_SHAPE)


# Rationales for rows of any other source, where the teacher knows only the question and its annotated answer.
GENERIC_LOOK = (
    "The question asks: {question}",
    "To answer, I look at the part of the image the question is about: {question}",
)
GENERIC_STEP = (
    "The visual details in the image point to {answer}.",
    "What the image shows matches {answer}.",
)
# Text a badly behaved teacher returns: a rationale that stops before any final answer.
TRUNCATED = ("The image shows", "Looking at the picture, I", "I need to look more closely at the")


def generic_rationale(question: str, answer: str, rng: random.Random) -> str:
    question = question.splitlines()[0] if question else question
    steps = [rng.choice(GENERIC_LOOK).format(question=question), rng.choice(GENERIC_STEP).format(answer=answer)]
    return " ".join(steps + [rng.choice(CONCLUDE).format(answer=answer)])


def wrong_easy_vqa_answer(answer: str, rng: random.Random) -> str:
    """A plausible but different answer of the same kind (yes <-> no, another shape, another colour)."""
    for pool in (("yes", "no"), SHAPES, COLORS):
        if answer in pool:
            return rng.choice([a for a in pool if a != answer])
    return "none of them"
