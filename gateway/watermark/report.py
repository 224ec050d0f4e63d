"""Output of `distill-guard watermark detect`: one JSON object or table row per input."""

from __future__ import annotations

from typing import Any

from gateway.watermark.detect import ATTRIBUTION_ALPHA, DETECTION_Z, Attribution, Detection


def _attribution(a: Attribution | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"identity": a.identity, "positions": a.score.positions, "hits": a.score.hits,
            "z": round(a.score.z, 3), "p": a.score.p}


def as_json(name: str, d: Detection) -> dict[str, Any]:
    return {
        "input": name,
        "words": d.words,
        "positions": d.positions,
        "deployment": {"positions": d.deployment.positions, "hits": d.deployment.hits,
                       "z": round(d.deployment.z, 3), "p": d.deployment.p},
        "marked": d.marked,
        "threshold_z": DETECTION_Z,
        "candidates": d.candidates,
        "best": _attribution(d.best),
        "runner_up": _attribution(d.runner_up),
        "attributed": d.attributed,
        "attribution_alpha": ATTRIBUTION_ALPHA,
    }


_HEADER = ("input", "words", "pos", "z", "p", "verdict", "best identity", "z", "p",
           "runner-up", "z")


def table(rows: list[tuple[str, Detection]]) -> str:
    """A plain-text table, one line per input."""
    lines = [_HEADER]
    for name, d in rows:
        verdict = "marked" if d.marked else "not marked"
        best = d.best
        runner = d.runner_up
        lines.append((
            name, str(d.words), str(d.positions), f"{d.deployment.z:.2f}",
            f"{d.deployment.p:.2g}", verdict,
            "-" if best is None else best.identity + (" *" if d.attributed else ""),
            "-" if best is None else f"{best.score.z:.2f}",
            "-" if best is None else f"{best.score.p:.2g}",
            "-" if runner is None else runner.identity,
            "-" if runner is None else f"{runner.score.z:.2f}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    out.append(f"marked: deployment z >= {DETECTION_Z:g}; * attributed: best p x candidates "
               f"< {ATTRIBUTION_ALPHA:g}")
    return "\n".join(out)
