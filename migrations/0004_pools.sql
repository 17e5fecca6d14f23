-- What the autoscaler last decided for each pool, written by the Kubernetes controller and
-- by `pgfleet dev`'s local pools, read by `pgfleet status`.
CREATE TABLE pgfleet.pools (
    name        text PRIMARY KEY,
    source      text NOT NULL CHECK (source IN ('kubernetes', 'local')),
    desired     integer NOT NULL,
    actual      integer NOT NULL,
    backlog     bigint NOT NULL,
    lag_seconds double precision NOT NULL,
    reason      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
