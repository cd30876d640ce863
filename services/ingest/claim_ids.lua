-- Claim vote ids for an ingest instance about to produce them (VoteIdMemory.claim).
-- KEYS: per shard, per_shard keys: its in-flight hash, then its dedupe sets to look in.
-- ARGV: now_ms, ttl_ms, owner, per_shard, the number of ids of each shard, then the ids.
-- Returns one character per id, in order: "0" remembered (a duplicate), "1" claimed by owner
-- now (free, or its own claim: refreshed), "2" claimed by another instance and not expired.
-- In-flight field: id -> "<owner> <expiry ms>"; the hash expires ttl after its last claim.
local now, ttl, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local per_shard = tonumber(ARGV[4])
local shards = #KEYS / per_shard
local value = owner .. ' ' .. (now + ttl)
local out = {}
local at = 5 + shards
for s = 1, shards do
  local base = per_shard * (s - 1)
  local hash = KEYS[base + 1]
  local last = at + tonumber(ARGV[4 + s]) - 1
  for from = at, last, 1000 do  -- unpack has a limit
    local to = math.min(from + 999, last)
    local state = {}
    for j = 2, per_shard do
      local hits = redis.call('SMISMEMBER', KEYS[base + j], unpack(ARGV, from, to))
      for i = 1, #hits do
        if hits[i] == 1 then state[i] = '0' end
      end
    end
    local held = redis.call('HMGET', hash, unpack(ARGV, from, to))
    local claim = {}
    for i = 1, to - from + 1 do
      if not state[i] then
        local h = held[i]
        local other = false
        if h then
          local who, expiry = string.match(h, '^(%S+) (%d+)$')
          other = who ~= owner and tonumber(expiry) > now
        end
        if other then
          state[i] = '2'
        else
          state[i] = '1'
          claim[#claim + 1] = ARGV[from + i - 1]
          claim[#claim + 1] = value
        end
      end
      out[#out + 1] = state[i]
    end
    if #claim > 0 then
      redis.call('HSET', hash, unpack(claim))
      redis.call('PEXPIRE', hash, ttl)
    end
  end
  at = last + 1
end
return table.concat(out)
