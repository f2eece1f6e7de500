/**
 * The API token of this browser tab. A gateway with AUTH_MODE=token (or oidc) answers 401 without
 * one: the page then asks for a token in a form, keeps it in sessionStorage (this tab only, gone
 * when the tab closes; never localStorage), sends it as `Authorization: Bearer` on every API call
 * (api.ts) and offers it to the live socket as the subprotocol `bearer.<token>` (live.ts: browsers
 * cannot set headers on a WebSocket). A token the gateway refuses is forgotten and the form asks
 * again, saying so. Sign out forgets it and reloads the page (nothing of the fleet stays on screen).
 *
 * Requests that met a 401 wait for the form (requestToken) and are then sent again with the new
 * token; a gateway without authentication never answers 401, and the form never shows.
 */
import { h } from './dom.js';

const KEY = 'nexus.token';
/** The token when sessionStorage is refused (a sandboxed frame, privacy settings). */
let memoryToken: string | undefined;
const listeners = new Set<(token: string | undefined) => void>();

/** The token of this tab, if any. */
export function currentToken(): string | undefined {
  try {
    const t = sessionStorage.getItem(KEY);
    return t === null || t === '' ? undefined : t;
  } catch {
    return memoryToken;
  }
}

function store(token: string | undefined): void {
  memoryToken = token;
  try {
    if (token === undefined) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, token);
  } catch {
    // See currentToken.
  }
  for (const fn of listeners) fn(token);
}

/** `Authorization` for a request, when this tab has a token. */
export function authHeaders(): Record<string, string> {
  const t = currentToken();
  return t === undefined ? {} : { authorization: `Bearer ${t}` };
}

/** The live socket's subprotocols: the real one, and the token next to it (never selected). */
export function socketProtocols(): string[] {
  const t = currentToken();
  return t === undefined ? [] : ['nexus', `bearer.${t}`];
}

/** Calls `fn` with the token whenever it changes: given, refused (undefined), signed out. */
export function onTokenChange(fn: (token: string | undefined) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** What the user pasted: without spaces around it or a `Bearer ` in front. */
export function cleanToken(text: string): string {
  return text.trim().replace(/^bearer\s+/i, '');
}

/** The form, while it is open, and the promise of the token it will give. */
let asking: { readonly given: Promise<void>; readonly dialog: HTMLDialogElement } | undefined;

/**
 * The gateway answered 401 to a request sent with `sent` (or without a token): resolves once
 * there is another token to try. A token newer than `sent` is tried at once; otherwise the token
 * is forgotten and the form asks for one ("token refused" when one was sent). Every request that
 * meets the 401 meanwhile waits for the same form. Rejects when `signal` aborts first.
 */
export function requestToken(sent: string | undefined, signal?: AbortSignal): Promise<void> {
  const now = currentToken();
  if (now !== undefined && now !== sent) return Promise.resolve();
  if (asking === undefined) {
    if (now !== undefined) store(undefined);
    asking = openForm(sent !== undefined);
  }
  return givenOrAborted(asking.given, signal);
}

/**
 * Resolves at once, or, while the form is open (the gateway wanted a token, or refused this tab's),
 * once it gives one: a request sent meanwhile would only meet the same 401 (and a poll would send
 * one without a token every few seconds while the user looks for theirs). Rejects when `signal`
 * aborts first.
 */
export function tokenGiven(signal?: AbortSignal): Promise<void> {
  return asking === undefined ? Promise.resolve() : givenOrAborted(asking.given, signal);
}

function givenOrAborted(given: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return given;
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    void given.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** Forgets the token and reloads: the page asks for a token again if the gateway needs one. */
export function signOut(): void {
  store(undefined);
  location.reload();
}

function openForm(refused: boolean): { given: Promise<void>; dialog: HTMLDialogElement } {
  const input = h('input', {
    type: 'password',
    id: 'token-input',
    name: 'token',
    class: 'token-input',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'nexus_…',
    'aria-describedby': 'token-help',
    'data-testid': 'token-input',
  });
  const error = h('p', { class: 'token-error', role: 'alert', 'data-testid': 'token-error' });
  error.hidden = !refused;
  if (refused) {
    error.textContent =
      'Token refused: the gateway did not accept it (mistyped, revoked or expired). Enter another.';
  }
  const form = h(
    'form',
    { method: 'dialog', class: 'token-form' },
    h('h2', { id: 'token-title', text: 'API token needed' }),
    h(
      'p',
      { id: 'token-help' },
      'This gateway answers only requests that carry an API token. Ask its operator for one, or create a read-only one where the gateway runs: ',
      h('code', { text: 'nexus token create --scope read' }),
      ' (the token is the last line it prints, starting with ',
      h('code', { text: 'nexus_' }),
      '). The page keeps it in this tab only, until you sign out or close the tab.',
    ),
    error,
    h('label', { for: 'token-input', text: 'API token' }),
    input,
    h(
      'div',
      { class: 'help-foot' },
      h('button', {
        type: 'submit',
        class: 'btn btn-primary',
        text: 'Use this token',
        'data-testid': 'token-submit',
      }),
    ),
  );
  const dialog = h(
    'dialog',
    { class: 'help token-prompt', 'aria-labelledby': 'token-title', 'data-testid': 'token-prompt' },
    form,
  );
  // Without a token the page cannot work: Escape does not close the form.
  dialog.addEventListener('cancel', (e) => {
    e.preventDefault();
  });
  const given = new Promise<void>((resolve) => {
    form.addEventListener('submit', (e) => {
      const token = cleanToken(input.value);
      if (token === '') {
        e.preventDefault();
        return;
      }
      asking = undefined;
      store(token);
      resolve();
    });
  });
  // The form closes the dialog as it is submitted (method="dialog"); then it goes.
  dialog.addEventListener('close', () => {
    dialog.remove();
  });
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
  return { given, dialog };
}
