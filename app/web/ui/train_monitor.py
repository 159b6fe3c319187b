"""The Train tab's hacking monitor: the training reward plotted against the gold signal, and a
warning banner naming the last checkpoint before the hacking began.

The numbers are the core's (:func:`app.core.monitoring.job_monitor`), the same the REST API's
job detail carries. Handler: :func:`show_monitor`; :func:`build` lays the view out and
:func:`wire` refreshes it with the chosen job and the tab's timer.
"""

import html
from typing import Any

import gradio as gr
import pandas as pd

from app.core import jobs, monitoring
from app.core.models import Role
from app.web.context import Studio
from app.web.ui.common import bind, caller, friendly, ident

COLUMNS = ["step", "value", "series", "raw"]
# What each plotted series is, in the order the legend shows them.
SERIES = {"train_reward": "training reward", "gold": "gold signal", "hack_drift": "hack drift"}


def _scaled(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    return [0.5] * len(values) if high == low else [(v - low) / (high - low) for v in values]


def monitor_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    """The plot's long table: each series scaled to its own range over the run (0 = its
    lowest, 1 = its highest), so a rising reward and a falling gold signal read at a glance
    whatever their units; ``raw`` keeps the measured value for the tooltip."""
    rows = []
    for key, label in SERIES.items():
        found = [(p["step"], p[key]) for p in points if p.get(key) is not None]
        if not found:
            continue
        scaled = _scaled([value for _, value in found])
        rows += [
            {"step": step, "value": y, "series": label, "raw": round(value, 4)}
            for (step, value), y in zip(found, scaled, strict=True)
        ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"step": "int64", "value": "float64", "series": "str", "raw": "float64"})


def gold_label(gold_signal: str) -> str:
    """What the gold signal is, in words."""
    if gold_signal == "judge":
        return "the judge's target rate (prompt fidelity without a positive word)"
    return f"the held-out reward {gold_signal}"


def banner_html(monitor: dict[str, Any]) -> str:
    """The warning banner, or a quiet line saying what watches the run."""
    warning = monitor["warning"]
    if warning is not None:
        return (
            '<div class="hacking-warning" role="alert" style="border:2px solid #c62828;'
            'background:#fdecea;padding:8px;border-radius:6px">'
            f"<strong>⚠ {html.escape(warning['message'])}</strong></div>"
        )
    steps = len(monitor["points"])
    watched = html.escape(gold_label(monitor["gold_signal"]))
    if not steps:
        return f'<p class="hacking-monitor">Gold signal: {watched}; no sample step yet.</p>'
    return (
        f'<p class="hacking-monitor">Gold signal: {watched}; no sign of reward hacking over '
        f"{steps} sample step{'s' if steps != 1 else ''}.</p>"
    )


def monitor_view(studio: Studio, job_id: Any) -> tuple[str, pd.DataFrame | None]:
    """The banner and the plot's table of a job (nothing when none is chosen)."""
    if job_id is None:
        return "", None
    with studio.db.session() as session:
        monitor = monitoring.job_monitor(session, jobs.get(session, ident(job_id, "job")))
    return banner_html(monitor), monitor_frame(monitor["points"])


@friendly
def show_monitor(studio: Studio, job_id, request: gr.Request):
    """The chosen job's hacking monitor: banner and plot."""
    caller(studio, request, Role.TRAINER)
    return monitor_view(studio, job_id)


def build() -> list[gr.components.Component]:
    """The banner and the plot, laid out where this is called."""
    banner = gr.HTML()
    plot = gr.LinePlot(
        x="step",
        y="value",
        color="series",
        tooltip=["step", "series", "raw"],
        y_title="scaled to the run's range (0 = lowest, 1 = highest)",
        label="Training reward vs gold signal (hacking monitor)",
        height=240,
    )
    return [banner, plot]


def wire(
    studio: Studio, view: list[gr.components.Component], job: gr.Dropdown, timer: gr.Timer
) -> None:
    """Refresh the view when the job changes and on every tick of the tab's timer."""
    handler = bind(show_monitor, studio)
    job.change(handler, [job], view, api_name="train_monitor")
    timer.tick(handler, [job], view, show_progress="hidden")
