-- KEYS: one dedupe set per shard; ARGV: ttl_s, the number of ids of each set, then the ids
local at = 2 + #KEYS
for i, key in ipairs(KEYS) do
  local last = at + tonumber(ARGV[1 + i]) - 1
  for from = at, last, 1000 do  -- unpack has a limit
    redis.call('SADD', key, unpack(ARGV, from, math.min(from + 999, last)))
  end
  redis.call('EXPIRE', key, ARGV[1])
  at = last + 1
end
return at - 2 - #KEYS
