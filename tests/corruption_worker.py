"""Child process of test_corruption.py: reads damaged files through
torchfits_ops and reports, per case, one JSON line.

argv: a JSON file listing [name, path, must_fail_hdus]. Before each case it
prints "CASE <name>" (flushed) so a crash or a hang names its case. Address
space is capped so that an allocation larger than the machine could back
fails (and is reported) instead of succeeding lazily.
"""
import hashlib
import json
import os
import resource
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402

import torchfits_ops as tf  # noqa: E402

DOCUMENTED = (tf.FitsError, IndexError, TypeError, RuntimeError)


def stamp(path):
    st = os.stat(path)
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest(), st.st_mtime_ns, st.st_size


def attempt(path, errors, what, fn):
    """Run fn; an exception must be documented and name the file."""
    try:
        fn()
        return True
    except DOCUMENTED as e:
        msg = str(e)
        # ValueError is for bad arguments; these arguments come from info().
        if isinstance(e, ValueError) or path not in msg or "[TF_" not in msg or "TF_ENOMEM" in msg:
            errors.append(f"{what}: {type(e).__name__}: {msg[:300]}")
        return False
    except Exception as e:  # noqa: BLE001 - anything else is the finding
        errors.append(f"{what}: undocumented {type(e).__name__}: {e!s:.300}\n{traceback.format_exc()[-600:]}")
        return False


def walk_table(path, h, meta, errors, read_ok):
    """Every column of every row (the Python layer splits VLAs and decodes
    strings), a window of rows, the null masks and the column list."""
    attempt(path, errors, f"table_info {h}", lambda: tf.table_info(path, h))
    read_ok[h] = attempt(path, errors, f"read_table {h}", lambda: tf.read_table(path, h))
    n = meta.shape[0] if meta.shape else 0
    attempt(path, errors, f"read_table rows {h}",
            lambda: tf.read_table(path, h, rows=slice(n // 3, n // 3 + 7, 2)))
    attempt(path, errors, f"read_table_nulls {h}", lambda: tf.read_table_nulls(path, h))


def walk(path, must_fail):
    errors, read_ok = [], {}
    infos = []
    if not attempt(path, errors, "info", lambda: infos.extend(tf.info(path))):
        for h in range(4):  # headers one by one, past the damage
            attempt(path, errors, f"header {h}", lambda: tf.read_header(path, h))
    for meta in infos:
        h = meta.index
        attempt(path, errors, f"header {h}", lambda: tf.read_header(path, h))
        if meta.kind != "image":
            walk_table(path, h, meta, errors, read_ok)
            continue
        if not len(meta.shape):
            continue
        read_ok[h] = attempt(path, errors, f"read {h}", lambda: tf.read(path, h))
        attempt(path, errors, f"read raw {h}", lambda: tf.read(path, h, raw=True))
        attempt(path, errors, f"cfitsio {h}",
                lambda: torch.ops.torchfits._read_cfitsio(path, h, [], [], None, False))
        shape = list(meta.shape)
        start = [n // 3 for n in shape]
        count = [max(1, min(n - s, 5)) if n else 0 for n, s in zip(shape, start)]
        if all(shape):
            attempt(path, errors, f"cutout {h}", lambda: tf.read_cutout(path, h, start, count))
            attempt(path, errors, f"cutout step {h}",
                    lambda: tf.read_cutout(path, h, [0] * len(shape), [max(1, n // 2) for n in shape],
                                           [2 if n > 1 else 1 for n in shape]))
    for h in must_fail:
        if read_ok.get(h):
            errors.append(f"HDU {h}: truncated data read without an error")
    return errors


def main():
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    # Cap the address space at what is mapped now plus 2 GiB.
    with open("/proc/self/statm") as fh:
        vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = vm + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, path, must_fail in cases:
        print("CASE", name, flush=True)
        before = stamp(path)
        errors = walk(path, must_fail)
        if stamp(path) != before:
            errors.append("the input file was modified")
        print("RESULT", json.dumps({"name": name, "errors": errors}), flush=True)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    print("RSS_GROWTH_KB", grown, flush=True)


if __name__ == "__main__":
    main()
