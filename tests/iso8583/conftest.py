"""Fixtures: a real kessai engine process with its ISO 8583 listener on an
ephemeral 127.0.0.1 port, started here and stopped by its PID.

The engine binary is $KESSAI_BIN, or target/debug/kessai under
$CARGO_TARGET_DIR (default: the repository's target/). Nothing is mocked:
principals and cards are made with the `kessai` CLI over the binary
protocol, and every ISO 8583 message is encoded and decoded by pyiso8583.
"""

import json
import os
import pathlib
import shutil
import sys
import socket
import subprocess
import tempfile

import pytest

import iso8583
from iso8583.specs import default as SPEC

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kessai_process import SECRET_HEX, kessai_bin, make_certificate, stop  # noqa: E402,F401
STORE = 7
HQ = 1_000_000 + STORE
OTHER_STORE = 8
OTHER_HQ = 1_000_000 + OTHER_STORE
FACE = 5000


class Engine:
    """One engine process and the CLI to drive it as the operator."""

    def __init__(self, directory, tls=None):
        self.dir = pathlib.Path(directory)
        config = self.dir / "kessai.toml"
        tls_lines = ""
        iso_lines = 'listen = "127.0.0.1:0"\n'
        if tls:
            cert, key = tls
            tls_lines = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        else:
            iso_lines += f"plain_tcp_store_hq = {HQ}\n"
        config.write_text(
            'listen = "127.0.0.1:0"\n'
            f"{tls_lines}"
            f'data_dir = "{self.dir / "data"}"\n'
            "shards = 2\nworker_threads = 2\n"
            f'pin_secret_hex = "{SECRET_HEX}"\n'
            f"[iso8583]\n{iso_lines}"
        )
        self.log = open(self.dir / "engine.log", "ab")
        env = dict(os.environ, KESSAI_LOG="info")
        self.process = subprocess.Popen(
            [kessai_bin(), "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        self.tls_ca = tls[0] if tls else None
        first = self.process.stdout.readline().decode().strip()
        second = self.process.stdout.readline().decode().strip()
        assert first.startswith("kessai listening on "), first
        assert second.startswith("kessai iso8583 listening on "), second
        self.addr = first.rsplit(" ", 1)[1]
        host, port = second.rsplit(" ", 1)[1].rsplit(":", 1)
        self.iso = (host, int(port))
        self.operator_key = self.dir / "data" / "operator.key"

    def cli(self, *args):
        command = [kessai_bin(), *args, "--json", "--addr", self.addr,
                   "--key", str(self.operator_key)]
        if self.tls_ca:
            command += ["--tls-ca", str(self.tls_ca)]
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode == 0, done
        return json.loads(done.stdout)

    def cli_as(self, key, *args):
        command = [kessai_bin(), *args, "--json", "--addr", self.addr, "--key", str(key)]
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode == 0, done
        return json.loads(done.stdout)

    def add_hq(self, hq, store):
        key = self.dir / f"{hq}.key"
        if not key.exists():
            self.cli("principal", "add", "--role", "store-hq", "--id", str(hq),
                     "--stores", str(store), "--out", str(key))
        return key

    def issue(self, count, face=FACE):
        out = self.dir / f"pins-{len(list(self.dir.glob('pins-*')))}.txt"
        self.cli("issue", "--count", str(count), "--face-value", str(face), "--out", str(out))
        return [line.strip() for line in out.read_text().split() if line.strip()]

    def audit(self):
        audit = self.cli("audit")
        assert audit["ok"], audit
        return audit

    def stop(self):
        stop(self.process)
        self.log.close()


@pytest.fixture
def engine():
    directory = tempfile.mkdtemp(prefix="kessai-iso-")
    running = Engine(directory)
    running.add_hq(HQ, STORE)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Iso:
    """A store HQ switch: pyiso8583 messages, 2-byte big-endian framing."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(30)
        self.stan = 0

    @classmethod
    def connect(cls, address):
        return cls(socket.create_connection(address))

    def close(self):
        self.sock.close()

    def send(self, doc):
        raw, _ = iso8583.encode(dict(doc), SPEC)
        self.send_raw(len(raw).to_bytes(2, "big") + bytes(raw))

    def send_raw(self, data):
        self.sock.sendall(data)

    def _exactly(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def receive(self):
        """The next message, or None when the engine closed the connection."""
        try:
            prefix = self._exactly(2)
            if prefix is None:
                return None
            body = self._exactly(int.from_bytes(prefix, "big"))
        except (ConnectionResetError, socket.timeout):
            return None
        if body is None:
            return None
        doc, _ = iso8583.decode(body, SPEC)
        return doc

    def call(self, doc):
        self.send(doc)
        reply = self.receive()
        assert reply is not None, "the engine closed the connection"
        assert reply.get("11") == doc.get("11"), (doc, reply)
        return reply

    def next_stan(self):
        self.stan += 1
        return f"{self.stan:06d}"

    def network(self, code):
        reply = self.call({"t": "0800", "7": "1205063000", "11": self.next_stan(), "70": code})
        assert reply["t"] == "0810" and reply["70"] == code, reply
        return reply["39"]

    def sign_on(self):
        assert self.network("001") == "00"

    def sale(self, mti, pin, amount, store, rrn, terminal="TERM0001"):
        doc = {
            "t": mti, "2": pin, "3": "220000", "4": f"{amount:012d}",
            "7": "1205063000", "11": self.next_stan(), "12": "063000", "13": "1205",
            "37": rrn, "41": terminal, "42": f"{store:015d}", "49": "392",
        }
        if mti in ("0420", "0421"):
            doc["90"] = "0200" + "0" * 38
        return doc

    def activate(self, pin, amount=FACE, store=STORE, rrn="RRN000000001"):
        reply = self.call(self.sale("0200", pin, amount, store, rrn))
        assert reply["t"] == "0210", reply
        return reply

    def reverse(self, mti, pin, amount=FACE, rrn="RRN000000001", store=STORE):
        reply = self.call(self.sale(mti, pin, amount, store, rrn))
        assert reply["t"] == {"0400": "0410", "0420": "0430", "0421": "0430"}[mti], reply
        return reply

    def balance(self, pin):
        # No DE 41: checks of many unsold cards would lock one terminal out.
        reply = self.call({"t": "0100", "2": pin, "3": "310000", "7": "1205063000",
                           "11": self.next_stan()})
        assert reply["t"] == "0110", reply
        return reply


@pytest.fixture
def iso(engine):
    client = Iso.connect(engine.iso)
    client.sign_on()
    try:
        yield client
    finally:
        client.close()
