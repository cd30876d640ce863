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
-- KEYS[4+3n .. ]     recent-window bucket hashes (model -> battles), one per (view, hour) the
--                    slice's votes were received in (the sampling report's recent window)
-- ARGV[1]     the arena's version the caller's cached state reflects
-- ARGV[2]     fence field ("topic/partition")
-- ARGV[3]     first offset of the slice, ARGV[4] last offset of the slice
-- ARGV[5]     required fence: apply only if the fence is at least this (-1: no requirement).
--             The worker copying a slice into the generation a rebuild fills passes the fence
--             it had before the slice, so that generation never gets a gap.
-- ARGV[6]     n = number of views; ARGV[7 .. 6+n] view names (aligned with KEYS)
-- ARGV[7+n]   k = number of models the slice counts; ARGV[8+n .. 7+n+k] their names (distinct)
-- ARGV[8+n+k] the count increments, packed: 11-byte records (struct ">HHHBI4"): view index
--             (1-based), positions of model_a and model_b in the list above (0-based, different),
--             outcome (0 model_a, 1 model_b, 2 tie, 3 tie_bothbad), increment
-- then        Elo triples: view index, model, new rating (computed by the worker from its
--             cached ratings, in offset order; written only if everything passes)
-- then        s style-battle pairs: view index, encoded BattleColumns chunk (RPUSHed)
-- then        the recent section, per bucket hash in KEYS order: its expiry (unix time), m,
--             then m (model, battles) pairs (HINCRBY, then EXPIREAT)
-- ARGV[#ARGV-1] length of the recent section (number of arguments)
-- ARGV[#ARGV] s = number of style-battle pairs
--
-- Returns {status, fence, version}:
--   1 applied (fence = last, version + 1)
--   0 all already applied (fence >= last)
--  -1 partly applied before (first <= fence < last): the caller drops offsets <= fence, retries
--  -2 behind (fence < required fence): nothing applied
--  -3 stale: someone else changed the arena since the caller's version; reload, then retry
-- Malformed count arguments, or an arena past 8192 models, are an error before any write.
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
local nmodels = tonumber(ARGV[7 + nviews])
local increments = ARGV[8 + nviews + nmodels]
local counts_end = 8 + nviews + nmodels
local RECORD, RECORD_SIZE = '>HHHBI4', 11
local MAX_MODELS = 8192  -- 8192 * 8191 / 2 pairs of 128 bits fit the 2^32 bits of a string
local function malformed(what)
  return redis.error_reply('malformed count arguments: ' .. what)
end
local seen = {}
for i = 8 + nviews, 7 + nviews + nmodels do
  if seen[ARGV[i]] then
    return malformed('model ' .. ARGV[i] .. ' listed twice')
  end
  seen[ARGV[i]] = true
end
if #increments % RECORD_SIZE ~= 0 then
  return malformed('increments are not whole records')
end
for at = 1, #increments, RECORD_SIZE do
  local view, a, b, outcome = struct.unpack(RECORD, increments, at)
  if view < 1 or view > nviews or a >= nmodels or b >= nmodels or a == b or outcome > 3 then
    return malformed('record at byte ' .. at)
  end
end
local nchunks = tonumber(ARGV[#ARGV])
local recent_len = tonumber(ARGV[#ARGV - 1])
local recent_start = #ARGV - 1 - recent_len
local elo_end = recent_start - 1 - 2 * nchunks
do  -- the recent section must name one bucket per bucket key, and end where it says
  local at, buckets = recent_start, 0
  while at < #ARGV - 1 do
    at = at + 2 + 2 * tonumber(ARGV[at + 1])
    buckets = buckets + 1
  end
  if at ~= #ARGV - 1 or buckets ~= #KEYS - 3 - 3 * nviews then
    return malformed('recent-window section')
  end
end
-- the arena's number of each model of the slice; new ones get the next numbers (HLEN on) below
local numbers, new_models = {}, 0
for i = 0, nmodels - 1 do
  local n = redis.call('HGET', KEYS[3], ARGV[8 + nviews + i])
  numbers[i] = n and tonumber(n)
  if not n then
    new_models = new_models + 1
  end
end
local next_number = redis.call('HLEN', KEYS[3])
if next_number + new_models > MAX_MODELS then
  return malformed('an arena counts at most ' .. MAX_MODELS .. ' models')
end
for i = 1, nviews do
  redis.call('SADD', KEYS[2], ARGV[6 + i])
end
for i = 0, nmodels - 1 do
  if not numbers[i] then
    numbers[i] = next_number
    redis.call('HSET', KEYS[3], ARGV[8 + nviews + i], next_number)
    next_number = next_number + 1
  end
end
local flip = {[0] = 1, [1] = 0, [2] = 2, [3] = 3}
local pending = {}  -- view index -> BITFIELD arguments not sent yet (one call per 256 cells)
local function flush(view)
  local ops = pending[view]
  if ops and #ops > 0 then
    redis.call('BITFIELD', KEYS[3 + view], unpack(ops))
    pending[view] = {}
  end
end
for at = 1, #increments, RECORD_SIZE do
  local view, a, b, outcome, n = struct.unpack(RECORD, increments, at)
  local lo, hi = numbers[a], numbers[b]
  if lo > hi then
    lo, hi, outcome = hi, lo, flip[outcome]
  end
  local ops = pending[view] or {}
  pending[view] = ops
  local top = #ops
  ops[top + 1] = 'INCRBY'
  ops[top + 2] = 'u32'
  ops[top + 3] = string.format('#%d', 4 * (hi * (hi - 1) / 2 + lo) + outcome)
  ops[top + 4] = string.format('%d', n)
  if top + 4 >= 1024 then
    flush(view)
  end
end
for view = 1, nviews do
  flush(view)
end
for i = counts_end + 1, elo_end, 3 do
  redis.call('HSET', KEYS[3 + nviews + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = elo_end + 1, recent_start - 1, 2 do
  redis.call('RPUSH', KEYS[3 + 2 * nviews + tonumber(ARGV[i])], ARGV[i + 1])
end
local at = recent_start
for k = 4 + 3 * nviews, #KEYS do
  local expire_at, m = ARGV[at], tonumber(ARGV[at + 1])
  at = at + 2
  for _ = 1, m do
    redis.call('HINCRBY', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  redis.call('EXPIREAT', KEYS[k], expire_at)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], '_version', version + 1)
return {1, last, version + 1}
