-- Rate limits of one ingest request, checked and charged atomically (all keys share {limits}).
-- KEYS: token buckets, then daily counters, then prompt-hash counters.
-- ARGV: now_ms, n_buckets, (rate_per_s, burst, cost) x n_buckets,
--       n_daily, (cap, cost, ttl_s) x n_daily, n_prompts, (cap, count, ttl_s) x n_prompts
-- Returns {1, 0, allowed_1 .. allowed_n_prompts} when within every limit (and charges them),
-- or {0, retry_after_s, index_of_the_first_limit_hit} without charging anything.
local now = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local a = 3
local k = 1
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
    if hit == 0 then hit = k end
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
    if hit == 0 then hit = k end
  end
  daily[i] = {cost, ttl}
  k = k + 1
end
if hit > 0 then
  return {0, math.max(1, retry), hit}
end
k = 1
a = 3
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
a = a + 1 + 3 * nd
local np = tonumber(ARGV[a])
a = a + 1
local out = {1, 0}
for i = 1, np do
  local cap, count, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local after = redis.call('INCRBY', KEYS[k], count)
  redis.call('EXPIRE', KEYS[k], ttl)
  local before = after - count
  out[#out + 1] = math.max(0, math.min(count, cap - before))
  k = k + 1
end
return out
