-- Checks pay() call by call, each call its own transaction (psql
-- autocommit), so idempotent replay is tested across commits. Run by `run`
-- on the empty schema before the cards are loaded; it leaves its rows for
-- `run` to remove. Any failed expectation stops psql (ON_ERROR_STOP) with an
-- error naming the step.

CREATE FUNCTION pg_temp.expect(got text, want text, step text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'self-test "%": got [%], want [%]', step, got, want;
    END IF;
END $$;

-- Card A: active, 5 units. Card B: issued, never sold.
INSERT INTO cards (key, state, face_value_minor, balance_minor, store_id) VALUES
    (pin_key('selftest-a'), 2, 5, 5, 1),
    (pin_key('selftest-b'), 1, 5, 0, 0);

SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'approved 2 f', 'first payment approved')
  FROM pay(900, 1, pin_key('selftest-a'), 3);
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'approved 2 t', 'same request id is replayed')
  FROM pay(900, 1, pin_key('selftest-a'), 3);
SELECT pg_temp.expect(balance_minor::text, '2', 'replay did not debit again')
  FROM cards WHERE key = pin_key('selftest-a');
SELECT pg_temp.expect(sum(owed_minor)::text, '3', 'replay did not credit again')
  FROM merchant_books WHERE merchant_id = 900;

SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'declined insufficient_funds 2 f', 'insufficient funds')
  FROM pay(900, 2, pin_key('selftest-a'), 5);
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'declined insufficient_funds 2 t', 'a decline is replayed')
  FROM pay(900, 2, pin_key('selftest-a'), 5);
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'approved 0 f', 'pay to zero')
  FROM pay(900, 3, pin_key('selftest-a'), 2);
SELECT pg_temp.expect(state::text, '3', 'card at zero is exhausted')
  FROM cards WHERE key = pin_key('selftest-a');
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'declined exhausted 0 f', 'exhausted card')
  FROM pay(900, 4, pin_key('selftest-a'), 1);
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'declined not_active 0 f', 'card not activated')
  FROM pay(900, 5, pin_key('selftest-b'), 1);
SELECT pg_temp.expect(concat_ws(' ', status, reason, remaining_minor, replayed),
                      'declined unknown_pin 0 f', 'unknown card')
  FROM pay(900, 6, pin_key('selftest-nope'), 1);

-- Reusing a request id for a different payment is an error, not a replay.
DO $$
BEGIN
    PERFORM pay(900, 1, pin_key('selftest-a'), 4);
    RAISE EXCEPTION 'self-test "request id reused": no error';
EXCEPTION WHEN invalid_parameter_value THEN
    NULL;
END $$;

SELECT pg_temp.expect(concat_ws(' ', count(*), count(*) FILTER (WHERE status = 'approved'),
                                sum(amount_minor) FILTER (WHERE status = 'approved')),
                      '6 2 5', 'every decided payment recorded once')
  FROM payments WHERE merchant_id = 900;
SELECT pg_temp.expect(sum(owed_minor)::text, '5', 'merchant credited what was approved')
  FROM merchant_books WHERE merchant_id = 900;
