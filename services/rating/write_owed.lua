-- Write the read models a board's last refit left owed (its matrices, history points) only if
-- the arena is still at the version they were computed from: had anyone applied votes to the
-- arena since (a worker that took its partition over), they would be stale, and that worker
-- writes its own. All keys share the arena's hash tag.
--
-- KEYS[1]     the arena's fence hash (its version field is bumped by every apply)
-- KEYS[2]     the board's matrices key
-- KEYS[3..]   one history list per point below
-- ARGV[1]     the version field; ARGV[2] the version the read models were computed at
-- ARGV[3]     the matrices document, or '' to leave the matrices as they are
-- ARGV[4]     the most points a history list keeps
-- ARGV[5..]   history points (JSON), aligned with KEYS[3..]
--
-- Returns 1 if written, 0 if the arena has moved on (nothing written).
local version = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if version ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3])
end
local keep = tonumber(ARGV[4])
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[i + 2])
  redis.call('LTRIM', KEYS[i], -keep, -1)
end
return 1
