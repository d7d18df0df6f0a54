"""Benchmark of the reward scorer on one core: chains/s per answer type, and per-call latency for `math`.

    .venv/bin/python benchmarks/bench_reward.py [--questions 500] [--seed 0]

Targets (issue 3): >= 20,000 chains/s for every non-math type; math p99 <= 20 ms per chain. Throughput is given
per wall-clock second and per CPU second of this process (the one-core figure that other jobs on a shared machine
do not distort); math latency is wall-clock, as it includes the math-verify child. Chains are ~100-word
rationales ending in `### Answer: ...`, 32 per question as the paper samples them (a question's gold and its
repeated answers hit the caches, as they do in the pipeline). "cold" rows give every chain a fresh answer, so
only the question's gold is cached. The process (and so the math-verify worker) is pinned to one CPU; caches are
cleared before each run. The worker is started before timing (its start-up is printed separately), and runaway
inputs are timed one by one: they end at the time bound by design, and the call after one also waits for the
replacement worker to start.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import time

from reasoner_ray.core.reward import math_answer, normalize, numeric, score, scoring
from reasoner_ray.operators.scoring import score_batch

SAMPLES_PER_QUESTION = 32
WORDS = "the chart shows a bar for each year and the tallest bar is labelled with its value in blue".split()


def rationale(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(100))


def word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))


Case = tuple[str, object, str, list[str] | None]  # response, gold, answer type, choices


def make_cases(answer_type: str, questions: int, cold: bool, rng: random.Random) -> list[Case]:
    cases: list[Case] = []
    for _ in range(questions):
        gold, choices, candidates = question(answer_type, rng)
        for _ in range(SAMPLES_PER_QUESTION):
            answer = fresh_answer(answer_type, rng, choices) if cold else rng.choice(candidates)
            cases.append((f"{rationale(rng)}\n### Answer: {answer}", gold, answer_type, choices))
    return cases


def question(answer_type: str, rng: random.Random) -> tuple[object, list[str] | None, list[str]]:
    """(gold, choices, a few answers the samples pick from: the gold in other forms and wrong ones)."""
    if answer_type == "multiple_choice":
        choices = [word(rng) for _ in range(4)]
        index = rng.randrange(4)
        letter = "ABCD"[index]
        return letter, choices, [letter, f"({letter})", f"{letter}) {choices[index]}", "B", choices[0]]
    if answer_type == "yes_no":
        return rng.choice(["yes", "no"]), None, ["yes", "Yes.", "no", "No, it is not."]
    if answer_type == "number":
        value = rng.randint(1, 100_000)
        return f"{value:,}", None, [str(value), f"{value:,}", f"{value * 1.03:.1f}", str(value * 2), f"{value}%"]
    if answer_type == "open":
        humans = [word(rng) for _ in range(3)]
        gold = rng.choices(humans, k=10) if rng.random() < 0.5 else humans[0]
        return gold, None, [humans[0], f"The {humans[0].title()}.", humans[1], "two", word(rng)]
    if answer_type == "anls":
        gold = f"{word(rng)} {word(rng)}"
        return [gold, gold.upper()], None, [gold, gold.title(), gold[:-1] + "x", word(rng)]
    raise ValueError(answer_type)


def fresh_answer(answer_type: str, rng: random.Random, choices: list[str] | None) -> str:
    if answer_type == "multiple_choice":
        return rng.choice([rng.choice("ABCD"), f"({rng.choice('ABCD')}) {word(rng)}", rng.choice(choices or [""])])
    if answer_type == "yes_no":
        return f"{rng.choice(['yes', 'no'])}, {word(rng)}"
    if answer_type == "number":
        return f"{rng.uniform(0, 1e5):,.2f}"
    return f"{word(rng)} {word(rng)}"


def clear_caches() -> None:
    for cached in (scoring._prepared_gold, normalize.vqa_normalize, normalize.simple_normalize, numeric.parse_number,
                   math_answer.plain_number, math_answer._verified):  # fmt: skip
        cached.cache_clear()


def throughput(cases: list[Case]) -> tuple[float, float]:
    """Chains per second of wall time and of this process's CPU time (steady when other jobs share the machine)."""
    clear_caches()
    wall, cpu = time.perf_counter(), time.process_time()
    for response, gold, answer_type, choices in cases:
        score(response, gold, answer_type, choices)
    return len(cases) / (time.perf_counter() - wall), len(cases) / (time.process_time() - cpu)


def latencies_ms(cases: list[Case]) -> list[float]:
    clear_caches()
    out = []
    for response, gold, answer_type, choices in cases:
        start = time.perf_counter()
        score(response, gold, answer_type, choices)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def math_cases(questions: int, cold: bool, rng: random.Random) -> list[Case]:
    """Golds as in MathVista / G-LLaVA: mostly numbers, some LaTeX (fractions, roots, pi, degrees)."""
    cases: list[Case] = []
    for _ in range(questions):
        a, b = rng.randint(1, 60), rng.randint(2, 13)
        kind = rng.random()
        if kind < 0.6:
            gold, forms = str(a * b), [str(a * b), f"{a * b}.0", str(a * b + 1), f"{a * b} cm", f"{a * b}^\\circ"]
        elif kind < 0.8:
            gold, forms = f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"{a / b:.6f}", f"{a / b:.2f}"]
        else:
            gold = f"{a}\\sqrt{{{b}}}"
            forms = [gold, f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{{{b + 1}}}", f"{a * b ** 0.5:.6f}", f"{a}\\pi"]
        for _ in range(SAMPLES_PER_QUESTION):
            answer = fresh_math_answer(rng) if cold else rng.choice(forms)
            cases.append((f"{rationale(rng)}\n### Answer: {answer}", gold, "math", None))
    return cases


def fresh_math_answer(rng: random.Random) -> str:
    """An answer of the shapes the golds have (numbers, decimals, fractions, roots, multiples of pi, degrees)."""
    a, b = rng.randint(1, 10_000), rng.randint(2, 997)
    return rng.choice([str(a), f"{a}.{b}", f"\\frac{{{a}}}{{{b}}}", f"{a}\\sqrt{{{b}}}", f"{a}\\pi", f"{a}^\\circ"])


def symbolic_cases(count: int, rng: random.Random) -> list[Case]:
    """Expressions in a variable (rare in visual math sets): every comparison needs sympy's simplify."""
    cases: list[Case] = []
    for _ in range(count):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        gold = f"{a}x + {b}"
        answer = rng.choice([f"{b} + {a}x", f"{a}(x + {b})", f"{a}x^{{2}} + {b}", f"\\frac{{{a}x}}{{{b}}}"])
        cases.append((f"{rationale(rng)}\n### Answer: {answer}", gold, "math", None))
    return cases


def report(label: str, figures: str) -> None:
    print(f"  {label:<36} {figures}")


def latency_figures(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.50):7.3f} ms   p99 {percentile(values, 0.99):7.2f} ms   "
            f"max {max(values):7.1f} ms   ({len(values)} chains)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500, help="questions per type (x32 chains)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    if hasattr(os, "getloadavg"):  # timings on a shared, loaded machine are inflated: say so next to them
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    print(f"non-math types: chains/s on one core ({args.questions} questions x {SAMPLES_PER_QUESTION} chains)")
    print(f"  {'':<36} {'wall':>9} {'cpu':>9}   {'cold wall':>9} {'cold cpu':>9}   (chains/s)")
    for answer_type in ("multiple_choice", "yes_no", "number", "open", "anls"):
        warm = throughput(make_cases(answer_type, args.questions, cold=False, rng=rng))
        cold = throughput(make_cases(answer_type, args.questions, cold=True, rng=rng))
        report(answer_type, f"{warm[0]:>9,.0f} {warm[1]:>9,.0f}   {cold[0]:>9,.0f} {cold[1]:>9,.0f}")

    cases = make_cases("open", args.questions, cold=False, rng=rng)
    batch = {column: [case[i] for case in cases] for i, column in enumerate(("text", "answer", "answer_type", "choices"))}
    clear_caches()
    start = time.perf_counter()
    score_batch(batch)
    report("score_batch (open, one batch)", f"{len(cases) / (time.perf_counter() - start):>9,.0f} chains/s")

    print("math: per-chain latency")
    start = time.perf_counter()
    math_answer.VERIFIER.start()
    report("worker start-up (once per process)", f"{(time.perf_counter() - start) * 1e3:.0f} ms")
    report("32 samples/question", latency_figures(latencies_ms(math_cases(max(1, args.questions // 5), False, rng))))
    report("cold (every answer new)", latency_figures(latencies_ms(math_cases(max(1, args.questions // 5), True, rng))))
    report("symbolic (x-expressions, cold)", latency_figures(latencies_ms(symbolic_cases(args.questions, rng))))
    runaway = ["10^{10^{10}}", "2^{3^{4^{5}}}", "\\left(1+\\frac{1}{10^{9}}\\right)^{10^{9}}"]
    values = latencies_ms([(f"### Answer: {r}", "5\\sqrt{2}", "math", None) for r in runaway])
    report(f"runaway inputs (bound {math_answer.MATH_TIMEOUT_S:.0f} s)", "   ".join(f"{v / 1e3:.1f} s" for v in values))


if __name__ == "__main__":
    main()
