// Minimal logger with the surface @prsm/realtime 1.8.1 uses from @prsm/log.
// Messages at or above the configured level go to stderr (stdout is reserved
// for the READY line / scenario JSON of the interop scripts).
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, none: 100, silent: 100 };

let threshold = LEVELS.error;

function levelValue(level) {
  if (typeof level === "number") return level;
  const key = String(level ?? "").toLowerCase();
  return key in LEVELS ? LEVELS[key] : LEVELS.error;
}

function makeLogger(bindings) {
  const emit = (name) => (...args) => {
    if (LEVELS[name] < threshold) return;
    const prefix = Object.keys(bindings).length ? `[${name}] ${JSON.stringify(bindings)}` : `[${name}]`;
    console.error(prefix, ...args);
  };
  return {
    configure(options = {}) {
      if (options.level !== undefined) threshold = levelValue(options.level);
    },
    child(extra = {}) {
      return makeLogger({ ...bindings, ...extra });
    },
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
  };
}

export default makeLogger({});
