-- Write a style-controlled board's standings (``{view}+style``) only if the arena is still at
-- the version of the battles it was fitted from, or at a later one of the same worker's: had
-- anyone else applied votes to the arena since (a worker that took its partition over), the
-- fit would be stale, and that worker refits the board itself. All keys share the arena's hash
-- tag.
--
-- KEYS[1]     the arena's fence hash (its version field is bumped by every apply)
-- KEYS[2]     the board's standings key
-- KEYS[3]     the arena's views set (the board is listed there)
-- ARGV[1]     the version field; ARGV[2] the version the worker's cached state is at
-- ARGV[3]     the standings document; ARGV[4] the view (``{view}+style``)
-- ARGV[5]     the board-changes channel; ARGV[6] the board's name (``arena/view``)
--
-- Returns 1 if written, 0 if the arena has moved on (nothing written).
local version = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if version ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
