-- Nexus schema 5: the gateway's API tokens (AUTH_MODE=token), made by `nexus token create`.
-- Only a token's SHA-256 is kept: the token itself is shown once and is not stored anywhere.
-- A token is refused once revoked_at or expires_at has passed; its row stays, so that
-- `nexus token list` shows what existed and when it was last used. last_used_at is written at
-- most once a minute per token and gateway, not per request.

CREATE TABLE api_tokens (
  id            text PRIMARY KEY,
  name          text NOT NULL,
  scope         text NOT NULL CHECK (scope IN ('read', 'admin')),
  hash          text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz
);

-- A name names one token at a time (revoke by name); a revoked token's name may be used again.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
