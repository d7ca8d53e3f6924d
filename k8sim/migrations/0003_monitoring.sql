-- Per service and tick: requests served well and in all, at simulated time.
CREATE TABLE sla_samples (
    taken_at   timestamptz NOT NULL,
    service    text NOT NULL,
    tenant     text,
    good       double precision NOT NULL,
    total      double precision NOT NULL,
    healthy    boolean NOT NULL
);
CREATE INDEX sla_samples_time ON sla_samples (taken_at);
CREATE INDEX sla_samples_tenant_time ON sla_samples (tenant, taken_at);

-- The /monitoring/health document, one row per snapshot kept for history.
CREATE TABLE monitoring_snapshots (
    taken_at   timestamptz PRIMARY KEY,
    document   jsonb NOT NULL
);

CREATE TABLE alert_rules (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    metric     text NOT NULL,
    operator   text NOT NULL CHECK (operator IN ('>', '>=', '<', '<=')),
    threshold  double precision NOT NULL,
    tenant     text,
    service    text,
    severity   text NOT NULL DEFAULT 'warning',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    rule_id     text NOT NULL,
    name        text NOT NULL,
    severity    text NOT NULL,
    service     text,
    tenant      text,
    value       double precision,
    message     text,
    fired_at    timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX alert_events_open ON alert_events (rule_id, COALESCE(service, '')) WHERE resolved_at IS NULL;
CREATE INDEX alert_events_time ON alert_events (fired_at DESC);
