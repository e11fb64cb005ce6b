"""The HTTP API from a real client (httpx), against a real engine: every
endpoint, every problem type, idempotent replays and conflicts, roles and
tokens, bad JSON, oversized and slow bodies, the lockout, and the OpenAPI
document checked by openapi-spec-validator."""

import concurrent.futures
import json
import pathlib
import shutil
import socket
import tempfile
import time

import httpx
import pytest
from openapi_spec_validator import validate

from conftest import (
    FACE, FRAME_TIMEOUT_MS, HQ, MAX_BODY_BYTES, MERCHANT, OTHER_MERCHANT, PIN_FAILURES_MAX, STORE,
    Engine, make_certificate,
)

PROBLEM = "application/problem+json"


def pay(client, order_id, pins, amount, capture=True, **extra):
    body = {"order_id": order_id, "pins": pins, "amount": amount, "currency": "JPY"}
    if not capture:
        body["capture"] = False
    body.update(extra)
    return client.post("/v1/payments", json=body)


def problem(response, status, kind):
    """Asserts `response` is a problem document of `status` and `kind`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["type"] == kind, body
    assert body["status"] == status
    assert body["title"] and isinstance(body["detail"], str)
    return body


def bad_check_digit(pin):
    return pin[:-1] + str((int(pin[-1]) + 1) % 10)


def test_healthz_openapi_and_unknown_paths(engine):
    anyone = engine.client()
    assert anyone.get("/v1/healthz").json() == {"status": "ok"}
    spec = anyone.get("/v1/openapi.json")
    assert spec.status_code == 200
    document = spec.json()
    validate(document)
    assert set(document["paths"]) == {
        "/v1/payments", "/v1/payments/{order_id}", "/v1/payments/{order_id}/capture",
        "/v1/payments/{order_id}/void", "/v1/payments/{order_id}/refunds",
        "/v1/cards/balance", "/v1/healthz",
    }
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    problem(anyone.get("/v1/nothing"), 404, "urn:kessai:problem:not-found")
    problem(anyone.get("/"), 404, "urn:kessai:problem:not-found")


def test_a_payment_is_created_replayed_refused_when_different_and_looked_up(engine, merchant):
    pins = engine.cards(2)
    created = pay(merchant, "ORD-2026-000123", pins[:1], 300)
    assert created.status_code == 201, created.text
    assert "idempotent-replayed" not in created.headers
    payment = created.json()
    assert payment["status"] == "approved" and payment["kind"] == "payment"
    assert payment["amount"] == 300 and payment["taken"] == 300 and payment["currency"] == "JPY"
    assert payment["cards"] == [{"pin_last4": pins[0][-4:], "amount": 300}]

    # The same request by meaning (other key order, other whitespace): a replay.
    raw = json.dumps({"currency": "JPY", "amount": 300, "pins": pins[:1],
                      "order_id": "ORD-2026-000123"}, indent=3)
    again = merchant.post("/v1/payments", content=raw,
                          headers={"Content-Type": "application/json"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == payment

    # The same order id, another request: 422, and nothing stored.
    for changed in [dict(amount=301), dict(pins=pins[1:2])]:
        body = {"order_id": "ORD-2026-000123", "pins": pins[:1], "amount": 300,
                "currency": "JPY", **changed}
        problem(merchant.post("/v1/payments", json=body), 422,
                "urn:kessai:problem:idempotency-key-reused")
    problem(pay(merchant, "ORD-2026-000123", pins[:1], 300, capture=False), 422,
            "urn:kessai:problem:idempotency-key-reused")

    found = merchant.get("/v1/payments/ORD-2026-000123")
    assert found.status_code == 200
    assert found.json()["status"] == "approved" and found.json()["taken"] == 300
    problem(merchant.get("/v1/payments/ORD-none"), 404, "urn:kessai:problem:payment-not-found")
    problem(merchant.get("/v1/payments/bad%20id"), 422, "urn:kessai:problem:invalid-order-id")

    # Another merchant's order ids are its own.
    engine.add("merchant", OTHER_MERCHANT)
    other = engine.client(engine.token(OTHER_MERCHANT)[0])
    problem(other.get("/v1/payments/ORD-2026-000123"), 404, "urn:kessai:problem:payment-not-found")
    assert pay(other, "ORD-2026-000123", pins[1:2], 100).status_code == 201
    engine.audit()


def test_declines_are_402_with_the_reason_as_type(engine, merchant):
    pins = engine.cards(1)
    short = pay(merchant, "short-1", pins, FACE + 1)
    body = problem(short, 402, "urn:kessai:decline:insufficient_funds")
    assert body["payment"]["status"] == "declined"
    assert body["payment"]["reason"] == "insufficient_funds"
    replay = pay(merchant, "short-1", pins, FACE + 1)
    problem(replay, 402, "urn:kessai:decline:insufficient_funds")
    assert replay.headers["idempotent-replayed"] == "true"
    unsold = "79927398713"  # a valid check digit, no such card
    problem(pay(merchant, "unknown-1", [unsold], 1), 402, "urn:kessai:decline:invalid_card")


def test_authorization_capture_void_and_refunds(engine, merchant):
    pins = engine.cards(3)
    held = pay(merchant, "auth-1", pins[:1], 400, capture=False)
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "authorized" and held.json()["expires_at_ms"] > 0
    assert merchant.get("/v1/payments/auth-1").json()["status"] == "authorized"

    capture = lambda key, amount: merchant.post(  # noqa: E731
        "/v1/payments/auth-1/capture", json={"amount": amount},
        headers={"Idempotency-Key": key})
    problem(merchant.post("/v1/payments/auth-1/capture", json={"amount": 1}), 400,
            "urn:kessai:problem:idempotency-key-required")
    problem(capture("no spaces", 1), 400, "urn:kessai:problem:invalid-idempotency-key")
    captured = capture("cap-1", 250)
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    assert captured.json()["amount"] == 250 and captured.json()["released"] == 150
    again = capture("cap-1", 250)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    problem(capture("cap-1", 200), 422, "urn:kessai:problem:idempotency-key-reused")
    assert merchant.get("/v1/payments/auth-1").json()["taken"] == 250

    # A void of another authorization; voiding it again under another key
    # is a decline.
    assert pay(merchant, "auth-2", pins[1:2], 100, capture=False).status_code == 201
    voided = merchant.post("/v1/payments/auth-2/void", headers={"Idempotency-Key": "void-1"})
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided" and voided.json()["released"] == 100
    problem(merchant.post("/v1/payments/auth-2/void", headers={"Idempotency-Key": "void-2"}),
            402, "urn:kessai:decline:" + merchant.post(
                "/v1/payments/auth-2/void", headers={"Idempotency-Key": "void-2"}
            ).json()["payment"]["reason"])

    # Refunds of a payment, by key.
    assert pay(merchant, "pay-9", pins[2:3], 500).status_code == 201
    refund = lambda key, amount: merchant.post(  # noqa: E731
        "/v1/payments/pay-9/refunds", json={"amount": amount},
        headers={"Idempotency-Key": key})
    first = refund("r-1", 200)
    assert first.status_code == 201, first.text
    assert first.json()["refunded_total"] == 200
    assert refund("r-1", 200).headers["idempotent-replayed"] == "true"
    problem(refund("r-1", 201), 422, "urn:kessai:problem:idempotency-key-reused")
    problem(refund("r-2", 301), 402, "urn:kessai:decline:" +
            refund("r-3", 301).json()["payment"]["reason"])
    assert merchant.get("/v1/payments/pay-9").json()["refunded"] == 200
    problem(merchant.post("/v1/payments/pay-9/refunds", json={"amount": 1}), 400,
            "urn:kessai:problem:idempotency-key-required")
    engine.audit()


def test_balance(engine, merchant):
    pins = engine.cards(1)
    balance = merchant.post("/v1/cards/balance", json={"pin": pins[0]})
    assert balance.status_code == 200
    assert balance.json() == {"state": "active", "face_value": FACE, "balance": FACE,
                              "available": FACE, "currency": "JPY"}
    problem(merchant.post("/v1/cards/balance", json={"pin": "79927398713"}), 404,
            "urn:kessai:problem:card-not-found")
    body = problem(merchant.post("/v1/cards/balance", json={"pin": "12"}), 422,
                   "urn:kessai:problem:invalid-pin")
    assert "12" not in body["detail"].replace("1..=", "")


def test_tokens_roles_and_revocation(engine):
    engine.add("merchant", MERCHANT)
    engine.add("store-hq", HQ, STORE)
    (first, first_id), (second, _) = engine.token(MERCHANT), engine.token(MERCHANT)
    listed = engine.cli("principal", "token", "list", "--id", str(MERCHANT))
    assert len(listed["tokens"]) == 2 and first_id in listed["tokens"]
    body = {"order_id": "x", "pins": ["79927398713"], "amount": 1, "currency": "JPY"}
    # Both tokens act as the merchant (a rotation without a gap).
    for token in [first, second]:
        problem(engine.client(token).post("/v1/payments", json=body), 402,
                "urn:kessai:decline:invalid_card")
    # No token, a malformed one, an unknown one: 401 with WWW-Authenticate.
    for headers in [{}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer kst1_" + "0" * 64}]:
        response = engine.client().post("/v1/payments", json=body, headers=headers)
        problem(response, 401, "urn:kessai:problem:unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    # Other roles: 403 on every merchant endpoint.
    hq = engine.client(engine.token(HQ)[0])
    operator = engine.client(engine.token(0)[0])
    for client in [hq, operator]:
        problem(client.post("/v1/payments", json=body), 403, "urn:kessai:problem:forbidden")
        problem(client.get("/v1/payments/x"), 403, "urn:kessai:problem:forbidden")
        problem(client.post("/v1/cards/balance", json={"pin": "79927398713"}), 403,
                "urn:kessai:problem:forbidden")
    # Revoking one token leaves the other; revoking the principal both.
    engine.cli("principal", "token", "revoke", "--id", str(MERCHANT), "--token", first_id)
    problem(engine.client(first).get("/v1/payments/x"), 401, "urn:kessai:problem:unauthorized")
    problem(engine.client(second).get("/v1/payments/x"), 404,
            "urn:kessai:problem:payment-not-found")
    engine.cli("principal", "revoke", "--id", str(MERCHANT))
    problem(engine.client(second).get("/v1/payments/x"), 401, "urn:kessai:problem:unauthorized")


def test_bad_json_amounts_and_fields(engine, merchant):
    pins = engine.cards(1)
    headers = {"Content-Type": "application/json"}
    for raw in [b"{", b"not json", b'{"order_id": "a",}', b""]:
        problem(merchant.post("/v1/payments", content=raw, headers=headers), 400,
                "urn:kessai:problem:malformed-json")
    base = {"order_id": "bad-1", "pins": pins, "amount": 100, "currency": "JPY"}
    for changed in [dict(amount=100.0), dict(amount=1.5), dict(amount="100"),
                    dict(amount=-1), dict(amount=2**64), dict(amount=None),
                    dict(pins="not a list"), dict(extra=1)]:
        body = problem(merchant.post("/v1/payments", json={**base, **changed}), 422,
                       "urn:kessai:problem:invalid-body")
        assert pins[0] not in body["detail"]
    for amount in [0, 10**12, 2**53]:
        problem(merchant.post("/v1/payments", json={**base, "amount": amount}), 422,
                "urn:kessai:problem:invalid-amount")
    problem(merchant.post("/v1/payments", json={**base, "currency": "USD"}), 422,
            "urn:kessai:problem:invalid-currency")
    problem(merchant.post("/v1/payments", json={**base, "order_id": "a/b"}), 422,
            "urn:kessai:problem:invalid-argument")
    problem(merchant.post("/v1/payments", json={**base, "pins": []}), 422,
            "urn:kessai:problem:limit-exceeded")
    problem(merchant.post("/v1/payments", json={**base, "pins": pins * 2}), 422,
            "urn:kessai:problem:duplicate-pin")
    missing = {k: v for k, v in base.items() if k != "order_id"}
    problem(merchant.post("/v1/payments", json=missing), 422, "urn:kessai:problem:invalid-body")
    problem(merchant.post("/v1/payments/x/capture", json={"amount": 1.0},
                          headers={"Idempotency-Key": "k"}), 422,
            "urn:kessai:problem:invalid-body")
    problem(merchant.post("/v1/payments/x/capture", json={"amount": 0},
                          headers={"Idempotency-Key": "k"}), 422,
            "urn:kessai:problem:invalid-amount")


def test_oversized_and_slow_bodies(engine, merchant):
    big = {"order_id": "big", "pins": ["1" * 16] * 10, "amount": 1, "currency": "JPY",
           "pad": "x" * MAX_BODY_BYTES}
    problem(merchant.post("/v1/payments", json=big), 413, "urn:kessai:problem:body-too-large")
    # A body that trickles in slower than frame_timeout_ms: 408.
    token = merchant.headers["Authorization"]
    host, port = engine.http_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/payments HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"order_id\"")
        started = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"urn:kessai:problem:body-timeout" in reply or b"content-length" in reply.lower()
    assert waited < FRAME_TIMEOUT_MS / 1000 + 5
    # The engine serves on.
    assert merchant.get("/v1/payments/none").status_code == 404


def test_pin_failures_lock_out_across_transports(engine, merchant):
    pins = engine.cards(1)
    for attempt in range(PIN_FAILURES_MAX):
        body = problem(pay(merchant, f"typo-{attempt}", [bad_check_digit(pins[0])], 1), 422,
                       "urn:kessai:problem:invalid-pin")
        assert pins[0] not in body["detail"] and bad_check_digit(pins[0]) not in body["detail"]
    locked = pay(merchant, "after", pins, 1)
    problem(locked, 429, "urn:kessai:problem:locked-out")
    assert int(locked.headers["retry-after"]) > 0
    problem(merchant.post("/v1/cards/balance", json={"pin": pins[0]}), 429,
            "urn:kessai:problem:locked-out")
    # The same principal over the binary protocol is locked out too.
    refused = engine.cli_as(engine.dir / f"{MERCHANT}.key", "pay", "--amount", "1",
                            "--request-id", "1", pins[0], ok=False)
    assert "locked" in json.dumps(refused).lower(), refused


def test_the_same_order_in_flight_is_409_or_a_replay(engine, merchant):
    pins = engine.cards(4)

    def attempt(_):
        return pay(merchant, "race-1", pins, 2 * FACE + 1)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(16)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {201, 409}, statuses
    first = [a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers]
    assert len(first) == 1, statuses
    for answer in answers:
        if answer.status_code == 409:
            problem(answer, 409, "urn:kessai:problem:request-in-progress")
    engine.audit()


def test_pins_never_reach_the_log(engine, merchant):
    pins = engine.cards(2)
    pay(merchant, "log-1", pins[:1], 1)
    pay(merchant, "log-2", [bad_check_digit(pins[1])], 1)
    merchant.post("/v1/cards/balance", json={"pin": pins[1]})
    merchant.post("/v1/payments", json={"order_id": "log-3", "pins": pins[1], "amount": 1,
                                        "currency": "JPY"})
    log = engine.log_text()
    for pin in pins + [bad_check_digit(pins[1])]:
        assert pin not in log


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificate")
def test_https_with_the_engines_certificate():
    directory = pathlib.Path(tempfile.mkdtemp(prefix="kessai-http-tls-"))
    engine = Engine(directory, tls=make_certificate(directory, "engine"))
    try:
        engine.add("merchant", MERCHANT)
        merchant = engine.client(engine.token(MERCHANT)[0])
        pins = engine.cards(1)
        created = pay(merchant, "tls-1", pins, 100)
        assert created.status_code == 201, created.text
        assert merchant.get("/v1/payments/tls-1").json()["taken"] == 100
        # Plain HTTP to the HTTPS port gets no answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{engine.http_addr}/v1/healthz", timeout=5)
    finally:
        engine.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_too_many_headers_are_refused(engine, merchant):
    headers = {f"X-Filler-{number}": "x" for number in range(100)}
    response = merchant.get("/v1/payments/x", headers=headers)
    assert response.status_code == 431
    assert merchant.get("/v1/healthz").status_code == 200


def test_docs_http_md_names_every_path_and_problem_type(engine):
    """docs/HTTP.md is checked against the served OpenAPI document and
    against the problem names the code can answer with."""
    import re
    root = pathlib.Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "HTTP.md").read_text()
    spec = engine.client().get("/v1/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"`{method.upper()} {path}`" in doc, (method, path)
    assert "`GET /v1/openapi.json`" in doc
    source = "".join(p.read_text() for p in (root / "src" / "http").glob("*.rs"))
    names = set(re.findall(r'(?:Failure::invalid\(|StatusCode::[A-Z_]+,\s*)"([a-z-]+)"', source))
    names |= {"busy", "unauthorized"}
    assert len(names) > 15, names
    for name in names:
        assert f"`urn:kessai:problem:{name}`" in doc, name
