-- settle.lua: apply reconciliations and releases after a response, atomically.
-- Mirrored by gateway/storage/memory.py; see admit.lua for the TAT format.
--
-- KEYS[i]  the key of op i (built by the caller, for Redis Cluster routing).
-- ARGV[1]  now in seconds, or "" to read Redis TIME. Only tests inject a clock.
-- ARGV[2..] three fields per op:
--          adjust:  "J", T (= period / rate), delta (units; > 0 charges, < 0 refunds)
--          release: "R", lease_id, ""
-- Reply    the number of ops applied.

local STRIDE = 3

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

for i, key in ipairs(KEYS) do
  local a = 2 + (i - 1) * STRIDE
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
  else
    redis.call('ZREM', key, ARGV[a + 1])
  end
end
return #KEYS
