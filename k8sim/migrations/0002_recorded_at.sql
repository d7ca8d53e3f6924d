-- When each history row was committed: with observed_at it gives the recorder's lag.
ALTER TABLE resource_events ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT clock_timestamp();
