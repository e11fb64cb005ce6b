"""The ISO 8583 listener driven by pyiso8583, an independent client: every
message kessai serves, repeats, reversals racing activations, the wrong
store, malformed messages, and mutual TLS refused without a certificate.
"""

import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest

import iso8583
from iso8583.specs import default as SPEC

from conftest import FACE, HQ, OTHER_HQ, OTHER_STORE, STORE, Engine, Iso, make_certificate


def typo(pin):
    last = pin[-1]
    return pin[:-1] + ("0" if last == "9" else str(int(last) + 1))


def test_golden_sign_on_bytes():
    """The codec's golden bytes (src/iso8583/codec.rs) are pyiso8583's."""
    raw, _ = iso8583.encode({"t": "0800", "7": "1205063000", "11": "000001", "70": "001"}, SPEC)
    assert bytes(raw).hex() == (
        b"0800".hex() + "8220000000000000" + "0400000000000000"
        + b"1205063000".hex() + b"000001".hex() + b"001".hex()
    )


def test_echo_sign_on_and_sign_off(engine):
    client = Iso.connect(engine.iso)
    assert client.network("301") == "00"
    pins = engine.issue(1)
    assert client.activate(pins[0])["39"] == "91", "a sale before sign-on"
    client.sign_on()
    assert client.balance(pins[0])["39"] == "14", "the 91 applied nothing"
    assert client.network("002") == "00"
    assert client.balance(pins[0])["39"] == "91", "after sign-off"
    assert client.network("999") == "12"
    client.close()


def test_activation_replays_and_declines(engine, iso):
    pins = engine.issue(3)
    sold = iso.activate(pins[0], rrn="RRN000000001")
    assert sold["39"] == "00"
    assert len(sold["38"]) == 6
    assert "2" not in sold, "the PIN is never echoed"
    assert sold["37"] == "RRN000000001" and sold["41"] == "TERM0001"
    again = iso.activate(pins[0], rrn="RRN000000001")
    assert (again["39"], again["38"]) == ("00", sold["38"]), "a replay"
    assert iso.activate(pins[0], rrn="RRN000000002")["39"] == "94", "another sale"
    assert iso.activate(pins[1], amount=FACE - 1)["39"] == "13"
    assert iso.activate(pins[1], store=OTHER_STORE)["39"] == "57"
    assert iso.activate(typo(pins[1]))["39"] == "14"
    wrong = iso.sale("0200", pins[1], FACE, STORE, "RRN000000003")
    wrong["3"] = "000000"
    assert iso.call(wrong)["39"] == "12"
    dollars = iso.sale("0200", pins[1], FACE, STORE, "RRN000000003")
    dollars["49"] = "840"
    assert iso.call(dollars)["39"] == "13"
    # Several cards of one sale share the RRN.
    assert iso.activate(pins[1], rrn="RRN000000001")["39"] == "00"
    assert iso.activate(pins[2], rrn="RRN000000001")["39"] == "00"
    # DE 35 (track 2) carries the PIN as well as DE 2 does.
    fresh = engine.issue(1)[0]
    track = iso.sale("0200", fresh, FACE, STORE, "RRN000000009")
    del track["2"]
    track["35"] = fresh + "=3012"
    assert iso.call(track)["39"] == "00"
    report = engine.cli("report")
    store = next(line for line in report["stores"] if line["store_id"] == STORE)
    assert store["owed_minor"] == 4 * FACE
    engine.audit()


def test_balance_inquiries_see_own_cards_only(engine, iso):
    pins = engine.issue(3)
    assert iso.activate(pins[0])["39"] == "00"
    reply = iso.balance(pins[0])
    assert reply["39"] == "00"
    blocks = [reply["54"][i:i + 20] for i in range(0, len(reply["54"]), 20)]
    assert blocks == [f"0001392C{FACE:012d}", f"0002392C{FACE:012d}"]
    assert iso.balance(pins[1])["39"] == "14", "unsold"
    assert iso.balance(typo(pins[1]))["39"] == "14", "bad check digit"
    other_key = engine.add_hq(OTHER_HQ, OTHER_STORE)
    engine.cli_as(other_key, "activate", "--store", str(OTHER_STORE), "--pos-ref", "5", pins[2])
    assert iso.balance(pins[2])["39"] == "57", "another HQ's card"
    asked = {"t": "0100", "2": pins[0], "3": "310000", "11": iso.next_stan(),
             "42": f"{OTHER_STORE:015d}"}
    assert iso.call(asked)["39"] == "57", "another HQ's store"


def test_void_timeout_reversal_and_forestalling(engine, iso):
    pins = engine.issue(3)
    assert iso.activate(pins[0], rrn="RRN000000010")["39"] == "00"
    assert iso.reverse("0400", pins[0], amount=FACE + 1, rrn="RRN000000010")["39"] == "13"
    void = iso.reverse("0400", pins[0], rrn="RRN000000010")
    assert void["39"] == "00" and len(void["38"]) == 6
    assert iso.reverse("0400", pins[0], rrn="RRN000000010")["39"] == "00", "a repeat"
    assert iso.activate(pins[0], rrn="RRN000000010")["39"] == "57", "reversed"
    assert iso.balance(pins[0])["39"] == "14"
    # 0420 before its 0200 forestalls it; the 0421 repeat is answered alike.
    assert iso.reverse("0420", pins[1], rrn="RRN000000011")["39"] == "00"
    assert iso.reverse("0421", pins[1], rrn="RRN000000011")["39"] == "00"
    assert iso.activate(pins[1], rrn="RRN000000011")["39"] == "57"
    # Another sale of the card activates it as usual.
    assert iso.activate(pins[1], rrn="RRN000000012")["39"] == "00"
    # 0420 without DE 90 is a format error.
    missing = iso.sale("0420", pins[2], FACE, STORE, "RRN000000013")
    del missing["90"]
    assert iso.call(missing)["39"] == "30"
    # A reversal of a card a merchant spent from is declined.
    assert iso.activate(pins[2], rrn="RRN000000014")["39"] == "00"
    merchant = engine.dir / "merchant.key"
    engine.cli("principal", "add", "--role", "merchant", "--id", "1", "--out", str(merchant))
    engine.cli_as(merchant, "pay", "--amount", "100", "--request-id", "1", pins[2])
    assert iso.reverse("0400", pins[2], rrn="RRN000000014")["39"] == "05"
    engine.audit()


def test_reversals_racing_activations(engine):
    count = 30
    pins = engine.issue(count)
    results = {"activate": [None] * count, "reverse": [None] * count}

    def run(kind):
        client = Iso.connect(engine.iso)
        client.sign_on()
        for index, pin in enumerate(pins):
            rrn = f"RACE{index:08d}"
            if kind == "activate":
                results[kind][index] = client.activate(pin, rrn=rrn)["39"]
            else:
                results[kind][index] = client.reverse("0420", pin, rrn=rrn)["39"]
        client.close()

    threads = [threading.Thread(target=run, args=(kind,)) for kind in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checker = Iso.connect(engine.iso)
    checker.sign_on()
    for index, pin in enumerate(pins):
        assert results["reverse"][index] == "00"
        assert results["activate"][index] in ("00", "57")
        assert checker.balance(pin)["39"] == "14", "either order ends unsold"
    report = engine.cli("report")
    owed = sum(line["owed_minor"] for line in report["stores"] if line["store_id"] == STORE)
    assert owed == 0
    engine.audit()


def test_malformed_messages(engine, iso):
    pins = engine.issue(1)
    # A bitmap naming field 5, which kessai does not speak: 30.
    body = b"0200" + bytes([0x08, 0, 0, 0, 0, 0, 0, 0]) + b"000000000000"
    iso.send_raw(len(body).to_bytes(2, "big") + body)
    reply = iso.receive()
    assert (reply["t"], reply["39"]) == ("0210", "30")
    # A field with a letter where digits belong: 30.
    raw, _ = iso8583.encode({"t": "0200", "2": pins[0], "3": "220000", "4": "00000000500A",
                             "11": "000099"}, SPEC)
    iso.send_raw(len(raw).to_bytes(2, "big") + bytes(raw))
    assert iso.receive()["39"] == "30"
    # An LLVAR length past the field's maximum: 30.
    body = b"0200" + bytes([0x40, 0, 0, 0, 0, 0, 0, 0]) + b"99" + b"1" * 99
    iso.send_raw(len(body).to_bytes(2, "big") + body)
    assert iso.receive()["39"] == "30"
    # Nothing of those was applied.
    assert iso.balance(pins[0])["39"] == "14"
    # A message type kessai does not serve: 40, and the session goes on.
    advice = iso.sale("0220", pins[0], FACE, STORE, "RRN000000001")
    assert iso.call(advice)["39"] == "40"
    assert iso.network("301") == "00"
    # A length prefix past the limit: closed without a reply.
    iso.send_raw(b"\xff\xff0200")
    assert iso.receive() is None
    # An MTI that is not digits: closed.
    other = Iso.connect(engine.iso)
    body = b"02X0" + bytes(8)
    other.send_raw(len(body).to_bytes(2, "big") + body)
    assert other.receive() is None
    other.close()
    # The engine is fine, and so are the books.
    after = Iso.connect(engine.iso)
    after.sign_on()
    assert after.activate(pins[0])["39"] == "00"
    after.close()
    engine.audit()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificates")
def test_mutual_tls_refuses_a_client_without_a_registered_certificate():
    import pathlib
    directory = pathlib.Path(tempfile.mkdtemp(prefix="kessai-iso-tls-"))
    engine_cert, engine_key = make_certificate(directory, "engine")
    hq_cert, hq_key = make_certificate(directory, "hq")
    stranger_cert, stranger_key = make_certificate(directory, "stranger")
    engine = Engine(directory, tls=(engine_cert, engine_key))
    try:
        engine.add_hq(HQ, STORE)
        registered = engine.cli("principal", "cert", "--id", str(HQ), "--cert", str(hq_cert))
        assert registered["id"] == HQ and len(registered["fingerprint"]) == 64
        pins = engine.issue(1)

        def connect(cert=None, key=None):
            context = ssl.create_default_context(cafile=str(engine_cert))
            if cert:
                context.load_cert_chain(str(cert), str(key))
            raw = socket.create_connection(engine.iso)
            return Iso(context.wrap_socket(raw, server_hostname="127.0.0.1"))

        client = connect(hq_cert, hq_key)
        client.sign_on()
        assert client.activate(pins[0])["39"] == "00"
        client.close()
        for cert, key in [(None, None), (stranger_cert, stranger_key)]:
            try:
                refused = connect(cert, key)
                refused.send({"t": "0800", "11": "000001", "70": "001"})
                assert refused.receive() is None
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass  # refused during the handshake
    finally:
        engine.stop()
        shutil.rmtree(directory, ignore_errors=True)
