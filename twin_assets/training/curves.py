"""Loss curves as a PNG + markdown table, for asset metadata (the UI renders embedded images)."""

from __future__ import annotations

import base64
import io


def loss_plot_png(curves: dict[str, list[tuple[int, float]]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display in Dagster workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for name in ("train_loss", "eval_loss"):
        points = curves.get(name) or []
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def curves_markdown(curves: dict[str, list[tuple[int, float]]], png: bytes | None) -> str:
    lines = []
    if png:
        lines.append(f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})\n")
    names = [n for n in ("train_loss", "eval_loss", "reward_accuracy", "reward_margin") if curves.get(n)]
    steps = sorted({s for n in names for s, _ in curves[n]})
    lines.append("| step | " + " | ".join(names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    lookup = {n: dict(curves[n]) for n in names}
    for step in steps:
        cells = [f"{lookup[n][step]:.4f}" if step in lookup[n] else "" for n in names]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
