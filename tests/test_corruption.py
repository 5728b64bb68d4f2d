"""Damaged files (truncated, header damage, byte flips) must give a
documented exception that names the file, never a crash, a hang, unbounded
memory, a truncated image read as if whole, or a modified input.

The cases come from tests/corrupt_cases.py. They run in child processes,
many cases to a process (a torch import per case would not fit CI): each
case is announced before it runs, so a crash or a timeout fails the test
and names the case.
"""
import json
import os
import subprocess
import sys

import pytest

import corrupt_cases

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = 4
TIMEOUT_S = 300          # per batch: a hang fails the batch, naming its case
MAX_RSS_GROWTH_KB = 512 * 1024


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    cases = corrupt_cases.cases(corrupt_cases.base_files(str(d / "base")))
    out = []
    for i, c in enumerate(cases):
        p = d / f"{i:05d}.fits"
        p.write_bytes(c.data)
        out.append([c.name, str(p), list(c.must_fail)])
    return out


def test_cases_cover_the_issue(case_files):
    names = [n for n, _, _ in case_files]
    for kind in ("trunc", "flip", "noEND", "NAXIS1=1000000000000", "BITPIX=", "TFORM1=", "TDIM4=",
                 "THEAP=", "PCOUNT=", "ZCMPTYPE='GARBAGE'", "dup-NAXIS1"):
        assert any(kind in n for n in names), kind
    for base in ("u8", "mef", "table_vla", "comp_rice", "comp_gzip", "comp_hcompress", "comp_plio", "gz"):
        assert any(n.startswith(base + "-") for n in names), base
    # Truncations inside data must be known to fail.
    assert sum(1 for _, _, m in case_files if m) > 100


def run_batch(cases, tmp_path):
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(cases))
    try:
        proc = subprocess.run([sys.executable, os.path.join(HERE, "corruption_worker.py"), str(listing)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        out, rc, hung = proc.stdout, proc.returncode, False
    except subprocess.TimeoutExpired as e:
        out, rc, hung = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None, True
        proc = None
    started = [l[5:] for l in out.splitlines() if l.startswith("CASE ")]
    results = [json.loads(l[7:]) for l in out.splitlines() if l.startswith("RESULT ")]
    return out, rc, hung, started, results, (proc.stderr if proc else "")


@pytest.mark.parametrize("batch", range(BATCHES))
def test_corrupt_files_fail_cleanly(case_files, batch, tmp_path):
    cases = case_files[batch::BATCHES]
    out, rc, hung, started, results, err = run_batch(cases, tmp_path)
    last = started[-1] if started else "(before the first case)"
    assert not hung, f"hang (over {TIMEOUT_S} s) in case {last}"
    assert rc == 0, f"the reader crashed (exit {rc}) in case {last}:\n{err[-3000:]}"
    assert len(results) == len(cases)
    bad = {r["name"]: r["errors"] for r in results if r["errors"]}
    assert not bad, "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:20])
    growth = [int(l.split()[1]) for l in out.splitlines() if l.startswith("RSS_GROWTH_KB")]
    assert growth and growth[0] < MAX_RSS_GROWTH_KB, growth


def test_crashers_fail_cleanly(tmp_path):
    """Every file that once crashed or fooled the reader (tests/crashers)."""
    # crashers/open/: crashes inside cfitsio that only a sanitizer sees;
    # the plain build must still fail cleanly on them.
    cases = []
    for sub in ("crashers", os.path.join("crashers", "open")):
        d = os.path.join(HERE, sub)
        cases += [[f, os.path.join(d, f), []] for f in sorted(os.listdir(d)) if f.endswith(".fits")]
    assert cases
    out, rc, hung, started, results, err = run_batch(cases, tmp_path)
    assert not hung and rc == 0, (started[-1:], err[-3000:])
    bad = {r["name"]: r["errors"] for r in results if r["errors"]}
    assert not bad, bad
