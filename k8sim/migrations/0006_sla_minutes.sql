-- Requests per minute, of every service ('all', tenant '') and of each tenant ('tenant', its id),
-- written with each tick's samples. SLA windows (up to 3 days) and reports (up to 92 days) sum
-- these for their whole minutes and read raw samples only for the partial minutes at their edges:
-- re-summing every sample every tick grew with services x window (15 million rows for 300
-- services over 3 days; bench/bench_sla.py).
CREATE TABLE sla_minutes (
    scope   text NOT NULL CHECK (scope IN ('all', 'tenant')),
    tenant  text NOT NULL DEFAULT '',
    minute  timestamptz NOT NULL,
    good    double precision NOT NULL,
    total   double precision NOT NULL,
    samples integer NOT NULL,
    PRIMARY KEY (scope, tenant, minute)
);
-- Every tenant's minutes of a window at once (the engine's per-tenant SLA, every tick).
CREATE INDEX sla_minutes_time ON sla_minutes (scope, minute);

INSERT INTO sla_minutes (scope, tenant, minute, good, total, samples)
SELECT 'all', '', date_trunc('minute', taken_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       sum(good), sum(total), count(*)
  FROM sla_samples GROUP BY 3;

INSERT INTO sla_minutes (scope, tenant, minute, good, total, samples)
SELECT 'tenant', tenant, date_trunc('minute', taken_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       sum(good), sum(total), count(*)
  FROM sla_samples WHERE tenant IS NOT NULL AND tenant <> '' GROUP BY 2, 3;
