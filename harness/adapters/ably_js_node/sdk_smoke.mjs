// ably-js smoke test against the presence-conformance reference server.
//
//   node sdk_smoke.mjs --port PORT [--key appid.keyid:secret] [--nocap-key NAME:SECRET]
//                      [--wildcard-token TOKEN] [--channel NAME] [--protocol json|msgpack]
//                      (in the node folder)
//
// Connects with the options of docs/protocol.md §1.3 (plain ws, web_socket transport only, no
// fallback hosts; JSON, or MessagePack with --protocol msgpack: useBinaryProtocol), enters, gets the members by SYNC on a second client
// (including a multi-page SYNC), subscribes, updates and leaves, sees the leaves of a closed
// connection, pings, reads presence history
// over REST (following the Link header), checks a NACK, and prints one JSON object on stdout.
// Exit code 0 when it ran to the end (the caller judges the results), 1 on an exception.

import * as Ably from 'ably';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg('--port'));
const key = arg('--key', 'appid.keyid:secret');
const nocapKey = arg('--nocap-key', null);
const wildcardToken = arg('--wildcard-token', null); // ably-js refuses clientId '*' with a key
const channelName = arg('--channel', 'js-room');
const binary = arg('--protocol', 'json') === 'msgpack';

const options = (extra) => {
  const opts = {
    key,
    endpoint: '127.0.0.1',
    port,
    tls: false,
    useBinaryProtocol: binary,
    transports: ['web_socket'],
    fallbackHosts: [],
    logLevel: 0,
    ...extra,
  };
  if (opts.token) delete opts.key;
  return opts;
};

const member = (m) => ({ action: m.action, clientId: m.clientId, connectionId: m.connectionId, id: m.id, data: m.data });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(predicate, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

async function connected(client) {
  if (client.connection.state !== 'connected') await client.connection.once('connected');
  return client;
}

const watchdog = setTimeout(() => {
  console.error('sdk_smoke: watchdog expired');
  process.exit(2);
}, 40000);

const out = {};
const clients = [];
try {
  const carol = await connected(new Ably.Realtime(options({ clientId: 'carol' })));
  clients.push(carol);
  out.connected = { id: carol.connection.id, clientId: carol.auth.clientId };
  const ch = carol.channels.get(channelName);
  await ch.presence.enter({ mood: 'ok' });
  out.modes = ch.modes;
  // the ACK resolves enter(); the echo of the PRESENCE follows it on the wire
  await waitFor(() => ch.presence.members.list({}).length > 0);
  out.ownMembers = (await ch.presence.get()).map(member);

  // a second client gets the member by SYNC, then sees the events
  const dave = await connected(new Ably.Realtime(options({ clientId: 'dave' })));
  clients.push(dave);
  const dch = dave.channels.get(channelName);
  const events = [];
  await dch.presence.subscribe((m) => events.push(member(m)));
  out.syncMembers = (await dch.presence.get()).map(member);
  out.syncComplete = dch.presence.syncComplete;
  await ch.presence.update('new-data');
  await ch.presence.leave();
  await waitFor(() => events.filter((e) => e.action !== 'present').length >= 2);

  // several members through a wildcard client, and a late joiner with a multi-page SYNC
  const eve = await connected(new Ably.Realtime(options({ token: wildcardToken })));
  out.wildcardClientId = eve.auth.clientId;
  clients.push(eve);
  const ech = eve.channels.get(channelName);
  for (let i = 0; i < 5; i++) await ech.presence.enterClient(`u${i}`, `d${i}`);
  const late = await connected(new Ably.Realtime(options({ clientId: 'late' })));
  clients.push(late);
  const lch = late.channels.get(channelName);
  out.lateMembers = (await lch.presence.get()).map(member);

  // eve closes: late sees the server's leaves for her five members at once
  const lateEvents = [];
  await lch.presence.subscribe('leave', (m) => lateEvents.push(member(m)));
  eve.close();

  out.ping = await carol.connection.ping();

  // presence history over REST (Basic auth over http), following the Link header
  const pages = [];
  let page = await ch.presence.history({ limit: 2, direction: 'forwards' });
  pages.push(page.items.map(member));
  while (page.hasNext()) {
    page = await page.next();
    pages.push(page.items.map(member));
  }
  out.historyPages = pages;

  // NACK for a key without the presence capability
  if (nocapKey) {
    const nocap = await connected(new Ably.Realtime(options({ key: nocapKey, clientId: 'nocap' })));
    clients.push(nocap);
    try {
      await nocap.channels.get(channelName).presence.enter('x');
      out.nack = null;
    } catch (err) {
      out.nack = { code: err.code, statusCode: err.statusCode };
    }
  }

  await waitFor(() => lateEvents.length >= 5, 10000);
  out.closeLeaves = lateEvents;
  out.events = events;

  await dch.detach();
  out.detachedState = dch.state;
  out.errors = null;
} catch (err) {
  out.errors = { message: String(err && err.message), code: err && err.code, stack: String(err && err.stack) };
}
for (const client of clients) {
  try {
    client.close();
  } catch (err) {
    // already closed
  }
}
await sleep(100);
clearTimeout(watchdog);
console.log(JSON.stringify(out));
process.exit(out.errors ? 1 : 0);
