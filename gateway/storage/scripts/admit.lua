-- admit.lua: take GCRA buckets and concurrency leases, each group all-or-nothing,
-- then count sliding-window signals (observe ops), which never refuse.
-- Mirrored line for line by gateway/storage/memory.py; tests/contract holds them equal.
--
-- KEYS[i]  the key of op i. The caller builds every key name (never this script)
--          so Redis Cluster can route; all keys of one call hash to one slot (on a
--          cluster the backend splits a call by slot, one script run per slot).
--          Exception: an observe op's sub-window keys depend on the time, so
--          they are derived here as KEYS[i] .. ":" .. suffix. KEYS[i] carries the
--          hash tag, so the derived keys hash to the same Cluster slot as the
--          key that routed the call.
-- ARGV[1]  now in seconds, or "" to read Redis TIME. Only tests inject a clock.
-- ARGV[2]  number of groups G; ops carry dense group numbers 1..G in order of
--          first appearance, and groups are decided in that order. Observe ops
--          carry a group too but decide nothing: they run after every group, in
--          call order, whether or not their group was admitted.
-- ARGV[3..] per op, in order, its kind first:
--          bucket:  "A", group, T (= period / rate), burst, cost, max_delay
--          lease:   "L", group, limit, lease_id, ttl, ""
--          observe: "O", group, sub (= window / slots), slots, window, M, C,
--                   tally_member, has_tally (0/1), read_state (0/1),
--                   then M pairs (set name, member), then C pairs (counter, increment)
-- Reply    {now, then per op:
--          bucket, lease: allowed (0/1), limit, remaining, reset_after, retry_after, delay
--          observe: PFCOUNT per set name, sum per counter name (names in order of
--                   first appearance), tally, S, then S state field/value pairs}.
--          Numbers travel as strings: Redis truncates Lua numbers to integers in replies.
--
-- Observe keys, for sub-window idx = floor(now / sub):
--   KEYS[i]:<idx>:s:<set>  HyperLogLog of the set's members
--   KEYS[i]:<idx>:c        hash: "c" .. counter -> float64 sum, "t" .. member -> occurrences
--                          (counters and tally share one hash: one key less per sub-window)
--   KEYS[i]:state          hash written by settle.lua (MergeState), read when asked
-- each sub-window key expiring `window` seconds after its sub-window ends.
-- Counters are added as float64 and stored with 17 significant digits (exact
-- round trip), not with HINCRBYFLOAT, whose long double sums the memory
-- backend could not mirror.
--
-- A bucket stores its TAT as "<whole seconds>:<fraction>": a float64 of epoch
-- seconds resolves only ~0.24 us, and adding to it op after op drifts by
-- several us over a burst; the split form does not drift.
--
-- EPS: timestamps themselves (TIME has 1 us, a float64 clock ~0.24 us) cannot
-- place a request closer than that, so one that comes within 1 us of its slot
-- is on time. It also absorbs float error at exact boundaries.

local EPS = 1e-6
local STRIDE = 6 -- fields of a bucket or lease op
local OBSERVE_HEAD = 10 -- fields of an observe op before its pairs

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
-- at[i]: where op i's fields start. Observe ops join no group: they never refuse.
local at = {}
local observes = {}
local pos = 3
for i = 1, n do
  at[i] = pos
  if ARGV[pos] == 'O' then
    table.insert(observes, i)
    pos = pos + OBSERVE_HEAD + 2 * (tonumber(ARGV[pos + 5]) + tonumber(ARGV[pos + 6]))
  else
    table.insert(members[tonumber(ARGV[pos + 1])], i)
    pos = pos + STRIDE
  end
end

local reply = {}
for g = 1, ngroups do
  -- Writes are staged so a later op of the group sees an earlier one on the same key.
  local staged_tat = {}
  local staged_lease = {}
  local ok = true
  for _, i in ipairs(members[g]) do
    local key = KEYS[i]
    local a = at[i]
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
        local a = at[i]
        if ARGV[a] == 'A' then
          reply[i] = unchanged_bucket(KEYS[i], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
        else
          reply[i] = unchanged_lease(KEYS[i], tonumber(ARGV[a + 2]))
        end
      end
    end
  end
end

-- unpack() takes a few thousand values at most: long argument lists go in pieces.
local CHUNK = 1000

local function any_exists(keys)
  for c = 1, #keys, CHUNK do
    if redis.call('EXISTS', unpack(keys, c, math.min(c + CHUNK - 1, #keys))) > 0 then
      return true
    end
  end
  return false
end

-- Count one request into the window of KEYS[i] and read the window back.
local function observe(key, a)
  local sub = tonumber(ARGV[a + 2])
  local slots = tonumber(ARGV[a + 3])
  local window = tonumber(ARGV[a + 4])
  local nm = tonumber(ARGV[a + 5])
  local nc = tonumber(ARGV[a + 6])
  local has_tally = ARGV[a + 8] == '1'
  local read_state = ARGV[a + 9] == '1'
  local idx = math.floor(now / sub)
  local first = idx - slots + 1
  -- Each sub-window key lives until `window` seconds after its sub-window ends.
  local ttl = ttl_ms((idx + 1) * sub + window - now)
  local function at_slot(j, suffix)
    return key .. ':' .. string.format('%d', j) .. ':' .. suffix
  end

  -- Sets and hash fields this op names, in order of first appearance. Counter
  -- c is field "c" .. c, the tally of member m is field "t" .. m.
  local set_names, set_members = {}, {}
  local p = a + OBSERVE_HEAD
  for _ = 1, nm do
    local name = ARGV[p]
    if not set_members[name] then
      set_members[name] = {}
      table.insert(set_names, name)
    end
    table.insert(set_members[name], ARGV[p + 1])
    p = p + 2
  end
  local fields, field_at, increments = {}, {}, {}
  for _ = 1, nc do
    local f = 'c' .. ARGV[p]
    if not field_at[f] then
      table.insert(fields, f)
      field_at[f] = #fields
    end
    table.insert(increments, {field_at[f], tonumber(ARGV[p + 1])})
    p = p + 2
  end
  local ncounters = #fields
  if has_tally then
    table.insert(fields, 't' .. ARGV[a + 7])
  end

  -- Most keys have nothing in the previous sub-windows (a new or occasional
  -- identity): then only the current sub-window is read, and PFCOUNT of one
  -- key is cheap (sparse, or cached) where several merge into 16384 registers.
  local previous = {}
  for j = first, idx - 1 do
    for _, name in ipairs(set_names) do
      table.insert(previous, at_slot(j, 's:' .. name))
    end
    if #fields > 0 then
      table.insert(previous, at_slot(j, 'c'))
    end
  end
  local history = #previous > 0 and any_exists(previous)

  local result = {}
  for _, name in ipairs(set_names) do
    local hll = at_slot(idx, 's:' .. name)
    local members = set_members[name]
    for c = 1, #members, CHUNK do
      redis.call('PFADD', hll, unpack(members, c, math.min(c + CHUNK - 1, #members)))
    end
    redis.call('PEXPIRE', hll, ttl)
    local hlls = {hll}
    if history then
      for j = first, idx - 1 do
        table.insert(hlls, at_slot(j, 's:' .. name))
      end
    end
    table.insert(result, fmt(redis.call('PFCOUNT', unpack(hlls))))
  end

  local tally = 0
  if #fields > 0 then
    local h = at_slot(idx, 'c')
    local stored = redis.call('HMGET', h, unpack(fields))
    local values, present = {}, {}
    for f = 1, #fields do
      present[f] = stored[f] and true or false
      values[f] = tonumber(stored[f] or '0')
    end
    -- Added as float64 and stored with 17 digits, so the memory backend gives
    -- the same sums (HINCRBYFLOAT would add in long double).
    local changed = {}
    for _, inc in ipairs(increments) do
      if inc[2] ~= 0 then
        values[inc[1]] = values[inc[1]] + inc[2]
        changed[inc[1]] = true
      end
    end
    if has_tally then
      values[#fields] = values[#fields] + 1
      changed[#fields] = true
    end
    local writes = {}
    for f = 1, #fields do
      if changed[f] then
        present[f] = true
        table.insert(writes, fields[f])
        table.insert(writes, fmt(values[f]))
      end
    end
    if #writes > 0 then
      redis.call('HSET', h, unpack(writes))
      redis.call('PEXPIRE', h, ttl)
    end
    -- Sums over the sub-windows, oldest first (the memory backend adds in this order).
    local sums = {}
    for f = 1, #fields do
      sums[f] = 0
    end
    if history then
      for j = first, idx - 1 do
        local v = redis.call('HMGET', at_slot(j, 'c'), unpack(fields))
        for f = 1, #fields do
          if v[f] then
            sums[f] = sums[f] + tonumber(v[f])
          end
        end
      end
    end
    for f = 1, #fields do
      if present[f] then
        sums[f] = sums[f] + values[f]
      end
    end
    for f = 1, ncounters do
      table.insert(result, fmt(sums[f]))
    end
    if has_tally then
      tally = sums[#fields]
    end
  end
  table.insert(result, fmt(tally))

  if read_state then
    local state = redis.call('HGETALL', key .. ':state')
    table.insert(result, tostring(#state / 2))
    for _, v in ipairs(state) do
      table.insert(result, v)
    end
  else
    table.insert(result, '0')
  end
  return result
end

for _, i in ipairs(observes) do
  reply[i] = observe(KEYS[i], at[i])
end

local out = {now_s}
for i = 1, n do
  for _, v in ipairs(reply[i]) do
    table.insert(out, v)
  end
end
return out
