"""The figure of an evaluation run: quality and intelligibility against nominal bitrate."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PLOT_PANELS = (("wer", "WER (%)"), ("dnsmos_ovrl", "DNSMOS OVRL"), ("pesq_wb", "PESQ (wide-band)"), ("stoi", "STOI"))


def plot(summary: list[dict], path: str | os.PathLike) -> Path:
    """One PNG, four panels (WER, DNSMOS, PESQ-wb, STOI against nominal kbps), a line per family."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    families: dict[str, list[dict]] = {}
    for s in summary:
        if s["kind"] not in ("reference", "input"):
            families.setdefault(s["family"], []).append(s)
    hlines = [(s, label, style) for kind, label, style in (("reference", "reference (original)", "--"),
                                                           ("input", "input (noisy)", ":"))
              for s in summary if s["kind"] == kind]
    markers = "osD^vP*Xh<>"
    for ax, (key, title) in zip(axes.ravel(), PLOT_PANELS):
        for i, (fam, items) in enumerate(sorted(families.items())):
            items = sorted(items, key=lambda s: s["kbps_nominal"])
            xs, ys, es = [], [], []
            for s in items:
                if key in ("wer", "cer"):
                    st = s[key]
                    y = 100 * st["rate"]
                    err = [100 * (st["rate"] - st["lo"]), 100 * (st["hi"] - st["rate"])]
                else:
                    st = s[key]
                    y = st["mean"]
                    e = st["ci95"] if np.isfinite(st["ci95"]) else 0.0
                    err = [e, e]
                if np.isfinite(y) and s["kbps_nominal"] > 0:  # log axis: a 0 bit/s enhancer has no point
                    xs.append(s["kbps_nominal"])
                    ys.append(y)
                    es.append(err)
            if xs:
                ax.errorbar(xs, ys, yerr=np.asarray(es).T, marker=markers[i % len(markers)], capsize=3, label=fam)
        for ref, label, style in hlines:
            y = 100 * ref[key]["rate"] if key in ("wer", "cer") else ref[key]["mean"]
            if np.isfinite(y):
                ax.axhline(y, color="0.4", linestyle=style, linewidth=1, label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("nominal bitrate (kbit/s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=min(5, len(handles)))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
