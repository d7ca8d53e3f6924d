-- Per cluster (its kube-system namespace's uid) and watched kind: the resourceVersion up to which
-- the recorder's observations are in this database, written in the transaction of the batch that
-- holds them. A restarted recorder watches each kind on from here instead of listing it again (a
-- listing sees current states only: the steps in between would be lost).
CREATE TABLE watch_positions (
    cluster          text NOT NULL,
    api_version      text NOT NULL,
    kind             text NOT NULL,
    resource_version text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, api_version, kind)
);
