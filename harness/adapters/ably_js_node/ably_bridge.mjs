// ably-js 2.x behind the presence-conformance bridge protocol (docs/bridge.md).
//
//   node ably_bridge.mjs          (started by the `ably-js` adapter in its node folder, the one
//                                  holding node_modules; speaks on stdin/stdout)
//
// One JSON request per line on stdin, one JSON response or event per line on stdout; stdout
// carries nothing else (console.log and the SDK's log go to stderr). Each `connect` creates one
// `Ably.Realtime` client with the options of docs/protocol.md §1.3 (plain ws, web_socket transport
// only, no fallback hosts; `useBinaryProtocol` true, ably-js's default in node, unless the
// adapter's protocol option says json: $PRESENCE_CONFORMANCE_ABLY_PROTOCOL=msgpack|json), through
// its own TCP relay so that `drop`
// can cut the transport like a network failure (see `Relay`). Every operation maps to the
// ably-js call of the same name: presence.enter/update/leave/get/subscribe/unsubscribe,
// presence.history (REST in ably-js: GET /channels/{name}/presence/history, followed with
// PaginatedResult.next()), presence.syncComplete, client.close().

import { readFileSync } from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import * as Ably from 'ably';

function sdkVersion() {
  try {
    const url = new URL('./node_modules/ably/package.json', import.meta.url);
    return JSON.parse(readFileSync(url, 'utf8')).version;
  } catch (err) {
    return 'unknown';
  }
}
const SDK_VERSION = sdkVersion();
// the wire format: msgpack (useBinaryProtocol true, ably-js's default in node) or json
const PROTOCOL = process.env.PRESENCE_CONFORMANCE_ABLY_PROTOCOL === 'json' ? 'json' : 'msgpack';
const PAGE_LIMIT = 1000; // history pages kept for history_next (oldest forgotten first)
const CLOSE_TIMEOUT_MS = 5000;
const DRAIN_TIMEOUT_MS = 1000; // below the runner's close timeout (2 s)

// stdout is the protocol channel: nothing else may write to it
console.log = console.error;
console.info = console.error;
console.warn = console.error;

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function logErr(...args) {
  process.stderr.write(args.map(String).join(' ') + '\n');
}

process.on('unhandledRejection', (reason) => {
  logErr('ably_bridge: unhandled rejection:', reason && reason.stack ? reason.stack : reason);
});

// -- data and messages ---------------------------------------------------------------------------

function dataFromJson(value) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$binary' && typeof value.$binary === 'string') {
      return Buffer.from(value.$binary, 'base64');
    }
  }
  return value === null ? undefined : value;
}

function dataToJson(value) {
  if (Buffer.isBuffer(value)) return { $binary: value.toString('base64') };
  if (value instanceof ArrayBuffer) return { $binary: Buffer.from(value).toString('base64') };
  if (ArrayBuffer.isView(value)) {
    return { $binary: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  return value === undefined ? null : value;
}

// The SDK's PresenceMessage, field for field (absent fields stay absent).
function messageJson(m) {
  const out = {};
  for (const key of ['action', 'clientId', 'connectionId', 'timestamp', 'id']) {
    if (m[key] !== undefined) out[key] = m[key];
  }
  if (m.data !== undefined) out.data = dataToJson(m.data);
  return out;
}

function actionsArg(actions) {
  // the seed's forms: one action as a string, several as an array
  return actions.length === 1 ? actions[0] : actions;
}

// -- the relay: drop() cuts the transport like a network failure ---------------------------------
//
// Each client connects through its own relay (a listening socket on 127.0.0.1 forwarding to the
// server). cut() resets the server side (the server sees a TCP reset: no WebSocket close, no
// Ably CLOSE), stops listening (nothing can reconnect through it) and forwards nothing more; the
// client's side is closed as soon as the client sends anything (its CLOSE, when it is closed).

class Relay {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.pairs = new Set();
    this.isCut = false;
    this.server = net.createServer((down) => this.accept(down));
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve(this.server.address().port));
    });
  }

  accept(down) {
    down.on('error', () => {});
    if (this.isCut) {
      down.destroy();
      return;
    }
    down.setNoDelay(true); // no Nagle delay on the relay's two hops (the SDK's own socket has none)
    this.accepted = (this.accepted ?? 0) + 1;
    const wait = (this.heldUntil ?? 0) - Date.now();
    if (wait > 0) {
      down.pause();
      setTimeout(() => {
        down.resume();
        this.forward(down);
      }, wait);
      return;
    }
    this.forward(down);
  }

  forward(down) {
    if (this.isCut || down.destroyed) {
      down.destroy();
      return;
    }
    const up = net.connect({ port: this.port, host: this.host, noDelay: true });
    up.on('error', () => down.destroy());
    const pair = { down, up, rest: false };
    this.pairs.add(pair);
    // ably-js sends REST (presence history) to the same host and port: tell those connections
    // (kept alive by its HTTP agent) from the realtime one (the WebSocket upgrade of "/")
    down.once('data', (chunk) => {
      pair.rest = !/^GET \/(\?| )/.test(chunk.toString('latin1', 0, 16));
    });
    down.pipe(up);
    up.pipe(down);
    const forget = () => this.pairs.delete(pair);
    down.on('close', forget);
    up.on('close', () => {
      if (!pair.cut) down.end();
    });
  }

  cut() {
    this.isCut = true;
    this.server.close();
    for (const pair of this.pairs) {
      pair.cut = true;
      pair.down.unpipe(pair.up);
      pair.up.unpipe(pair.down);
      pair.up.resetAndDestroy();
      pair.down.on('data', () => pair.down.destroy());
      pair.down.on('end', () => pair.down.destroy());
    }
  }

  // a transient disconnect (RTN15): reset both sides of every connection, so that the server
  // sees a network failure and ably-js loses its transport at once and reconnects by itself;
  // connections accepted in the next `ms` are held before going upstream, so its immediate
  // reconnection attempt (RTN15a) waits instead of failing
  interrupt(ms) {
    this.heldUntil = Date.now() + ms;
    for (const pair of this.pairs) {
      pair.cut = true;
      pair.down.unpipe(pair.up);
      pair.up.unpipe(pair.down);
      pair.up.resetAndDestroy();
      pair.down.resetAndDestroy();
    }
    this.pairs.clear();
  }

  // resolves once the realtime connection has ended by itself (the server closes it after
  // CLOSED), or after `ms`: closing the relay before that would lose the client's last frames
  // (its CLOSE); REST connections kept alive by the HTTP agent are not waited for
  drained(ms) {
    return new Promise((resolve) => {
      const deadline = Date.now() + ms;
      const poll = () => {
        const open = [...this.pairs].some((pair) => !pair.rest);
        if (!open || Date.now() >= deadline) resolve();
        else setTimeout(poll, 5);
      };
      poll();
    });
  }

  close() {
    this.isCut = true;
    this.server.close();
    for (const pair of this.pairs) {
      pair.up.destroy();
      pair.down.destroy();
    }
    this.pairs.clear();
  }
}

// -- state ---------------------------------------------------------------------------------------

const connections = new Map(); // handle -> { client, relay }
const listeners = new Map(); // subscription handle -> SDK listener function
const pages = new Map(); // page handle -> PaginatedResult
let pageCount = 0;

class Unsupported extends Error {}

function conn(req) {
  const c = connections.get(req.connection);
  if (!c) throw new Error(`unknown connection ${req.connection}`);
  return c;
}

// every ChannelStateChange a channel emits (RTL2a, RTL2g UPDATE, RTP17e), from its first use
const channelEvents = new WeakMap();

function channelOf(req) {
  const channel = conn(req).client.channels.get(req.channel);
  if (!channelEvents.has(channel)) {
    const seen = [];
    channelEvents.set(channel, seen);
    channel.on(function listener(change) {
      // ably-js calls a listener with `this` = { event } (an UPDATE: current == previous)
      const event = this?.event ?? (change.current === change.previous ? 'update' : change.current);
      seen.push({
        event,
        current: change.current,
        previous: change.previous,
        resumed: !!change.resumed,
        reasonCode: change.reason?.code ?? null,
      });
    });
  }
  return channel;
}

function presence(req) {
  return channelOf(req).presence;
}

function listenerFor(subscription) {
  let listener = listeners.get(subscription);
  if (!listener) {
    listener = (message) => write({ event: 'presence', subscription, message: messageJson(message) });
    listeners.set(subscription, listener);
  }
  return listener;
}

function keepPage(page) {
  if (!page.hasNext()) return null;
  const handle = `p${++pageCount}`;
  pages.set(handle, page);
  if (pages.size > PAGE_LIMIT) pages.delete(pages.keys().next().value);
  return handle;
}

function pageJson(page) {
  return { items: page.items.map(messageJson), hasNext: page.hasNext(), page: keepPage(page) };
}

function connected(client) {
  return new Promise((resolve, reject) => {
    const connection = client.connection;
    const check = () => {
      const state = connection.state;
      if (state === 'connected') {
        connection.off(check);
        resolve();
      } else if (['failed', 'suspended', 'closed', 'disconnected'].includes(state) && connection.errorReason) {
        connection.off(check);
        reject(connection.errorReason);
      }
    };
    connection.on(check);
    check();
  });
}

function closed(client) {
  return new Promise((resolve) => {
    const connection = client.connection;
    if (['closed', 'failed'].includes(connection.state)) {
      resolve();
      return;
    }
    const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    const check = () => {
      if (['closed', 'failed'].includes(connection.state)) {
        clearTimeout(timer);
        connection.off(check);
        resolve();
      }
    };
    connection.on(check);
  });
}

// -- operations ----------------------------------------------------------------------------------

const ops = {
  async hello() {
    return {
      protocol: 1,
      sdk: `ably-js ${SDK_VERSION} (${PROTOCOL})`,
      features: [
        'history', 'binary-data', 'abrupt-disconnect', 'capabilities', 'anonymous-clients',
        'multiple-connections', 'sync-complete', 'wait-for-sync-option', 'unsubscribe-by-action',
        'subscribe-action-list', 'large-messages', 'argument-validation',
        'enter-client', 'rest-presence', 'transient-disconnect', 'channel-lifecycle',
        'channel-events',
      ],
      ops: ['quiesce'],
    };
  },

  async connect(req) {
    const [host, port] = [req.endpoint.slice(0, req.endpoint.lastIndexOf(':')), Number(req.endpoint.slice(req.endpoint.lastIndexOf(':') + 1))];
    const relay = new Relay(host, port);
    const relayPort = await relay.listen();
    const options = {
      endpoint: '127.0.0.1',
      port: relayPort,
      tls: false,
      useBinaryProtocol: PROTOCOL === 'msgpack',
      transports: ['web_socket'],
      fallbackHosts: [],
      logLevel: 1,
      logHandler: (msg) => logErr(`ably-js[${req.connection}]:`, msg),
      // a connection suspended by a case (a short connectionStateTtl from the server) retries
      // within the case, not after the default 30 s (RTN14e)
      suspendedRetryTimeout: 500,
      // the relay holds a reconnection while a case keeps the client away; past this timeout
      // ably-js checks connectivity over HTTP, which the embedded server does not serve, and
      // would then sleep its disconnectedRetryTimeout (15 s)
      webSocketSlowTimeout: 30000,
    };
    if (req.clientId === '*') {
      // ably-js refuses clientId '*' with an API key: a token bound to '*' (from the harness)
      if (!req.token) throw new Unsupported('a wildcard clientId needs a token bound to "*"');
      options.token = req.token;
    } else {
      options.key = req.key;
      if (req.clientId !== null) options.clientId = req.clientId;
    }
    const client = new Ably.Realtime(options);
    connections.set(req.connection, { client, relay, options });
    try {
      await connected(client);
    } catch (err) {
      client.close();
      relay.close();
      connections.delete(req.connection);
      throw err;
    }
    return { connectionId: client.connection.id ?? null, clientId: client.auth.clientId ?? null };
  },

  async enter(req) {
    await presence(req).enter(dataFromJson(req.data ?? null));
    return null;
  },

  async update(req) {
    await presence(req).update(dataFromJson(req.data ?? null));
    return null;
  },

  async leave(req) {
    await presence(req).leave(dataFromJson(req.data ?? null));
    return null;
  },

  async enter_client(req) {
    await presence(req).enterClient(req.clientId, dataFromJson(req.data ?? null));
    return null;
  },

  async update_client(req) {
    await presence(req).updateClient(req.clientId, dataFromJson(req.data ?? null));
    return null;
  },

  async leave_client(req) {
    await presence(req).leaveClient(req.clientId, dataFromJson(req.data ?? null));
    return null;
  },

  async rest_get(req) {
    // RSP3: RestPresence#get of an Ably.Rest client with the connection's credentials
    const c = conn(req);
    if (!c.rest) {
      const { logHandler, transports, ...common } = c.options;
      c.rest = new Ably.Rest({ ...common, logHandler });
    }
    const params = {};
    for (const key of ['limit', 'clientId', 'connectionId']) {
      if (key in req) params[key] = req[key];
    }
    const page = await c.rest.channels.get(req.channel).presence.get(params);
    return page.items.map(messageJson);
  },

  async attach(req) {
    await channelOf(req).attach();
    return null;
  },

  async detach(req) {
    await channelOf(req).detach();
    return null;
  },

  async channel_state(req) {
    return channelOf(req).state;
  },

  async channel_events(req) {
    channelOf(req);
    return channelEvents.get(channelOf(req));
  },

  async interrupt(req) {
    const { client, relay } = conn(req);
    relay.acceptedBefore = relay.accepted ?? 0;
    relay.interrupt(req.seconds * 1000);
    return null;
  },

  async reconnected(req) {
    // back once reconnected through the relay, connected, and every channel attached again
    const { client, relay } = conn(req);
    let nudged = Date.now();
    for (;;) {
      const channels = [...client.channels.all ? Object.values(client.channels.all) : []];
      const state = client.connection.state;
      if (['suspended', 'disconnected'].includes(state) && Date.now() - nudged > 1000) {
        // a failed attempt (e.g. one the relay held) would wait out the retry timeout: the
        // case is over waiting, so ask for the next attempt now (RTN11c)
        nudged = Date.now();
        client.connection.connect();
      }
      if (['failed', 'closed'].includes(state)) throw client.connection.errorReason ?? new Error(state);
      if (
        (relay.accepted ?? 0) > relay.acceptedBefore &&
        state === 'connected' &&
        channels.every((ch) => ch.state !== 'attaching')
      ) {
        return { connectionId: client.connection.id ?? null };
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  },

  async get(req) {
    const params = {};
    if ('clientId' in req) params.clientId = req.clientId;
    if ('connectionId' in req) params.connectionId = req.connectionId;
    if ('waitForSync' in req) params.waitForSync = req.waitForSync;
    const p = presence(req);
    const members = Object.keys(params).length ? await p.get(params) : await p.get();
    return members.map(messageJson);
  },

  async subscribe(req) {
    const listener = listenerFor(req.subscription);
    const p = presence(req);
    if (req.actions === null) await p.subscribe(listener);
    else await p.subscribe(actionsArg(req.actions), listener);
    return null;
  },

  async unsubscribe(req) {
    const p = presence(req);
    const listener = req.subscription === null ? null : listenerFor(req.subscription);
    if (listener === null && req.actions === null) p.unsubscribe();
    else if (req.actions === null) p.unsubscribe(listener);
    else if (listener === null) p.unsubscribe(actionsArg(req.actions));
    else p.unsubscribe(actionsArg(req.actions), listener);
    return null;
  },

  async history(req) {
    const params = {};
    for (const key of ['start', 'end', 'limit', 'direction']) {
      if (key in req) params[key] = req[key];
    }
    const p = presence(req);
    const page = Object.keys(params).length ? await p.history(params) : await p.history();
    return pageJson(page);
  },

  async history_next(req) {
    const page = pages.get(req.page);
    if (!page) throw new Error(`unknown or forgotten history page ${req.page}`);
    pages.delete(req.page);
    const next = await page.next();
    return next ? pageJson(next) : null;
  },

  async sync_complete(req) {
    const value = presence(req).syncComplete;
    return typeof value === 'boolean' ? value : null;
  },

  async close(req) {
    const { client, relay } = conn(req);
    client.close();
    await closed(client);
    await relay.drained(DRAIN_TIMEOUT_MS); // ably-js is 'closed' at once; its CLOSE is still in flight
    relay.close();
    return null;
  },

  async drop(req) {
    const { client, relay } = conn(req);
    relay.cut(); // the server sees a reset; nothing can reconnect through the relay
    client.close(); // its CLOSE reaches only the relay
    await closed(client);
    relay.close();
    return null;
  },

  async quiesce() {
    // the reference server writes each connection's frames in order and ably-js handles them in
    // order, emitting presence events synchronously: once a ping's echo is back, every event sent
    // before it has been written to stdout
    const live = [...connections.values()].filter((c) => c.client.connection.state === 'connected');
    await Promise.allSettled(live.map((c) => c.client.connection.ping()));
    return true;
  },

  async shutdown() {
    return null;
  },
};

function errorJson(err) {
  if (err instanceof Unsupported) return { type: 'unsupported', message: err.message };
  if (err && typeof err.code === 'number') {
    return {
      code: err.code,
      statusCode: typeof err.statusCode === 'number' ? err.statusCode : null,
      message: String(err.message ?? err),
    };
  }
  return { type: 'internal', message: String(err && err.stack ? err.stack : err) };
}

async function handle(req) {
  const op = ops[req.op];
  if (!op) {
    write({ id: req.id, ok: false, error: { type: 'unsupported', message: `unknown op ${req.op}` } });
    return;
  }
  try {
    const result = await op(req);
    write({ id: req.id, ok: true, result: result === undefined ? null : result });
  } catch (err) {
    write({ id: req.id, ok: false, error: errorJson(err) });
  }
  if (req.op === 'shutdown') shutdown(0);
}

let exiting = false;
function shutdown(code) {
  if (exiting) return;
  exiting = true;
  for (const { client, relay } of connections.values()) {
    try {
      client.close();
    } catch (err) {
      // already closed
    }
    relay.close();
  }
  setTimeout(() => process.exit(code), 50);
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (err) {
    logErr('ably_bridge: ignoring a request that is not JSON:', line.slice(0, 200));
    return;
  }
  handle(req);
});
rl.on('close', () => shutdown(0)); // the harness went away
