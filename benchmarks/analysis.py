"""What is known where a target is missed: the bound measured in the same
run (computed here from the row), and the profile and what was tried
(written by hand, keyed by a regular expression on "group: case").
run.py puts it beside each missed case in RESULTS.md.

The profiles were taken with perf record (sampling; the machine has no
hardware counters for perf stat) on single-threaded loops of the one call,
in .venv-bench.
"""
import re

PROFILES = {
    r"^images: (BITPIX|uint16|int16 scaled)": (
        "A whole-image read on a warm page cache is bounded by memory bandwidth: the kernel "
        "copies the page-cache pages into the output (`_copy_to_iter` in pread) and the byte "
        "swap runs in cache behind it; ours does exactly that, in 256 KiB chunks, on two "
        "threads from 4 MiB on. torchfits' `read_tensor` maps the file and swaps straight out "
        "of the mapping into the output, also one pass over memory. When both are within a "
        "small factor of the limit, no reader can be twice as fast as the rival: the target "
        "asks for less than the bound. The open, the header parse and allocation are the rest "
        "(for 1k x 1k int16, about 20 µs of ours)."),
    r"^images: 100 random 64x64 cutouts": (
        "Per cutout, ours pays a fixed cost in the call, not in the copy: the case's note "
        "gives it as measured (100 cutouts of 1x1 pixel through the same open file). Slicing "
        "an open file runs the Python index parse and `_call` wrapper in "
        "torchfits_ops/__init__.py (ImageHDU.__getitem__, about 2 µs) and then a "
        "`torch.classes.torchfits.File.read_cutout` method call, whose boxed TorchScript "
        "dispatch (schema match, list arguments to IValues) takes about 4.4 µs for a 1x1 "
        "cutout; torchfits' `SubsetReader.read_subset` is about 2 µs in all, 0.5 µs of it in "
        "its nanobind call. The copy of 64 rows costs about the same in both (about 2 µs). "
        "Tried: the same read as a plain operator taking the File object "
        "(`file_cutout(__torch__.torch.classes.torchfits.File file, ...)`), which costs "
        "more, not less (12.8 µs against 3.8 µs for the method on one measurement): the "
        "dispatcher's handling of a script-object argument outweighs the method call. The "
        "many-regions call (`ImageHDU.cutouts`, its row in the table) pays the call once and "
        "matches torchfits. What is left is a pybind11 entry beside the dispatcher, which the "
        "library loads through `torch.ops.load_library` and does not import as a module. "
        "`limit` (the file mapped once, no call, no tensor) is itself above 0.5x torchfits, so "
        "the target is below the bound. Opening the file per cutout, ours is faster than "
        "torchfits' one-shot `read_subset` (both rows are in the table)."),
    r"^tables: fixed-width strings": (
        "Ours keeps every stored byte of a string column (no NUL handling in the operator) and "
        "reads a column that is the whole row straight into the output, one pread per "
        "256 KiB on each core, as `limit` does; what is left is the output's first-touch "
        "page faults and the thread start-up."),
    r"^tables: 3 of 8 columns": (
        "A selection must still read every row (the columns interleave in each 46-byte row): "
        "`limit` is that pread alone, on as many threads as ours. Ours is within a small "
        "factor of it, and so is the best rival."),
    r"^tables: variable-length": (
        "Ours here is the Python `read_table`, which returns a list with one tensor per row "
        "(as every rival does): the operator reads values and offsets in a few ms (its row "
        "above), and the rest is `torch.tensor_split` making one tensor object per row in "
        "Python, about 0.15 µs each. A list built in C++ (as torchfits does) or returning the "
        "flat values and offsets (the operator) is the way past it."),
    r"^tables: .*rows x 8 columns|^tables: 400 float32": (
        "The row-block path: pread of blocks of rows into a buffer, then per column a "
        "strided gather with the byte swap, the rows split across the cores. On one thread "
        "(CPU time of 1M x 8 columns, single-threaded loops) ours takes about 12 ms against "
        "about 15.5 ms for torchfits' `read_torch`; `limit`, the pread of the rows alone, is "
        "most of either. 0.5x would need ours at the limit with a rival at twice it."),
    r"^compressed: .*GZIP": (
        "The rivals inflate GZIP tiles with zlib on one thread, which is most of their "
        "time; ours inflates them with libdeflate (about half zlib's time per tile) on "
        "both cores."),
    r"^compressed: .*PLIO": (
        "A PLIO mask decodes in a few ms; ours' fixed costs (the tile index, thread start-up "
        "for two threads) are a large part of it. One thread is shown beside it."),
    r"^compressed: .*(RICE|HCOMPRESS)": (
        "The decode (Rice or H-decompress) of every tile is most of the time, in ours and "
        "in the rivals (cfitsio's decoders in fitsio and torchfits, astropy's own): ours "
        "decodes tiles on both cores, so against a one-thread rival it reaches about 0.5x "
        "only when both cores are free."),
    r"^cold page cache: .*RICE": (
        "The compressed file is a sixth of the image's size on disk, so the cold read costs "
        "little more than the warm one: the decode of the tiles dominates both (as in the "
        "compressed full reads, where the same holds: ours decodes on both cores, and "
        "reaches 0.5x of a one-thread rival only when both are free)."),
    r"^cold page cache: first read": (
        "A cold read waits for the disk: `limit` (pread on one thread and on two, from the "
        "same cold cache) is the bound, and every reader is within a small factor of it."),
    r"^cold page cache: .*warm page cache": (
        "The warm read is the whole-image case (memory bandwidth): ours is at the limit; "
        "0.5x would need the best rival at twice the limit or more."),
    r"^Writing: write .* uncompressed": (
        "Ours stores the header cfitsio builds and then the data straight from the tensor, "
        "byte-swapped 1 MiB at a time, into a temporary file that is renamed into place (no "
        "fsync unless `sync=True`; the rivals write in place and never fsync). `limit` is one "
        "write() of the file's bytes to the same disk, and ours is at it. The writing target "
        "was set against fitsio's time, which the case's row gives beside astropy's."),
    r"^Writing: write .* RICE_1 quantized": (
        "Ours quantizes each row tile on two threads (cfitsio's arithmetic, its noise medians "
        "by a radix select: tests/c/bench_quantize.c, 2.5x cfitsio's quantizer on one thread) "
        "and codes it with our RICE_1 coder; every rival does all of it on one thread. Run "
        "alone (`./run.sh bench --only write`) ours takes about 140 ms, 0.24x torchfits; in "
        "the full run it takes about twice that, the time of one thread, while the rivals "
        "take what they take alone. The case syncs first, which took the uncompressed case "
        "back to its bound (bench_memory's 1 GiB files were still being written back), but "
        "not this one: what holds a core after the earlier groups is not found yet."),
    r"^remote: 100 random 64x64 cutouts.*each opening": (
        "Each cutout opens the URL anew. The first open of a URL learns its size, its "
        "validators and its first 64 KiB (the header and the tile table); a later open of "
        "the same URL reuses them and sends only the request for the tiles' bytes, "
        "conditional on the object being the same version (If-Match), so each cutout is one "
        "round trip. `limit (one request per cutout)` is those round trips alone, with no "
        "decoding: no reader that checks the object has not changed can take less."),
    r"^data loading: DataLoader": (
        "An epoch includes the DataLoader's own cost: `limit (DataLoader, no read)` is a "
        "dataset that returns zeros of the same shape, so worker start-up, the default "
        "collate's copy into shared memory and the transfer to the main process cost that "
        "much with no read at all. Ours (`batch_loader`) reads each batch straight into "
        "shared memory, one `read_batch_into` per batch in each worker, so it skips that "
        "copy, which every rival and the floor pay; what is left is the read and the "
        "transfer, and on two cores the two workers and the main process compete for them."),
}


def fmt(t):
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} µs"


def bound_sentence(row):
    """From the row: how the best rival and ours stand to the limit, and
    whether the target is below it."""
    t = row["times"]
    limits = {k: v for k, v in t.items() if k.split(" ")[0] == "limit"}
    if not row.get("best") or row.get("target") is None or "torchfits_ops" not in t:
        return ""
    if not limits and "torchfits_ops 1 thread" in t:
        one = t["torchfits_ops 1 thread"] / t[row["best"]]
        s = (f"No physical bound is measured here; ours on one thread takes {one:.2f}x the "
             f"best rival, and two cores can at best halve that ({one / 2:.2f}x); ours with "
             f"its default threads took {row['ratio']:.2f}x.")
        if one / 2 > row["target"]:
            s += " The target is below what two cores give."
        return s
    if not limits:
        return ""
    lk = min(limits, key=limits.get)
    lim = limits[lk]
    best = t[row["best"]]
    floor = lim / best
    if row["unit"] == "bytes":
        return ""
    s = (f"Bound: `{lk}` {fmt(lim)}; the best rival takes {best / lim:.2f}x it and "
         f"ours {t['torchfits_ops'] / lim:.2f}x.")
    if row["target"] < floor:
        s += (f" The target ({row['target']:.2g}x the best rival) is below that bound "
              f"({floor:.2f}x the best rival).")
    return s


def explain(row):
    key = f"{row['group']}: {row['case']}"
    parts = [bound_sentence(row)]
    for pattern, text in PROFILES.items():
        if re.search(pattern, key):
            parts.append(text)
            break
    return "\n\n".join(p for p in parts if p)
