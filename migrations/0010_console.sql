-- What the console charts: queue counts sampled over time, and the autoscaler's decisions
-- over time. Both keep 24 hours (pruned by their writers).

-- One row per queue per sample; written every 10 s by whichever worker's maintenance pass
-- takes the sampler's advisory lock (pgfleet-queue `history`).
CREATE TABLE pgfleet.queue_samples (
    queue               text NOT NULL,
    at                  timestamptz NOT NULL,
    available           bigint NOT NULL,
    scheduled           bigint NOT NULL,
    retryable           bigint NOT NULL,
    running             bigint NOT NULL,
    blocked             bigint NOT NULL,
    completed_last_min  bigint NOT NULL,
    discarded_last_min  bigint NOT NULL,
    lag_seconds         double precision NOT NULL,
    PRIMARY KEY (queue, at)
);
CREATE INDEX queue_samples_at ON pgfleet.queue_samples (at);

-- The autoscaler's decisions per pool: a row when desired, actual or the reason changes,
-- and at least every 10 s otherwise (pgfleet-queue `pools`).
CREATE TABLE pgfleet.pool_history (
    pool        text NOT NULL,
    at          timestamptz NOT NULL,
    desired     integer NOT NULL,
    actual      integer NOT NULL,
    backlog     bigint NOT NULL,
    lag_seconds double precision NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (pool, at)
);
