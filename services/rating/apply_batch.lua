-- Apply one arena's slice of a Kafka batch to its board counts, exactly once.
-- All keys share the arena's hash tag, so this runs on one Redis Cluster slot.
--
-- KEYS[1]     fence hash: "topic/partition" -> last applied offset, "_version" -> applies so far
-- KEYS[2]     views set of the arena
-- KEYS[3]     model index hash of the arena: model -> number (0, 1, ..), append-only; a model
--             gets the next number (HLEN) in the apply that first counts it
-- KEYS[4 .. 3+n]     packed counts string of each view touched, in the order of the view names
--                    below: u32 cells, pair lo < hi (model numbers) at 4 * (hi*(hi-1)/2 + lo),
--                    one cell per outcome with lo on side A (services/rating/packed_counts.py)
-- KEYS[4+n .. 3+2n]  online-Elo hash (model -> rating) of each of those views
-- KEYS[4+2n .. 3+3n] style-battles list of each of those views
-- ARGV[1]     the arena's version the caller's cached state reflects
-- ARGV[2]     fence field ("topic/partition")
-- ARGV[3]     first offset of the slice, ARGV[4] last offset of the slice
-- ARGV[5]     required fence: apply only if the fence is at least this (-1: no requirement).
--             The worker copying a slice into the generation a rebuild fills passes the fence
--             it had before the slice, so that generation never gets a gap.
-- ARGV[6]     n = number of views; ARGV[7 .. 6+n] view names (aligned with KEYS)
-- ARGV[7+n]   m = number of count quintuples; then m quintuples: view index (1-based),
--             model_a, model_b (different models), outcome (0 model_a, 1 model_b, 2 tie,
--             3 tie_bothbad), increment
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
-- Malformed count quintuples are an error before anything is written.
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
local ncounts = tonumber(ARGV[7 + nviews])
local counts_end = 7 + nviews + 5 * ncounts
for i = 8 + nviews, counts_end, 5 do
  local view, outcome, n = tonumber(ARGV[i]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  if ARGV[i + 1] == ARGV[i + 2]
      or not view or view % 1 ~= 0 or view < 1 or view > nviews
      or not outcome or outcome % 1 ~= 0 or outcome < 0 or outcome > 3
      or not n or n % 1 ~= 0 or n < 0 then
    return redis.error_reply('malformed count quintuple at ARGV[' .. i .. ']')
  end
end
for i = 1, nviews do
  redis.call('SADD', KEYS[2], ARGV[6 + i])
end
local numbers = {}
local next_number = nil
local function number_of(model)
  local n = numbers[model]
  if n == nil then
    n = redis.call('HGET', KEYS[3], model)
    if n then
      n = tonumber(n)
    else
      next_number = next_number or redis.call('HLEN', KEYS[3])
      n = next_number
      next_number = next_number + 1
      redis.call('HSET', KEYS[3], model, n)
    end
    numbers[model] = n
  end
  return n
end
local flip = {[0] = 1, [1] = 0, [2] = 2, [3] = 3}
for i = 8 + nviews, counts_end, 5 do
  local lo, hi, outcome = number_of(ARGV[i + 1]), number_of(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if lo > hi then
    lo, hi, outcome = hi, lo, flip[outcome]
  end
  local cell = 4 * (hi * (hi - 1) / 2 + lo) + outcome
  redis.call('BITFIELD', KEYS[3 + tonumber(ARGV[i])], 'INCRBY', 'u32',
             string.format('#%d', cell), string.format('%d', tonumber(ARGV[i + 4])))
end
local nchunks = tonumber(ARGV[#ARGV])
local elo_end = #ARGV - 1 - 2 * nchunks
for i = counts_end + 1, elo_end, 3 do
  redis.call('HSET', KEYS[3 + nviews + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = elo_end + 1, #ARGV - 1, 2 do
  redis.call('RPUSH', KEYS[3 + 2 * nviews + tonumber(ARGV[i])], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], '_version', version + 1)
return {1, last, version + 1}
