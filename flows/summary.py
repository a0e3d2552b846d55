"""Run a task, note whether it ran or came from cache and how long it took, and print that."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import NO_CACHE


@dataclass
class StageRun:
    stage: str
    state: str  # "Completed" (ran), "Cached", or "Checked" (an uncached look-up that ran)
    seconds: float


def run_stage(task, log: list[StageRun], **kwargs: Any) -> Any:
    """Call ``task``, append its state and wall time to ``log``, return its result (or raise)."""
    started = time.perf_counter()
    state = task(**kwargs, return_state=True)
    result = state.result()  # raises the task's exception if it failed
    looked_up = task.cache_policy is NO_CACHE  # snapshot, model, input: they always run
    log.append(StageRun(task.name, "Checked" if looked_up else state.name,
                        time.perf_counter() - started))
    return result


def format_stages(stages: list[StageRun]) -> list[str]:
    """One line per stage: ran or cached, and its wall time; then whether TensorFlow loaded."""
    words = {"Cached": "cached", "Checked": "checked"}
    rows = [f"  {s.stage:<12} {words.get(s.state, 'ran'):<7} {s.seconds:6.1f} s" for s in stages]
    tf_note = "imported" if "tensorflow" in sys.modules else "not imported"
    return ["Stages:", *rows, f"TensorFlow: {tf_note}"]


def format_summary(stages: list[StageRun], metrics: dict[str, float], report_path: str,
                   notes: Sequence[str] = ()) -> str:
    return "\n".join([
        *format_stages(stages),
        *notes,
        "Metrics: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in metrics.items()),
        f"Report: {report_path}",
    ])
