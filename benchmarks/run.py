"""Run every benchmarks/bench_*.py and write benchmarks/RESULTS.md and
benchmarks/ratios.png (a bar chart of torchfits' time over fitsio's and
over the C limit's, per case).

    ./run.sh bench [--quick] [--only NAME ...]
"""
import argparse
import glob
import importlib
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import harness  # noqa: E402


def fmt(t, unit="s"):
    if unit == "bytes":
        return f"{t / 2**20:.0f} MiB"
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def ratio(t, other):
    return t["torchfits"] / t[other] if "torchfits" in t and t.get(other) else None


def chart(rows, path):
    """Horizontal bars of torchfits / fitsio and torchfits / limit per case."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("unit") != "bytes" and ratio(r["times"], "fitsio")]
    if not rows:
        return
    labels = [re.sub(r" \(.*?\)", "", r["case"]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.5))
    y = list(range(len(rows)))
    ax.barh([v - 0.2 for v in y], [ratio(r["times"], "fitsio") for r in rows], height=0.4,
            label="torchfits / fitsio")
    ax.barh([v + 0.2 for v in y], [ratio(r["times"], "limit") or 0 for r in rows], height=0.4,
            label="torchfits / C limit")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio (lower is better; 1 = the same time)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    ap.add_argument("--only", nargs="*", help="bench module names (e.g. images tables)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--note", default="", help="a line written under the machine, e.g. its load")
    args = ap.parse_args()
    names = sorted(os.path.basename(p)[6:-3] for p in glob.glob(os.path.join(HERE, "bench_*.py")))
    if args.only:
        names = [n for n in names if n in args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchfits-bench-") as work:
        for name in names:
            mod = importlib.import_module(f"bench_{name}")
            print(f"== {name}", flush=True)
            for r in mod.run(os.path.join(work, name), args.quick):
                os.makedirs(os.path.join(work, name), exist_ok=True)
                rows.append(r)
                ts = ", ".join(f"{k} {fmt(v, r.get('unit'))}" for k, v in r["times"].items())
                print(f"  {r['case']}: {ts}", flush=True)
    lines = ["# Benchmark results", "", f"Machine: {harness.machine()}", "",
             "Each case runs its contenders side by side in one process, interleaved, warm "
             "page cache, median of repeats. Ratios are torchfits' time over the other's "
             "(lower is better); `limit` is benchmarks/limit.c, the physical minimum "
             "(open, pread, byteswap, close; for a table's column selection, the pread "
             "of every row alone). Chart: ratios.png.", ""]
    if args.note:
        lines += [args.note, ""]
    for group in dict.fromkeys(r["group"] for r in rows):
        lines += [f"## {group}", "",
                  "| case | times | torchfits / fitsio | torchfits / limit | target | met |",
                  "|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["group"] == group):
            t = r["times"]
            ts = "<br>".join(f"{k}: {fmt(v, r.get('unit'))}" for k, v in t.items())
            rf, rl = ratio(t, "fitsio"), ratio(t, "limit")
            rf = f"{rf:.2f}" if rf else ""
            rl = f"{rl:.2f}" if rl else ""
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            lines.append(f"| {r['case']} | {ts} | {rf} | {rl} | {r.get('target') or ''} | {met} |")
        lines.append("")
    missed = [r["case"] for r in rows if r.get("met") is False]
    if missed:
        lines += ["## Targets not met", ""] + [f"- {c}" for c in missed] + [
            "", "Why: docs/performance.md, \"Bounds\".", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    chart(rows, os.path.join(os.path.dirname(args.out), "ratios.png"))
    print(f"wrote {args.out} and ratios.png")


if __name__ == "__main__":
    main()
