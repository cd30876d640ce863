-- Write one record of a system-of-record topic (services/common/records.py) into a Redis hash,
-- only if it is newer than what the hash holds: the record's offset in its (one-partition,
-- compacted) topic is stored beside the value, so a replay, or a write that lost a race, never
-- puts an older record over a newer one. A deletion (tombstone) keeps its offset too.
--
-- KEYS[1]  hash of values; KEYS[2] hash of offsets (may be KEYS[1]; same hash tag)
-- ARGV[1]  field of the value; ARGV[2] field of its offset; ARGV[3] the record's offset
-- ARGV[4]  '1': set the value to ARGV[5]; '0': delete it (a tombstone)
--
-- Returns 1 when written, 0 when the hash holds a record at this offset or a newer one.
local stored = redis.call('HGET', KEYS[2], ARGV[2])
if stored and tonumber(stored) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
