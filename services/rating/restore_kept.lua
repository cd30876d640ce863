-- Restore the quarantine lists of an arena's flagged voters after Redis lost them
-- (services/rating/kept_votes.py), once: only while the arena's screen has no fence for the
-- partition (its screen state is gone), and then set that fence to the last offset read, so
-- the screen treats the records up to it as replays (flagged voters' votes excluded, not kept
-- twice). All keys share the arena's hash tag.
--
-- KEYS[1]     the arena's screen-fence hash; KEYS[2..] the voters' quarantine lists
-- ARGV[1]     fence field ("topic/partition"); ARGV[2] last offset read
-- ARGV[3..]   per list, in KEYS order: the number of votes n, then the n votes (JSON)
--
-- Returns 1 when restored, 0 when the fence exists (nothing written).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local at = 3
for k = 2, #KEYS do
  local n = tonumber(ARGV[at])
  for i = 1, n do
    redis.call('RPUSH', KEYS[k], ARGV[at + i])
  end
  at = at + n + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
