"""Writes the stage's records as they stream in, and keeps the tally that becomes `summary.json`.

Layout under the output folder (files appear only when the run completes: each is written as `*.partial` and
renamed at the end, so a killed run never leaves a half file that looks whole):
    rows.jsonl                       verified VQARows with `rationale` (reasoner_ray.data.readers format "jsonl")
    rejected.jsonl                   RejectedRow records: id, step, reason, detail
    sft/<source>/cot.none.jsonl      LLaVA conversations, CoT (readers format "llava"), as the paper's release
    sft/<source>/direct.none.jsonl   LLaVA conversations, direct answers
    summary.json                     counts, rejections by reason, retries, token totals, estimated cost
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from reasoner_ray.core.rows import RejectedRow
from reasoner_ray.storage import write_atomic


@dataclass
class Tally:
    input_rows: int = 0
    verified: int = 0
    rejected: Counter = field(default_factory=Counter)
    cached: int = 0
    attempts: int = 0
    retries: int = 0
    failed_calls: int = 0  # rows whose calls finally failed (teacher_* reasons)
    tokens: Counter = field(default_factory=Counter)  # fresh_/cached_ prompt/completion tokens
    started: float = field(default_factory=time.monotonic)

    def add(self, rec: dict[str, Any]) -> None:
        self.input_rows += 1
        if rec["status"] == "verified":
            self.verified += 1
        else:
            self.rejected[rec["reason"]] += 1
            self.failed_calls += rec["step"] == "teacher"
        self.attempts += rec["attempts"]
        self.retries += max(0, rec["attempts"] - 1)
        origin = "cached" if rec["cached"] else "fresh"
        self.cached += bool(rec["cached"])
        self.tokens[f"{origin}_prompt"] += rec["prompt_tokens"]
        self.tokens[f"{origin}_completion"] += rec["completion_tokens"]

    def rate(self) -> float:
        return self.input_rows / max(1e-9, time.monotonic() - self.started)

    def cost_usd(self, prices: dict[str, dict[str, float]], model: str, origin: str) -> float | None:
        price = prices.get(model)
        if price is None:
            return None
        return (self.tokens[f"{origin}_prompt"] * price.get("input", 0.0)
                + self.tokens[f"{origin}_completion"] * price.get("output", 0.0)) / 1e6

    def summary(self, prices: dict[str, dict[str, float]], model: str) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "verified": self.verified,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "served_from_cache": self.cached,
            "teacher_attempts": self.attempts,
            "retries": self.retries,
            "failed_calls": self.failed_calls,
            "tokens": dict(sorted(self.tokens.items())),
            "model": model,
            "estimated_cost_usd": self.cost_usd(prices, model, "fresh"),  # None: model not in teacher.prices
            "estimated_cost_usd_without_cache": (None if self.cost_usd(prices, model, "fresh") is None else
                                                 self.cost_usd(prices, model, "fresh") + self.cost_usd(prices, model, "cached")),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "rows_per_s": round(self.rate(), 2),
        }


class OutputWriter:
    def __init__(self, out_dir: str | os.PathLike[str]):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.files: dict[Path, IO[str]] = {}

    def _append(self, rel: str, line: str) -> None:
        path = self.out / rel
        fh = self.files.get(path)
        if fh is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.files[path] = open(path.with_name(path.name + ".partial"), "w")  # noqa: SIM115
        fh.write(line + "\n")

    def write(self, rec: dict[str, Any]) -> None:
        if rec["status"] == "verified":
            self._append("rows.jsonl", rec["row"])
            source = rec["source"] or "unknown"
            self._append(f"sft/{source}/cot.none.jsonl", rec["cot"])
            self._append(f"sft/{source}/direct.none.jsonl", rec["direct"])
        else:
            rejected = RejectedRow(id=rec["id"], step=rec["step"], reason=rec["reason"], detail=rec["detail"])
            self._append("rejected.jsonl", json.dumps(rejected.to_record()))

    def finish(self, summary: dict[str, Any]) -> dict[str, str]:
        """Close, rename every `.partial` to its final name, write summary.json; returns relative -> path."""
        for name in ("rows.jsonl", "rejected.jsonl"):  # always present, even when empty
            if self.out / name not in self.files:
                self._append_empty(name)
        paths = {}
        for path, fh in self.files.items():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(path.with_name(path.name + ".partial"), path)
            paths[str(path.relative_to(self.out))] = str(path)
        summary_path = self.out / "summary.json"
        write_atomic(summary_path, json.dumps({**summary, "files": sorted(paths)}, indent=2))
        paths["summary.json"] = str(summary_path)
        return paths

    def _append_empty(self, rel: str) -> None:
        path = self.out / rel
        self.files[path] = open(path.with_name(path.name + ".partial"), "w")  # noqa: SIM115
