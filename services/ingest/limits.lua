-- Rate limits of a group of ingest requests, each checked and charged atomically and in order
-- (request i+1 sees what request i charged), in one call (all keys share {limits}).
--
-- State is one string per key, written with SET PX (two commands a key: GET, SET):
--   a token bucket (ip, client):  "<tokens> <ts_ms>"
--   a voter:                      "<tokens> <ts_ms> <day> <votes that day>" (its token bucket
--                                 and its daily count in one key, kept until midnight UTC when
--                                 the daily cap is on)
--
-- KEYS: per request, its token buckets, then its voters, then its prompt-hash counters.
-- ARGV: now_ms, n_requests, voter_rate_per_s, voter_burst, daily_cap (0 = off), day,
--       seconds_to_midnight, then per request:
--       n_buckets, (rate_per_s, burst, cost) x n_buckets, n_voters, cost x n_voters,
--       n_prompts, (cap, count, ttl_s) x n_prompts
-- Returns, per request in order, three fields then its allowances:
--   {1, n_prompts, 0, allowed_1 .. allowed_n_prompts} within every limit (and charged), or
--   {0, retry_after_s, hit} with nothing charged for that request: hit is the 1-based index
--   (within the request's keys) of the first limit hit, negative when it is a voter's daily cap.
local now = tonumber(ARGV[1])
local voter_rate, voter_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local daily_cap, day, to_midnight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local voter_ttl_ms = math.ceil(voter_burst / voter_rate * 1000) + 1000
if daily_cap > 0 and to_midnight * 1000 > voter_ttl_ms then voter_ttl_ms = to_midnight * 1000 end
local out = {}

local function refill(tokens, ts, rate, burst)
  return math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end

local function one(k, a)
  local first_key = k
  local retry, hit = 0, 0
  local nb = tonumber(ARGV[a])
  a = a + 1
  local bucket_after, bucket_ttl = {}, {}
  for i = 1, nb do
    local rate, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local tokens, ts = burst, now
    local state = redis.call('GET', KEYS[k])
    if state then
      local t, s = string.match(state, '^(%S+) (%S+)$')
      tokens, ts = tonumber(t) or burst, tonumber(s) or now
    end
    tokens = refill(tokens, ts, rate, burst)
    if cost > tokens then
      local wait = math.ceil((cost - tokens) / rate)
      if wait > retry then retry = wait end
      if hit == 0 then hit = k - first_key + 1 end
    end
    bucket_after[i] = tokens - cost
    bucket_ttl[i] = math.ceil(burst / rate * 1000) + 1000
    k = k + 1
  end
  local nv = tonumber(ARGV[a])
  a = a + 1
  local voter_tokens, voter_count = {}, {}
  for i = 1, nv do
    local cost = tonumber(ARGV[a])
    a = a + 1
    local tokens, ts, used = voter_burst, now, 0
    local state = redis.call('GET', KEYS[k])
    if state then
      local t, s, d, c = string.match(state, '^(%S+) (%S+) (%S+) (%S+)$')
      tokens, ts = tonumber(t) or voter_burst, tonumber(s) or now
      if tonumber(d) == day then used = tonumber(c) or 0 end
    end
    tokens = refill(tokens, ts, voter_rate, voter_burst)
    if cost > tokens then
      local wait = math.ceil((cost - tokens) / voter_rate)
      if wait > retry then retry = wait end
      if hit == 0 then hit = k - first_key + 1 end
    end
    if daily_cap > 0 and used + cost > daily_cap then
      if to_midnight > retry then retry = to_midnight end
      if hit == 0 then hit = -(k - first_key + 1) end
    end
    voter_tokens[i] = tokens - cost
    voter_count[i] = used + cost
    k = k + 1
  end
  local np = tonumber(ARGV[a])
  local prompt_arg, prompt_key = a + 1, k
  local next_k, next_a = k + np, a + 1 + 3 * np
  if hit ~= 0 then
    out[#out + 1] = 0
    out[#out + 1] = math.max(1, retry)
    out[#out + 1] = hit
    return next_k, next_a
  end
  k = first_key
  for i = 1, nb do
    redis.call('SET', KEYS[k], tostring(bucket_after[i]) .. ' ' .. now, 'PX', bucket_ttl[i])
    k = k + 1
  end
  for i = 1, nv do
    redis.call('SET', KEYS[k], tostring(voter_tokens[i]) .. ' ' .. now .. ' ' .. day .. ' ' ..
               voter_count[i], 'PX', voter_ttl_ms)
    k = k + 1
  end
  out[#out + 1] = 1
  out[#out + 1] = np
  out[#out + 1] = 0
  k, a = prompt_key, prompt_arg
  for i = 1, np do
    local cap, count, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local after = redis.call('INCRBY', KEYS[k], count)
    redis.call('EXPIRE', KEYS[k], ttl)
    local before = after - count
    out[#out + 1] = math.max(0, math.min(count, cap - before))
    k = k + 1
  end
  return next_k, next_a
end

local k, a = 1, 8
for _ = 1, tonumber(ARGV[2]) do
  k, a = one(k, a)
end
return out
