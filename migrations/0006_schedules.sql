-- Periodic jobs: one row per schedule. Whichever worker's scheduler locks a due row
-- (FOR UPDATE SKIP LOCKED) enqueues its ticks and moves next_run_at in the same
-- transaction; each tick's job also carries the unique key schedule:<name>:<tick ms>.
CREATE TABLE pgfleet.schedules (
    name          text PRIMARY KEY,
    spec          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    queue         text NOT NULL,
    kind          text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    priority      smallint NOT NULL DEFAULT 1,
    max_attempts  integer NOT NULL DEFAULT 20,
    partition_key text,
    misfire       text NOT NULL DEFAULT 'run_once' CHECK (misfire IN ('skip', 'run_once', 'catch_up')),
    catch_up      integer NOT NULL DEFAULT 0 CHECK (catch_up >= 0),
    paused        boolean NOT NULL DEFAULT false,
    next_run_at   timestamptz NOT NULL,
    last_run_at   timestamptz,
    last_job_id   bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schedules_due ON pgfleet.schedules (next_run_at) WHERE NOT paused;
