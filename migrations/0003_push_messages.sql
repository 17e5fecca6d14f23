-- Web Push (subscriptions, notifications, delivery attempts) and outbound messages.
--
-- A notification fans out to one `webpush.deliver` job per active subscription of its users,
-- enqueued in the transaction that stores it. Every delivery attempt is recorded; a
-- subscription the push service calls gone (404/410) is deactivated, not deleted.

CREATE TABLE pgfleet.push_subscriptions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 255),
    endpoint           text NOT NULL UNIQUE,
    p256dh             text NOT NULL,
    auth               text NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deactivated_at     timestamptz,
    deactivated_reason text
);
CREATE INDEX push_subscriptions_user ON pgfleet.push_subscriptions (user_id) WHERE active;

CREATE TABLE pgfleet.notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type       text NOT NULL,
    user_ids   text[] NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    icon       text,
    url        text,
    locale     text,
    data       jsonb NOT NULL DEFAULT '{}',
    priority   text NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    ttl        integer NOT NULL CHECK (ttl >= 0),
    urgency    text NOT NULL CHECK (urgency IN ('very-low', 'low', 'normal', 'high')),
    topic      text,
    deliveries integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgfleet.delivery_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES pgfleet.notifications (id) ON DELETE CASCADE,
    subscription_id bigint REFERENCES pgfleet.push_subscriptions (id) ON DELETE SET NULL,
    user_id         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('delivered', 'failed')),
    http_status     integer,
    latency_ms      integer NOT NULL,
    error           text,
    attempt         integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_notification ON pgfleet.delivery_attempts (notification_id, id);
CREATE INDEX delivery_attempts_subscription ON pgfleet.delivery_attempts (subscription_id);

-- Outbound messages (seed 004): stored unsent, delivered by a `messages.deliver` job that
-- POSTs a Standard Webhooks–signed request; `sent_at` is set once, on the first 2xx.
CREATE TABLE pgfleet.messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient   text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 255),
    content     text NOT NULL,
    webhook_url text,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    sent_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_sent ON pgfleet.messages (sent_at DESC) WHERE sent_at IS NOT NULL;
