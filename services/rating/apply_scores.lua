-- Apply a batch of benchmark score events exactly once: each record carries its offset, and
-- records at or below the fence of their topic partition are skipped (already applied).
-- All keys share the bench arena's hash tag.
--
-- KEYS[1]     fence hash: "topic/partition" -> last applied Kafka offset
-- KEYS[2]     views set of the bench arena
-- KEYS[3..]   scores hash of each benchmark, in the order of the names below
-- ARGV[1]     fence field ("topic/partition"); ARGV[2] n = number of benchmarks
-- ARGV[3 .. 2+n] benchmark names (aligned with KEYS[3..])
-- ARGV[3+n..] quadruples, in offset order: benchmark index (1-based), model, offset, event JSON
--
-- Returns the number of records applied.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local n = tonumber(ARGV[2])
local applied = 0
local last = current
for i = 3 + n, #ARGV, 4 do
  local offset = tonumber(ARGV[i + 2])
  if offset > current then
    local index = tonumber(ARGV[i])
    redis.call('HSET', KEYS[2 + index], ARGV[i + 1], ARGV[i + 3])
    redis.call('SADD', KEYS[2], ARGV[2 + index])
    applied = applied + 1
    if offset > last then last = offset end
  end
end
if last > current then
  redis.call('HSET', KEYS[1], ARGV[1], last)
end
return applied
