"""What a run says once about how its model was compiled: executor, why, compile time."""
from __future__ import annotations

from typing import Any, Callable, Dict

from .backend import Backend


def executor_report(model: Any, backend: Backend, seconds: float) -> Dict[str, Any]:
    """The executor record for results.json: portable_poptorch's own report, or PopTorch's compiler."""
    if backend.is_portable:
        return model.executorReport()
    return {"executor": "poptorch", "reason": "PopTorch compiles with PopART/Poplar", "trials": [],
            "compile_s": round(seconds, 3)}


def log_compiled(report: Dict[str, Any], seconds: float, log: Callable[[str], None],
                 once: Callable[[str], None]) -> None:
    log(f"Compiled and loaded the model with the {report['executor']} executor in {seconds:.2f} s "
        "(excluded from the figures).")
    if report.get("reason"):
        once(f"Executor: {report['reason']}.")
