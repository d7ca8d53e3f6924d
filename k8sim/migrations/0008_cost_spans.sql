-- /cluster/cost reads every Node and Pod that existed in its window, the deleted ones included (the
-- other indexes of resources cover live objects only), over up to months of history.
CREATE INDEX resources_kind_span ON resources (kind, deleted_at);
