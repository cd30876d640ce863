-- KEYS: one dedupe set per shard, then the same shards' in-flight hashes (claims dropped);
-- ARGV: ttl_s, the number of ids of each set, then the ids
local n = #KEYS / 2
local at = 2 + n
for i = 1, n do
  local last = at + tonumber(ARGV[1 + i]) - 1
  for from = at, last, 1000 do  -- unpack has a limit
    local to = math.min(from + 999, last)
    redis.call('SADD', KEYS[i], unpack(ARGV, from, to))
    redis.call('HDEL', KEYS[n + i], unpack(ARGV, from, to))
  end
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  at = last + 1
end
return at - 2 - n
