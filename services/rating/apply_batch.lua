-- Apply one arena's slice of a Kafka batch to its board counts, exactly once.
-- All keys share the arena's hash tag, so this runs on one Redis Cluster slot.
--
-- KEYS[1]     fence hash: "topic/partition" -> last applied offset, "_version" -> applies so far
-- KEYS[2]     views set of the arena
-- KEYS[3 .. 2+n]     counts hash of each view touched, in the order of the view names below
-- KEYS[3+n .. 2+2n]  online-Elo hash (model -> rating) of each of those views
-- KEYS[3+2n .. 2+3n] style-battles list of each of those views
-- ARGV[1]     the arena's version the caller's cached state reflects
-- ARGV[2]     fence field ("topic/partition")
-- ARGV[3]     first offset of the slice, ARGV[4] last offset of the slice
-- ARGV[5]     required fence: apply only if the fence is at least this (-1: no requirement).
--             The worker copying a slice into the generation a rebuild fills passes the fence
--             it had before the slice, so that generation never gets a gap.
-- ARGV[6]     n = number of views; ARGV[7 .. 6+n] view names (aligned with KEYS)
-- ARGV[7+n]   m = number of count triples; then m triples: view index (1-based), field, increment
-- then        Elo triples: view index, model, new rating (computed by the worker from its
--             cached ratings, in offset order; written only if everything passes)
-- then        s style-battle pairs: view index, encoded BattleColumns chunk (RPUSHed)
-- ARGV[#ARGV] s = number of style-battle pairs
--
-- Returns {status, fence, version}:
--   1 applied (fence = last, version + 1)
--   0 all already applied (fence >= last)
--  -1 partly applied before (first <= fence < last): the caller drops offsets <= fence, retries
--  -2 behind (fence < required fence): nothing applied
--  -3 stale: someone else changed the arena since the caller's version; reload, then retry
local version = tonumber(redis.call('HGET', KEYS[1], '_version') or '0')
if version ~= tonumber(ARGV[1]) then
  return {-3, -1, version}
end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '-1')
local first = tonumber(ARGV[3])
local last = tonumber(ARGV[4])
if current >= last then
  return {0, current, version}
end
if current >= first then
  return {-1, current, version}
end
if current < tonumber(ARGV[5]) then
  return {-2, current, version}
end
local nviews = tonumber(ARGV[6])
for i = 1, nviews do
  redis.call('SADD', KEYS[2], ARGV[6 + i])
end
local ncounts = tonumber(ARGV[7 + nviews])
local counts_end = 7 + nviews + 3 * ncounts
for i = 8 + nviews, counts_end, 3 do
  redis.call('HINCRBY', KEYS[2 + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
local nchunks = tonumber(ARGV[#ARGV])
local elo_end = #ARGV - 1 - 2 * nchunks
for i = counts_end + 1, elo_end, 3 do
  redis.call('HSET', KEYS[2 + nviews + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = elo_end + 1, #ARGV - 1, 2 do
  redis.call('RPUSH', KEYS[2 + 2 * nviews + tonumber(ARGV[i])], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], '_version', version + 1)
return {1, last, version + 1}
