"""The process-wide settings: read from the environment once, at import;
changed at run time with the setters; never read by the core itself."""
import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from isolated import run


def test_setters_return_the_previous_value():
    assert tf.options() == {"threads": 0, "keep_mb": 256, "unpack_max_mb": 4096, "table_max_mb": 0}
    assert tf.set_threads(3) == 0
    assert tf.set_threads(1) == 3 and tf.options()["threads"] == 1
    assert tf.set_keep_mb(0) == 256 and tf.set_unpack_max_mb(16) == 4096
    assert tf.set_table_max_mb(100) == 0
    assert tf.options() == {"threads": 1, "keep_mb": 0, "unpack_max_mb": 16, "table_max_mb": 100}


def test_setters_refuse_bad_values():
    with pytest.raises(ValueError, match="option threads must be >= 0, got -1"):
        tf.set_threads(-1)
    with pytest.raises(ValueError, match="no option named 'thread'"):
        torch.ops.torchfits.set_option("thread", 1)
    assert tf.options()["threads"] == 0


def test_environment_read_at_import():
    env_code = "import torchfits_ops as tf; print(tf.options())"
    import os
    env = dict(os.environ, TORCHFITS_THREADS="3", TORCHFITS_KEEP_MB="0", TORCHFITS_UNPACK_MAX_MB="16",
               TORCHFITS_TABLE_MAX_MB="64")
    r = run(env_code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'threads': 3, 'keep_mb': 0, 'unpack_max_mb': 16, 'table_max_mb': 64}"
    env = dict(os.environ, TORCHFITS_THREADS="junk", TORCHFITS_KEEP_MB="-5")
    r = run(env_code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'threads': 0, 'keep_mb': 256, 'unpack_max_mb': 4096, 'table_max_mb': 0}"
    assert "TORCHFITS_THREADS='junk' is not a count >= 0; using 0" in r.stderr
    assert "TORCHFITS_KEEP_MB='-5' is not a count >= 0; using 256" in r.stderr


def test_environment_changed_during_reads(tmp_path):
    """The core read TORCHFITS_THREADS with getenv on every image read,
    with the GIL released: a Python thread assigning os.environ at the same
    time (setenv, which may move the environment) crashed it within
    seconds (SIGSEGV). Now nothing on a read path reads the environment,
    and assignments after import change nothing."""
    path = tmp_path / "big.fits"
    data = np.random.default_rng(0).normal(size=(1100, 1100)).astype(">f4")  # > 4 MiB: threaded
    fits.writeto(path, data)
    code = """
import os, sys, threading, time
import torchfits_ops as tf
path = sys.argv[1]
stop = time.monotonic() + 4
def churn():
    i = 0
    while time.monotonic() < stop:
        os.environ["TORCHFITS_THREADS"] = str(1 + i % 4)
        os.environ["TORCHFITS_PAD_%d" % (i % 500)] = "x" * (i % 300)
        i += 1
def reads():
    while time.monotonic() < stop:
        tf.read(path)
ts = [threading.Thread(target=churn)] + [threading.Thread(target=reads) for _ in range(3)]
for t in ts: t.start()
for t in ts: t.join()
print(tf.options()["threads"])
"""
    r = run(code, path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "0"  # the assignments after import changed nothing
