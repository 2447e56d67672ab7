// Scripted interop scenario driven by the stock RealtimeClient of
// @prsm/realtime 1.8.1 against any server speaking the `rt/` dialect.
//
// Usage:  node client_scenario.mjs ws://127.0.0.1:PORT
//
// On success prints ONE JSON object (one line) on stdout with everything the
// two clients observed, then exits 0. On any exception or timeout it prints the
// error on stderr and exits 1 (2 for a usage error). Overall deadline:
// SCENARIO_TIMEOUT_MS (default 20000 ms).
//
// JSON conventions: every key is always present; a value the client saw as
// `undefined` is written as null and its key path is listed in `undefinedKeys`.
// `status` values are the client's numeric Status (3 online, 2 connecting,
// 1 reconnecting, 0 offline); `statusName` spells them out.

import WebSocket from "ws"
import { RealtimeClient } from "@prsm/realtime/client"

// Node 20 has no global WebSocket; use `ws` everywhere for identical behaviour
// across Node versions. Must happen before any client is constructed.
globalThis.WebSocket = WebSocket

const OVERALL_TIMEOUT_MS = Number(process.env.SCENARIO_TIMEOUT_MS ?? 20000)
const COMMAND_TIMEOUT_MS = 5000
const PUSH_TIMEOUT_MS = 5000
const STATUS_NAMES = { 3: "online", 2: "connecting", 1: "reconnecting", 0: "offline" }

const url = process.argv[2]
if (!url) {
  process.stderr.write("usage: node client_scenario.mjs <ws-url>\n")
  process.exit(2)
}

let currentStep = "start"

const deadline = setTimeout(() => {
  process.stderr.write(`client_scenario: timed out after ${OVERALL_TIMEOUT_MS} ms during step "${currentStep}"\n`)
  process.exit(1)
}, OVERALL_TIMEOUT_MS)

const result = { url, undefinedKeys: [] }

/** Store `value` under `key`, mapping undefined to null (and noting it). */
function record(key, value) {
  if (value === undefined) {
    result.undefinedKeys.push(key)
    result[key] = null
  } else {
    result[key] = value
  }
  return value
}

/** Run one named step; its name shows up in timeout / error messages. */
async function step(name, fn) {
  currentStep = name
  try {
    return await fn()
  } catch (err) {
    const detail = err instanceof Error ? `${err.name}: ${err.message} (code ${err.code ?? "-"})` : String(err)
    throw new Error(`step "${name}" failed: ${detail}`, { cause: err })
  }
}

/** Resolve with the first payload of event `name` on `client`, or reject after `ms`. */
function nextEvent(client, name, ms) {
  return new Promise((resolve, reject) => {
    const onEvent = (payload) => {
      clearTimeout(timer)
      resolve(payload)
    }
    const timer = setTimeout(() => {
      client.removeListener(name, onEvent)
      reject(new Error(`no "${name}" event within ${ms} ms`))
    }, ms)
    client.once(name, onEvent)
  })
}

/** Lifecycle events of a client, in order (messages themselves are not listed). */
function trackLifecycle(client, log) {
  for (const name of ["connect", "disconnect", "close", "reconnect", "reconnectfailed"]) {
    client.on(name, () => log.push(name))
  }
  client.on("error", (err) => log.push(`error: ${err?.message ?? err}`))
}

function describe(client) {
  return { connectionId: client.connectionId ?? null, status: client.status, statusName: STATUS_NAMES[client.status] ?? null }
}

async function main() {
  // Reconnection off: an unexpected drop must surface as a failure, not be papered over.
  const options = { shouldReconnect: false }
  const a = new RealtimeClient(url, options)
  const b = new RealtimeClient(url, options)
  const events = { a: [], b: [] }
  trackLifecycle(a, events.a)
  trackLifecycle(b, events.b)

  await step("connect", () => Promise.all([a.connect(), b.connect()]))
  record("a", describe(a))
  record("b", describe(b))

  record("echo", await step("echo", () => a.command("echo", { hello: "world" }, COMMAND_TIMEOUT_MS)))
  record("unknownCommand", await step("unknown command", () => a.command("no-such-command", {}, COMMAND_TIMEOUT_MS)))
  record("throws", await step("throws", () => a.command("throws", {}, COMMAND_TIMEOUT_MS)))

  record("joinA", await step("A joins lobby", () => a.joinRoom("lobby")))
  record("joinB", await step("B joins lobby", () => b.joinRoom("lobby")))

  record("setMetadata", await step("A sets metadata", () => a.setConnectionMetadata({ name: "alice" })))
  record("myMetadata", await step("A gets own metadata", () => a.getConnectionMetadata()))
  record("otherMetadata", await step("B gets A's metadata", () => b.getConnectionMetadata(a.connectionId)))
  record(
    "mergeMetadata",
    await step("A merges metadata", () => a.setConnectionMetadata({ status: "away" }, { strategy: "merge" })),
  )
  record("myMetadataAfterMerge", await step("A gets merged metadata", () => a.getConnectionMetadata()))

  record(
    "setRoomMeta",
    await step("B sets room metadata", () =>
      b.command("set-room-meta", { roomName: "lobby", metadata: { topic: "x" } }, COMMAND_TIMEOUT_MS),
    ),
  )
  record("roomMetadata", await step("A gets room metadata", () => a.getRoomMetadata("lobby")))

  // Listeners first, then the broadcast; wait for delivery with a timeout.
  const newsB = nextEvent(b, "room-news", PUSH_TIMEOUT_MS)
  const newsA = nextEvent(a, "room-news", PUSH_TIMEOUT_MS).catch(() => undefined)
  record(
    "broadcastRoom",
    await step("A broadcasts to lobby", () =>
      a.command("broadcast-room", { roomName: "lobby", command: "room-news", payload: { n: 1 } }, COMMAND_TIMEOUT_MS),
    ),
  )
  record("roomNewsB", await step("B receives room-news", () => newsB))
  // A is in the lobby too; recorded as null (see undefinedKeys) if it never arrived.
  record("roomNewsA", await step("A receives room-news", () => newsA))

  record("leaveB", await step("B leaves lobby", () => b.leaveRoom("lobby")))

  await step("close", () => Promise.all([a.close(), b.close()]))
  record("final", { a: describe(a), b: describe(b) })
  record("events", events)
}

main().then(
  () => {
    clearTimeout(deadline)
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
  },
  (err) => {
    process.stderr.write(`client_scenario: ${err?.stack ?? err}\n`)
    if (err?.cause) process.stderr.write(`caused by: ${err.cause?.stack ?? err.cause}\n`)
    process.stderr.write(`partial result: ${JSON.stringify(result)}\n`)
    process.exit(1)
  },
)
