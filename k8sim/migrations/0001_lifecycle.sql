-- Current state of every object the recorder has seen, one row per uid.
CREATE TABLE resources (
    uid              text PRIMARY KEY,
    api_version      text NOT NULL,
    kind             text NOT NULL,
    namespace        text NOT NULL DEFAULT '',
    name             text NOT NULL,
    tenant           text,
    phase            text,
    ready            boolean,
    node             text,
    owner_kind       text,
    owner_name       text,
    owner_uid        text,
    state            jsonb NOT NULL DEFAULT '{}'::jsonb,
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_version text NOT NULL,
    created_at       timestamptz,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);
CREATE INDEX resources_tenant_kind ON resources (tenant, kind) WHERE deleted_at IS NULL;
CREATE INDEX resources_ns_kind_name ON resources (namespace, kind, name) WHERE deleted_at IS NULL;
CREATE INDEX resources_kind_live ON resources (api_version, kind) WHERE deleted_at IS NULL;
CREATE INDEX resources_owner ON resources (owner_uid);

-- Append-only lifecycle history: one row per transition.
CREATE TABLE resource_events (
    id               bigserial PRIMARY KEY,
    uid              text NOT NULL,
    api_version      text NOT NULL,
    kind             text NOT NULL,
    namespace        text NOT NULL DEFAULT '',
    name             text NOT NULL,
    tenant           text,
    transition       text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_version text NOT NULL,
    -- when it happened where the object says so (creation, deletion), else when we saw it
    occurred_at      timestamptz NOT NULL,
    observed_at      timestamptz NOT NULL,
    -- true when found by reconciliation after a gap (operator down), not by a watch event
    reconciled       boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX resource_events_once ON resource_events (uid, transition)
    WHERE transition IN ('created', 'scheduled', 'deleted');
CREATE UNIQUE INDEX resource_events_step ON resource_events (uid, transition, resource_version);
CREATE INDEX resource_events_tenant_time ON resource_events (tenant, observed_at);
CREATE INDEX resource_events_ns_kind_time ON resource_events (namespace, kind, observed_at);
CREATE INDEX resource_events_uid ON resource_events (uid, id);
CREATE INDEX resource_events_time ON resource_events (observed_at);

-- One row per deploy request of the API.
CREATE TABLE deployments (
    id               uuid PRIMARY KEY,
    tenant           text,
    namespace        text,
    mode             text,
    manifest         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'deploying', 'completed', 'failed')),
    resources        jsonb NOT NULL DEFAULT '[]'::jsonb,
    deployed_count   integer NOT NULL DEFAULT 0,
    failed_count     integer NOT NULL DEFAULT 0,
    message          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_seconds double precision
);
CREATE INDEX deployments_tenant_time ON deployments (tenant, created_at DESC);

-- Which deploy request (and so which tenant) created an object: the last tenant fallback.
CREATE TABLE deployment_objects (
    deployment_id    uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    api_version      text NOT NULL,
    kind             text NOT NULL,
    namespace        text NOT NULL DEFAULT '',
    name             text NOT NULL,
    tenant           text,
    PRIMARY KEY (deployment_id, kind, namespace, name)
);
CREATE INDEX deployment_objects_lookup ON deployment_objects (namespace, kind, name);

-- A resource's tenant when its own labels name none: its namespace's, its owner's, or the
-- deploy request's that created it (CONTRACT.md: labels first, then the request).
CREATE FUNCTION resolve_tenant(p_namespace text, p_kind text, p_name text, p_owner_uid text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT tenant FROM resources
          WHERE kind = 'Namespace' AND name = p_namespace AND deleted_at IS NULL LIMIT 1),
        (SELECT tenant FROM resources WHERE uid = p_owner_uid),
        (SELECT d.tenant FROM deployment_objects d JOIN deployments x ON x.id = d.deployment_id
          WHERE d.namespace = p_namespace AND d.kind = p_kind AND d.name = p_name
          ORDER BY x.created_at DESC LIMIT 1))
$$;
