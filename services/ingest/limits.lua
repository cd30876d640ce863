-- Rate limits of a group of ingest requests, each checked and charged atomically and in order
-- (request i+1 sees what request i charged), in one call (all keys share {limits}).
-- KEYS: per request, its token buckets, then its daily counters, then its prompt-hash counters.
-- ARGV: now_ms, n_requests, then per request:
--       n_buckets, (rate_per_s, burst, cost) x n_buckets,
--       n_daily, (cap, cost, ttl_s) x n_daily, n_prompts, (cap, count, ttl_s) x n_prompts
-- Returns, per request in order, three fields then its allowances:
--   {1, n_prompts, 0, allowed_1 .. allowed_n_prompts} within every limit (and charged), or
--   {0, retry_after_s, index_of_the_first_limit_hit (1-based, within the request)}, nothing
--   charged for that request.
local now = tonumber(ARGV[1])
local out = {}

local function one(k, a)
  local nb = tonumber(ARGV[a])
  local first_key, first_arg = k, a + 1
  a = a + 1
  local tokens_after = {}
  local retry = 0
  local hit = 0
  for i = 1, nb do
    local rate, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local state = redis.call('HMGET', KEYS[k], 't', 'ts')
    local tokens = tonumber(state[1]) or burst
    local ts = tonumber(state[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
    if cost > tokens then
      local wait = math.ceil((cost - tokens) / rate)
      if wait > retry then retry = wait end
      if hit == 0 then hit = k - first_key + 1 end
    end
    tokens_after[i] = tokens - cost
    k = k + 1
  end
  local nd = tonumber(ARGV[a])
  a = a + 1
  local daily = {}
  for i = 1, nd do
    local cap, cost, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local used = tonumber(redis.call('GET', KEYS[k])) or 0
    if used + cost > cap then
      if ttl > retry then retry = ttl end
      if hit == 0 then hit = k - first_key + 1 end
    end
    daily[i] = {cost, ttl}
    k = k + 1
  end
  local np = tonumber(ARGV[a])
  local prompt_arg = a + 1
  local prompt_key = k
  local next_k, next_a = k + np, a + 1 + 3 * np
  if hit > 0 then
    out[#out + 1] = 0
    out[#out + 1] = math.max(1, retry)
    out[#out + 1] = hit
    return next_k, next_a
  end
  k = first_key
  a = first_arg
  for i = 1, nb do
    local rate, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    a = a + 3
    redis.call('HSET', KEYS[k], 't', tostring(tokens_after[i]), 'ts', now)
    redis.call('PEXPIRE', KEYS[k], math.ceil(burst / rate * 1000) + 1000)
    k = k + 1
  end
  for i = 1, nd do
    redis.call('INCRBY', KEYS[k], daily[i][1])
    redis.call('EXPIRE', KEYS[k], daily[i][2])
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

local k, a = 1, 3
for _ = 1, tonumber(ARGV[2]) do
  k, a = one(k, a)
end
return out
