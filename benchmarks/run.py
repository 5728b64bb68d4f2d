"""Run every benchmarks/bench_*.py and write benchmarks/RESULTS.md.

    ./run.sh bench [--quick] [--only NAME ...]
"""
import argparse
import glob
import importlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import harness  # noqa: E402


def fmt(t):
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    ap.add_argument("--only", nargs="*", help="bench module names (e.g. images tables)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
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
                ts = ", ".join(f"{k} {fmt(v)}" for k, v in r["times"].items())
                print(f"  {r['case']}: {ts}", flush=True)
    lines = ["# Benchmark results", "", f"Machine: {harness.machine()}", "",
             "Each case runs its contenders side by side in one process, interleaved, warm "
             "page cache, median of repeats. Ratios are torchfits' time over the other's "
             "(lower is better).", ""]
    for group in dict.fromkeys(r["group"] for r in rows):
        lines += [f"## {group}", "", "| case | times | torchfits / fitsio | target | met |",
                  "|---|---|---|---|---|"]
        for r in (r for r in rows if r["group"] == group):
            t = r["times"]
            ts = "<br>".join(f"{k}: {fmt(v)}" for k, v in t.items())
            rf = f"{t['torchfits'] / t['fitsio']:.2f}" if "torchfits" in t and "fitsio" in t else ""
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            lines.append(f"| {r['case']} | {ts} | {rf} | {r.get('target') or ''} | {met} |")
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
