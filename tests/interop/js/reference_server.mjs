// Reference server for the interoperability tests: the original Node
// `RealtimeServer` from @prsm/realtime 1.8.1, bound to loopback only.
//
// Usage:  REDIS_URL=redis://127.0.0.1:6379/9 node reference_server.mjs [port]
//
//   port        TCP port on 127.0.0.1 (default 0 = any free port)
//   REDIS_URL   redis://[user:pass@]host[:port][/db]   (db also accepted as ?db=N)
//               unix:///path/to/redis.sock[?db=N]
//
// Once it accepts WebSocket connections it prints exactly one line to stdout:
//   READY <port>
// Everything else (logs, errors) goes to stderr. SIGTERM / SIGINT close the
// server and exit 0.
//
// Test commands exposed in addition to the built-in rt/* ones:
//   echo            -> returns the payload unchanged
//   throws          -> throws new Error("boom")
//   broadcast-room  {roomName, command, payload} -> server.broadcastRoom(...), returns true
//   set-room-meta   {roomName, metadata}         -> roomManager.setMetadata(...), returns true
//   publish         {roomName, payload}          -> broadcastRoom(roomName, "room-message", payload)

import { createServer } from "node:http"
import { RealtimeServer } from "@prsm/realtime"

const HOST = "127.0.0.1"
const STARTUP_TIMEOUT_MS = Number(process.env.REFERENCE_SERVER_STARTUP_TIMEOUT_MS ?? 20000)
const SHUTDOWN_TIMEOUT_MS = 5000

/**
 * Turn a Redis URL into ioredis connection options.
 * @param {string} raw
 * @returns {Record<string, unknown>}
 */
function redisOptionsFromUrl(raw) {
  const url = new URL(raw)
  const options = {}
  const dbFromQuery = url.searchParams.get("db")
  let db = dbFromQuery !== null && dbFromQuery !== "" ? dbFromQuery : undefined

  if (url.protocol === "unix:" || url.protocol === "redis+unix:") {
    // unix:///path/to/sock -> pathname "/path/to/sock"; unix://relative/sock is not supported.
    const socketPath = decodeURIComponent(url.pathname)
    if (!socketPath) throw new Error(`REDIS_URL has no socket path: ${raw}`)
    options.path = socketPath
  } else if (url.protocol === "redis:" || url.protocol === "rediss:") {
    options.host = url.hostname || "127.0.0.1"
    if (options.host.startsWith("[") && options.host.endsWith("]")) options.host = options.host.slice(1, -1)
    options.port = url.port ? Number(url.port) : 6379
    const dbFromPath = url.pathname.replace(/^\/+/, "")
    if (db === undefined && dbFromPath !== "") db = dbFromPath
    if (url.protocol === "rediss:") options.tls = {}
  } else {
    throw new Error(`unsupported REDIS_URL scheme "${url.protocol}" (use redis:// or unix://)`)
  }

  if (url.username) options.username = decodeURIComponent(url.username)
  if (url.password) options.password = decodeURIComponent(url.password)
  if (db !== undefined) {
    const n = Number(db)
    if (!Number.isInteger(n) || n < 0) throw new Error(`invalid Redis database number "${db}" in ${raw}`)
    options.db = n
  }
  // Fail fast instead of retrying for minutes when Redis is not there.
  options.connectTimeout = 5000
  options.maxRetriesPerRequest = 3
  return options
}

function fail(message) {
  process.stderr.write(`reference_server: ${message}\n`)
  process.exit(1)
}

function parsePort(arg) {
  if (arg === undefined) return 0
  const port = Number(arg)
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port argument "${arg}"`)
  return port
}

async function main() {
  const port = parsePort(process.argv[2])
  const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379/0"
  let redis
  try {
    redis = redisOptionsFromUrl(redisUrl)
  } catch (err) {
    fail(err.message)
  }

  const startupTimer = setTimeout(
    () => fail(`not ready after ${STARTUP_TIMEOUT_MS} ms (is Redis reachable at ${redisUrl}?)`),
    STARTUP_TIMEOUT_MS,
  )

  const server = new RealtimeServer({ redis })
  server.onError((err) => process.stderr.write(`reference_server: server error: ${err?.stack ?? err}\n`))

  server.exposeCommand("echo", async (ctx) => ctx.payload)
  server.exposeCommand("throws", async () => {
    throw new Error("boom")
  })
  server.exposeCommand("broadcast-room", async (ctx) => {
    const { roomName, command, payload } = ctx.payload
    await server.broadcastRoom(roomName, command, payload)
    return true
  })
  // For `mesh-actors bench --baseline-library node` (the Node reference as a target):
  server.exposeCommand("publish", async (ctx) => {
    const { roomName, payload } = ctx.payload
    await server.broadcastRoom(roomName, "room-message", payload)
    return true
  })
  server.exposeCommand("set-room-meta", async (ctx) => {
    const { roomName, metadata } = ctx.payload
    await server.roomManager.setMetadata(roomName, metadata)
    return true
  })

  // Our own HTTP server, listening on loopback only. `attach` would otherwise
  // call httpServer.listen() without a host, i.e. on every interface.
  const httpServer = createServer((req, res) => {
    res.writeHead(426, { "content-type": "text/plain", connection: "close" })
    res.end("WebSocket upgrade required\n")
  })
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject)
    httpServer.listen(port, HOST, () => {
      httpServer.removeListener("error", reject)
      resolve()
    })
  })

  // Already listening, so attach() only creates the ws server on it and
  // starts the Redis subscriptions / instance bookkeeping.
  await server.attach(httpServer)
  clearTimeout(startupTimer)

  let closing = false
  const shutdown = async (signal) => {
    if (closing) return
    closing = true
    const force = setTimeout(() => {
      process.stderr.write(`reference_server: forced exit after ${SHUTDOWN_TIMEOUT_MS} ms (${signal})\n`)
      process.exit(1)
    }, SHUTDOWN_TIMEOUT_MS)
    force.unref()
    try {
      await server.close() // does not close an attached HTTP server
      httpServer.closeAllConnections?.()
      await new Promise((resolve) => httpServer.close(() => resolve()))
      process.exit(0)
    } catch (err) {
      process.stderr.write(`reference_server: error during shutdown: ${err?.stack ?? err}\n`)
      process.exit(1)
    }
  }
  process.on("SIGTERM", () => shutdown("SIGTERM"))
  process.on("SIGINT", () => shutdown("SIGINT"))

  const address = httpServer.address()
  process.stdout.write(`READY ${address.port}\n`)
}

main().catch((err) => fail(err?.stack ?? String(err)))
