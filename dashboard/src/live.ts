/**
 * The live feed: one WebSocket to the gateway's `/ws` (protocol nexus-live/1, docs/api.md) shared
 * by every view. Views subscribe with a filter and get each committed batch's matching readings
 * (`subscribe`), or each GPU event as it is recorded (`subscribeEvents`).
 * The socket reconnects with capped exponential backoff and jitter, subscribes again, and tells
 * each subscriber to re-sync from REST (readings committed while it was away were not sent).
 *
 * A gateway without live push (ENABLE_WEBSOCKET=false, or no commit feed) says so in its overview's
 * `features`: the client then polls instead, telling each subscriber to re-sync from REST every
 * POLL_MS while the page is visible, and its state is `polling`.
 */

import type { Static } from '@sinclair/typebox';
import type {
  HeldFilterSchema,
  LiveReading as LiveReadingSchema,
  ServerMessage,
} from '../../src/gateway/schemas/live.js';

/** A subscription's filter, as the gateway holds it. */
export type LiveFilter = Static<typeof HeldFilterSchema>;

/** A reading as the socket sends it (no unit: that comes from REST). */
export type LiveReading = Static<typeof LiveReadingSchema>;

export interface LiveHandlers {
  readonly onReadings: (readings: readonly LiveReading[], committedAt: string) => void;
  /** Readings may have been missed (reconnect, or the server dropped some): reload from REST. */
  readonly onResync?: () => void;
}

/** A GPU event as the socket sends it (the REST event). */
export type LiveEvent = Extract<ServerMessage, { type: 'event' }>['event'];

/** What an events subscription asks for (absent: any); every type (counts need them all). */
export interface LiveEventFilter {
  readonly cluster_id?: string;
  readonly host_id?: readonly string[];
}

export interface LiveEventHandlers {
  readonly onEvent: (event: LiveEvent) => void;
  /**
   * Events may have been missed: the subscription has just become active (events recorded
   * before it are not sent), the server dropped some, or (polling) it is time to look again:
   * reload from REST.
   */
  readonly onResync: () => void;
}

type Sub =
  | { readonly kind: 'telemetry'; readonly filter: LiveFilter; readonly h: LiveHandlers }
  | { readonly kind: 'events'; readonly filter: LiveEventFilter; readonly h: LiveEventHandlers };

/** What the live socket needs of the page's API token (auth.ts). */
export interface LiveAuth {
  /** The subprotocols a connection offers now. */
  protocols(): readonly string[];
  /**
   * The gateway closed the socket for its token: settles once the API answers again (a REST call
   * meets the 401 and asks for a token first).
   */
  refused(): Promise<unknown>;
}

/** Close codes of a socket whose token the gateway no longer accepts (revoked, expired; no scope). */
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;

export type LiveState =
  | { readonly kind: 'connecting' }
  | { readonly kind: 'live' }
  | { readonly kind: 'polling'; readonly everyMs: number }
  | { readonly kind: 'waiting'; readonly retryAt: number; readonly reason: string }
  | { readonly kind: 'error'; readonly reason: string };

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
/** A connection that stayed up this long resets the backoff. */
const STABLE_MS = 10_000;
/** Without live push, how often the views reload from REST. */
export const POLL_MS = 5000;

export class LiveClient {
  private ws: WebSocket | undefined;
  private readonly subs = new Map<string, Sub>();
  /** Events subscriptions the gateway refused (an `error` naming them): they poll instead. */
  private readonly refused = new Set<string>();
  private seq = 0;
  private attempt = 0;
  private retryTimer: number | undefined;
  private watchdog: number | undefined;
  private heartbeatMs = 15_000;
  private openedAt = 0;
  private everConnected = false;
  private stateValue: LiveState = { kind: 'connecting' };
  private readonly stateListeners = new Set<(s: LiveState) => void>();
  /** Push (the socket) or poll; undecided until the gateway has said whether it pushes. */
  private mode: 'undecided' | 'push' | 'poll' = 'undecided';

  /**
   * `push` settles with whether the gateway pushes live readings (its overview's
   * `features.websocket`); when it cannot say (rejects), the socket is tried. `auth` gives the
   * subprotocols each connection offers (the API token's, auth.ts; without it, a plain socket) and
   * hears of a connection the gateway closed for its token (4401 revoked or expired, 4403).
   */
  constructor(
    private readonly url: string,
    push: Promise<boolean>,
    private readonly auth?: LiveAuth,
  ) {
    push.then(
      (yes) => {
        this.decide(yes ? 'push' : 'poll');
      },
      () => {
        this.decide('push');
      },
    );
  }

  get state(): LiveState {
    return this.stateValue;
  }

  onState(fn: (s: LiveState) => void): () => void {
    this.stateListeners.add(fn);
    fn(this.stateValue);
    return () => this.stateListeners.delete(fn);
  }

  /** Subscribes to committed readings; returns the function that unsubscribes. */
  subscribe(filter: LiveFilter, h: LiveHandlers): () => void {
    return this.add({ kind: 'telemetry', filter, h });
  }

  /**
   * Subscribes to GPU events as they are recorded; returns the function that unsubscribes.
   * `onResync` is also called once the gateway holds the subscription, so that what was recorded
   * between the page's REST answer and then is not missed.
   */
  subscribeEvents(filter: LiveEventFilter, h: LiveEventHandlers): () => void {
    return this.add({ kind: 'events', filter, h });
  }

  private add(sub: Sub): () => void {
    const id = `s${++this.seq}`;
    this.subs.set(id, sub);
    // Polling needs no socket; undecided, the socket opens once the gateway has said.
    if (this.mode === 'push') {
      if (this.ws === undefined && this.retryTimer === undefined) this.connect();
      else this.sendSubscribe(id);
    }
    return () => {
      this.refused.delete(id);
      if (!this.subs.delete(id)) return;
      this.send({ type: 'unsubscribe', id });
    };
  }

  /** Reconnects (or, polling, reloads) at once: the user asked, or the page came back. */
  retryNow(): void {
    if (this.mode === 'poll') {
      this.resyncAll();
      return;
    }
    if (this.mode !== 'push' || this.ws !== undefined) return;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.connect();
  }

  /** Connects again at once, with the subprotocols as they are now (the token changed). */
  restart(): void {
    if (this.mode !== 'push') return;
    const ws = this.ws;
    if (ws !== undefined) {
      this.ws = undefined;
      if (this.watchdog !== undefined) clearTimeout(this.watchdog);
      ws.close(1000, 'new token');
    }
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.attempt = 0;
    if (this.subs.size > 0) this.connect();
  }

  private decide(mode: 'push' | 'poll'): void {
    if (this.mode !== 'undecided') return;
    this.mode = mode;
    if (mode === 'push') {
      if (this.subs.size > 0) this.connect();
      // While the socket is away (or the gateway refused one), events subscribers look for
      // themselves, as they would without push: their pages have no other way to learn of events.
      window.setInterval(() => {
        if (document.hidden) return;
        // (Not the state: a refused subscription says `error` while the socket stays up.)
        const away = this.ws?.readyState !== WebSocket.OPEN;
        for (const [id, s] of this.subs)
          if (s.kind === 'events' && (away || this.refused.has(id))) s.h.onResync();
      }, POLL_MS);
      return;
    }
    this.setState({ kind: 'polling', everyMs: POLL_MS });
    // For the life of the page, as the socket would be.
    window.setInterval(() => {
      if (!document.hidden) this.resyncAll();
    }, POLL_MS);
  }

  private resyncAll(): void {
    for (const s of this.subs.values()) s.h.onResync?.();
  }

  private setState(s: LiveState): void {
    this.stateValue = s;
    for (const fn of this.stateListeners) fn(s);
  }

  private send(msg: unknown): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  private sendSubscribe(id: string): void {
    const s = this.subs.get(id);
    if (s === undefined) return;
    if (s.kind === 'events') {
      const e = s.filter;
      this.send({
        type: 'subscribe',
        id,
        kind: 'events',
        filter: {
          ...(e.cluster_id === undefined ? {} : { cluster_id: e.cluster_id }),
          ...(e.host_id === undefined ? {} : { host_id: [...e.host_id] }),
        },
      });
      return;
    }
    const f = s.filter;
    this.send({
      type: 'subscribe',
      id,
      filter: {
        ...(f.cluster_id === undefined ? {} : { cluster_id: f.cluster_id }),
        ...(f.host_id === undefined ? {} : { host_id: [...f.host_id] }),
        ...(f.gpu_id === undefined ? {} : { gpu_id: [...f.gpu_id] }),
        ...(f.metric === undefined ? {} : { metric: [...f.metric] }),
      },
    });
  }

  private connect(): void {
    this.retryTimer = undefined;
    this.setState({ kind: 'connecting' });
    let ws: WebSocket;
    try {
      const protocols = this.auth?.protocols() ?? [];
      ws =
        protocols.length === 0 ? new WebSocket(this.url) : new WebSocket(this.url, [...protocols]);
    } catch (err) {
      this.scheduleRetry(err instanceof Error ? err.message : 'cannot open the live socket');
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.openedAt = Date.now();
      this.armWatchdog();
    });
    ws.addEventListener('message', (ev: MessageEvent) => {
      this.armWatchdog();
      if (typeof ev.data !== 'string') return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(ev.data) as ServerMessage;
      } catch {
        return;
      }
      this.handle(msg);
    });
    ws.addEventListener('close', (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (this.watchdog !== undefined) clearTimeout(this.watchdog);
      if (Date.now() - this.openedAt > STABLE_MS && this.openedAt > 0) this.attempt = 0;
      this.openedAt = 0;
      const reason =
        ev.code === 4008
          ? 'the gateway found this page too slow'
          : ev.reason !== ''
            ? ev.reason
            : `connection closed (${ev.code})`;
      const auth = this.auth;
      if (auth !== undefined && (ev.code === CLOSE_UNAUTHORIZED || ev.code === CLOSE_FORBIDDEN)) {
        // Reconnecting with the same token would be refused again: once the API answers (after
        // a new token, if it wants one), connect again (unless the new token already did).
        this.setState({ kind: 'error', reason: 'the gateway no longer accepts the API token' });
        void auth.refused().finally(() => {
          if (this.ws === undefined && this.retryTimer === undefined) this.connect();
        });
        return;
      }
      this.scheduleRetry(reason);
    });
  }

  private handle(msg: ServerMessage): void {
    switch (msg.type) {
      case 'welcome': {
        this.heartbeatMs = msg.heartbeat_ms > 0 ? msg.heartbeat_ms : this.heartbeatMs;
        const resync = this.everConnected;
        this.everConnected = true;
        this.refused.clear();
        this.setState({ kind: 'live' });
        for (const id of this.subs.keys()) this.sendSubscribe(id);
        // Events subscriptions re-sync once subscribed (below).
        if (resync)
          for (const s of this.subs.values()) if (s.kind === 'telemetry') s.h.onResync?.();
        this.armWatchdog();
        return;
      }
      case 'telemetry': {
        const s = this.subs.get(msg.id);
        if (s?.kind === 'telemetry') s.h.onReadings(msg.readings, msg.committed_at);
        return;
      }
      case 'event': {
        const s = this.subs.get(msg.id);
        if (s?.kind === 'events') s.h.onEvent(msg.event);
        return;
      }
      case 'subscribed': {
        const s = this.subs.get(msg.id);
        if (s?.kind === 'events') s.h.onResync();
        return;
      }
      case 'dropped':
        this.subs.get(msg.id)?.h.onResync?.();
        return;
      case 'error': {
        // A subscription the server refused: nothing to retry; say so. An events subscription
        // polls instead.
        this.setState({ kind: 'error', reason: msg.error });
        const s = msg.id === undefined ? undefined : this.subs.get(msg.id);
        if (s?.kind === 'events' && msg.id !== undefined) {
          this.refused.add(msg.id);
          s.h.onResync();
        }
        return;
      }
      case 'unsubscribed':
      case 'heartbeat':
      case 'pong':
        return;
    }
  }

  /** A connection that says nothing for longer than heartbeats allow is dead: reconnect. */
  private armWatchdog(): void {
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    this.watchdog = window.setTimeout(
      () => {
        this.ws?.close(4000, 'no heartbeat');
      },
      this.heartbeatMs * 2 + 5000,
    );
  }

  private scheduleRetry(reason: string): void {
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt = Math.min(this.attempt + 1, 16);
    this.setState({ kind: 'waiting', retryAt: Date.now() + delay, reason });
    this.retryTimer = window.setTimeout(() => {
      this.connect();
    }, delay);
  }
}

/** The socket URL of this page's gateway, subscribed to nothing until views ask. */
export function liveUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws?subscribe=none`;
}
