"""A PNG of the success-path latency distributions: one panel per exchange x endpoint, one
empirical CDF per contender (log time axis), so medians and tails read off the same picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["save_plot"]


def save_plot(results: dict[str, Any], path: str | Path) -> Path:
    """Write the plot of ``results["success"]`` to ``path``; needs matplotlib (extra ``bench``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a server or in CI
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError as exc:  # the optional extra is missing
        raise RuntimeError("--plot needs matplotlib: pip install 'hardened[bench]'") from exc
    panels = [
        (exchange, endpoint, result)
        for exchange, endpoints in results.get("success", {}).items()
        for endpoint, result in endpoints.items()
    ]
    if not panels:
        raise ValueError("nothing to plot: the run has no success-path samples")
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(7.0, 4.5 * cols), 3.8 * rows), squeeze=False)
    plain = FuncFormatter(lambda x, _pos: f"{x:g}")
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (exchange, endpoint, result) in zip(axes.flat, panels, strict=False):
        for name, fig_data in result["contenders"].items():
            samples = fig_data.get("samples_s")
            if not samples:
                continue
            ms = np.sort(np.asarray(samples) * 1000.0)
            ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=f"{name} (p50 {np.median(ms):.2f} ms)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda _x, _pos: ""))
        ax.set_title(f"{exchange} {endpoint}", fontsize=10)
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("share of calls")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("hardened bench: success-path latency, contenders interleaved in one run", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
