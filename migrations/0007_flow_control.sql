-- Flow control: concurrency and rate limits per queue and per partition key, and fair
-- (round-robin) claiming across partition keys.
--
-- A queue with any of these set has `flow = true`. The plain claim statement skips such
-- queues; they are claimed through pgfleet.claim_flow, which locks the queue's row FOR
-- UPDATE first. That lock serialises the claims of one flow-controlled queue across the
-- whole fleet, so each claim counts running jobs and spends tokens with a fresh snapshot
-- that already holds every earlier claim: limits hold by construction, not by per-worker
-- arithmetic.

-- The key a job was enqueued with (it decides the partition); NULL when none.
ALTER TABLE pgfleet.jobs ADD COLUMN partition_key text;
ALTER TABLE pgfleet.jobs_finished ADD COLUMN partition_key text;

-- Claimable jobs by key: the fair claim's skip scan over distinct keys and its per-key pick.
CREATE INDEX jobs_key_claim_idx
    ON pgfleet.jobs (queue, (coalesce(partition_key, '')), priority, run_at, id)
    WHERE state IN ('available', 'retryable');

ALTER TABLE pgfleet.queues
    ADD COLUMN concurrency_limit     integer CHECK (concurrency_limit > 0),
    ADD COLUMN key_concurrency_limit integer CHECK (key_concurrency_limit > 0),
    ADD COLUMN rate_limit            double precision CHECK (rate_limit > 0),
    ADD COLUMN rate_burst            integer CHECK (rate_burst > 0),
    ADD COLUMN key_rate_limit        double precision CHECK (key_rate_limit > 0),
    ADD COLUMN key_rate_burst        integer CHECK (key_rate_burst > 0),
    ADD COLUMN fair                  boolean NOT NULL DEFAULT false,
    -- The queue's token bucket (NULL: full) and the fair claim's round-robin position.
    ADD COLUMN tokens                double precision,
    ADD COLUMN tokens_at             timestamptz,
    ADD COLUMN fair_cursor           text,
    ADD COLUMN flow                  boolean GENERATED ALWAYS AS (
        concurrency_limit IS NOT NULL OR key_concurrency_limit IS NOT NULL
        OR rate_limit IS NOT NULL OR key_rate_limit IS NOT NULL OR fair) STORED;

-- Token buckets of partition keys of queues with a per-key rate limit. A row only exists
-- while its bucket is not full; the scheduler's sweep deletes full ones.
CREATE TABLE pgfleet.key_tokens (
    queue     text NOT NULL,
    key       text NOT NULL,
    tokens    double precision NOT NULL,
    tokens_at timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
);

-- What pgfleet.claim_flow returns: job rows (the columns of a claimed job) and, for each
-- queue whose limit held back work that is waiting, one row with a NULL id naming the
-- queue and, when a rate limit held it, the milliseconds until its next token.
CREATE TYPE pgfleet.flow_claim AS (
    id            bigint,
    queue         text,
    kind          text,
    partition     smallint,
    priority      smallint,
    state         pgfleet.job_state,
    payload       jsonb,
    metadata      jsonb,
    attempt       integer,
    max_attempts  integer,
    run_at        timestamptz,
    attempted_at  timestamptz,
    attempted_by  text,
    lease_until   timestamptz,
    errors        jsonb,
    unique_key    text,
    created_at    timestamptz,
    finalized_at  timestamptz,
    partition_key text,
    retry_ms      double precision
);

-- Claims up to p_limit jobs from the flow-controlled queues among p_queues.
--
-- Per queue (rows locked in name order, so two claimers never deadlock):
--   allowed = min(budget, concurrency_limit - running, whole tokens in the bucket);
--   without per-key rules or fairness, the oldest `allowed` jobs by priority;
--   otherwise a skip scan over distinct partition keys, starting after the round-robin
--   cursor and wrapping once, collects up to `allowed` keys that have room (per-key running
--   count and token bucket), takes up to an equal share from each and orders the picks
--   round-robin (each key's first job, then each key's second ...). The cursor moves to the
--   last key served, so the next claim starts with the next tenant: a tenant with one job
--   waits at most one turn however deep another tenant's backlog is, and a single tenant
--   still gets the whole claim. Jobs without a key form one tenant ('') that per-key
--   limits do not apply to.
-- Every statement in this VOLATILE function takes a new snapshot (READ COMMITTED), so the
-- counts read after the lock include every claim committed before it.
CREATE FUNCTION pgfleet.claim_flow(p_queues text[], p_partitions smallint[], p_limit integer,
                                   p_worker text, p_lease_ms double precision)
RETURNS SETOF pgfleet.flow_claim
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    q            record;
    marker       pgfleet.flow_claim;
    budget       integer := p_limit;
    allowed      integer;
    running      integer;
    q_tokens     double precision;
    now_at       timestamptz;
    held         boolean;
    held_keys    boolean;
    retry        double precision;
    ids          bigint[];
    n            integer;
    -- keyed claims
    key_running  jsonb;
    cur          text;
    k            text;
    wrapped      boolean;
    keys         text[];
    caps         integer[];
    key_left     double precision[];
    cap          integer;
    t            double precision;
    kt           record;
    probes       integer;
    share        integer;
    picked_keys  text[];
    more         boolean;
BEGIN
    FOR q IN
        SELECT * FROM pgfleet.queues
        WHERE name = ANY(p_queues) AND flow AND NOT paused
        ORDER BY name
        FOR UPDATE
    LOOP
        EXIT WHEN budget <= 0;
        now_at := clock_timestamp();
        allowed := budget;
        held := false;
        held_keys := false;
        retry := NULL;
        q_tokens := NULL;
        IF q.concurrency_limit IS NOT NULL THEN
            SELECT count(*) INTO running FROM pgfleet.jobs
            WHERE queue = q.name AND lease_until IS NOT NULL;
            IF q.concurrency_limit - running < allowed THEN
                allowed := greatest(q.concurrency_limit - running, 0);
                held := true;
            END IF;
        END IF;
        IF q.rate_limit IS NOT NULL THEN
            q_tokens := least(q.rate_burst::double precision,
                coalesce(q.tokens + q.rate_limit
                    * greatest(extract(epoch FROM now_at - q.tokens_at), 0), q.rate_burst));
            IF floor(q_tokens)::integer < allowed THEN
                allowed := greatest(floor(q_tokens)::integer, 0);
                held := true;
                retry := (1 - (q_tokens - floor(q_tokens))) / q.rate_limit * 1000;
            END IF;
        END IF;

        IF allowed > 0 AND q.key_concurrency_limit IS NULL AND q.key_rate_limit IS NULL
           AND NOT q.fair THEN
            ids := ARRAY(
                SELECT j.id FROM pgfleet.jobs j
                WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
                  AND j.run_at <= now()
                  AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))
                ORDER BY j.priority, j.run_at, j.id
                LIMIT allowed);
            more := false;
        ELSIF allowed > 0 THEN
            IF q.key_concurrency_limit IS NOT NULL THEN
                SELECT coalesce(jsonb_object_agg(r.key, r.n), '{}') INTO key_running
                FROM (SELECT coalesce(partition_key, '') AS key, count(*) AS n
                      FROM pgfleet.jobs
                      WHERE queue = q.name AND lease_until IS NOT NULL
                      GROUP BY 1) r;
            END IF;
            cur := coalesce(q.fair_cursor, '');
            k := cur;
            wrapped := false;
            keys := '{}';
            caps := '{}';
            key_left := '{}';
            probes := 0;
            LOOP
                EXIT WHEN cardinality(keys) >= allowed;
                IF NOT wrapped THEN
                    SELECT coalesce(j.partition_key, '') INTO k FROM pgfleet.jobs j
                    WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
                      AND coalesce(j.partition_key, '') > k
                    ORDER BY coalesce(j.partition_key, '') LIMIT 1;
                    IF NOT FOUND THEN
                        wrapped := true;
                        -- From the start: the smallest key, '' included.
                        SELECT coalesce(j.partition_key, '') INTO k FROM pgfleet.jobs j
                        WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
                        ORDER BY coalesce(j.partition_key, '') LIMIT 1;
                        EXIT WHEN NOT FOUND;
                    END IF;
                ELSE
                    SELECT coalesce(j.partition_key, '') INTO k FROM pgfleet.jobs j
                    WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
                      AND coalesce(j.partition_key, '') > k
                    ORDER BY coalesce(j.partition_key, '') LIMIT 1;
                    EXIT WHEN NOT FOUND;
                END IF;
                -- Once wrapped, stop past the cursor (those keys were seen first).
                EXIT WHEN wrapped AND k > cur;
                EXIT WHEN k = ANY(keys);
                probes := probes + 1;
                cap := allowed;
                t := NULL;
                IF k <> '' AND q.key_concurrency_limit IS NOT NULL THEN
                    cap := least(cap, q.key_concurrency_limit
                        - coalesce((key_running ->> k)::integer, 0));
                END IF;
                IF k <> '' AND q.key_rate_limit IS NOT NULL AND cap > 0 THEN
                    SELECT * INTO kt FROM pgfleet.key_tokens kt2
                    WHERE kt2.queue = q.name AND kt2.key = k;
                    IF FOUND THEN
                        t := least(q.key_rate_burst::double precision, kt.tokens
                            + q.key_rate_limit * greatest(extract(epoch FROM now_at - kt.tokens_at), 0));
                    ELSE
                        t := q.key_rate_burst;
                    END IF;
                    IF floor(t)::integer < 1 THEN
                        retry := least(coalesce(retry, 1e9),
                            (1 - (t - floor(t))) / q.key_rate_limit * 1000);
                    END IF;
                    cap := least(cap, floor(t)::integer);
                END IF;
                IF cap <= 0 THEN
                    held_keys := true;
                    CONTINUE;
                END IF;
                keys := keys || k;
                caps := caps || cap;
                key_left := key_left || t;
            END LOOP;

            IF cardinality(keys) > 0 THEN
                share := ceil(allowed::numeric / cardinality(keys))::integer;
                SELECT coalesce(array_agg(p.id ORDER BY p.rn, p.ord), '{}'),
                       coalesce(array_agg(p.key ORDER BY p.rn, p.ord), '{}'),
                       coalesce(bool_or(p.full_share), false)
                INTO ids, picked_keys, more
                FROM (
                    SELECT c.id, c.rn, k2.ord, k2.key, c.rn = least(k2.cap, share) AS full_share
                    FROM unnest(keys, caps) WITH ORDINALITY AS k2(key, cap, ord)
                    CROSS JOIN LATERAL (
                        SELECT j.id, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS rn
                        FROM pgfleet.jobs j
                        WHERE j.queue = q.name AND coalesce(j.partition_key, '') = k2.key
                          AND j.state IN ('available', 'retryable') AND j.run_at <= now()
                          AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))
                        ORDER BY j.priority, j.run_at, j.id
                        LIMIT least(k2.cap, share)
                    ) c
                    ORDER BY c.rn, k2.ord
                    LIMIT allowed
                ) p;
                -- A key that gave its whole share may have more: say so, so the worker
                -- claims again at once instead of waiting for a wake-up.
                more := more AND cardinality(ids) < allowed;
                IF cardinality(ids) > 0 THEN
                    UPDATE pgfleet.queues SET fair_cursor = (
                        SELECT k3.key FROM unnest(keys) WITH ORDINALITY AS k3(key, ord)
                        WHERE k3.key = ANY(picked_keys) ORDER BY k3.ord DESC LIMIT 1)
                    WHERE name = q.name;
                END IF;
                IF q.key_rate_limit IS NOT NULL AND cardinality(ids) > 0 THEN
                    INSERT INTO pgfleet.key_tokens AS kt4 (queue, key, tokens, tokens_at)
                    SELECT q.name, u.key, u.t - u.used, now_at
                    FROM (SELECT k5.key, k5.t, (SELECT count(*) FROM unnest(picked_keys) pk(key)
                                                WHERE pk.key = k5.key) AS used
                          FROM unnest(keys, key_left) AS k5(key, t)) u
                    WHERE u.key <> '' AND u.used > 0
                    ON CONFLICT (queue, key) DO UPDATE
                        SET tokens = excluded.tokens, tokens_at = excluded.tokens_at;
                END IF;
            ELSE
                ids := '{}';
                more := false;
            END IF;
        ELSE
            ids := '{}';
            more := false;
        END IF;

        n := 0;
        IF cardinality(ids) > 0 THEN
            RETURN QUERY
            UPDATE pgfleet.jobs j
            SET state = 'running',
                attempt = j.attempt + 1,
                attempted_at = now(),
                attempted_by = p_worker,
                lease_until = now() + p_lease_ms * interval '1 millisecond'
            WHERE j.id = ANY(ids) AND j.state IN ('available', 'retryable')
            RETURNING j.id, j.queue, j.kind, j.partition, j.priority, j.state, j.payload,
                      j.metadata, j.attempt, j.max_attempts, j.run_at, j.attempted_at,
                      j.attempted_by, j.lease_until, j.errors, j.unique_key, j.created_at,
                      NULL::timestamptz, j.partition_key, NULL::double precision;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        IF q.rate_limit IS NOT NULL THEN
            UPDATE pgfleet.queues SET tokens = q_tokens - n, tokens_at = now_at
            WHERE name = q.name;
        END IF;
        budget := budget - n;
        -- Held back: a limit cut the claim while claimable work is waiting.
        IF more OR held_keys OR (held AND n >= allowed AND EXISTS (
            SELECT 1 FROM pgfleet.jobs j
            WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
              AND j.run_at <= now()
              AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))))
        THEN
            marker := NULL;
            marker.queue := q.name;
            marker.retry_ms := CASE WHEN more THEN 0 ELSE retry END;
            RETURN NEXT marker;
        END IF;
    END LOOP;
END
$$;
