"""Counting-mode harness shared by the atheris targets in this folder.

With ``KYC_FUZZ_SUMMARY=path`` set, a target runs every input through :class:`Tally` instead
of letting libFuzzer stop at the first exception: each input is either accepted (its outcome
label counted) or a failure keyed by exception type and the innermost kyc frame, and a JSON
summary with peak RSS is rewritten every 1,000 inputs and at exit.
"""

from __future__ import annotations

import json
import os
import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

__all__ = ["Tally", "where"]


def where(exc: BaseException) -> str:
    """``file:line (function)`` of the innermost kyc frame of a traceback (the library's own)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/kyc/" in f.filename.replace(os.sep, "/")]
    chosen = mine or list(frames)
    if not chosen:
        return "?"
    f = chosen[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})"


class Tally:
    """Run ``check`` on each input, count outcomes and failures, write the JSON summary.

    ``check`` returns an outcome label (counted under ``outcomes``) or ``None``; ``mode_of``
    optionally names the input's mode (counted under ``by_mode`` and prefixed to failure keys).
    """

    def __init__(
        self,
        path: Path,
        target: str,
        check: Callable[[bytes], str | None],
        mode_of: Callable[[bytes], str] | None = None,
    ) -> None:
        self.path = path
        self.target = target
        self.check = check
        self.mode_of = mode_of
        self.inputs = 0
        self.outcomes: Counter[str] = Counter()
        self.by_mode: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.start = time.monotonic()

    def one(self, data: bytes) -> None:
        """Check one input; an exception is counted, never raised, so the run goes on."""
        self.inputs += 1
        prefix = ""
        if self.mode_of is not None:
            mode = self.mode_of(data)
            self.by_mode[mode] += 1
            prefix = f"{mode}: "
        try:
            outcome = self.check(data)
            if outcome is not None:
                self.outcomes[outcome] += 1
        except Exception as exc:
            key = f"{prefix}{type(exc).__module__}.{type(exc).__name__} at {where(exc)}"
            self.failures[key] += 1
            self.examples.setdefault(key, f"{str(exc)[:200]!r} input={data[:256].hex()}")
        if self.inputs % 1000 == 0:
            self.write()

    def write(self) -> None:
        """Atomically rewrite the JSON summary."""
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        summary: dict[str, object] = {
            "target": self.target,
            "inputs": self.inputs,
            "seconds": round(time.monotonic() - self.start, 1),
            "failures": dict(self.failures),
            "examples": self.examples,
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }
        if self.outcomes:
            summary["outcomes"] = dict(self.outcomes)
        if self.mode_of is not None:
            summary["by_mode"] = dict(self.by_mode)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, self.path)
