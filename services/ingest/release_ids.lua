-- Drop an ingest instance's claims of vote ids (VoteIdMemory.release): another's are kept.
-- KEYS: one in-flight hash per shard; ARGV: owner, the number of ids of each hash, the ids.
local owner = ARGV[1]
local at = 2 + #KEYS
local dropped = 0
for i, key in ipairs(KEYS) do
  local last = at + tonumber(ARGV[1 + i]) - 1
  for j = at, last do
    local h = redis.call('HGET', key, ARGV[j])
    if h and string.match(h, '^(%S+) ') == owner then
      dropped = dropped + redis.call('HDEL', key, ARGV[j])
    end
  end
  at = last + 1
end
return dropped
