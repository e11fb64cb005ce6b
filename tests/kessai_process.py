"""What the Python suites (tests/iso8583/, tests/http/) share: where the
engine binary is, a self-signed certificate for its TLS, and stopping an
engine process by the PID its fixture started."""

import os
import pathlib
import signal
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The PIN secret every test engine runs with (hex).
SECRET_HEX = "6b6573736169207465737420736563726574206b6579203230323621"


def kessai_bin():
    """$KESSAI_BIN, or target/debug/kessai under $CARGO_TARGET_DIR (default:
    the repository's target/)."""
    if os.environ.get("KESSAI_BIN"):
        return os.environ["KESSAI_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "kessai")


def make_certificate(directory, name):
    """A self-signed end-entity certificate for 127.0.0.1, and its key."""
    cert = directory / f"{name}.pem"
    key = directory / f"{name}.key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True,
    )
    return cert, key


def stop(process):
    """SIGTERM to the engine this fixture started (by its PID), SIGKILL if
    it does not stop within 10 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    process.stdout.close()
