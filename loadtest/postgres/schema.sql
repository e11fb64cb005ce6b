-- PostgreSQL baseline for kessai's single-card payment (see README.md).
--
-- The tables mirror the durable state kessai keeps in RocksDB for this
-- workload (src/storage/records.rs):
--   cards           <- column family `cards`    (pin key -> card record)
--   payments        <- column family `payments` (merchant, request -> outcome)
--   merchant_books  <- column family `books`    (kind, merchant, shard -> owed)
-- Store books (credited at activation) are left out: activation is setup,
-- not part of the measured payment path.
--
-- Load with:  psql -v ON_ERROR_STOP=1 -v shares=256 -f schema.sql
-- `shares` (default 256, at most 65536) is the number of book shares per
-- merchant; see merchant_books below for why it is that many.

\if :{?shares}
\else
  \set shares 256
\endif

SET client_min_messages = warning;

-- pgcrypto provides hmac(), used to key cards the way kessai does.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

DROP FUNCTION IF EXISTS pay(int, bigint, bytea, bigint);
DROP FUNCTION IF EXISTS pin_key(text);
DROP FUNCTION IF EXISTS book_shares();
DROP TABLE IF EXISTS payments, merchant_books, cards;

-- A card is keyed like kessai's PinKey: the first 16 bytes of
-- HMAC-SHA256(secret, PIN digits). The PIN itself is never stored. The
-- load harness uses the decimal digits of 1..N as PINs, so pgbench can
-- compute the key of a random card as pin_key(n::text).
-- (IMMUTABLE SQL function: the planner inlines it into the caller.)
CREATE FUNCTION pin_key(pin text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT substring(hmac(pin, 'kessai-load secret', 'sha256') FROM 1 FOR 16) $$;

-- Card states as in kessai's card.rs: 1 issued, 2 active, 3 exhausted.
-- fillfactor 70 leaves room on each page so a debit is a HOT update (no
-- index write), which is how a tuned PostgreSQL would keep this table.
CREATE TABLE cards (
    key              bytea    PRIMARY KEY CHECK (length(key) = 16),
    state            smallint NOT NULL CHECK (state IN (1, 2, 3)),
    face_value_minor bigint   NOT NULL CHECK (face_value_minor > 0),
    balance_minor    bigint   NOT NULL,
    store_id         int      NOT NULL DEFAULT 0,
    pos_ref          bigint   NOT NULL DEFAULT 0,
    -- kessai's card invariant (card.rs Card::check), enforced on every write.
    CHECK (balance_minor >= 0 AND balance_minor <= face_value_minor),
    CHECK (state <> 1 OR balance_minor = 0),
    CHECK (state <> 3 OR balance_minor = 0)
) WITH (fillfactor = 70);

-- The idempotency record and outcome of every payment, approved or
-- declined: kessai records declines too, and replays them on a retry.
CREATE TABLE payments (
    merchant_id     int      NOT NULL,
    request_id      bigint   NOT NULL,
    status          text     NOT NULL CHECK (status IN ('approved', 'declined')),
    reason          text     CHECK (reason IN ('unknown_pin', 'not_active',
                                               'insufficient_funds', 'exhausted')),
    amount_minor    bigint   NOT NULL,
    remaining_minor bigint   NOT NULL,
    card_key        bytea    NOT NULL,
    PRIMARY KEY (merchant_id, request_id)
);

-- What each merchant is owed, split into shares. kessai keeps books as
-- per-shard shares (src/ledger.rs): the shard that debits a card credits
-- its own share of the merchant's account in the same atomic write, so no
-- single row is a point of contention. Here the share is picked by the last
-- two bytes of the card key (a hash, so uniform), for the same reason. It
-- takes more shares than kessai has shards: in PostgreSQL the credited row
-- stays locked until the commit's WAL flush returns, so payments landing on
-- the same share commit one flush after another. With 16 shares and 128
-- clients most backends were found waiting on those row locks, at about
-- 1000 payments/s against about 2600 with 256 shares (busy 2-core machine);
-- with 256 they wait on the WAL flush instead. `run --shares N` changes it.
-- A merchant's balance is the sum of its shares.
CREATE TABLE merchant_books (
    merchant_id int    NOT NULL,
    share       int    NOT NULL,
    owed_minor  bigint NOT NULL DEFAULT 0 CHECK (owed_minor >= 0),
    PRIMARY KEY (merchant_id, share)
) WITH (fillfactor = 50);

-- The share count as a constant the planner folds into pay()'s plan.
\set book_shares_body 'SELECT ' :shares
CREATE FUNCTION book_shares() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS :'book_shares_body';

-- One single-card payment, as kessai's shard does it (src/shard/mod.rs
-- Shard::pay, src/card.rs Card::debit), in the caller's transaction:
--
--  1. idempotency: if (merchant, request) was already decided, return that
--     outcome (replayed = true) and change nothing; a retry that is not the
--     same payment (other amount or card) is an error, as in kessai;
--  2. debit the card if it exists, is active and holds at least the amount
--     (at zero it becomes exhausted), and credit the merchant's book share;
--     otherwise decline with kessai's reason;
--  3. record the outcome, approved or declined.
--
-- Concurrency (READ COMMITTED): the debit is one guarded
-- UPDATE ... RETURNING, which takes the card's row lock and re-checks the
-- guard against the latest committed version if another payment got there
-- first, so concurrent payments never overdraw. A decline re-reads the card
-- FOR UPDATE to give a reason consistent with its locked state. Two
-- concurrent calls with the same (merchant, request) cannot both land: the
-- second one's INSERT into payments waits for the first to commit, then
-- finds the conflict and aborts its whole transaction (nothing debited)
-- with SQLSTATE 40001; a retry gets the replay. kessai answers such an
-- in-flight duplicate with RequestInProgress.
CREATE FUNCTION pay(
    p_merchant int,
    p_request  bigint,
    p_card     bytea,
    p_amount   bigint,
    OUT status          text,
    OUT reason          text,
    OUT remaining_minor bigint,
    OUT replayed        boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    prior   payments%ROWTYPE;
    v_state smallint;
    v_left  bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- 1. Idempotent replay.
    SELECT * INTO prior FROM payments
     WHERE merchant_id = p_merchant AND request_id = p_request;
    IF FOUND THEN
        IF prior.amount_minor <> p_amount OR prior.card_key <> p_card THEN
            RAISE EXCEPTION 'this request id was already used for a different payment'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        status := prior.status;
        reason := prior.reason;
        remaining_minor := prior.remaining_minor;
        replayed := true;
        RETURN;
    END IF;
    replayed := false;

    -- 2. Debit: the hot path is this one statement.
    UPDATE cards c
       SET balance_minor = c.balance_minor - p_amount,
           state = CASE WHEN c.balance_minor = p_amount THEN 3 ELSE 2 END
     WHERE c.key = p_card AND c.state = 2 AND c.balance_minor >= p_amount
    RETURNING c.balance_minor INTO v_left;

    IF NOT FOUND THEN
        -- Why not? Look under the row lock.
        SELECT c.state, c.balance_minor INTO v_state, v_left
          FROM cards c WHERE c.key = p_card FOR UPDATE;
        IF NOT FOUND THEN
            reason := 'unknown_pin';
        ELSIF v_state = 1 THEN
            reason := 'not_active';
        ELSIF v_state = 3 THEN
            reason := 'exhausted';
        ELSIF v_left < p_amount THEN
            reason := 'insufficient_funds';
        ELSE
            -- Activated between the two statements: it can pay after all.
            UPDATE cards c
               SET balance_minor = c.balance_minor - p_amount,
                   state = CASE WHEN c.balance_minor = p_amount THEN 3 ELSE 2 END
             WHERE c.key = p_card
            RETURNING c.balance_minor INTO v_left;
        END IF;
    END IF;

    IF reason IS NULL THEN
        status := 'approved';
        remaining_minor := v_left;
        UPDATE merchant_books b
           SET owed_minor = b.owed_minor + p_amount
         WHERE b.merchant_id = p_merchant
           AND b.share = (get_byte(p_card, 14) << 8 | get_byte(p_card, 15)) % book_shares();
        IF NOT FOUND THEN
            -- First payment to this merchant's share: create it.
            INSERT INTO merchant_books AS b (merchant_id, share, owed_minor)
            VALUES (p_merchant, (get_byte(p_card, 14) << 8 | get_byte(p_card, 15)) % book_shares(),
                    p_amount)
            ON CONFLICT (merchant_id, share)
            DO UPDATE SET owed_minor = b.owed_minor + EXCLUDED.owed_minor;
        END IF;
    ELSE
        status := 'declined';
        -- As kessai: what the card could have paid for insufficient funds,
        -- 0 for the other reasons.
        remaining_minor := CASE WHEN reason = 'insufficient_funds' THEN v_left ELSE 0 END;
    END IF;

    -- 3. Record the outcome; a concurrent duplicate that committed first
    -- makes this a conflict, and the whole payment is undone.
    INSERT INTO payments (merchant_id, request_id, status, reason,
                          amount_minor, remaining_minor, card_key)
    VALUES (p_merchant, p_request, status, reason, p_amount, remaining_minor, p_card)
    ON CONFLICT (merchant_id, request_id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this request id is being processed; retry when it has answered'
            USING ERRCODE = 'serialization_failure';
    END IF;
END;
$$;
