-- settle.lua: apply reconciliations and releases after a response, atomically.
-- Mirrored by gateway/storage/memory.py; see admit.lua for the TAT format.
--
-- KEYS[i]  the key of op i (built by the caller, for Redis Cluster routing; all on
--          one slot: on a cluster the backend splits a call by slot);
--          for a merge, the state hash itself (<observe key>:state).
-- ARGV[1]  now in seconds, or "" to read Redis TIME. Only tests inject a clock.
-- ARGV[2..] per op, in order, its kind first:
--          adjust:  "J", T (= period / rate), delta (units; > 0 charges, < 0 refunds)
--          release: "R", lease_id, ""
--          merge:   "M", ttl (seconds), F, then F field/value pairs
-- Reply    the number of ops applied.

local STRIDE = 3 -- fields of an adjust or release op
local MERGE_HEAD = 3 -- fields of a merge op before its pairs

local ns, nf
if ARGV[1] == '' then
  local t = redis.call('TIME')
  ns = tonumber(t[1])
  nf = tonumber(t[2]) / 1000000
else
  local now = tonumber(ARGV[1])
  ns = math.floor(now)
  nf = now - ns
end

local function fmt(x)
  return string.format('%.17g', x)
end

local a = 2
for _, key in ipairs(KEYS) do
  if ARGV[a] == 'J' then
    local T = tonumber(ARGV[a + 1])
    local delta = tonumber(ARGV[a + 2])
    local rel = 0
    local v = redis.call('GET', key)
    if v then
      local s, f = string.match(v, '^(%d+):(.+)$')
      rel = math.max(0, (tonumber(s) - ns) + (tonumber(f) - nf))
    end
    -- A refund never moves the TAT below now: a TAT at or before now is a full
    -- bucket, which is the same as no key at all.
    local new_rel = rel + delta * T
    if new_rel > 0 then
      local t = nf + new_rel
      local k = math.floor(t)
      redis.call('SET', key, fmt(ns + k) .. ':' .. fmt(t - k), 'PX', math.ceil(new_rel * 1000) + 1)
    elseif v then
      redis.call('DEL', key)
    end
    a = a + STRIDE
  elseif ARGV[a] == 'M' then
    -- Fields not named keep their values; every merge restarts the TTL.
    local ttl = tonumber(ARGV[a + 1])
    local count = tonumber(ARGV[a + 2])
    for p = a + MERGE_HEAD, a + MERGE_HEAD + 2 * count - 1, 2 do
      redis.call('HSET', key, ARGV[p], ARGV[p + 1])
    end
    redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1)
    a = a + MERGE_HEAD + 2 * count
  else
    redis.call('ZREM', key, ARGV[a + 1])
    a = a + STRIDE
  end
end
return #KEYS
