"""Fixtures: a real kessai engine process with its HTTP API on an ephemeral
127.0.0.1 port (plain HTTP, allowed on loopback), started here and stopped
by its PID.

The engine binary is $KESSAI_BIN, or target/debug/kessai under
$CARGO_TARGET_DIR (default: the repository's target/). Nothing is mocked:
principals, tokens and cards are made with the `kessai` CLI over the binary
protocol, and every HTTP request goes through httpx.
"""

import json
import os
import pathlib
import shutil
import sys
import ssl
import subprocess
import tempfile

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kessai_process import SECRET_HEX, kessai_bin, make_certificate, stop  # noqa: E402,F401
MERCHANT = 5
OTHER_MERCHANT = 6
HQ = 42
STORE = 42
FACE = 1000
# Small enough for the tests of the lockout and of slow bodies.
PIN_FAILURES_MAX = 3
FRAME_TIMEOUT_MS = 1500
MAX_BODY_BYTES = 4096


class Engine:
    """One engine process, the CLI to drive it, and HTTP clients."""

    def __init__(self, directory, tls=None):
        self.dir = pathlib.Path(directory)
        config = self.dir / "kessai.toml"
        tls_lines = ""
        if tls:
            cert, key = tls
            tls_lines = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        self.tls_ca = tls[0] if tls else None
        config.write_text(
            'listen = "127.0.0.1:0"\n'
            f"{tls_lines}"
            f'data_dir = "{self.dir / "data"}"\n'
            "shards = 2\nworker_threads = 2\n"
            f'pin_secret_hex = "{SECRET_HEX}"\n'
            "[limits]\n"
            f"pin_failures_max = {PIN_FAILURES_MAX}\n"
            f"frame_timeout_ms = {FRAME_TIMEOUT_MS}\n"
            "[http]\n"
            'listen = "127.0.0.1:0"\n'
            f"max_body_bytes = {MAX_BODY_BYTES}\n"
        )
        self.log_path = self.dir / "engine.log"
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, KESSAI_LOG="debug")
        self.process = subprocess.Popen(
            [kessai_bin(), "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        lines = [self.process.stdout.readline().decode().strip() for _ in range(2)]
        assert lines[0].startswith("kessai listening on "), lines
        assert lines[1].startswith("kessai http listening on "), lines
        self.addr = lines[0].rsplit(" ", 1)[1]
        self.http_addr = lines[1].rsplit(" ", 1)[1]
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://{self.http_addr}"
        self.operator_key = self.dir / "data" / "operator.key"
        self.clients = []

    def cli_as(self, key, *args, ok=True):
        command = [kessai_bin(), *args, "--json", "--addr", self.addr, "--key", str(key)]
        if self.tls_ca:
            command += ["--tls-ca", str(self.tls_ca)]
        done = subprocess.run(command, capture_output=True, timeout=60)
        if ok:
            assert done.returncode == 0, done
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def cli(self, *args, ok=True):
        return self.cli_as(self.operator_key, *args, ok=ok)

    def add(self, role, principal, stores=None):
        key = self.dir / f"{principal}.key"
        if not key.exists():
            extra = ["--stores", str(stores)] if stores else []
            self.cli("principal", "add", "--role", role, "--id", str(principal),
                     *extra, "--out", str(key))
        return key

    def token(self, principal):
        """A new bearer token for `principal` (issued by the operator)."""
        out = self.dir / f"{principal}-{len(list(self.dir.glob('*.token')))}.token"
        issued = self.cli("principal", "token", "issue", "--id", str(principal),
                          "--out", str(out))
        return out.read_text().strip(), issued["token_id"]

    def cards(self, count, face=FACE):
        """Active cards: issued by the operator, sold at STORE."""
        out = self.dir / f"pins-{len(list(self.dir.glob('pins-*')))}.txt"
        self.cli("issue", "--count", str(count), "--face-value", str(face), "--out", str(out))
        pins = [line.strip() for line in out.read_text().split() if line.strip()]
        self.cli_as(self.add("store-hq", HQ, STORE), "activate", "--store", str(STORE),
                    "--pos-ref", str(len(list(self.dir.glob('pins-*')))), *pins)
        return pins

    def client(self, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else True
        client = httpx.Client(base_url=self.base, headers=headers, timeout=30, verify=verify)
        self.clients.append(client)
        return client

    def audit(self):
        audit = self.cli("audit")
        assert audit["ok"], audit
        return audit

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        for client in self.clients:
            client.close()
        stop(self.process)
        self.log.close()


@pytest.fixture
def engine():
    directory = tempfile.mkdtemp(prefix="kessai-http-")
    running = Engine(directory)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def merchant(engine):
    """An HTTP client acting as merchant MERCHANT."""
    engine.add("merchant", MERCHANT)
    token, _ = engine.token(MERCHANT)
    return engine.client(token)
