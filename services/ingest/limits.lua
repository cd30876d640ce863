-- Rate limits of a group of ingest requests, each checked and charged atomically and in order
-- (request i+1 sees what request i charged), in one call. Optionally, in the same call, each
-- request's client key is confirmed unchanged and its votes are looked up in the dedupe sets,
-- so that only new votes are charged, and the new votes of a request within its limits are
-- claimed for this ingest instance (VoteIdMemory; one round trip for the whole group).
--
-- State:
--   a token bucket (ip, client): a string "<tokens> <ts_ms>", written with SET PX
--   the voters of a UTC day: a hash (client|voter) -> "<tokens> <ts_ms> <day> <votes that day>"
--     (a voter's token bucket and daily count), expiring once the next day's bucket would be
--     full anyway; a voter missing today is looked up in yesterday's hash (its bucket carries
--     over midnight, its count does not)
--
-- KEYS: the clients hash, today's voters hash, yesterday's voters hash, the dedupe keys
--       (sets_per_shard for each shard: its in-flight hash, then its dedupe sets: see
--       VoteIdMemory.lookup_plan), then per request: its ip
--       bucket, its client bucket (if it has votes), its prompt-hash counters.
-- ARGV: now_ms, n_requests, voter_rate_per_s, voter_burst, daily_cap (0 = off), day,
--       seconds_to_midnight, dedupe (1 = look the votes up, 0 = every vote is new),
--       ip_rate_per_s, ip_burst, client_rate_per_s, client_burst, prompt_cap, prompt_ttl_s,
--       voters_ttl_s (today's hash: until midnight, plus a full bucket's refill), n_dedupe_sets,
--       sets_per_shard, owner (who claims), claim_ttl_ms,
--       then per request:
--       key_id ("" = nothing to confirm), stored record (the client key's record as last seen),
--       n_votes, n_voters, n_prompts, its voters' fields, then per vote: voter index, prompt
--       index (0 = none) and, when dedupe is on, its shard's slot and its vote_id.
-- Returns, per request in order:
--   {1, n_prompts, new, allowed_1 .. allowed_n_prompts} within every limit (and charged): new is
--     a string with one character per vote, "1" new, "0" already remembered (not charged);
--   {0, retry_after_s, hit} nothing charged: hit is the 1-based index of the first limit hit
--     among the request's limits (ip, client if it has votes, its voters in order), negative
--     when it is a voter's daily cap;
--   {2, 0, 0} the client key's record changed (revoked, replaced): nothing charged or looked up;
--   {3, hit, cost} the request could never pass: its new votes for one limit (hit, as above)
--     are more than that limit's whole burst, or than a voter's daily cap (cost: how many);
--     nothing charged;
--   {4, index, 0} a vote (1-based index) is claimed by another ingest instance, not settled
--     yet: nothing charged or claimed.
local now = tonumber(ARGV[1])
local voter_rate, voter_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local daily_cap, day, to_midnight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local dedupe = ARGV[8] == '1'
local ip_rate, ip_burst = tonumber(ARGV[9]), tonumber(ARGV[10])
local client_rate, client_burst = tonumber(ARGV[11]), tonumber(ARGV[12])
local prompt_cap, prompt_ttl = tonumber(ARGV[13]), tonumber(ARGV[14])
local voters_ttl = ARGV[15]
local n_dedupe_sets, per_shard = tonumber(ARGV[16]), tonumber(ARGV[17])
local owner, claim_ttl = ARGV[18], tonumber(ARGV[19])
local claim_value = owner .. ' ' .. (now + claim_ttl)
local claimed_in = {}  -- in-flight hashes written (their expiry is set at the end)
local clients, today, yesterday = KEYS[1], KEYS[2], KEYS[3]
local CHUNK = 1000  -- fields per HMGET / HSET (unpack has a limit)
local out = {}
local any_yesterday = redis.call('EXISTS', yesterday) == 1  -- gone soon after midnight
local today_written = false

local function hmget(key, fields, into, at)
  -- into[at[j]] = value of fields[j], for the fields present
  for from = 1, #fields, CHUNK do
    local to = math.min(from + CHUNK - 1, #fields)
    local got = redis.call('HMGET', key, unpack(fields, from, to))
    for j = from, to do
      local value = got[j - from + 1]
      if value then into[at[j]] = value end
    end
  end
end

local function bucket(key, rate, burst)
  local tokens, ts = burst, now
  local state = redis.call('GET', key)
  if state then
    local t, s = string.match(state, '^(%S+) (%S+)$')
    tokens, ts = tonumber(t) or burst, tonumber(s) or now
  end
  return math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end

-- 1 remembered (a duplicate), 2 claimed by another instance (not expired), 0 new
local function state(slot, id)
  local base = 3 + per_shard * (slot - 1)  -- its shard's keys: KEYS[base + 1 ..]
  for j = 2, per_shard do
    if redis.call('SISMEMBER', KEYS[base + j], id) == 1 then return 1 end
  end
  local h = redis.call('HGET', KEYS[base + 1], id)
  if h then
    local who, expiry = string.match(h, '^(%S+) (%d+)$')
    if who ~= owner and tonumber(expiry) > now then return 2 end
  end
  return 0
end

local function claim(slot, id)
  local hash = KEYS[3 + per_shard * (slot - 1) + 1]
  redis.call('HSET', hash, id, claim_value)
  claimed_in[hash] = true
end

local function one(k, a)
  local kid, stored = ARGV[a], ARGV[a + 1]
  local nvotes, nv, np = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local voters_arg = a + 5
  local votes_arg = voters_arg + nv
  local per_vote = dedupe and 4 or 2
  local next_a = votes_arg + per_vote * nvotes
  local ip_key = k
  local client_key = nvotes > 0 and k + 1 or nil
  local prompt_key = k + 1 + (nvotes > 0 and 1 or 0)
  local next_k = prompt_key + np
  local first_voter_index = client_key and 2 or 1  -- limits before the voters (for "hit")
  if kid ~= '' and redis.call('HGET', clients, kid) ~= stored then
    out[#out + 1] = 2
    out[#out + 1] = 0
    out[#out + 1] = 0
    return next_k, next_a
  end
  -- which votes are new, and what they cost each voter and prompt
  local new, fresh = {}, 0
  local voter_cost, prompt_count = {}, {}
  for i = 1, nv do voter_cost[i] = 0 end
  for i = 1, np do prompt_count[i] = 0 end
  for i = 1, nvotes do
    local at = votes_arg + per_vote * (i - 1)
    local known = dedupe and state(tonumber(ARGV[at + 2]), ARGV[at + 3]) or 0
    if known == 2 then
      out[#out + 1] = 4
      out[#out + 1] = i
      out[#out + 1] = 0
      return next_k, next_a
    end
    if known == 0 then
      new[i] = '1'
      fresh = fresh + 1
      local voter, prompt = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
      if voter > 0 then voter_cost[voter] = voter_cost[voter] + 1 end
      if prompt > 0 then prompt_count[prompt] = prompt_count[prompt] + 1 end
    else
      new[i] = '0'
    end
  end
  -- more new votes for one limit than its whole burst (or a voter's daily cap): no wait helps
  local never, never_cost = 0, 0
  if client_key and fresh > client_burst then never, never_cost = 2, fresh end
  for i = 1, nv do
    if never ~= 0 then break end
    if voter_cost[i] > voter_burst then
      never, never_cost = first_voter_index + i, voter_cost[i]
    elseif daily_cap > 0 and voter_cost[i] > daily_cap then
      never, never_cost = -(first_voter_index + i), voter_cost[i]
    end
  end
  if never ~= 0 then
    out[#out + 1] = 3
    out[#out + 1] = never
    out[#out + 1] = never_cost
    return next_k, next_a
  end
  -- check every limit before charging any
  local retry, hit = 0, 0
  local ip_tokens = bucket(KEYS[ip_key], ip_rate, ip_burst)
  if 1 > ip_tokens then
    retry = math.ceil((1 - ip_tokens) / ip_rate)
    hit = 1
  end
  local client_tokens
  if client_key then
    client_tokens = bucket(KEYS[client_key], client_rate, client_burst)
    if fresh > client_tokens then
      local wait = math.ceil((fresh - client_tokens) / client_rate)
      if wait > retry then retry = wait end
      if hit == 0 then hit = 2 end
    end
  end
  -- the charged voters' states: today's, else yesterday's (its bucket), else none
  local fields, charged = {}, {}
  for i = 1, nv do
    if voter_cost[i] > 0 then
      fields[#fields + 1] = ARGV[voters_arg + i - 1]
      charged[#charged + 1] = i
    end
  end
  local states = {}
  hmget(today, fields, states, charged)
  local missing, missing_at = {}, {}
  for j = 1, #charged do
    if not states[charged[j]] then
      missing[#missing + 1] = fields[j]
      missing_at[#missing_at + 1] = charged[j]
    end
  end
  if any_yesterday then hmget(yesterday, missing, states, missing_at) end
  local voter_state = {}
  for j = 1, #charged do
    local i = charged[j]
    local cost = voter_cost[i]
    local tokens, ts, used = voter_burst, now, 0
    local state = states[i]
    if state then
      local t, s, d, c = string.match(state, '^(%S+) (%S+) (%S+) (%S+)$')
      tokens, ts = tonumber(t) or voter_burst, tonumber(s) or now
      if tonumber(d) == day then used = tonumber(c) or 0 end
    end
    tokens = math.min(voter_burst, tokens + math.max(0, now - ts) * voter_rate / 1000)
    local index = first_voter_index + i
    if cost > tokens then
      local wait = math.ceil((cost - tokens) / voter_rate)
      if wait > retry then retry = wait end
      if hit == 0 then hit = index end
    end
    if daily_cap > 0 and used + cost > daily_cap then
      if to_midnight > retry then retry = to_midnight end
      if hit == 0 then hit = -index end
    end
    voter_state[j] = tostring(tokens - cost) .. ' ' .. now .. ' ' .. day .. ' ' .. (used + cost)
  end
  if hit ~= 0 then
    out[#out + 1] = 0
    out[#out + 1] = math.max(1, retry)
    out[#out + 1] = hit
    return next_k, next_a
  end
  redis.call('SET', KEYS[ip_key], tostring(ip_tokens - 1) .. ' ' .. now,
             'PX', math.ceil(ip_burst / ip_rate * 1000) + 1000)
  if client_key and fresh > 0 then
    redis.call('SET', KEYS[client_key], tostring(client_tokens - fresh) .. ' ' .. now,
               'PX', math.ceil(client_burst / client_rate * 1000) + 1000)
  end
  if #charged > 0 then
    for from = 1, #charged, CHUNK do
      local pairs_ = {}
      for j = from, math.min(from + CHUNK - 1, #charged) do
        pairs_[#pairs_ + 1] = fields[j]
        pairs_[#pairs_ + 1] = voter_state[j]
      end
      redis.call('HSET', today, unpack(pairs_))
    end
    today_written = true
  end
  if dedupe then
    for i = 1, nvotes do
      if new[i] == '1' then
        local at = votes_arg + per_vote * (i - 1)
        claim(tonumber(ARGV[at + 2]), ARGV[at + 3])
      end
    end
  end
  out[#out + 1] = 1
  out[#out + 1] = np
  out[#out + 1] = table.concat(new)
  for i = 1, np do
    local count = prompt_count[i]
    local allowed = 0
    if count > 0 then
      local after = redis.call('INCRBY', KEYS[prompt_key + i - 1], count)
      redis.call('EXPIRE', KEYS[prompt_key + i - 1], prompt_ttl)
      allowed = math.max(0, math.min(count, prompt_cap - (after - count)))
    end
    out[#out + 1] = allowed
  end
  return next_k, next_a
end

local k, a = 4 + n_dedupe_sets, 20
for _ = 1, tonumber(ARGV[2]) do
  k, a = one(k, a)
end
if today_written then redis.call('EXPIRE', today, voters_ttl) end
for hash in pairs(claimed_in) do redis.call('PEXPIRE', hash, claim_ttl) end
return out
