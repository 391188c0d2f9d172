"""The figures of notebook 05."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

from cotlab.plots import color, error_bars, finish, legend_outside


def frontier(result: dict, batch: str = "1", save=None, name: str = "frontier", title: str | None = None) -> Figure:
    """The speed–quality frontier of a ``bench_sampling`` result: GenEval overall (95 % intervals)
    against the latency of one generation at ``batch`` (log scale), a line per generator through
    its step counts, each point labelled with its steps."""
    fig, ax = plt.subplots(figsize=(6.8, 3.6))
    for generator in dict.fromkeys(r["generator"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["generator"] == generator]
        x = [1000 * r["latency_s"][batch] for r in rows]
        y = [r["overall"] for r in rows]
        ax.errorbar(x, y, yerr=error_bars(y, [r["interval"] for r in rows]), fmt="o-", ms=4, capsize=2,
                    color=color(generator), label=generator)
        for xi, yi, r in zip(x, y, rows):
            ax.annotate(str(r["steps"]), (xi, yi), textcoords="offset points", xytext=(4, -9), fontsize=7,
                        color=color(generator))
    ax.set(xscale="log", xlabel=f"latency of one generation, batch {batch} (ms, log scale)", ylabel="GenEval overall")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 10, 20, 50, 100, …: plain numbers, no crowding
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    return finish(fig, save, name, title)
