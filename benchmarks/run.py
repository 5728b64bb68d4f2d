"""Run every benchmarks/bench_*.py and write benchmarks/RESULTS.md and
benchmarks/ratios.png (ours over the best rival, per case).

    ./run.sh bench [--quick] [--only NAME ...]

`./run.sh bench` runs this in .venv-bench, where torch 2.14.1, torchfits
1.3.1, fitsio 1.4.2 and astropy 8.0 are installed and ours is built.
"""
import argparse
import datetime
import glob
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import harness  # noqa: E402

ORDER = ["images", "compressed", "cold", "tables", "data", "memory", "write", "wcs", "remote"]


def fmt(t, unit="s"):
    if unit == "bytes":
        return f"{t / 2**20:.0f} MiB"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} µs"


def ratio_text(r):
    return "" if r is None else f"{r:.2f}"


def short(name):
    return re.sub(r" \(.*?\)", "", name)


def chart(rows, path):
    """Horizontal bars of ours over the best rival per case (log scale),
    green where the target is met, red where it is missed, grey where
    none is set; a tick at each target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("ratio")]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(10, 0.27 * len(rows) + 1.6))
    y = list(range(len(rows)))
    colors = [{True: "#2a9d4b", False: "#d1495b", None: "#9a9a9a"}[r["met"]] for r in rows]
    ax.barh(y, [r["ratio"] for r in rows], color=colors, height=0.7)
    for i, r in enumerate(rows):
        if r["target"] is not None:
            ax.plot([r["target"]] * 2, [i - 0.42, i + 0.42], color="k", lw=1.4)
        ax.text(r["ratio"] * 1.04, i, f"{r['ratio']:.2f} ({r['best']})", va="center", fontsize=6)
    ax.axvline(1.0, color="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['group']}: {short(r['case'])}" for r in rows], fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xlim(min(0.05, min(r["ratio"] for r in rows) / 1.5), max(3, max(r["ratio"] for r in rows) * 4))
    ax.set_xlabel("ours over the best rival (time, or peak memory); log scale, lower is better; "
                  "tick: the target", fontsize=8)
    ax.set_title("torchfits_ops against the best of torchfits 1.3.1, fitsio 1.4.2, astropy 8.0",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coexistence():
    """Whether the three packages and ours load in one process, in each
    order, and each resolves cfitsio's symbols to its own copy
    (LD_DEBUG=bindings of ffopen): ours to the system's libcfitsio,
    torchfits to its libtorchfits_core.so, fitsio to the copy linked into
    its extension (which exports none)."""
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import importlib, numpy as np, torch\n"
        "mods = {n: importlib.import_module(n) for n in sys.argv[1].split(',')}\n"
        "p = sys.argv[2]\n"
        "a = mods['torchfits_ops'].read(p); b = mods['torchfits'].read_tensor(p)\n"
        "c = torch.from_numpy(mods['fitsio'].read(p).astype('=f4'))\n"
        "print('same', torch.equal(a, b) and torch.equal(a, c))\n") % ROOT
    import numpy as np
    from astropy.io import fits
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.fits")
        fits.PrimaryHDU(np.arange(64 * 48, dtype=">f4").reshape(64, 48)).writeto(p)
        out = []
        for order in ("torchfits_ops,torchfits,fitsio", "torchfits,fitsio,torchfits_ops",
                      "fitsio,torchfits_ops,torchfits"):
            log = os.path.join(d, "ld")
            env = dict(os.environ, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=log)
            r = subprocess.run([sys.executable, "-c", script, order, p], capture_output=True,
                               text=True, env=env)
            bound = set()
            for f in glob.glob(log + ".*"):
                for line in open(f, errors="replace"):
                    m = re.search(r"binding file (\S+) .* to (\S+) .*symbol `ffopen'", line)
                    if m:
                        bound.add((os.path.basename(m.group(1)), os.path.basename(m.group(2))))
                os.remove(f)
            ok = "same True" in r.stdout
            ours = [t for s, t in bound if s.startswith("libcfitsio") or s.startswith("_C_torch")]
            theirs = [t for s, t in bound if s.startswith("libtorchfits_core") or s == "_C.cpython-311-x86_64-linux-gnu.so"]
            clash = any("torchfits_core" in t for t in ours) or any("libcfitsio" in t for t in theirs)
            out.append((order, ok and not clash, r.stderr.strip()[-300:]))
        return out


def versions_table(v):
    return ["| component | version |", "|---|---|"] + [f"| {k} | {x} |" for k, x in v.items()]


def write_page(rows, args, started, took, coexist, analysis, loads):
    v = harness.versions()
    met = [r for r in rows if r["met"] is True]
    missed = [r for r in rows if r["met"] is False]
    targeted = met + missed
    cmd = "./run.sh bench" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    lines = [
        "# torchfits_ops: benchmarks against torchfits 1.3.1, fitsio 1.4.2 and astropy 8.0", "",
        f"{started:%Y-%m-%d %H:%M} UTC, `{cmd}`, {took / 60:.0f} minutes; "
        f"machine: {harness.machine()}; {loads[0]} at the start, {loads[1]} at the end.",
    ]
    if args.note:
        lines += ["", args.note]
    lines += [
        "",
        f"**Targets met: {len(met)} of {len(targeted)}.**" + (
            " The missed ones are under [Targets missed](#targets-missed), each with its bound "
            "and profile." if missed else ""),
        "",
        "Every case runs every contender side by side in one Python process, interleaved "
        "(each round calls each contender once, in a shuffled order), after a warm-up that "
        "fills the page cache, and keeps the median of the rounds. Before a case is timed, "
        "each contender's result is compared with ours, bit for bit (or within a tolerance "
        "stated in the case, for lossy decoding); a contender that returns other values is "
        "reported under Findings and not timed. Contenders are named by package: "
        "`torchfits_ops` is ours (the call a user makes; `torchfits_ops <variant>` are other "
        "ways of ours, shown only); `torchfits` is the PyPI package torchfits (another "
        "project), `fitsio` and `astropy` the others; the **best rival** is the fastest call "
        "of any of them, and **ratio** is our time over its time (lower is better). `limit` "
        "is benchmarks/limit.c, the physical bound where one applies (open, pread, byte swap "
        "in place, close, on one thread, no header parsed); **/ limit** is our time over it. "
        "Readers return native-endian tensors; fitsio's and astropy's numpy arrays are made "
        "tensors with torch.from_numpy after any byte swap, which counts. torchfits keeps a "
        "cache of whole read results (a second read of a file returns a copy of the first): "
        "it is emptied, untimed, before each of its timed calls; its header caches stay warm.",
        "",
        "The bench runs on torch 2.14.1 because torchfits 1.3.1 requires torch >= 2.14, < 2.15 "
        "and refuses to load under 2.13; ours is built there too (`./run.sh bench` makes "
        "`.venv-bench` for it). Our read paths are C on cfitsio and do not depend on the torch "
        "version.",
        "",
        "Side by side in one process: " + "; ".join(
            f"imported in the order {o}: {'the same pixels, and each package calls its own cfitsio' if ok else 'FAILED ' + err}"
            for o, ok, err in coexist) + ".",
        "",
        "## Versions", "",
    ] + versions_table(v) + ["", "## Summary", "",
                             "![ours over the best rival](ratios.png)", "",
                             "| group | case | torchfits_ops | best rival | ratio | target | met | / limit |",
                             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["times"]
        unit = r["unit"]
        ours = fmt(t["torchfits_ops"], unit) if "torchfits_ops" in t else ""
        best = f"{r['best']} {fmt(t[r['best']], unit)}" if r["best"] else "none agreed"
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['group']} | {r['case']} | {ours} | {best} | {ratio_text(r['ratio'])} | "
                     f"{r['target_text'] or ''} | {met} | {ratio_text(r['bound'])} |")
    lines.append("")
    findings = [(r, f) for r in rows for f in r["findings"]]
    lines += ["## Findings", ""]
    if findings:
        lines += [f"- {short(r['case'])}: {f}" for r, f in findings]
    else:
        lines += ["Every contender returned the same values as ours in every case."]
    lines.append("")
    if missed:
        lines += ["## Targets missed", ""]
        for r in missed:
            lines += [f"### {r['group']}: {r['case']}", "",
                      f"Ours {fmt(r['times']['torchfits_ops'], r['unit'])}, best rival "
                      f"{r['best']} {fmt(r['times'][r['best']], r['unit'])}: {r['ratio']:.2f}x "
                      f"against a target of {r['target_text']}"
                      + (f"; ours / limit {r['bound']:.2f}." if r["bound"] else "."), ""]
            text = analysis.explain(r)
            if text:
                lines += [text, ""]
    lines += ["## Every contender, per case", ""]
    for group in dict.fromkeys(r["group"] for r in rows):
        lines += [f"### {group}", "", "| case | times | notes |", "|---|---|---|"]
        for r in (r for r in rows if r["group"] == group):
            t = r["times"]
            ts = "<br>".join(f"{'**' if k == r['best'] else ''}{k}{'**' if k == r['best'] else ''}: "
                             f"{fmt(x, r['unit'])}" for k, x in sorted(t.items(), key=lambda kv: kv[1]))
            notes = list(r["notes"])
            if r.get("tol"):
                notes.append("compared within " + r["tol"])
            lines.append(f"| {r['case']} ({r['unit']}) | {ts} | {'; '.join(notes)} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    ap.add_argument("--only", nargs="*", help="bench module names (e.g. images tables)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--note", default="", help="a line written under the machine, e.g. its load")
    args = ap.parse_args()
    names = sorted((os.path.basename(p)[6:-3] for p in glob.glob(os.path.join(HERE, "bench_*.py"))),
                   key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    if args.only:
        names = [n for n in names if n in args.only]
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    load0 = harness.load()
    print("== side by side", flush=True)
    coexist = coexistence()
    for o, ok, err in coexist:
        print(f"  {o}: {'ok' if ok else 'FAILED ' + err}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchfits-bench-", dir=os.environ.get("BENCH_TMP")) as work:
        for name in names:
            mod = importlib.import_module(f"bench_{name}")
            print(f"== {name}", flush=True)
            for r in mod.run(os.path.join(work, name), args.quick):
                rows.append(r)
                ts = ", ".join(f"{k} {fmt(v, r['unit'])}" for k, v in r["times"].items())
                verdict = {True: "met", False: "MISSED", None: ""}[r["met"]]
                print(f"  {r['case']}: {ts}\n    -> best rival {r['best']}, ratio "
                      f"{ratio_text(r['ratio'])} {r['target_text'] or ''} {verdict}"
                      + "".join(f"\n    finding: {f}" for f in r["findings"]), flush=True)
    import analysis
    page = write_page(rows, args, started, time.time() - t0, coexist, analysis,
                      (load0, harness.load()))
    with open(args.out, "w") as f:
        f.write(page)
    chart(rows, os.path.join(os.path.dirname(args.out), "ratios.png"))
    print(f"wrote {args.out} and ratios.png")


if __name__ == "__main__":
    main()
