-- Tally votes cast with verified sampling tokens, each token (nonce) once.
-- KEYS[1]: the arena's tally hash; KEYS[2..]: one nonce key per vote.
-- ARGV[1]: nonce ttl_s; then, per nonce key, the vote id and its tally field.
-- A nonce first seen is kept (its vote id) and its field counted; seen again with another vote
-- id it is a replay (counted under 'unsampled|replayed'); with the same vote id it was already
-- counted. Returns the number of replays.
local replays = 0
for k = 2, #KEYS do
  local vote_id, field = ARGV[2 * k - 2], ARGV[2 * k - 1]
  local owner = redis.call('GET', KEYS[k])
  if not owner then
    redis.call('SET', KEYS[k], vote_id, 'EX', ARGV[1])
    redis.call('HINCRBY', KEYS[1], field, 1)
  elseif owner ~= vote_id then
    redis.call('HINCRBY', KEYS[1], 'unsampled|replayed', 1)
    replays = replays + 1
  end
end
return replays
