-- Webhook ingest and the payment ledger.
--
-- An event is stored once per (source, event_id); its processing job is enqueued in the same
-- transaction, with unique key `webhook:<source>:<event_id>` (which is how an event finds its
-- job). `payments` is the ledger the `payments.process` job upserts idempotently.

CREATE TABLE pgfleet.webhook_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    event_id     text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    type         text NOT NULL,
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'received'
                 CHECK (status IN ('received', 'processing', 'done', 'failed')),
    last_error   text,
    attempts     integer NOT NULL DEFAULT 0,
    received_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    UNIQUE (source, event_id)
);

CREATE TABLE pgfleet.payments (
    event_id     text PRIMARY KEY,
    source       text NOT NULL,
    type         text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     char(3) NOT NULL,
    user_id      text,
    occurred_at  timestamptz,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
