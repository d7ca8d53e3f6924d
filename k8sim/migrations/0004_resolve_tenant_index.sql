-- The namespace lookup names the column that leads resources_ns_kind_name (a Namespace's
-- namespace is ''); without it PostgreSQL walked resources_kind_live's whole index on every
-- recorded change (about 1 ms each, most of PostgreSQL's CPU at thousands of pods).
CREATE OR REPLACE FUNCTION resolve_tenant(p_namespace text, p_kind text, p_name text, p_owner_uid text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT tenant FROM resources
          WHERE namespace = '' AND kind = 'Namespace' AND name = p_namespace AND deleted_at IS NULL LIMIT 1),
        (SELECT tenant FROM resources WHERE uid = p_owner_uid),
        (SELECT d.tenant FROM deployment_objects d JOIN deployments x ON x.id = d.deployment_id
          WHERE d.namespace = p_namespace AND d.kind = p_kind AND d.name = p_name
          ORDER BY x.created_at DESC LIMIT 1))
$$;
