-- wrk script for bench/ingest.py: POSTs one signed webhook body over and over, each
-- request with its own X-GitHub-Delivery (Nightshift drops repeated deliveries).
--
-- wrk -s ingest.lua URL -- BODY_FILE SIGNATURE EVENT RUN_ID
--   BODY_FILE  the exact bytes to send (the signature was computed over them)
--   SIGNATURE  the X-Hub-Signature-256 value, "sha256=<hex>"
--   EVENT      the X-GitHub-Event value
--   RUN_ID     8 hex digits, different for every wrk run
--
-- done() prints one line, "WRK_RESULT {json}", that bench/ingest.py reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

local head, tail, run_id
local sent = 0
non2xx = 0
statuses = {}

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  run_id = args[4]
  -- Format the request once, with a marker where the delivery id goes; request()
  -- then only joins three strings.
  local marker = "@@DELIVERY@@"
  local req = wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = args[3],
    ["X-Hub-Signature-256"] = args[2],
    ["X-GitHub-Delivery"] = marker,
  }, body)
  local first, last = req:find(marker, 1, true)
  head, tail = req:sub(1, first - 1), req:sub(last + 1)
end

function request()
  sent = sent + 1
  -- uuid-shaped: run id, thread number, then a per-thread counter.
  local id = string.format("%s-%04x-4000-8000-%012x", run_id, thread_no, sent)
  return head .. id .. tail
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad, codes = 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    for code, count in pairs(thread:get("statuses")) do
      codes[code] = (codes[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(codes) do
    table.insert(parts, string.format('"%d":%d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx":%d,"statuses":{%s},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, bad, table.concat(parts, ","),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
