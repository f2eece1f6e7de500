import WebSocket from 'ws';

export interface TestSocket {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[];
  send(obj: unknown): void;
  sendRaw(data: string | Buffer): void;
  /** Resolves with the first message (seen or coming) that matches. */
  waitFor(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * Opens a WebSocket; `protocols` offers subprotocols (a browser's token: `bearer.<token>`),
 * `headers` adds request headers (Authorization).
 */
export async function openSocket(
  url: string,
  options: { protocols?: string[]; headers?: Record<string, string> } = {},
): Promise<TestSocket> {
  const ws = new WebSocket(url, options.protocols ?? [], {
    ...(options.headers === undefined ? {} : { headers: options.headers }),
  });
  const messages: Record<string, unknown>[] = [];
  const waiters: {
    pred: (m: Record<string, unknown>) => boolean;
    resolve: (m: Record<string, unknown>) => void;
  }[] = [];
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as Record<string, unknown>;
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    messages,
    send: (obj) => ws.send(JSON.stringify(obj)),
    sendRaw: (data) => ws.send(data),
    waitFor: (pred, timeoutMs = 10_000) => {
      const seen = messages.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no matching message in ${timeoutMs} ms; got ${JSON.stringify(messages.slice(-5))}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.close();
      }),
  };
}
