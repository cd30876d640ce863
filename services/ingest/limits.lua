-- Rate limits of a group of ingest requests, each checked and charged atomically and in order
-- (request i+1 sees what request i charged), in one call. Optionally, in the same call, each
-- request's client key is confirmed unchanged and its votes are looked up in the dedupe
-- markers, so that only new votes are charged (one round trip for the whole group).
--
-- State is one string per key, written with SET PX (two commands a key: GET, SET):
--   a token bucket (ip, client):  "<tokens> <ts_ms>"
--   a voter:                      "<tokens> <ts_ms> <day> <votes that day>" (its token bucket
--                                 and its daily count in one key, kept until midnight UTC when
--                                 the daily cap is on)
--
-- KEYS: the clients hash, then per request: its ip bucket, its client bucket (if it has votes),
--       its voters, its votes' dedupe markers (when dedupe is on), its prompt-hash counters.
-- ARGV: now_ms, n_requests, voter_rate_per_s, voter_burst, daily_cap (0 = off), day,
--       seconds_to_midnight, dedupe (1 = look the votes up, 0 = every vote is new),
--       ip_rate_per_s, ip_burst, client_rate_per_s, client_burst, prompt_cap, prompt_ttl_s,
--       then per request:
--       key_id ("" = nothing to confirm), stored record (the client key's record as last seen),
--       n_votes, n_voters, n_prompts, then per vote: voter index, prompt index (0 = none).
-- Returns, per request in order:
--   {1, n_prompts, new, allowed_1 .. allowed_n_prompts} within every limit (and charged): new is
--     a string with one character per vote, "1" new, "0" already remembered (not charged);
--   {0, retry_after_s, hit} nothing charged: hit is the 1-based index (within the request's
--     bucket and voter keys) of the first limit hit, negative when it is a voter's daily cap;
--   {2, 0, 0} the client key's record changed (revoked, replaced): nothing charged or looked up.
local now = tonumber(ARGV[1])
local voter_rate, voter_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local daily_cap, day, to_midnight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local dedupe = ARGV[8] == '1'
local ip_rate, ip_burst = tonumber(ARGV[9]), tonumber(ARGV[10])
local client_rate, client_burst = tonumber(ARGV[11]), tonumber(ARGV[12])
local prompt_cap, prompt_ttl = tonumber(ARGV[13]), tonumber(ARGV[14])
local voter_ttl_ms = math.ceil(voter_burst / voter_rate * 1000) + 1000
if daily_cap > 0 and to_midnight * 1000 > voter_ttl_ms then voter_ttl_ms = to_midnight * 1000 end
local clients = KEYS[1]
local out = {}

local function bucket(key, rate, burst)
  local tokens, ts = burst, now
  local state = redis.call('GET', key)
  if state then
    local t, s = string.match(state, '^(%S+) (%S+)$')
    tokens, ts = tonumber(t) or burst, tonumber(s) or now
  end
  return math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end

local function one(k, a)
  local kid, stored = ARGV[a], ARGV[a + 1]
  local nvotes, nv, np = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local votes_arg = a + 5
  local next_a = votes_arg + 2 * nvotes
  local ip_key = k
  local client_key = nvotes > 0 and k + 1 or nil
  local voter_key = k + 1 + (nvotes > 0 and 1 or 0)
  local dedupe_key = voter_key + nv
  local prompt_key = dedupe_key + (dedupe and nvotes or 0)
  local next_k = prompt_key + np
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
    local is_new = not dedupe or not redis.call('GET', KEYS[dedupe_key + i - 1])
    if is_new then
      new[i] = '1'
      fresh = fresh + 1
      local voter = tonumber(ARGV[votes_arg + 2 * (i - 1)])
      local prompt = tonumber(ARGV[votes_arg + 2 * (i - 1) + 1])
      if voter > 0 then voter_cost[voter] = voter_cost[voter] + 1 end
      if prompt > 0 then prompt_count[prompt] = prompt_count[prompt] + 1 end
    else
      new[i] = '0'
    end
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
  local voter_tokens, voter_count = {}, {}
  for i = 1, nv do
    local cost = voter_cost[i]
    if cost > 0 then
      local key = KEYS[voter_key + i - 1]
      local tokens, ts, used = voter_burst, now, 0
      local state = redis.call('GET', key)
      if state then
        local t, s, d, c = string.match(state, '^(%S+) (%S+) (%S+) (%S+)$')
        tokens, ts = tonumber(t) or voter_burst, tonumber(s) or now
        if tonumber(d) == day then used = tonumber(c) or 0 end
      end
      tokens = math.min(voter_burst, tokens + math.max(0, now - ts) * voter_rate / 1000)
      local index = voter_key - ip_key + i
      if cost > tokens then
        local wait = math.ceil((cost - tokens) / voter_rate)
        if wait > retry then retry = wait end
        if hit == 0 then hit = index end
      end
      if daily_cap > 0 and used + cost > daily_cap then
        if to_midnight > retry then retry = to_midnight end
        if hit == 0 then hit = -index end
      end
      voter_tokens[i] = tokens - cost
      voter_count[i] = used + cost
    end
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
  for i = 1, nv do
    if voter_cost[i] > 0 then
      redis.call('SET', KEYS[voter_key + i - 1], tostring(voter_tokens[i]) .. ' ' .. now .. ' '
                 .. day .. ' ' .. voter_count[i], 'PX', voter_ttl_ms)
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

local k, a = 2, 15
for _ = 1, tonumber(ARGV[2]) do
  k, a = one(k, a)
end
return out
