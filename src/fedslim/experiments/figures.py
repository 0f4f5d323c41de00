"""The sweep's figures (matplotlib, written as PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("figures need matplotlib: pip install 'fedslim[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_curves(runs) -> dict[str, dict[str, np.ndarray]]:
    """Per configuration, the mean over its repeats of each curve, cut to the shortest."""
    out = {}
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r.rounds for r in runs if r.label == label]
        n = min(len(rows) for rows in mine)
        series = {
            "round": [[x.round for x in rows[:n]] for rows in mine],
            "accuracy": [[x.accuracy for x in rows[:n]] for rows in mine],
            "uplink": [np.cumsum([x.uplink_bytes for x in rows[:n]]) for rows in mine],
            "time": [[x.sim_elapsed_s for x in rows[:n]] for rows in mine],
            "energy": [np.cumsum([x.energy_j for x in rows[:n]]) for rows in mine],
        }
        out[label] = {k: np.mean(np.asarray(v, float), axis=0) for k, v in series.items()}
    return out


def curves(runs, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    panels = [
        ("round", "round"),
        ("uplink", "cumulative uplink bytes"),
        ("time", "simulated seconds"),
        ("energy", "cumulative client energy (J)"),
    ]
    for label, c in _mean_curves(runs).items():
        for ax, (key, _) in zip(axes.flat, panels, strict=True):
            # bytes span orders of magnitude across codecs: log scale, from round 1
            start = 1 if key == "uplink" and len(c[key]) > 1 else 0
            ax.plot(c[key][start:], c["accuracy"][start:], marker="o", markersize=3, label=label)
    for ax, (key, xlabel) in zip(axes.flat, panels, strict=True):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if key == "uplink":
            ax.set_xscale("log")
        else:
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    return _save(plt, fig, axes, "held-out accuracy", "accuracy of the global adapter", path)


def fronts(rows: list[dict], front: list[dict], costs: dict, path: Path) -> Path:
    """One panel per cost axis, ``costs``: axis -> (table column, label)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    for ax, (axis, (column, xlabel)) in zip(axes.flat, costs.items(), strict=True):
        ax.scatter([r[column] for r in rows], [r["final_accuracy"] for r in rows], color="grey")
        for i, r in enumerate(rows, start=1):  # numbered: the key is under the figure
            ax.annotate(str(i), (r[column], r["final_accuracy"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        best = sorted((f for f in front if f["axis"] == axis), key=lambda f: f[column])
        ax.plot([f[column] for f in best], [f["final_accuracy"] for f in best], "r-o", ms=4,
                label="Pareto front")  # fmt: skip
        ax.set_xlabel(xlabel)
        values = [r[column] for r in rows]
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_xscale("log")
        else:
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.grid(alpha=0.3)
    key = "   ".join(f"{i}: {r['configuration']}" for i, r in enumerate(rows, start=1))
    fig.text(0.5, 0.005, key, ha="center", fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.12)
    return _save(plt, fig, axes, "final accuracy", "final accuracy against what it cost", path)


def privacy(rows: list[dict], path: Path) -> Path:
    """Final accuracy against epsilon, a line per configuration of the keys other than
    the privacy ones (a codec, a strategy); a run without DP is the dashed line at its
    accuracy (epsilon infinite)."""
    plt = _pyplot()
    groups: dict[str, list[dict]] = {}
    for r in rows:
        rest = [p for p in r["configuration"].split(", ") if not p.startswith("dp")]
        groups.setdefault(", ".join(rest) or "defaults", []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, mine) in enumerate(groups.items()):
        color = f"C{i}"
        private = sorted((r for r in mine if np.isfinite(r["epsilon"])), key=lambda r: r["epsilon"])
        if private:
            ax.errorbar([r["epsilon"] for r in private], [r["final_accuracy"] for r in private],
                        [r["final_accuracy_std"] for r in private], marker="o", ms=4, capsize=3,
                        color=color, label=name)  # fmt: skip
        for r in mine:  # dash patterns apart, so equal accuracies stay visible
            if not np.isfinite(r["epsilon"]):
                ax.axhline(r["final_accuracy"], color=color, ls=(3 * i, (3, 3 * len(groups) - 3)),
                           lw=1.2, label=f"{name}, no DP")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="epsilon (client-level, the run's delta)", ylabel="final accuracy",
           title="accuracy against privacy (mean and spread over repeats)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, handlelength=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _save(plt, fig, axes, ylabel: str, title: str, path: Path) -> Path:
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{title} (mean over repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
