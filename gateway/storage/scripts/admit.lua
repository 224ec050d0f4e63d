-- admit.lua: take GCRA buckets and concurrency leases, each group all-or-nothing.
-- Mirrored line for line by gateway/storage/memory.py; tests/contract holds them equal.
--
-- KEYS[i]  the key of op i. The caller builds every key name (never this script)
--          so Redis Cluster can route; all keys of one call share a hash tag.
-- ARGV[1]  now in seconds, or "" to read Redis TIME. Only tests inject a clock.
-- ARGV[2]  number of groups G; ops carry dense group numbers 1..G in order of
--          first appearance, and groups are decided in that order.
-- ARGV[3..] six fields per op:
--          bucket: "A", group, T (= period / rate), burst, cost, max_delay
--          lease:  "L", group, limit, lease_id, ttl, ""
-- Reply    {now, then per op: allowed (0/1), limit, remaining, reset_after,
--          retry_after, delay}. Numbers travel as strings: Redis truncates Lua
--          numbers to integers in replies.
--
-- A bucket stores its TAT as "<whole seconds>:<fraction>": a float64 of epoch
-- seconds resolves only ~0.24 us, and adding to it op after op drifts by
-- several us over a burst; the split form does not drift.
--
-- EPS: timestamps themselves (TIME has 1 us, a float64 clock ~0.24 us) cannot
-- place a request closer than that, so one that comes within 1 us of its slot
-- is on time. It also absorbs float error at exact boundaries.

local EPS = 1e-6
local STRIDE = 6

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
local now = ns + nf
local now_s = string.format('%.17g', now)

local function fmt(x)
  return string.format('%.17g', x)
end

-- PEXPIRE for something that matters for `rel` more seconds (+1 ms for rounding).
local function ttl_ms(rel)
  return math.ceil(rel * 1000) + 1
end

-- Seconds the stored TAT lies ahead of now; 0 when absent or in the past.
local function bucket_rel(key)
  local v = redis.call('GET', key)
  if not v then
    return 0
  end
  local s, f = string.match(v, '^(%d+):(.+)$')
  local rel = (tonumber(s) - ns) + (tonumber(f) - nf)
  if rel > 0 then
    return rel
  end
  return 0
end

local function store_tat(key, rel)
  local t = nf + rel
  local k = math.floor(t)
  redis.call('SET', key, fmt(ns + k) .. ':' .. fmt(t - k), 'PX', ttl_ms(rel))
end

local function remaining(rel, T, burst)
  local r = math.floor((burst * T - rel + EPS) / T)
  if r < 0 then
    return 0
  end
  if r > burst then
    return burst
  end
  return r
end

-- Result fields for an op that writes nothing: storage as it stands.
local function unchanged_bucket(key, T, burst)
  local rel = bucket_rel(key)
  return {1, fmt(burst), fmt(remaining(rel, T, burst)), fmt(rel), '0', '0'}
end

local function unchanged_lease(key, limit)
  local count = redis.call('ZCARD', key)
  return {1, fmt(limit), fmt(math.max(0, limit - count)), '0', '0', '0'}
end

local n = #KEYS
local ngroups = tonumber(ARGV[2])
local members = {}
for g = 1, ngroups do
  members[g] = {}
end
for i = 1, n do
  local g = tonumber(ARGV[3 + (i - 1) * STRIDE + 1])
  table.insert(members[g], i)
end

local reply = {}
for g = 1, ngroups do
  -- Writes are staged so a later op of the group sees an earlier one on the same key.
  local staged_tat = {}
  local staged_lease = {}
  local ok = true
  for _, i in ipairs(members[g]) do
    local key = KEYS[i]
    local a = 3 + (i - 1) * STRIDE
    if ARGV[a] == 'A' then
      local T = tonumber(ARGV[a + 2])
      local burst = tonumber(ARGV[a + 3])
      local cost = tonumber(ARGV[a + 4])
      local max_delay = tonumber(ARGV[a + 5])
      local rel = staged_tat[key] or bucket_rel(key)
      local new_rel = rel + cost * T
      local wait = new_rel - burst * T
      if wait <= max_delay + EPS then
        if cost > 0 then
          staged_tat[key] = new_rel
        end
        reply[i] = {1, fmt(burst), fmt(remaining(new_rel, T, burst)), fmt(new_rel), '0',
                    fmt(math.max(0, wait))}
      else
        ok = false
        reply[i] = {0, fmt(burst), fmt(remaining(rel, T, burst)), fmt(rel),
                    fmt(wait - max_delay), '0'}
      end
    else
      local limit = tonumber(ARGV[a + 2])
      local id = ARGV[a + 3]
      local ttl = tonumber(ARGV[a + 4])
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now_s)
      local st = staged_lease[key]
      local present = (st and st.ids[id]) or redis.call('ZSCORE', key, id)
      local count = redis.call('ZCARD', key) + (st and st.added or 0)
      if present or count < limit then
        if not st then
          st = {ids = {}, added = 0}
          staged_lease[key] = st
        end
        if not present then
          st.added = st.added + 1
          count = count + 1
        end
        st.ids[id] = now + ttl
        reply[i] = {1, fmt(limit), fmt(math.max(0, limit - count)), '0', '0', '0'}
      else
        ok = false
        local earliest = nil
        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if first[2] then
          earliest = tonumber(first[2])
        end
        if st then
          for _, score in pairs(st.ids) do
            if not earliest or score < earliest then
              earliest = score
            end
          end
        end
        -- With no lease to wait for (limit <= 0) the op's own ttl is reported.
        local retry = ttl
        if earliest then
          retry = earliest - now
        end
        reply[i] = {0, fmt(limit), fmt(math.max(0, limit - count)), '0', fmt(retry), '0'}
      end
    end
  end
  if ok then
    for key, rel in pairs(staged_tat) do
      store_tat(key, rel)
    end
    for key, st in pairs(staged_lease) do
      for id, score in pairs(st.ids) do
        redis.call('ZADD', key, fmt(score), id)
      end
      -- The key lives as long as its longest lease.
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      redis.call('PEXPIRE', key, ttl_ms(tonumber(last[2]) - now))
    end
  else
    for _, i in ipairs(members[g]) do
      if reply[i][1] == 1 then
        local a = 3 + (i - 1) * STRIDE
        if ARGV[a] == 'A' then
          reply[i] = unchanged_bucket(KEYS[i], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
        else
          reply[i] = unchanged_lease(KEYS[i], tonumber(ARGV[a + 2]))
        end
      end
    end
  end
end

local out = {now_s}
for i = 1, n do
  for _, v in ipairs(reply[i]) do
    table.insert(out, v)
  end
end
return out
