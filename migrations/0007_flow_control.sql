-- Flow control: concurrency and rate limits per queue and per partition key, and fair
-- (round-robin) claiming across partition keys.
--
-- A queue with any of these set has `flow = true`. The plain claim statement skips such
-- queues; they are claimed through pgfleet.claim_flow. A queue-wide limit locks the
-- queue's row FOR UPDATE, a per-key limit takes the key's advisory lock: the claims a limit
-- governs are serialised across the whole fleet, and each counts running jobs and spends
-- tokens with a fresh snapshot that already holds every earlier claim. Limits hold by
-- construction, not by per-worker arithmetic.

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

-- The key after `after` in `queue` with claimable jobs, with its first job (in claim order)
-- and that job's partition; with `wrap`, the first key when none is after `after`
-- (`wrapped` says so). One index probe of jobs_key_claim_idx each.
CREATE FUNCTION pgfleet.flow_next_key(queue text, after text, wrap boolean)
RETURNS TABLE (k text, p smallint, id bigint, due boolean, wrapped boolean)
LANGUAGE sql STABLE AS $$
    (SELECT coalesce(j.partition_key, ''), j.partition, j.id, j.run_at <= now(), false
     FROM pgfleet.jobs j
     WHERE j.queue = flow_next_key.queue AND j.state IN ('available', 'retryable')
       AND coalesce(j.partition_key, '') > flow_next_key.after
     ORDER BY coalesce(j.partition_key, ''), j.priority, j.run_at, j.id
     LIMIT 1)
    UNION ALL
    (SELECT coalesce(j.partition_key, ''), j.partition, j.id, j.run_at <= now(), true
     FROM pgfleet.jobs j
     WHERE flow_next_key.wrap AND j.queue = flow_next_key.queue
       AND j.state IN ('available', 'retryable')
     ORDER BY coalesce(j.partition_key, ''), j.priority, j.run_at, j.id
     LIMIT 1)
    LIMIT 1
$$;

-- Whether the skip scan may serve key `k` (first seen in partition `p`): one of the
-- claimer's partitions (jobs without a key, '', are spread over all of them).
CREATE FUNCTION pgfleet.flow_key_ok(k text, p smallint, partitions smallint[])
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT k = '' OR partitions IS NULL OR p = ANY(partitions)
$$;

-- Claims up to p_limit jobs from the flow-controlled queues among p_queues.
--
-- Per queue, in name order:
--   * a queue-wide limit (concurrency or rate) locks the queue's row FOR UPDATE first, so
--     those claims are serialised fleet-wide (rows are locked in name order: no deadlock);
--     allowed = min(budget, concurrency_limit - running, whole tokens in the bucket);
--   * without per-key rules or fairness: the oldest `allowed` jobs by priority;
--   * otherwise a skip scan over distinct partition keys, starting after the round-robin
--     cursor and wrapping once, collects up to `allowed` keys with room. A key with a
--     per-key limit is taken only if this claim wins its advisory lock
--     (pg_try_advisory_xact_lock, skipped otherwise: SKIP LOCKED for keys), and its running
--     count and tokens are read after all key locks are held. Up to an equal share is taken
--     from each key (rows FOR UPDATE SKIP LOCKED) and the picks are ordered round-robin
--     (each key's first job, then each key's second ...). The cursor moves to the last key
--     served, so the next claim starts with the next tenant: a tenant with one job waits at
--     most one turn however deep another tenant's backlog is, and a single tenant still
--     gets the whole claim. Jobs without a key form one tenant ('') that per-key limits do
--     not apply to. Fairness and per-key limits alone never take the queue-wide lock.
-- Every statement in this VOLATILE function takes a new snapshot (READ COMMITTED), so the
-- counts read after a lock include every claim committed before it.
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
    queue_lock   boolean;
    keyed_rules  boolean;
    held         boolean;
    held_keys    boolean;
    retry        double precision;
    ids          bigint[];
    n            integer;
    -- keyed claims
    cur          text;
    k            text;
    keys         text[];
    firsts       bigint[];
    skipped      bigint;
    dues         boolean[];
    caps         integer[];
    key_left     double precision[];
    cap          integer;
    t            double precision;
    kt           record;
    share        integer;
    picked_keys  text[];
    more         boolean;
    i            integer;
BEGIN
    FOR q IN
        SELECT * FROM pgfleet.queues
        WHERE name = ANY(p_queues) AND flow AND NOT paused
        ORDER BY name
    LOOP
        EXIT WHEN budget <= 0;
        queue_lock := q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL;
        IF queue_lock THEN
            -- The latest row, locked: limits and tokens as the last claimer left them.
            SELECT * INTO q FROM pgfleet.queues WHERE name = q.name FOR UPDATE;
            CONTINUE WHEN NOT FOUND OR q.paused OR NOT q.flow;
        END IF;
        keyed_rules := q.key_concurrency_limit IS NOT NULL OR q.key_rate_limit IS NOT NULL;
        now_at := clock_timestamp();
        allowed := budget;
        held := false;
        held_keys := false;
        retry := NULL;
        q_tokens := NULL;
        more := false;
        ids := '{}';
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

        IF allowed > 0 AND NOT keyed_rules AND NOT q.fair THEN
            -- Serialised by the queue lock: no other flow claim of this queue runs now.
            ids := ARRAY(
                SELECT j.id FROM pgfleet.jobs j
                WHERE j.queue = q.name AND j.state IN ('available', 'retryable')
                  AND j.run_at <= now()
                  AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))
                ORDER BY j.priority, j.run_at, j.id
                LIMIT allowed);
        ELSIF allowed > 0 THEN
            cur := coalesce(q.fair_cursor, '');
            -- A skip scan (one index probe per key, one statement): the keys after the
            -- cursor, then from the first key up to it, until `allowed` keys are usable.
            -- Keys of other partitions are passed over, and so are keys with a per-key
            -- rule whose advisory lock another claim holds (it is serving them now): a
            -- claim is taken on past them. Keys just served sit behind the cursor, so the
            -- keys ahead of it are rarely full; a full one is found below, after its lock,
            -- and the claim then says it was held back.
            WITH RECURSIVE ks(k, n, e, ok, id, due, wrapped) AS (
                SELECT x.k, 1, x.ok::integer, x.ok, x.id, x.due, x.wrapped
                FROM (SELECT y.k, y.id, y.due, y.wrapped, pgfleet.flow_key_ok(y.k, y.p, p_partitions)
                               AND (y.k = '' OR NOT keyed_rules OR pg_try_advisory_xact_lock(
                                   1885825393, hashtext(q.name || '/' || y.k))) AS ok
                      FROM pgfleet.flow_next_key(q.name, cur, true) y) x
                WHERE NOT (x.wrapped AND x.k > cur)
                UNION ALL
                SELECT nx.k, ks.n + 1, ks.e + nx.ok::integer, nx.ok, nx.id, nx.due,
                       ks.wrapped OR nx.wrapped
                FROM ks CROSS JOIN LATERAL (
                    SELECT y.k, y.id, y.due, y.wrapped, pgfleet.flow_key_ok(y.k, y.p, p_partitions)
                               AND (y.k = '' OR NOT keyed_rules OR pg_try_advisory_xact_lock(
                                   1885825393, hashtext(q.name || '/' || y.k))) AS ok
                    FROM pgfleet.flow_next_key(q.name, ks.k, NOT ks.wrapped) y) nx
                WHERE ks.e < allowed AND NOT ((ks.wrapped OR nx.wrapped) AND nx.k > cur)
            )
            SELECT coalesce(array_agg(ks.k ORDER BY ks.n) FILTER (WHERE ks.ok), '{}'),
                   coalesce(array_agg(ks.id ORDER BY ks.n) FILTER (WHERE ks.ok), '{}'),
                   coalesce(array_agg(ks.due ORDER BY ks.n) FILTER (WHERE ks.ok), '{}'),
                   count(*) FILTER (WHERE NOT ks.ok)
            INTO keys, firsts, dues, skipped
            FROM ks;
            -- Room per key, read after its lock (a fresh snapshot).
            caps := ARRAY(
                SELECT CASE WHEN u.k = '' OR q.key_concurrency_limit IS NULL THEN allowed
                            ELSE least(allowed, q.key_concurrency_limit - coalesce(r.n, 0))::integer
                       END
                FROM unnest(keys) WITH ORDINALITY AS u(k, o)
                LEFT JOIN (SELECT coalesce(j.partition_key, '') AS key, count(*) AS n
                           FROM pgfleet.jobs j
                           WHERE q.key_concurrency_limit IS NOT NULL
                             AND j.queue = q.name AND j.lease_until IS NOT NULL
                             AND coalesce(j.partition_key, '') = ANY(keys)
                           GROUP BY 1) r ON r.key = u.k
                ORDER BY u.o);
            key_left := array_fill(NULL::double precision, ARRAY[cardinality(keys)]);
            IF q.key_rate_limit IS NOT NULL THEN
                FOR i IN 1 .. cardinality(keys) LOOP
                    CONTINUE WHEN keys[i] = '' OR caps[i] <= 0;
                    SELECT * INTO kt FROM pgfleet.key_tokens kt2
                    WHERE kt2.queue = q.name AND kt2.key = keys[i];
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
                    caps[i] := least(caps[i], floor(t)::integer);
                    key_left[i] := t;
                END LOOP;
            END IF;
            IF EXISTS (SELECT 1 FROM unnest(caps) c WHERE c <= 0) THEN
                held_keys := true;
            END IF;

            n := (SELECT count(*) FROM unnest(caps) c WHERE c > 0);
            IF n > 0 THEN
                share := ceil(allowed::numeric / n)::integer;
            END IF;
            IF n > 0 AND share = 1 AND NOT EXISTS (
                SELECT 1 FROM unnest(caps, dues) u(c, d) WHERE u.c > 0 AND NOT u.d) THEN
                -- One job per key: each key's first job is the one its probe found.
                ids := ARRAY(
                    SELECT j.id FROM pgfleet.jobs j
                    WHERE j.id = ANY(ARRAY(SELECT u.id FROM unnest(firsts, caps) u(id, c)
                                           WHERE u.c > 0))
                      AND j.state IN ('available', 'retryable') AND j.run_at <= now()
                      AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))
                    FOR UPDATE SKIP LOCKED);
                picked_keys := ARRAY(SELECT u.k FROM unnest(keys, firsts) WITH ORDINALITY u(k, id, o)
                                     WHERE u.id = ANY(ids) ORDER BY u.o);
                -- A first job another claim took: there is more to claim at once.
                more := cardinality(ids) < n;
            ELSIF n > 0 THEN
                SELECT coalesce(array_agg(p.id ORDER BY p.rn, p.ord), '{}'),
                       coalesce(array_agg(p.key ORDER BY p.rn, p.ord), '{}'),
                       coalesce(bool_or(p.full_share), false)
                INTO ids, picked_keys, more
                FROM (
                    SELECT c.id, c.rn, k2.ord, k2.key, c.rn = least(k2.cap, share) AS full_share
                    FROM unnest(keys, caps) WITH ORDINALITY AS k2(key, cap, ord)
                    CROSS JOIN LATERAL (
                        SELECT l.id, row_number() OVER (ORDER BY l.priority, l.run_at, l.id) AS rn
                        FROM (
                            SELECT j.id, j.priority, j.run_at
                            FROM pgfleet.jobs j
                            WHERE j.queue = q.name AND coalesce(j.partition_key, '') = k2.key
                              AND j.state IN ('available', 'retryable') AND j.run_at <= now()
                              AND (p_partitions IS NULL OR j.partition = ANY(p_partitions))
                            ORDER BY j.priority, j.run_at, j.id
                            LIMIT least(k2.cap, share)
                            FOR UPDATE SKIP LOCKED
                        ) l
                    ) c
                    WHERE k2.cap > 0
                    ORDER BY c.rn, k2.ord
                    LIMIT allowed
                ) p;
                -- A key that gave its whole share may have more: say so, so the worker
                -- claims again at once instead of waiting for a wake-up.
                more := more AND cardinality(ids) < allowed;
            END IF;
            -- The next claim starts after the last key looked at (served, or full).
            IF cardinality(keys) > 0 AND keys[cardinality(keys)] IS DISTINCT FROM q.fair_cursor THEN
                -- A hint: skipped when another claim is moving it right now.
                UPDATE pgfleet.queues SET fair_cursor = keys[cardinality(keys)]
                WHERE name = (SELECT name FROM pgfleet.queues
                              WHERE name = q.name FOR UPDATE SKIP LOCKED);
            END IF;
            IF n > 0 THEN
                IF q.key_rate_limit IS NOT NULL AND cardinality(ids) > 0 THEN
                    INSERT INTO pgfleet.key_tokens AS kt4 (queue, key, tokens, tokens_at)
                    SELECT q.name, u.key, u.t - u.used, now_at
                    FROM (SELECT k5.key, k5.t, (SELECT count(*) FROM unnest(picked_keys) pk(key)
                                                WHERE pk.key = k5.key) AS used
                          FROM unnest(keys, key_left) AS k5(key, t)) u
                    WHERE u.key <> '' AND u.used > 0 AND u.t IS NOT NULL
                    ON CONFLICT (queue, key) DO UPDATE
                        SET tokens = excluded.tokens, tokens_at = excluded.tokens_at;
                END IF;
            END IF;
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
            -- At once only when this claim made progress: a first job that some other
            -- transaction keeps locked must not turn the worker into a busy loop.
            marker.retry_ms := CASE WHEN more AND n > 0 THEN 0 ELSE retry END;
            RETURN NEXT marker;
        END IF;
    END LOOP;
END
$$;
