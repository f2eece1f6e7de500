import { join } from 'node:path';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { AuthOptions } from '../gateway/auth/plugin.js';
import type { TokenStore } from '../gateway/auth/tokens.js';
import { postgresConnection } from './backends.js';
import { reach } from './listen.js';
import { dataDir } from './paths.js';

/** Where tokens live: PostgreSQL (distributed), or the embedded mode's file. */
export type TokenBackend = 'postgres' | 'file';

/** The embedded mode's token file: `tokens.json` in NEXUS_DATA_DIR. */
export function tokenFile(config: Config): string {
  return join(dataDir(config.dataDir), 'tokens.json');
}

/** The token store on the chosen backend (its own small pool on PostgreSQL). */
export async function openTokenStore(
  config: Config,
  logger: Logger,
  backend: TokenBackend,
  applicationName: string,
): Promise<TokenStore> {
  if (backend === 'file') {
    const { FileTokenStore } = await import('../gateway/auth/file-token-store.js');
    return new FileTokenStore(tokenFile(config));
  }
  const [{ PostgresDatabase }, { SqlTokenStore }] = await Promise.all([
    import('../store/postgres/database.js'),
    import('../gateway/auth/sql-token-store.js'),
  ]);
  const db = new PostgresDatabase(
    { ...postgresConnection(config, applicationName), poolSize: 2 },
    logger,
  );
  return new SqlTokenStore(db);
}

/**
 * The gateway's AuthOptions from the configuration (AUTH_MODE and the rest). The token store or
 * the OIDC verifier it builds belongs to the gateway, which closes it.
 */
export async function gatewayAuth(
  config: Config,
  logger: Logger,
  tokens: TokenBackend,
): Promise<AuthOptions> {
  const common = {
    metricsAuth: config.metricsAuth,
    rateLimit: {
      perMinute: config.rateLimitPerMinute,
      anonPerMinute: config.rateLimitAnonPerMinute,
    },
    recheckMs: Math.max(1000, config.tokenCacheTtl),
  };
  switch (config.authMode) {
    case 'none':
      return { mode: 'none', ...common };
    case 'token': {
      const { TokenAuthenticator } = await import('../gateway/auth/token-auth.js');
      const store = await openTokenStore(config, logger, tokens, 'nexus-gateway-tokens');
      return {
        mode: 'token',
        authenticator: new TokenAuthenticator(store, { cacheTtlMs: config.tokenCacheTtl, logger }),
        ...common,
      };
    }
    case 'oidc': {
      const { OidcAuthenticator } = await import('../gateway/auth/oidc.js');
      return {
        mode: 'oidc',
        authenticator: new OidcAuthenticator({
          issuer: config.oidcIssuer,
          audience: config.oidcAudience,
          jwksUrl: config.oidcJwksUrl,
          scopeClaim: config.oidcScopeClaim,
        }),
        ...common,
      };
    }
  }
}

/** The warning of a gateway open to anyone on a network (AUTH_MODE=none, HOST not loopback). */
export function openToAll(config: Config): string | undefined {
  if (config.authMode !== 'none' || reach(config.host) === 'loopback') return undefined;
  return `AUTH_MODE=none on HOST ${config.host}: the API (REST, GraphQL, WebSocket, /metrics) is open to anyone who can reach this address, without a token. Set AUTH_MODE=token (nexus token create) or oidc, or HOST=127.0.0.1`;
}
