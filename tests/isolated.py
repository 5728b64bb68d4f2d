"""Run Python code in a fresh process with a time limit and an address-space
cap, for tests whose failure would be a crash or a hang of the process."""
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code, *args, timeout=120, address_space_gb=12, env=None, cwd=ROOT):
    """subprocess.CompletedProcess of `python -c code args...` under a
    timeout (subprocess.TimeoutExpired past it) and RLIMIT_AS; the package
    imports from the repository root."""
    limit = address_space_gb << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=cap, env=full_env, cwd=cwd)


def snapshot(folder):
    """(name, size, mtime_ns) of everything under folder: to check that
    nothing was created or modified."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, folder), st.st_size, st.st_mtime_ns))
    return sorted(out)
