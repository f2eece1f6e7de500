-- Nexus schema 7: the write scope of API tokens, for ingest only (Prometheus remote_write to
-- POST /api/v1/write): a token that may send telemetry and read nothing (docs/security.md).
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check
  CHECK (scope IN ('read', 'write', 'admin'));
