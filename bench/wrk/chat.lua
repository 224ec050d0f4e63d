-- wrk script: POST a chat completion, rotating `Authorization: Bearer <prefix>-NNNN` keys.
--
--   wrk -t1 -c32 -d30s -s bench/wrk/chat.lua URL -- KEYS THREADS BODY_FILE [PREFIX] [PATH]
--
-- KEYS API keys (default 10000) are shared out among the THREADS wrk threads (thread t sends
-- keys t, t+THREADS, ...), so every key is used in turn and, at a few thousand req/s over
-- 10,000 keys, no per-key limit of the default policy is hit. Each thread renders its
-- requests once in init(): request() only hands out a prebuilt string, keeping wrk's own
-- CPU per request low. There is no response() hook on purpose (it would make wrk parse
-- every response in Lua); wrk counts non-2xx/3xx answers itself.
--
-- done() prints one line `WRK_JSON {...}` (after wrk's usual summary) that bench/suite.py
-- parses: requests, duration, errors by kind and latency percentiles, all in microseconds.

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local requests = {}
local count = 0
local index = 0

function init(args)
  local keys = tonumber(args[1] or "10000")
  local threads = tonumber(args[2] or "1")
  local body = '{"model":"bench-model","messages":[{"role":"user","content":"Tell me about rivers"}]}'
  if args[3] and args[3] ~= "" then
    local file = assert(io.open(args[3], "rb"))
    body = file:read("*a")
    file:close()
  end
  local prefix = args[4] or "bench-key"
  local path = args[5] or "/v1/chat/completions"
  local width = string.len(tostring(keys - 1))
  local key_format = "Bearer " .. prefix .. "-%0" .. width .. "d"
  for key = id, keys - 1, threads do
    count = count + 1
    requests[count] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = string.format(key_format, key),
    }, body)
  end
  if count == 0 then  -- more threads than keys: this thread reuses key 0
    count = 1
    requests[1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = string.format(key_format, 0),
    }, body)
  end
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                  e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}',
                  latency:percentile(50), latency:percentile(90), latency:percentile(99),
                  latency.max, latency.mean),
  }
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
