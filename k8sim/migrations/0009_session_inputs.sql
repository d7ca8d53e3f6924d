-- Inputs the API accepted that no other table keeps: load overrides and traffic replays (Redis holds only the
-- ones in force), Scenarios created and deleted through the API (the cluster keeps only the live ones), and
-- deletions. With deployments and resource_events they make a session that GET /sessions/export writes out.
CREATE TABLE session_inputs (
    id          bigserial PRIMARY KEY,
    -- when the request arrived (not when its row was written): a session orders its inputs by it
    accepted_at timestamptz NOT NULL,
    kind        text NOT NULL,
    body        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX session_inputs_time ON session_inputs (accepted_at);
