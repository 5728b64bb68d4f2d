"""The C core under AddressSanitizer and UndefinedBehaviorSanitizer: the
replay driver (fuzz/replay_main.c, the fuzzer's walk without libFuzzer) is
built with clang-14 -fsanitize=address,undefined and run over the
well-formed base files, every corruption case and every crasher. Any
out-of-bounds access, use after free, undefined behaviour or leak in the
core (and any crash in cfitsio) fails the test, naming the case.

./run.sh installs clang-14 and libclang-rt-14-dev; the test fails, rather
than skips, without them, so CI cannot pass without the sanitizer run.
"""
import os
import subprocess
import sys

import pytest

import corrupt_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPLAY = os.path.join(ROOT, "fuzz", "build", "replay")

# cfitsio's gzip tile decoder grows its buffer by realloc in small steps:
# minutes under ASan, milliseconds in the plain build (test_corruption.py
# runs it there).
SLOW_UNDER_ASAN = {"comp_gzip-flip4"}


@pytest.fixture(scope="module")
def replay():
    proc = subprocess.run([os.path.join(ROOT, "fuzz", "run.sh"), "build-replay"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return REPLAY


def run_replay(replay, *paths):
    env = dict(os.environ)
    # fast_unwind_on_malloc=0: cfitsio has no frame pointers, and the LSan
    # suppression of its own leak needs the full allocation stack.
    env["ASAN_OPTIONS"] = ("detect_leaks=1:max_allocation_size_mb=1024:allocator_may_return_null=1:"
                           "fast_unwind_on_malloc=0")
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["LSAN_OPTIONS"] = f"suppressions={ROOT}/fuzz/lsan.supp:print_suppressions=0"
    proc = subprocess.run([replay, *map(str, paths)], capture_output=True, text=True, env=env,
                          timeout=900)
    started = [l for l in proc.stderr.splitlines() if l.startswith("replay: ")]
    assert proc.returncode == 0 and "no crash" in proc.stderr, (
        f"exit {proc.returncode} after {started[-1:]}\n{proc.stderr[-4000:]}")
    return proc.stderr


def test_sanitizer_catches_a_bug(replay, tmp_path):
    """The build really is instrumented: a heap overflow in a tiny C program
    built with the same flags is reported."""
    src = tmp_path / "oob.c"
    src.write_text("#include <stdlib.h>\nint main(int c, char **v) { char *p = malloc(4); "
                   "p[c + 3] = 1; free(p); return 0; }\n")
    exe = tmp_path / "oob"
    subprocess.run(["clang-14", "-fsanitize=address,undefined", str(src), "-o", str(exe)], check=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True)
    assert proc.returncode != 0 and "heap-buffer-overflow" in proc.stderr


def test_base_files_and_crashers(replay, tmp_path):
    bases = corrupt_cases.base_files(str(tmp_path / "base"))
    out = run_replay(replay, tmp_path / "base", os.path.join(ROOT, "tests", "crashers"))
    assert f"replay: {len(bases) + len(os.listdir(os.path.join(ROOT, 'tests', 'crashers'))) - 1} cases" in out


def test_corruption_cases(replay, tmp_path):
    cases = corrupt_cases.cases(corrupt_cases.base_files(str(tmp_path / "base")))
    d = tmp_path / "cases"
    d.mkdir()
    n = 0
    for i, c in enumerate(cases):
        if c.name in SLOW_UNDER_ASAN:
            continue
        (d / f"{i:05d}").write_bytes(c.data)
        n += 1
    assert n > 1500
    out = run_replay(replay, d)
    assert f"replay: {n} cases, no crash" in out


def test_header_variants(replay, tmp_path):
    """Every 16th of fuzz/header_variants.py's odd headers (the
    whole set: fuzz/run.sh variants): nothing the guard lets through may
    make cfitsio or the core crash, and both read paths must agree."""
    sys.path.insert(0, os.path.join(ROOT, "fuzz"))
    try:
        import header_variants
    finally:
        sys.path.pop(0)
    n = header_variants.main(str(tmp_path / "v"), every=16)
    assert n > 2500
    out = run_replay(replay, tmp_path / "v")
    assert f"replay: {n} cases, no crash" in out


def test_compressed_files(replay, tmp_path):
    """gzip and compress files through the core's bounded unpack: whole,
    cut, followed by zeros past the fuzz walk's 16 MiB unpack limit, and
    a compress file cut in its codes. The walk names compress streams
    .Z, so cfitsio's compress decoder and the jump out of it run under
    ASan."""
    import gzip
    import shutil

    if not shutil.which("compress"):
        pytest.fail("compress (Debian: ncompress) is needed; ./run.sh installs it")
    bases = corrupt_cases.base_files(str(tmp_path / "base"))
    d = tmp_path / "z"
    d.mkdir()
    z = corrupt_cases.compressed_dot_z(bases["f32"], str(d / "f32.Z"))
    corrupt_cases.compressed_dot_z(bases["u8"], str(d / "bomb.Z"), extra_zeros=32 << 20)
    data = open(z, "rb").read()
    (d / "cut.Z").write_bytes(data[: len(data) // 2])
    (d / "flip.Z").write_bytes(data[:100] + bytes(b ^ 0x5A for b in data[100:400]) + data[400:])
    raw = open(bases["u8"], "rb").read()
    (d / "bomb.gz").write_bytes(gzip.compress(raw + bytes(32 << 20)))
    (d / "cut.gz").write_bytes(gzip.compress(raw)[: len(raw) // 3])
    out = run_replay(replay, d)
    assert "replay: 6 cases, no crash" in out
